"""`convert open_clip` on broken or absurd folders: one line naming the file, exit 2, nothing
written; a model with NaN weights or an absurd logit scale or context is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.clip_reference import prepare_open_clip_import, write_open_clip_folder

prepare_open_clip_import()
pytest.importorskip("keras_hub", reason="the CLIP models need the clip extra (keras-hub)")
pytest.importorskip("open_clip", reason="the reference folder needs the clip-reference extra")
pytest.importorskip("safetensors", reason="the safetensors cases need the clip extra")

from mammo_keras import cli  # noqa: E402


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    """A small open_clip folder, in both weight formats' parts: the torch file and its
    arrays as open_clip_model.safetensors in a sibling folder."""
    import torch
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("clip")
    write_open_clip_folder(root / "torch")
    state = torch.load(root / "torch" / "open_clip_pytorch_model.bin", weights_only=True)
    shutil.copytree(root / "torch", root / "safetensors")
    (root / "safetensors" / "open_clip_pytorch_model.bin").unlink()
    save_file({key: value.float().numpy() for key, value in state.items()},
              root / "safetensors" / "open_clip_model.safetensors")
    return root


def _copy(good_folder: Path, kind: str, tmp_path: Path) -> Path:
    folder = tmp_path / kind
    shutil.copytree(good_folder / kind, folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    text = folder / "text"  # the text tower's own config, named by the folder's config
    config["model_cfg"]["text_cfg"]["hf_model_name"] = str(text)
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = str(text)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


def _refused(folder: Path, tmp_path: Path, capsys) -> str:
    out = tmp_path / "out.keras"
    assert cli.main(["convert", "open_clip", str(folder), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and not out.exists(), error
    return error


def _edit_config(folder: Path, edit) -> None:
    path = folder / "open_clip_config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    path = folder / "open_clip_model.safetensors"
    state = dict(load_file(path))
    edit(state)
    save_file(state, path)


def test_the_good_folder_converts(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "safetensors", tmp_path)
    assert cli.main(["convert", "open_clip", str(folder), "--out",
                     str(tmp_path / "clip.keras")]) == 0
    assert "logit scale 4.200" in capsys.readouterr().out


def test_a_config_nested_100000_deep(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "torch", tmp_path)
    (folder / "open_clip_config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "open_clip_config.json: JSON nested too deeply" in _refused(folder, tmp_path, capsys)


@pytest.mark.parametrize("model_cfg", [[1, 2], "text", None])
def test_model_cfg_not_a_mapping(good_folder, tmp_path, capsys, model_cfg):
    folder = _copy(good_folder, "torch", tmp_path)
    _edit_config(folder, lambda config: config.update(model_cfg=model_cfg))
    assert "not an open_clip config (no 'model_cfg' mapping)" in _refused(folder, tmp_path,
                                                                          capsys)


def test_a_truncated_safetensors_file(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "safetensors", tmp_path)
    path = folder / "open_clip_model.safetensors"
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    assert "open_clip_model.safetensors: not a readable safetensors file" in _refused(
        folder, tmp_path, capsys)


def test_a_safetensors_header_that_lies(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "safetensors", tmp_path)
    path = folder / "open_clip_model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = (2 ** 40).to_bytes(8, "little")  # a header longer than the file
    path.write_bytes(bytes(data))
    assert "not a readable safetensors file" in _refused(folder, tmp_path, capsys)


def test_a_torch_file_that_is_not_a_checkpoint(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "torch", tmp_path)
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"PK\x03\x04 not a zip at all")
    assert "open_clip_pytorch_model.bin: not a readable torch checkpoint" in _refused(
        folder, tmp_path, capsys)


@pytest.mark.parametrize("heads", [0, 3, "two", -2])
def test_attention_heads_that_do_not_divide_the_width(good_folder, tmp_path, capsys, heads):
    folder = _copy(good_folder, "torch", tmp_path)
    path = folder / "text" / "config.json"
    config = json.loads(path.read_text())
    config["num_attention_heads"] = heads
    path.write_text(json.dumps(config))
    error = _refused(folder, tmp_path, capsys)
    assert f"config.json: num_attention_heads is {heads!r}; it must be a whole number >= 1 " \
        "that divides the width 32" in error


@pytest.mark.parametrize("scale", [1e30, -1.0, float("nan")])
def test_an_absurd_logit_scale(good_folder, tmp_path, capsys, scale):
    folder = _copy(good_folder, "safetensors", tmp_path)
    _edit_weights(folder, lambda state: state.update(
        logit_scale=np.full_like(state["logit_scale"], scale)))
    error = _refused(folder, tmp_path, capsys)
    assert ("logit_scale" in error and ("outside [0, 4.6052]" in error or "not finite" in error))


def test_a_nan_weight(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "safetensors", tmp_path)

    def poison(state):
        weight = state["visual.head.proj.weight"].copy()
        weight[0, 0] = np.nan
        state["visual.head.proj.weight"] = weight
    _edit_weights(folder, poison)
    assert "weight 'visual.head.proj.weight' holds values that are not finite" in _refused(
        folder, tmp_path, capsys)


@pytest.mark.parametrize("context", [10 ** 9, 0, 2.5, "long"])
def test_an_absurd_context_length(good_folder, tmp_path, capsys, context):
    folder = _copy(good_folder, "torch", tmp_path)
    _edit_config(folder, lambda config: config["model_cfg"]["text_cfg"].update(
        context_length=context))
    assert f"context_length is {context!r}; it must be a whole number from 1 to 64" in _refused(
        folder, tmp_path, capsys)


def test_a_tower_config_that_is_not_a_mapping(good_folder, tmp_path, capsys):
    folder = _copy(good_folder, "torch", tmp_path)
    _edit_config(folder, lambda config: config["model_cfg"].update(vision_cfg=["vit"]))
    assert "model_cfg.vision_cfg is not a mapping" in _refused(folder, tmp_path, capsys)
