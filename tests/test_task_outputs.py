"""A task's outputs travel with its model: a mask + label model trained through the CLI exports
both outputs (SavedModel, TFLite) and `explain` draws its mask, with no task code at hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from mammo_keras import cli
from mammo_keras.data.preprocessing import crop_box_in_original, preprocess
from mammo_keras.data.synthetic import generate_phantom, synthetic_specs
from mammo_keras.errors import UserError
from mammo_keras.export import ExportParityError, load_predictor
from mammo_keras.export.exporter import check_mask_parity
from mammo_keras.models import describe, description_of
from mammo_keras.models.outputs import check_output_kinds, mask_outputs, served_model

SIZE = 32


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A toy mask + label model trained for two epochs by `mammo-keras train`."""
    folder = tmp_path_factory.mktemp("toy")
    config = {"name": "toy", "data": {"synthetic": {"count": 24, "size": 256},
                                      "image_size": SIZE, "split": [0.5, 0.25, 0.25],
                                      "task": "tests.toy_task:ToyMaskTask"},
              "model": {"builder": "tests.toy_task:build", "width": 4},
              "training": {"epochs": 2, "batch_size": 4, "tensorboard": False},
              "evaluation": {"resamples": 10}}
    (folder / "toy.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["train", "--trust-code", "--config", str(folder / "toy.yaml"),
                     "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def exported(toy_run) -> Path:
    out = toy_run.parent / "export"
    assert cli.main(["export", str(toy_run / "model.keras"), "--out", str(out),
                     "--samples", "6"]) == 0
    return out


def _phantom(seed: int = 3) -> np.ndarray:
    return generate_phantom(synthetic_specs(1, seed=seed, size=256)[0])[0].astype(np.float32)


def _keras_mask(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False)["mask"])


def test_the_trained_model_names_the_kind_of_each_output(toy_run):
    model = keras.saving.load_model(toy_run / "model.keras")
    description = description_of(model)
    assert description.outputs == {"label": "class_probabilities", "mask": "mask"}
    served = served_model(model, description)
    assert set(served.output) == {"probabilities", "mask"}
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(served(images)["mask"]),
                               _keras_mask(model, images), atol=1e-6)


@pytest.mark.parametrize("artefact", ["savedmodel", "model.tflite"])
def test_every_format_serves_the_mask_of_the_keras_model(toy_run, exported, artefact):
    model = keras.saving.load_model(toy_run / "model.keras")
    images = np.random.default_rng(1).random((3, SIZE, SIZE, 1)).astype(np.float32)
    predictor = load_predictor(exported / artefact)
    outputs = predictor.outputs(images)
    assert outputs["mask"].shape == (3, SIZE, SIZE, 1)
    np.testing.assert_allclose(outputs["mask"], _keras_mask(model, images), atol=1e-4)
    np.testing.assert_allclose(outputs["probabilities"], keras.ops.convert_to_numpy(
        model(images)["label"]), atol=1e-4)
    beside = exported / ("savedmodel/1.json" if artefact == "savedmodel" else "model.json")
    meta = json.loads(beside.read_text())
    assert meta["outputs"] == {"label": "class_probabilities", "mask": "mask"}
    assert meta["parity"]["masks"]["mask"]["max_abs_difference"] <= 1e-4


def _identity_mask_model(size: int) -> keras.Model:
    """A model whose mask is its input image (a 1 x 1 convolution of weight 1): the mask
    served on the raw image must then be the raw image itself, blurred by the resampling."""
    inputs = keras.Input((size, size, 1), name="image")
    mask = keras.layers.Conv2D(1, 1, name="mask", kernel_initializer="ones",
                               bias_initializer="zeros")(inputs)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))
    label = keras.layers.Softmax(name="label")(logits)
    return describe(keras.Model(inputs, {"label": label, "mask": mask}), task="malignancy",
                    label_output="label", outputs={"label": "class_probabilities",
                                                   "mask": "mask"},
                    preprocessing={"crop": True, "flip": True})


def test_serving_default_returns_the_mask_on_the_uncropped_image(tmp_path):
    size = 128
    _identity_mask_model(size).save(tmp_path / "identity.keras")
    cli.main(["export", str(tmp_path / "identity.keras"), "--out", str(tmp_path / "out"),
              "--format", "savedmodel", "--samples", "4"])
    served = tf.saved_model.load(str(tmp_path / "out" / "savedmodel" / "1"))
    for seed in (3, 4, 5, 6):  # phantoms of both lateralities: flipped and not
        image = _phantom(seed)
        result = served.signatures["serving_default"](images=tf.constant(image[None]))
        raw_mask = result["mask"].numpy()[0]
        assert raw_mask.shape == image.shape
        geometry = result["geometry"].numpy()[0]
        np.testing.assert_allclose(geometry, preprocess(image, size, crop=True,
                                                        flip=True)[1].numpy())
        top, left, bottom, right = (int(v) for v in crop_box_in_original(geometry, image.shape))
        outside = np.ones_like(raw_mask, bool)
        outside[top:bottom, left:right] = False
        assert np.all(raw_mask[outside] == 0.0)
        inside = raw_mask[top:bottom, left:right], image[top:bottom, left:right]
        correlation = np.corrcoef(inside[0].ravel(), inside[1].ravel())[0, 1]
        assert correlation > 0.95, (seed, correlation)
        assert np.abs(inside[0] - inside[1]).mean() < 0.03


def test_explain_writes_the_mask_beside_the_heat_map(toy_run, exported, tmp_path):
    image = _phantom()
    Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(tmp_path / "film.png")
    out = tmp_path / "explained"
    assert cli.main(["explain", str(toy_run / "model.keras"), str(tmp_path / "film.png"),
                     "--out", str(out)]) == 0
    with open(out / "explanations.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    mask = np.asarray(Image.open(out / row["mask"]), np.float64) / 65535
    read_back = np.asarray(Image.open(tmp_path / "film.png"), np.float32) / 65535
    served = tf.saved_model.load(str(exported / "savedmodel" / "1"))
    expected = served.signatures["serving_default"](
        images=tf.constant(read_back[None]))["mask"].numpy()[0]
    assert mask.shape == expected.shape
    np.testing.assert_allclose(mask, expected, atol=1e-4)


def test_mask_parity_enforces_its_tolerances():
    reference = {"mask": np.full((2, 4, 4, 1), 0.25, np.float32)}
    assert check_mask_parity(reference, {"mask": reference["mask"] + 5e-5}, "none",
                             "a")["mask"]["pixel_agreement"] == 1.0
    with pytest.raises(ExportParityError, match="mask 'mask' differs"):
        check_mask_parity(reference, {"mask": reference["mask"] + 2e-4}, "none", "a")
    flipped = reference["mask"].copy()
    flipped[0] = 0.75  # half the pixels cross 0.5
    with pytest.raises(ExportParityError, match="keeps 0.500"):
        check_mask_parity(reference, {"mask": flipped}, "int8", "b")
    with pytest.raises(ExportParityError, match="no mask 'mask'"):
        check_mask_parity(reference, {}, "none", "c")


def test_output_kinds_are_checked():
    with pytest.raises(UserError, match="unknown kind 'heatmap'"):
        check_output_kinds({"mask": "heatmap"})
    with pytest.raises(UserError, match="taken by the exported signatures"):
        check_output_kinds({"geometry": "mask"})
    with pytest.raises(UserError, match="at most one output"):
        check_output_kinds({"a": "class_probabilities", "b": "class_probabilities"})
    inputs = keras.Input((16, 16, 1))
    coarse = keras.layers.Conv2D(1, 2, strides=2, name="mask")(inputs)
    label = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    model = describe(keras.Model(inputs, {"label": label, "mask": coarse}),
                     label_output="label", outputs={"label": "class_probabilities",
                                                    "mask": "mask"})
    with pytest.raises(UserError, match=r"is \(None, 8, 8, 1\); a mask is \(N, 16, 16, 1\)"):
        mask_outputs(model, description_of(model))


# --- the plug-in task through every command: evaluate and a grid ask the task --------------

def test_evaluate_asks_the_plug_in_task_that_trained_the_model(toy_run, tmp_path, capsys):
    data = next((toy_run / "data").iterdir())
    out = tmp_path / "evaluation"
    command = ["evaluate", str(toy_run / "model.keras"), "--data", str(data),
               "--out", str(out), "--resamples", "10", "--include-seen"]
    assert cli.main(command) == 2  # the task the model names is code from outside the package
    assert "task 'tests.toy_task:ToyMaskTask' is code from module 'tests.toy_task', outside " \
        "mammo_keras; refused unless you trust it: add --trust-code" in capsys.readouterr().err
    assert cli.main([*command, "--trust-code"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "roc_auc_macro" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == ["normal", "benign", "malignant"]
    description = description_of(keras.saving.load_model(toy_run / "model.keras"))
    assert description.task == "tests.toy_task:ToyMaskTask"


def test_a_grid_of_the_plug_in_task_is_summarised_by_its_columns(tmp_path, capsys):
    config = {"name": "toy_grid", "data": {"synthetic": {"count": 16, "size": 256},
                                           "image_size": SIZE, "split": [0.5, 0.25, 0.25],
                                           "task": "tests.toy_task:ToyMaskTask"},
              "model": {"builder": "tests.toy_task:build", "width": 4},
              "training": {"epochs": 1, "batch_size": 4, "tensorboard": False},
              "evaluation": {"resamples": 0}, "grid": {"training.seed": [0, 1]}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["--trust-code", "run", str(path), "--out", str(tmp_path / "grid")]) == 0
    summary = (tmp_path / "grid" / "summary.md").read_text()
    assert "task tests.toy_task:ToyMaskTask" in summary and "| n | accuracy |" in summary
    assert "held-out test subset" in summary
    with open(tmp_path / "grid" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(0.0 <= float(row["accuracy"]) <= 1.0 for row in rows)
    assert {row["evaluated_on"] for row in rows} == {"test"}
