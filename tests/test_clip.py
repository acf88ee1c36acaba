"""The Keras BiomedCLIP design against open_clip itself: a randomly initialised open_clip model,
built offline from a local config, converted; embeddings, logits and tokens compared."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.clip_reference import (import_open_clip, prepare_open_clip_import,
                                  write_open_clip_folder)

prepare_open_clip_import()
pytest.importorskip("keras_hub", reason="the CLIP models need the clip extra (keras-hub)")
pytest.importorskip("open_clip", reason="the reference needs the clip-reference extra")

from mammo_keras.convert import open_clip_to_keras  # noqa: E402
from mammo_keras.models.clip import load_clip, tokenizer_of  # noqa: E402
from mammo_keras.models.zero_shot import resolve_prompts, zero_shot_classifier  # noqa: E402

PROMPTS = ["The breast is extremely dense.", "the breasts are almost entirely fatty",
           "Scattered areas of fibroglandular density, which may obscure small masses",
           "unknownword is dense"]


def reference_outputs(reference, images: np.ndarray, tokens) -> dict:
    import torch

    with torch.no_grad():
        pixels = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        image = reference.encode_image(pixels).numpy()
        text = reference.encode_text(tokens).numpy()
        image_unit, text_unit, scale = reference(pixels, tokens)[:3]
        logits = (scale * image_unit @ text_unit.T).numpy()
    return {"image": image, "text": text, "logits": logits}


def keras_logits(model, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    from mammo_keras.models.clip import clip_config_of

    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    return np.exp(clip_config_of(model).logit_scale) * image @ text.T


def check_against_open_clip(folder: Path, reference, rng, size: int, tmp_path: Path) -> None:
    open_clip = import_open_clip()
    model = open_clip_to_keras(folder)
    tokenizer = tokenizer_of(model)
    reference_tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(PROMPTS)
    np.testing.assert_array_equal(tokenizer(PROMPTS), reference_tokens.numpy())
    images = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    expected = reference_outputs(reference, images, reference_tokens)
    ours = model({"images": images, "token_ids": tokenizer(PROMPTS)})
    image = keras.ops.convert_to_numpy(ours["image_embedding"])
    text = keras.ops.convert_to_numpy(ours["text_embedding"])
    np.testing.assert_allclose(image, expected["image"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(text, expected["text"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(keras_logits(model, image, text), expected["logits"], atol=1e-4)
    model.save(tmp_path / "clip.keras")
    loaded, loaded_tokenizer = load_clip(tmp_path / "clip.keras")
    again = loaded({"images": images, "token_ids": loaded_tokenizer(PROMPTS)})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again["image_embedding"]), image,
                               atol=1e-6)


def test_a_small_open_clip_model_converts_to_the_same_function(tmp_path, rng):
    reference = write_open_clip_folder(tmp_path / "small")
    check_against_open_clip(tmp_path / "small", reference, rng, 160, tmp_path)


@pytest.mark.slow
def test_biomedclips_full_size_converts_to_the_same_function(tmp_path, rng):
    """ViT-B/16 + BERT-base, 196 M parameters, as BiomedCLIP (random weights)."""
    reference = write_open_clip_folder(tmp_path / "full", full=True)
    check_against_open_clip(tmp_path / "full", reference, rng, 224, tmp_path)


def test_zero_shot_probabilities_are_open_clips_softmax_over_prompts(tmp_path, rng):
    import torch

    open_clip = import_open_clip()
    reference = write_open_clip_folder(tmp_path / "small")
    model = open_clip_to_keras(tmp_path / "small")
    prompts = {"A": ["The breast is almost entirely fat.", "the breast is fatty"],
               "B": "The breast is scattered fibroglandular densities.",
               "C": ["The breast is heterogeneously dense."],
               "D": ["The breast is extremely dense."]}
    classifier = zero_shot_classifier(model, tokenizer_of(model), prompts)
    gray = rng.uniform(size=(3, 160, 160, 1)).astype(np.float32)
    ours = classifier.predict(gray, verbose=0)
    # the reference: CLIP-normalised 3-channel pixels, prompt ensembles averaged on the sphere
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array(
        [0.26862954, 0.26130258, 0.27577711])
    pixels = ((np.repeat(gray, 3, axis=-1) - mean) / std).astype(np.float32)
    tokenize = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'small'}")
    with torch.no_grad():
        image = reference.encode_image(torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()),
                                       normalize=True).numpy()
        columns = []
        for texts in resolve_prompts(prompts).values():
            embedded = reference.encode_text(tokenize(texts), normalize=True).numpy()
            columns.append(embedded.mean(0) / np.linalg.norm(embedded.mean(0)))
        logits = reference.logit_scale.exp().item() * image @ np.stack(columns, axis=1)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(ours, expected / expected.sum(1, keepdims=True), atol=1e-5)
    from mammo_keras.models import description_of

    assert description_of(classifier).class_names == ("A", "B", "C", "D")
    classifier.save(tmp_path / "zero_shot.keras")
    from mammo_keras import load_model

    np.testing.assert_allclose(load_model(tmp_path / "zero_shot.keras").predict(gray, verbose=0),
                               ours, atol=1e-6)


def test_convert_command_and_a_zero_shot_config_through_train_and_predict(tmp_path, capsys):
    import yaml

    from mammo_keras import cli

    write_open_clip_folder(tmp_path / "small")
    out = tmp_path / "biomedclip.keras"
    assert cli.main(["convert", "open_clip", str(tmp_path / "small"), "--out", str(out)]) == 0
    assert "logit scale 4.200" in capsys.readouterr().out
    config = {"name": "zero-shot",
              "data": {"task": "density", "synthetic": {"count": 16, "size": 256},
                       "image_size": 64, "split": [0.5, 0.25, 0.25]},
              "model": {"builder": "zero_shot", "clip": str(out), "prompts": "mama"},
              "training": {"epochs": 0, "tensorboard": False}, "evaluation": {"resamples": 10}}
    (tmp_path / "zero_shot.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(tmp_path / "zero_shot.yaml"), "--out", str(run),
                     "--set", "data.classes=[A, B, C, D]"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["class_names"] == ["A", "B", "C", "D"] and "dense_view" in metrics
    films = next((run / "data").glob("synthetic-*")) / "images"  # not the masks beside them
    assert cli.main(["predict", str(run / "model.keras"), str(films),
                     "--out", str(tmp_path / "predictions.csv")]) == 0
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(rows) == 17 and "p_D" in rows[0]
    capsys.readouterr()
    assert cli.main(["convert", "open_clip", str(tmp_path), "--out",
                     str(tmp_path / "x.keras")]) != 0
    error = capsys.readouterr().err.strip()
    assert "no open_clip_config.json" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "x.keras").exists()


@pytest.mark.parametrize("features, width", [
    pytest.param("projection", 16, marks=pytest.mark.slow),  # the same path, one layer more
    ("pre_projection", 64)])
def test_a_clip_image_tower_is_probed_before_or_after_its_projection(tmp_path, features, width):
    from mammo_keras.training import train

    write_open_clip_folder(tmp_path / "small")
    open_clip_to_keras(tmp_path / "small").save(tmp_path / "clip.keras")
    config = {"name": "clip-probe",
              "data": {"task": "density", "synthetic": {"count": 16, "size": 256},
                       "image_size": 64, "split": [0.5, 0.25, 0.25]},
              "model": {"builder": "clip_encoder", "clip": str(tmp_path / "clip.keras"),
                        "features": features},
              "training": {"scenario": "logistic_probe", "class_balance": "none",
                           "tensorboard": False},
              "evaluation": {"resamples": 10}}
    train(config, tmp_path / "run", data_dir=tmp_path / "data", verbose=0)
    probe = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert probe["features"] == width  # the joint space (16) or the ViT's width (64)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    clip, _ = load_clip(tmp_path / "clip.keras")
    ours = model.get_layer("vit").get_weights()
    assert all(np.array_equal(a, b) for a, b in
               zip(ours, clip.get_layer("image_tower").get_layer("vit").get_weights()))
