"""Tasks and self-describing models: a user-defined two-output task trained through the CLI,
descriptions that travel inside .keras / SavedModel / TFLite files, logits, pyramids, stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from mammo_keras import cli
from mammo_keras.data import read_image
from mammo_keras.explain.gradcam import grad_cam
from mammo_keras.models import (build_classifier, describe, description_of, feature_pyramid,
                                with_logits)
from mammo_keras.models.builders import build_model
from mammo_keras.training import ConfigError, resolve_config
from mammo_keras.trust import TRUST_VARIABLE

TINY = {"synthetic": {"count": 24, "size": 256}, "image_size": 32, "split": [0.5, 0.25, 0.25]}


def test_toy_two_output_task_trains_from_yaml_through_the_cli(tmp_path):
    config = {"name": "toy", "data": {**TINY, "task": "tests.toy_task:ToyMaskTask"},
              "model": {"builder": "tests.toy_task:build", "width": 4},
              "training": {"epochs": 2, "batch_size": 4, "tensorboard": False},
              "evaluation": {"resamples": 10}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--out", str(out), "--trust-code"]) == 0
    done = json.loads((out / "done.json").read_text())
    assert done["task"] == "tests.toy_task:ToyMaskTask" and done["epochs_run"] == 2
    assert done["monitor"] == "val_loss"  # the task's own, as the config names none
    model = keras.saving.load_model(out / "model.keras")
    assert set(model.output) == {"label", "mask"}
    description = description_of(model)
    assert description.label_output == "label"
    phantom = next((out / "data").rglob("images/*.*"))
    trained_on = description.provenance["image_shape"]  # original sizes, for evaluate's notes
    assert trained_on["median"] == list(read_image(phantom)[0].shape)
    assert trained_on["images"] == done["images"]["train"]
    assert description.class_names == ("normal", "benign", "malignant")
    outputs = model(np.zeros((2, 32, 32, 1), np.float32))
    assert outputs["mask"].shape == (2, 32, 32, 1) and outputs["label"].shape == (2, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == ["normal", "benign", "malignant"]
    assert 0.0 <= done["metrics"]["accuracy"] <= 1.0


def test_builder_keys_are_checked_against_its_signature(monkeypatch):
    monkeypatch.setenv(TRUST_VARIABLE, "1")
    with pytest.raises(ConfigError, match=r"model\.widht.*valid.*width"):
        resolve_config({"model": {"builder": "tests.toy_task:build", "widht": 3}})
    with pytest.raises(ConfigError, match=r"model\.backbone"):
        resolve_config({"model": {"builder": "tests.toy_task:build", "backbone": "x"}})


def test_a_keras_file_copied_alone_keeps_density_class_names_and_preprocessing(tmp_path):
    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(32, 32, 1))
    describe(model, task="density", class_names=("F", "G", "D"),
             preprocessing={"window": True, "crop": True})
    model.save(tmp_path / "a.keras")
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(tmp_path / "a.keras", alone / "model.keras")
    from mammo_keras.export import load_predictor

    predictor = load_predictor(alone / "model.keras")
    assert predictor.class_names == ("F", "G", "D") and predictor.task == "density"
    assert predictor.preprocessing == {"crop": True, "flip": True, "window": True,
                                       "equalize": False}


def test_an_undescribed_three_class_model_is_never_called_malignancy():
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    description = description_of(keras.Model(inputs, outputs))
    assert description.class_names == ("class0", "class1", "class2")


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_exported_artefacts_describe_themselves_without_the_json_beside(tmp_path, fmt):
    from mammo_keras.export import export_model, load_predictor

    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(32, 32, 1))
    describe(model, task="density", class_names=("F", "G", "D"),
             preprocessing={"equalize": True})
    model.save(tmp_path / "m.keras")
    result = export_model(tmp_path / "m.keras", tmp_path / "out", fmt, samples=4,
                          enforce_parity=False)
    artefact = Path(next(iter(result)))
    alone = tmp_path / "alone"
    alone.mkdir()
    copy = alone / artefact.name
    shutil.copytree(artefact, copy) if artefact.is_dir() else shutil.copy(artefact, copy)
    assert not any(p.suffix == ".json" for p in alone.iterdir())
    predictor = load_predictor(copy)
    assert predictor.class_names == ("F", "G", "D") and predictor.task == "density"
    assert predictor.preprocessing["equalize"] is True
    probabilities = predictor(np.zeros((2, 32, 32, 1), np.float32))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)


def test_logits_are_the_pre_softmax_scores():
    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(32, 32, 1))
    images = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    both = with_logits(model)(images)
    logits = keras.ops.convert_to_numpy(both["logits"])
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(both["probabilities"]), expected,
                               atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), expected, atol=1e-6)


def test_grad_cam_explains_a_two_output_model_without_a_predictions_layer():
    from tests.toy_task import build

    model = describe(build(3, (32, 32, 1)), label_output="label", task="malignancy")
    assert "predictions" not in [layer.name for layer in model.layers]
    images = np.random.default_rng(1).random((1, 32, 32, 1)).astype(np.float32)
    maps, chosen, probabilities = grad_cam(model, images, None, None, "gradcam")
    assert maps.shape[0] == 1 and np.all(np.isfinite(maps))
    np.testing.assert_allclose(probabilities, keras.ops.convert_to_numpy(
        model(images)["label"]), atol=1e-6)


def test_feature_pyramid_has_the_named_strides():
    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(64, 64, 1))
    pyramid = feature_pyramid(model)
    assert list(pyramid) == ["P1", "P2", "P3", "P4", "P5"]
    for level, tensor in pyramid.items():
        assert tensor.shape[1] == 64 // 2 ** int(level[1]), level


def test_convnext_pyramid_levels_are_stage_outputs_after_the_residual_addition():
    """The last tensor at each stride is the stage's output (a keras.ops addition), the input
    of the next stage's downsampling, not the residual branch before it."""
    model = build_classifier("convnext_tiny", "gap", num_classes=3, input_shape=(64, 64, 1))
    pyramid = feature_pyramid(model)
    for level, next_level in (("P2", 3), ("P3", 4), ("P4", 5)):
        downsampling = next(operation for operation in model.operations
                            if not isinstance(operation, keras.layers.InputLayer)
                            and len(operation.output.shape) == 4
                            and operation.output.shape[1] == 64 // 2 ** next_level)
        assert downsampling.input is pyramid[level], (level, downsampling.name)


def test_build_model_describes_what_it_builds(monkeypatch):
    monkeypatch.setenv(TRUST_VARIABLE, "1")
    model = build_model({"builder": "tests.toy_task:build", "width": 2}, num_classes=2,
                        image_size=16)
    assert description_of(model).image_size == 16
    assert model.output["mask"].shape[1:] == (16, 16, 1)


def test_serving_default_runs_window_and_clahe_when_the_model_was_trained_with_them(tmp_path):
    import tensorflow as tf

    from mammo_keras.data.preprocessing import preprocess
    from mammo_keras.data.synthetic import generate_phantom, synthetic_specs
    from mammo_keras.export import export_model

    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(32, 32, 1))
    options = {"crop": True, "flip": True, "window": True, "equalize": True}
    describe(model, task="malignancy", preprocessing=options)
    model.save(tmp_path / "m.keras")
    export_model(tmp_path / "m.keras", tmp_path / "out", "savedmodel", samples=4,
                 enforce_parity=False)
    served = tf.saved_model.load(str(tmp_path / "out" / "savedmodel" / "1"))
    image = generate_phantom(synthetic_specs(1, seed=5, size=256)[0])[0].astype(np.float32)
    result = served.signatures["serving_default"](images=tf.constant(image[None]))
    expected = model(preprocess(image, 32, **options)[0][None])
    np.testing.assert_allclose(result["probabilities"].numpy(),
                               keras.ops.convert_to_numpy(expected), atol=1e-5)
    plain = model(preprocess(image, 32, crop=True, flip=True)[0][None])
    assert not np.allclose(keras.ops.convert_to_numpy(plain),
                           keras.ops.convert_to_numpy(expected), atol=1e-6)
