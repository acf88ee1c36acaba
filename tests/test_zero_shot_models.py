"""A zero-shot classifier is served like any model: SavedModel and TFLite with parity at its
tower's input size (at another size TFLite, which has no bicubic resize, is one clear line),
and Grad-CAM on the ViT's patch tokens."""

from __future__ import annotations

import keras
import numpy as np
import pytest

pytest.importorskip("keras_hub", reason="CLIP models need the clip extra (keras-hub)")

from mammo_keras.errors import UserError  # noqa: E402
from mammo_keras.export import export_model  # noqa: E402
from mammo_keras.models.zero_shot import build_zero_shot  # noqa: E402
from tests.clip_reference import write_small_random_clip  # noqa: E402


def test_a_zero_shot_model_exports_with_parity_and_names_what_tflite_lacks(tmp_path):
    clip = str(write_small_random_clip(tmp_path / "clip.keras"))
    build_zero_shot(clip, "birads", input_shape=(32, 32, 1)).save(tmp_path / "at_size.keras")
    result = export_model(str(tmp_path / "at_size.keras"), str(tmp_path / "out"), "all",
                          "none", samples=8)
    assert len(result) == 2
    for meta in result.values():
        assert meta["parity"]["max_abs_difference"] < 1e-5
        assert meta["parity"]["top1_agreement"] == 1.0
    build_zero_shot(clip, "birads", input_shape=(64, 64, 1)).save(tmp_path / "resized.keras")
    with pytest.raises(UserError, match=r"cannot be converted to TFLite: TFLite has no "
                                        r"tf\.ResizeBicubic \(export --format savedmodel"):
        export_model(str(tmp_path / "resized.keras"), str(tmp_path / "out2"), "tflite", "none",
                     samples=8)


def test_grad_cam_of_a_zero_shot_model_weighs_the_vits_patch_tokens(tmp_path, rng):
    from mammo_keras.explain.gradcam import grad_cam
    from mammo_keras.models.zero_shot import token_grad_cam_probe

    clip = str(write_small_random_clip(tmp_path / "clip.keras"))
    model = build_zero_shot(clip, "mama", input_shape=(32, 32, 1))
    images = rng.uniform(size=(3, 32, 32, 1)).astype(np.float32)
    tokens, logits = token_grad_cam_probe(model)(images)
    assert tokens.shape == (3, 1 + 4 * 4, 32)  # 32 px, patch 8: a 4 x 4 grid and the class token
    logits = keras.ops.convert_to_numpy(logits)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-6)
    for method in ("gradcam", "gradcam++"):
        maps, chosen, probabilities = grad_cam(model, images, method=method)
        assert maps.shape == (3, 4, 4) and maps.min() >= 0 and maps.max() <= 1
        assert np.all(maps.reshape(3, -1).max(1) == 1.0)  # each map has a peak
        np.testing.assert_array_equal(chosen, probabilities.argmax(1))
    assert token_grad_cam_probe(keras.Sequential([keras.Input((4,)),
                                                  keras.layers.Dense(2)])) is None
