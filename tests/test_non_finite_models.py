"""A model whose outputs cannot be probabilities is refused by every consumer, in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mammo_keras import cli
from mammo_keras.data import generate_phantom, synthetic_specs
from mammo_keras.errors import UserError
from mammo_keras.export.runtime import keras_predictor
from mammo_keras.models import build_classifier, describe
from mammo_keras.models.output_checks import check_probabilities


def _poisoned_model():
    model = build_classifier("baseline_cnn", "gap", 3, (32, 32, 1))
    bias = model.get_layer("logits").bias
    values = bias.numpy()
    values[0] = np.nan  # one NaN in the last bias: every output is NaN
    bias.assign(values)
    return describe(model, image_size=32)


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan")
    _poisoned_model().save(folder / "nan.keras")
    images = folder / "images" / "normal"
    images.mkdir(parents=True)
    for index, spec in enumerate(synthetic_specs(3, seed=1, size=256)):
        film = generate_phantom(spec)[0]
        Image.fromarray(np.round(film * 65535).astype(np.uint16)).save(images / f"{index}.png")
    return folder


@pytest.mark.parametrize("command", [
    ["predict", "{model}", "{images}", "--out", "{out}/p.csv"],
    ["evaluate", "{model}", "{data}", "--out", "{out}/evaluation"],
    ["explain", "{model}", "{images}", "--out", "{out}/explained"],
    ["export", "{model}", "--out", "{out}/export"]])
def test_every_command_refuses_a_model_with_a_nan_weight(poisoned, tmp_path, capsys, command):
    argv = [part.format(model=poisoned / "nan.keras", images=poisoned / "images" / "normal",
                        data=poisoned / "images", out=tmp_path) for part in command]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "nan.keras: weight 'logits/bias' holds values that are not finite" in error
    assert not (tmp_path / "p.csv").exists()


def test_a_predictor_refuses_outputs_that_are_not_finite():
    predictor = keras_predictor(_poisoned_model(), "served.tflite")
    with pytest.raises(UserError, match=r"served.tflite: the model's class probabilities are "
                                        r"not finite \(NaN or infinity\) for 2 of 2 images"):
        predictor(np.zeros((2, 32, 32, 1), np.float32))


@pytest.mark.parametrize("rows, message", [
    ([[0.2, 0.3]], "a row sums to 0.5"),
    ([[1.5, -0.5]], "not probabilities"),
    ([[np.inf, 0.0]], "not finite")])
def test_outputs_that_are_not_probabilities_are_named(rows, message):
    with pytest.raises(UserError, match=message):
        check_probabilities(np.array(rows), "m")
    check_probabilities(np.array([[0.25, 0.75], [1.0, 0.0]]), "m")


@pytest.mark.parametrize("scale", [float("nan"), 1e30])
def test_a_clip_with_an_absurd_logit_scale_is_refused(tmp_path, scale):
    pytest.importorskip("keras_hub", reason="the CLIP models need the clip extra (keras-hub)")
    import dataclasses

    from mammo_keras.models.clip import build_clip, clip_config_of, load_clip
    from tests.clip_reference import write_small_random_clip

    good = write_small_random_clip(tmp_path / "good.keras")
    model, tokenizer = load_clip(good)
    config = dataclasses.replace(clip_config_of(model), logit_scale=scale)
    build_clip(config, tokenizer=tokenizer.to_dict()).save(tmp_path / "bad.keras")
    with pytest.raises(UserError, match=r"bad.keras: logit_scale is (nan|1e\+30), outside "
                                        r"\[0, 4.6052\]"):
        load_clip(tmp_path / "bad.keras")
