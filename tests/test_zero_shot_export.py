"""A zero-shot classifier exports like any model: SavedModel and TFLite with parity at its
tower's input size; at another size TFLite (which has no bicubic resize) is one clear line."""

from __future__ import annotations

import pytest

pytest.importorskip("keras_hub", reason="CLIP models need the clip extra (keras-hub)")

from mammo_keras.errors import UserError  # noqa: E402
from mammo_keras.export import export_model  # noqa: E402
from mammo_keras.models.clip import build_zero_shot  # noqa: E402
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
