"""MorphHR's function-preserving transformations: every operation on every backbone and on the
HDS U-Net gives the original outputs to 1e-5 (float32) before training; the new layers train;
impossible morphs fail with a message naming the layer and the condition."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammo_keras.errors import UserError
from mammo_keras.models import build_classifier, build_hds_unet
from mammo_keras.morph import deepen, deepen_kernel, grow_kernel, to_resolution, widen
from mammo_keras.morph.factorize import compose, factorize

TOLERANCE = 1e-5
SMALL_UNET = (4, 8, 16, 16, 16, 16, 16, 16, 16, 8, 4)
SIZES = {"baseline_cnn": 64, "convnext_tiny": 32, "inception_v3": 75}


def _randomised(model: keras.Model) -> keras.Model:
    """Non-trivial BatchNorm statistics and biases, so that copies and zeros are tested on a
    network that is not near the identity."""
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if w.name in ("gamma",
                                                                            "moving_variance")
                               else rng.normal(0, 0.2, w.shape) for w in layer.weights])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    return model


def _probe(model: keras.Model) -> keras.Model:
    """Every output of `model`, plus its pre-softmax logits where it has them (probabilities
    near 1/K would hide small errors)."""
    outputs = dict(model.output) if isinstance(model.output, dict) else {"output": model.output}
    names = {layer.name for layer in model.layers}
    for name in ("logits", "embedding"):
        if name in names:
            outputs[name] = model.get_layer(name).output
    return keras.Model(model.input, outputs)


def _assert_same_function(original: keras.Model, morphed: keras.Model, images: np.ndarray,
                          morphed_images: np.ndarray | None = None) -> None:
    expected = _probe(original).predict(images, verbose=0)
    got = _probe(morphed).predict(images if morphed_images is None else morphed_images,
                                  verbose=0)
    assert set(expected) == set(got)
    for name in expected:
        scale = max(1.0, float(np.abs(expected[name]).max()))
        np.testing.assert_allclose(got[name], expected[name], atol=TOLERANCE * scale, rtol=0,
                                   err_msg=name)


def _images(size, count=2, seed=0) -> np.ndarray:
    size = (size, size) if np.isscalar(size) else size
    return np.random.default_rng(seed).random((count, *size, 1), np.float32)


def _layers_of(model, kind, count=None):
    found = [layer.name for layer in model.layers if type(layer) is kind]
    return found if count is None else found[:count]


@pytest.fixture(scope="module")
def models():
    built = {name: _randomised(build_classifier(name, input_shape=(size, size, 1)))
             for name, size in SIZES.items()}
    built["hds_unet"] = _randomised(build_hds_unet((64, 64, 1), widths=SMALL_UNET,
                                                   mil_stride=32))
    return built


def _morph_targets(name: str, model: keras.Model) -> dict:
    """For each operation, a layer of this network where it applies."""
    if name == "baseline_cnn":
        conv = "baseline_cnn_stage2_block1_conv"
        return {"deepen": "baseline_cnn_stage2_block1_relu", "widen": conv,
                "deepen_kernel": conv, "grow_kernel": conv}
    if name == "convnext_tiny":
        block = "convnext_tiny_stage_1_block_0"
        return {"deepen": f"{block}_gelu", "widen": f"{block}_pointwise_conv_1",
                "deepen_kernel": f"{block}_pointwise_conv_2", "grow_kernel": f"{block}_depthwise_conv"}
    if name == "inception_v3":
        convs = _layers_of(model, keras.layers.Conv2D)
        same = [name for name in convs if model.get_layer(name).padding == "same"]
        return {"deepen": _layers_of(model, keras.layers.Activation)[3], "widen": convs[3],
                "deepen_kernel": convs[4], "grow_kernel": same[0]}
    return {"deepen": "encoder2_block1_1_relu", "widen": "encoder2_block1_1_conv",
            "deepen_kernel": "encoder2_block1_2_conv", "grow_kernel": "encoder2_block1_1_conv"}


OPERATIONS = {  # name: (the kind of layer it applies to, the morph)
    "deepen": ("deepen", lambda model, layer: deepen(model, layer)),
    "widen_net2net": ("widen", lambda model, layer: widen(model, layer,
                                                          _units(model, layer) + 5)),
    "widen_random_split": ("widen", lambda model, layer: widen(
        model, layer, _units(model, layer) + 5, split="random", seed=3)),
    "widen_netmorph": ("widen", lambda model, layer: widen(
        model, layer, _units(model, layer) + 5, method="netmorph")),
    "deepen_kernel": ("deepen_kernel", lambda model, layer: deepen_kernel(model, layer)),
    "grow_kernel": ("grow_kernel", lambda model, layer: grow_kernel(
        model, layer, model.get_layer(layer).kernel_size[0] + 2)),
}


def _units(model, layer) -> int:
    return int(model.get_layer(layer).output.shape[-1])


@pytest.mark.parametrize("network", [*SIZES, "hds_unet"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_morph_keeps_the_function_of_each_network(models, network, operation):
    model = models[network]
    kind, morph = OPERATIONS[operation]
    morphed = morph(model, _morph_targets(network, model)[kind])
    assert morphed is not model
    assert morphed.count_params() > model.count_params()
    size = SIZES.get(network, 64)
    _assert_same_function(model, morphed, _images(size))
    # the original is untouched: no variable is shared
    assert not {id(v) for v in morphed.weights} & {id(v) for v in model.weights}


def test_layers_inside_a_nested_model_are_named_as_out_of_reach(models):
    """ConvNeXt's stem is a Sequential inside the classifier: morphs act on the top graph."""
    with pytest.raises(UserError, match="'convnext_tiny_stem' is a Sequential"):
        deepen_kernel(models["convnext_tiny"], "convnext_tiny_stem")


@pytest.mark.parametrize("network", [*SIZES, "hds_unet"])
def test_to_resolution_is_the_model_on_the_area_downsampled_image(models, network):
    model = models[network]
    size = SIZES.get(network, 64)
    factor = 2
    morphed = to_resolution(model, size * factor, front_width=6, front_depth=2)
    high = _images(size * factor, seed=1)
    low = high.reshape(2, size, factor, size, factor, 1).mean(axis=(2, 4))
    if network == "hds_unet":  # its mask is at the input's resolution: compare the label
        expected = model.predict(low, verbose=0)["label"]
        np.testing.assert_allclose(morphed.predict(high, verbose=0)["label"], expected,
                                   atol=TOLERANCE)
        return
    _assert_same_function(model, morphed, low, high)
    # area downsampling is also what tf.image.resize(method="area") computes
    area = tf.image.resize(high, (size, size), method="area").numpy()
    np.testing.assert_allclose(area, low, atol=1e-6)
    assert morphed.description.image_size == size * factor
    assert morphed.description.builder["morphs"][-1]["operation"] == "to_resolution"


def test_to_resolution_4x_and_its_new_layers_train():
    model = _randomised(build_classifier("baseline_cnn", input_shape=(32, 32, 1),
                                         num_classes=2))
    morphed = to_resolution(model, 128, front_width=8, front_depth=1)
    high = _images(128, count=4, seed=2)
    low = high.reshape(4, 32, 4, 32, 4, 1).mean(axis=(2, 4))
    _assert_same_function(model, morphed, low, high)
    # every part of the front trains: the downsampling box, the new channels' outgoing
    # weights (zero at first), then the P-activation's a (its gradient, sum (x - phi(x)) dL/dy,
    # is zero until the new channels' outgoing weights have moved)
    front = {v.path: v.numpy().copy() for v in morphed.trainable_weights
             if v.path.startswith("morph_")}
    assert set(front) == {"morph_front1_conv/kernel", "morph_front1_conv/bias",
                          "morph_front1_act/alpha", "morph_downsample/kernel"}
    morphed.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    for _ in range(3):
        morphed.train_on_batch(high, np.array([0, 1, 0, 1]))
    trained = {v.path: v.numpy() for v in morphed.trainable_weights if v.path in front}
    for path, before in front.items():
        assert np.abs(trained[path] - before).max() > 0, path
    assert np.abs(trained["morph_downsample/kernel"][:, :, 1:]).max() > 0  # NetMorph channels


def test_morphed_models_save_and_load_with_the_same_outputs(tmp_path, models):
    model = models["baseline_cnn"]
    morphed = widen(deepen_kernel(to_resolution(model, 128), "baseline_cnn_stage1_block2_conv"),
                    "baseline_cnn_stage3_block1_conv", 160, split="random")
    path = tmp_path / "morphed.keras"
    morphed.save(path)
    loaded = keras.saving.load_model(path)
    _assert_same_function(morphed, loaded, _images(128, seed=4))
    assert [m["operation"] for m in loaded.description.builder["morphs"]] == \
        ["to_resolution", "deepen_kernel", "widen"]


def test_factorisation_composes_back_to_the_kernel_and_states_its_condition():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 6))
    f1, f2 = factorize(kernel, (2, 2), (2, 2), channels=9, rng=rng)
    assert f1.shape == (2, 2, 4, 9) and f2.shape == (2, 2, 9, 6)
    np.testing.assert_allclose(compose(f1, f2), kernel, atol=1e-10)
    # composing is convolving: check against two valid convolutions in TensorFlow
    image = rng.normal(size=(1, 9, 9, 4))
    direct = tf.nn.conv2d(image, kernel, 1, "VALID")
    twice = tf.nn.conv2d(tf.nn.conv2d(image, f1, 1, "VALID"), f2, 1, "VALID")
    np.testing.assert_allclose(twice, direct, atol=1e-9)
    # 8 channels: 8*4 < 4*9 and 8*4 < 6*9, no exact solution
    with pytest.raises(UserError, match=r"needs max\(C\*4\*4, 6\*C\*4\) >= 6\*4\*9, i.e. C >= 9"):
        factorize(kernel, (2, 2), (2, 2), channels=8, rng=rng)
    with pytest.raises(UserError, match="k1 \\+ k2 - 1 must equal it"):
        factorize(kernel, (2, 2), (3, 3), channels=40, rng=rng)


def test_impossible_morphs_name_the_layer_and_the_reason(models):
    unet, cnn = models["hds_unet"], models["baseline_cnn"]
    # a residual block's second convolution feeds an addition: no exact widening
    with pytest.raises(UserError, match="reach 'encoder2_block1_add' \\(Add\\)"):
        widen(unet, "encoder2_block1_2_conv", 40)
    with pytest.raises(UserError, match="has no layer 'baseline_cnn_stage9_conv'"):
        deepen(cnn, "baseline_cnn_stage9_conv")
    with pytest.raises(UserError, match="must be larger"):
        widen(cnn, "baseline_cnn_stage2_block1_conv", 64)
    with pytest.raises(UserError, match="is a BatchNormalization"):
        widen(cnn, "baseline_cnn_stage2_block1_bn", 96)
    with pytest.raises(UserError, match="reach 'predictions' \\(Softmax\\)"):
        widen(cnn, "logits", 5)
    with pytest.raises(UserError, match="larger by an even number"):
        grow_kernel(cnn, "baseline_cnn_stage2_block1_conv", 4)
    with pytest.raises(UserError, match="not an integer multiple"):
        to_resolution(cnn, 100)
    with pytest.raises(UserError, match="not fixed; pass factor"):
        to_resolution(build_hds_unet((None, None, 1), widths=SMALL_UNET, mil_stride=32), 128)
    with pytest.raises(UserError, match="not a functional Keras model"):
        deepen(keras.Sequential([keras.layers.Dense(2)]), "dense")


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "sigmoid", "elu", "softplus"])
def test_the_p_activation_makes_deepening_exact_for_any_activation(activation):
    """Network Morphism's claim "for any continuous non-linear activation": phi_a at a = 1 is
    the identity whatever phi is; at a = 0 it is phi itself."""
    model = _randomised(build_classifier("baseline_cnn", input_shape=(32, 32, 1)))
    deeper = deepen(model, "baseline_cnn_stage1_block2_relu", activation=activation)
    _assert_same_function(model, deeper, _images(32))
    layer = deeper.get_layer("baseline_cnn_stage1_block2_relu_deeper_act")
    layer.alpha.assign(0.0)
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    np.testing.assert_allclose(layer(x), keras.activations.get(activation)(x), atol=1e-6)


def test_widening_follows_channels_through_depthwise_convolutions_and_concatenations():
    """Per-channel layers with weights (a grouped Conv2D as ConvNeXt has, a DepthwiseConv2D,
    BatchNorm) are widened with the channels; a concatenation shifts them; both methods stay
    exact."""
    from mammo_keras.layers import ChannelwiseConv2D

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="widened")(inputs)
    x = ChannelwiseConv2D(6, 3, padding="same", groups=6, name="grouped")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    other = keras.layers.Conv2D(4, 1, name="other")(inputs)
    x = keras.layers.Concatenate(name="concat")([other, x])
    x = keras.layers.Conv2D(5, 3, padding="same", name="consumer")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = _randomised(keras.Model(inputs, outputs))
    images = np.random.default_rng(5).random((2, 16, 16, 3), np.float32)
    for method in ("net2net", "netmorph"):
        wider = widen(model, "widened", 11, method=method, seed=2)
        _assert_same_function(model, wider, images)
        assert wider.get_layer("grouped").groups == 11
        assert wider.get_layer("consumer").kernel.shape == (3, 3, 4 + 11, 5)
    kernel = wider.get_layer("consumer").kernel.numpy()
    np.testing.assert_array_equal(kernel[:, :, 4 + 6:], 0.0)  # netmorph: zero outgoing weights


def test_morph_command_saves_the_morphed_model_and_reports_its_exactness(tmp_path, capsys):
    from mammo_keras import cli

    model = build_classifier("baseline_cnn", input_shape=(32, 32, 1))
    model.save(tmp_path / "m.keras")
    code = cli.main(["morph", str(tmp_path / "m.keras"), "--out", str(tmp_path / "big.keras"),
                     "--to-resolution", "64", "--step",
                     "{operation: widen, layer: baseline_cnn_stage2_block1_conv, width: 80}"])
    assert code == 0
    line = capsys.readouterr().out
    assert "widen, to_resolution" in line and "(area-downsampled)" in line
    assert float(line.rsplit(": ", 1)[1]) <= TOLERANCE
    morphed = keras.saving.load_model(tmp_path / "big.keras")
    assert morphed.input_shape == (None, 64, 64, 1)
    assert morphed.get_layer("baseline_cnn_stage2_block1_conv").filters == 80
    assert cli.main(["morph", str(tmp_path / "m.keras"), "--out", str(tmp_path / "x.keras"),
                     "--to-resolution", "48"]) == 2
    assert "integer multiple" in capsys.readouterr().err
