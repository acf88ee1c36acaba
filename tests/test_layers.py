"""GAGM, SEVector and GrayscaleAdapter against NumPy and keras.applications references."""

import keras
import numpy as np
import pytest

from mammo_keras.layers import GAGM, GrayscaleAdapter, SEVector


def numpy_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 1, 1, 3), (3, 16, 9, 32)])
def test_gagm_concat_is_average_then_max(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    expected = np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(GAGM()(x)), expected, rtol=1e-5, atol=1e-6)


def test_gagm_sum_and_channels_first(rng):
    x = rng.normal(size=(2, 4, 6, 5)).astype("float32")
    expected = x.mean(axis=(1, 2)) + x.max(axis=(1, 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(GAGM(fusion="sum")(x)), expected,
                               rtol=1e-5, atol=1e-6)
    channels_first = np.transpose(x, (0, 3, 1, 2))
    out = GAGM(data_format="channels_first")(channels_first)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out),
                               np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], -1),
                               rtol=1e-5, atol=1e-6)


def test_gagm_any_spatial_size_in_one_model(rng):
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, GAGM()(inputs))
    assert model.output.shape == (None, 16)
    for height, width in [(3, 3), (17, 5)]:
        x = rng.normal(size=(2, height, width, 8)).astype("float32")
        assert model.predict(x, verbose=0).shape == (2, 16)


def test_gagm_rejects_unknown_fusion():
    with pytest.raises(ValueError, match="concat"):
        GAGM(fusion="mean")


def test_se_vector_matches_numpy_reference(rng):
    layer = SEVector(reduction=4)
    v = rng.normal(size=(5, 32)).astype("float32")
    layer.build((None, 32))
    w1, b1 = layer.squeeze.get_weights()
    w2, b2 = layer.excite.get_weights()
    assert w1.shape == (32, 8) and w2.shape == (8, 32)
    rng_b1, rng_b2 = rng.normal(size=b1.shape), rng.normal(size=b2.shape)  # non-zero biases
    layer.squeeze.set_weights([w1, rng_b1.astype("float32")])
    layer.excite.set_weights([w2, rng_b2.astype("float32")])
    out = keras.ops.convert_to_numpy(layer(v))
    gate = numpy_sigmoid(np.maximum(v @ w1 + rng_b1, 0.0) @ w2 + rng_b2)
    np.testing.assert_allclose(out, v * gate, rtol=1e-5, atol=1e-6)


def test_se_vector_bottleneck_width():
    assert SEVector()(np.zeros((1, 1536), "float32")).shape == (1, 1536)
    default = SEVector()
    default.build((None, 1536))
    assert default.squeeze.units == 96  # 1536 / 16
    tiny = SEVector(reduction=16)
    tiny.build((None, 8))
    assert tiny.squeeze.units == 1
    with pytest.raises(ValueError, match="positive"):
        SEVector(reduction=0)


def test_grayscale_adapter_matches_keras_applications_preprocessing(rng):
    gray = rng.uniform(size=(2, 6, 5, 1)).astype("float32")
    rgb_255 = np.repeat(gray, 3, axis=-1) * 255.0
    imagenet = GrayscaleAdapter(3, "imagenet")(gray)
    expected = keras.applications.imagenet_utils.preprocess_input(rgb_255.copy(), mode="torch")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(imagenet), expected, rtol=1e-5, atol=1e-5)
    symmetric = GrayscaleAdapter(3, "symmetric")(gray)
    expected = keras.applications.inception_v3.preprocess_input(rgb_255.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(symmetric), expected, rtol=1e-5, atol=1e-5)
    unit = GrayscaleAdapter(1, "unit")(gray)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unit), gray)


def test_grayscale_adapter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        GrayscaleAdapter(channels=2)
    with pytest.raises(ValueError, match="scaling"):
        GrayscaleAdapter(scaling="caffe")
    with pytest.raises(ValueError):
        GrayscaleAdapter(channels=3)(np.zeros((1, 4, 4, 3), "float32"))  # expects one channel


@pytest.mark.parametrize("layer", [GAGM(fusion="sum"), SEVector(reduction=8),
                                   GrayscaleAdapter(3, "symmetric")])
def test_layers_round_trip_through_config(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"].startswith("mammo_keras>")
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_layers_under_mixed_precision(rng):
    v = rng.normal(size=(4, 64)).astype("float32")
    reference = SEVector(reduction=8)
    expected = keras.ops.convert_to_numpy(reference(v))
    keras.config.set_dtype_policy("mixed_float16")
    mixed = SEVector(reduction=8)
    mixed.build((None, 64))
    mixed.set_weights(reference.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)  # variables stay float32
    out = mixed(v)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).astype("float32"), expected,
                               rtol=2e-2, atol=2e-2)
    pooled = GAGM()(rng.normal(size=(2, 3, 3, 4)).astype("float32"))
    assert keras.backend.standardize_dtype(pooled.dtype) == "float16"
