"""build_classifier: shapes, parity with keras.applications, weights, saving, errors."""

import keras
import numpy as np
import pytest

from mammo_keras.models import BACKBONES, HEADS, build_backbone, build_classifier

# Smallest inputs each backbone accepts, to keep the suite fast.
SIZES = {"baseline_cnn": 32, "convnext_tiny": 32, "convnext_base": 32, "inception_v3": 75}
FEATURES = {"baseline_cnn": 256, "convnext_tiny": 768, "convnext_base": 1024,
            "inception_v3": 2048}
APPLICATIONS = {
    "convnext_tiny": lambda shape: keras.applications.ConvNeXtTiny(
        include_top=False, include_preprocessing=False, weights=None, input_shape=shape),
    "convnext_base": lambda shape: keras.applications.ConvNeXtBase(
        include_top=False, include_preprocessing=False, weights=None, input_shape=shape),
    "inception_v3": lambda shape: keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=shape),
}


def head_parameters(head: str, features: int, num_classes: int, reduction: int = 16) -> int:
    """Parameters of the head and classifier, counted by hand."""
    width = features if head == "gap" else 2 * features
    parameters = width * num_classes + num_classes
    if head == "gagm_se":
        hidden = max(1, width // reduction)
        parameters += width * hidden + hidden + hidden * width + width
    return parameters


def images(size: int, count: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(count, size, size, 1)).astype("float32")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_and_head_gives_probabilities(backbone, head):
    size = SIZES[backbone]
    model = build_classifier(backbone, head, num_classes=4, input_shape=(size, size, 1))
    probabilities = model.predict(images(size, 3), verbose=0)
    assert probabilities.shape == (3, 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probabilities >= 0)
    width = FEATURES[backbone] * (1 if head == "gap" else 2)
    assert model.get_layer("embedding").output.shape == (None, width)
    assert model.name == f"{backbone}_{head}"


@pytest.mark.parametrize("backbone", sorted(APPLICATIONS))
def test_backbones_have_the_keras_applications_weights(backbone):
    size = SIZES[backbone]
    reference = APPLICATIONS[backbone]((size, size, 3))
    ours = build_backbone(backbone, keras.Input((size, size, 3)))
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in reference.weights]
    assert ours.count_params() == reference.count_params()
    for head in HEADS:
        model = build_classifier(backbone, head, num_classes=3, input_shape=(size, size, 1))
        assert model.count_params() == reference.count_params() + head_parameters(
            head, FEATURES[backbone], 3)


def test_baseline_cnn_size_is_documented():
    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(224, 224, 1))
    assert 1_000_000 <= model.count_params() <= 3_000_000
    assert model.count_params() == 2_357_027


def distinctive_reference(backbone: str) -> keras.Model:
    """The keras.applications backbone with every weight set to its own random values."""
    size = SIZES[backbone]
    reference = APPLICATIONS[backbone]((size, size, 3))
    for index, variable in enumerate(reference.weights):
        variable.assign(np.random.default_rng(index).normal(size=variable.shape)
                        .astype(variable.dtype))
    return reference


def assert_backbone_weights_equal(model: keras.Model, reference: keras.Model) -> None:
    """The adapter has no weights: the classifier's first weights are the backbone's, in order."""
    assert len(model.weights) > len(reference.weights)
    for ours, theirs in zip(model.weights[:len(reference.weights)], reference.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("backbone", sorted(APPLICATIONS))
def test_a_keras_applications_weights_file_loads_into_the_backbone(tmp_path, backbone):
    """What `weights="imagenet"` does, offline: a file of the reference architecture."""
    reference = distinctive_reference(backbone)
    path = tmp_path / f"{backbone}_notop.weights.h5"
    reference.save_weights(path)
    size = SIZES[backbone]
    model = build_classifier(backbone, "gagm_se", input_shape=(size, size, 1), weights=path)
    assert_backbone_weights_equal(model, reference)


def test_legacy_h5_weights_file_as_keras_applications_ships_it(tmp_path):
    """ImageNet files from keras.applications (e.g. convnext_tiny_notop.h5) are legacy HDF5."""
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format  # writes the format Keras publishes

    reference = distinctive_reference("convnext_tiny")
    path = tmp_path / "convnext_tiny_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    model = build_classifier("convnext_tiny", "gap", input_shape=(32, 32, 1), weights=path)
    assert_backbone_weights_equal(model, reference)


def test_baseline_weights_file_round_trip(tmp_path):
    backbone = build_backbone("baseline_cnn", keras.Input((32, 32, 1)))
    path = tmp_path / "baseline.weights.h5"
    backbone.save_weights(path)
    model = build_classifier("baseline_cnn", "gap", input_shape=(32, 32, 1), weights=path)
    kernel = model.get_layer("baseline_cnn_stage1_block1_conv").kernel.numpy()
    np.testing.assert_array_equal(kernel, backbone.get_layer(
        "baseline_cnn_stage1_block1_conv").kernel.numpy())


def test_missing_or_mismatched_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        build_classifier("baseline_cnn", input_shape=(32, 32, 1),
                         weights=tmp_path / "nothing.weights.h5")
    path = tmp_path / "baseline.weights.h5"
    build_backbone("baseline_cnn", keras.Input((32, 32, 1))).save_weights(path)
    with pytest.raises(ValueError, match=r"baseline\.weights\.h5.*do not fit backbone") as error:
        build_classifier("convnext_tiny", input_shape=(32, 32, 1), weights=path)
    assert "\n" not in str(error.value)
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="garbage.weights.h5"):
        build_classifier("baseline_cnn", input_shape=(32, 32, 1), weights=garbage)


@pytest.mark.parametrize("backbone,head", [("baseline_cnn", head) for head in HEADS]
                         + [("convnext_tiny", "gagm_se"), ("inception_v3", "gagm_se")])
def test_keras_file_round_trip_gives_identical_predictions(tmp_path, backbone, head):
    size = SIZES[backbone]
    model = build_classifier(backbone, head, num_classes=3, input_shape=(size, size, 1))
    x = images(size, 4)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_variable_input_size():
    model = build_classifier("baseline_cnn", "gagm_se", input_shape=(None, None, 1))
    for height, width in [(32, 32), (96, 64)]:
        assert model.predict(images(max(height, width))[:, :height, :width], verbose=0).shape == (2, 3)


def test_mixed_precision_keeps_probabilities_float32():
    keras.config.set_dtype_policy("mixed_float16")
    model = build_classifier("baseline_cnn", "gagm_se", input_shape=(32, 32, 1))
    assert keras.backend.standardize_dtype(model.get_layer("embedding").output.dtype) == "float16"
    probabilities = model.predict(images(32), verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("kwargs,message", [
    ({"backbone": "resnet50"}, r"Unknown backbone 'resnet50'.*baseline_cnn.*convnext_tiny.*inception_v3"),
    ({"head": "attention"}, r"Unknown head 'attention'.*gap.*gagm.*gagm_se"),
    ({"num_classes": 1}, r"num_classes must be an integer >= 2"),
    ({"num_classes": 2.5}, r"num_classes must be an integer >= 2"),
    ({"backbone": "inception_v3", "input_shape": (74, 128, 1)}, r"too small.*inception_v3.*75x75"),
    ({"backbone": "baseline_cnn", "input_shape": (16, 16, 1)}, r"too small.*32x32"),
    ({"input_shape": (64, 64, 3)}, r"\(height, width, 1\)"),
    ({"input_shape": (64, 64)}, r"\(height, width, 1\)"),
    ({"weights": "imagenet"}, r"baseline_cnn.*no ImageNet weights"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"bn_momentum": 1.0}, r"bn_momentum must be in \(0, 1\) or None"),
])
def test_invalid_arguments_raise_value_error(kwargs, message):
    arguments = {"backbone": "baseline_cnn", "input_shape": (64, 64, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        build_classifier(**arguments)


def test_bn_momentum_sets_every_batch_norm_of_inception_v3(tmp_path):
    """model.bn_momentum 0.9: one training-mode call moves the first BatchNorm's moving mean
    a tenth of the way to the batch mean (NumPy), on every BN layer keras.applications
    builds; the saved model keeps it; without it InceptionV3 keeps Keras' 0.99."""
    stock = build_classifier("inception_v3", head="gap", input_shape=(75, 75, 1))
    model = build_classifier("inception_v3", head="gap", input_shape=(75, 75, 1),
                             bn_momentum=0.9)
    batch_norms = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    reference = keras.applications.InceptionV3(include_top=False, weights=None,
                                               input_shape=(75, 75, 3))
    assert len(batch_norms) == sum(isinstance(layer, keras.layers.BatchNormalization)
                                   for layer in reference.layers) == 94
    assert {layer.momentum for layer in batch_norms} == {0.9}
    assert {layer.momentum for layer in stock.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}

    x = images(75, 4)
    first = batch_norms[0]
    features = keras.Model(model.input, first.input)(x).numpy()
    before = keras.ops.convert_to_numpy(first.moving_mean)
    model(x, training=True)
    expected = 0.9 * before + 0.1 * features.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first.moving_mean), expected,
                               rtol=1e-4, atol=1e-6)

    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert {layer.momentum for layer in loaded.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
