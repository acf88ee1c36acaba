"""Linear probes: the logistic head is scikit-learn's own, the Keras head keeps its best epoch,
features are computed once and cached, and a probe run ends as an image -> probabilities model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from mammo_keras.data import load_dataset, load_records
from mammo_keras.errors import UserError
from mammo_keras.models import build_classifier
from mammo_keras.training import train
from mammo_keras.training.probe import encoder_of, fit_logistic_head


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 4])
def test_the_logistic_head_is_scikit_learns_regression_in_one_dense_layer(rng, classes):
    from sklearn.linear_model import LogisticRegression

    labels = np.arange(80) % classes
    features = rng.normal(size=(80, 6)) * [1, 10, 0.1, 3, 1, 5] + 2 * labels[:, None] + 7
    groups = np.arange(80) // 2
    kernel, bias, fitted = fit_logistic_head(features, labels, groups, classes, None, seed=0)
    assert fitted["cv_folds"] == 5
    standardised = (features - features.mean(0)) / features.std(0)
    reference = LogisticRegression(C=fitted["C"], max_iter=5000).fit(standardised, labels)
    np.testing.assert_allclose(softmax(features @ kernel + bias),
                               reference.predict_proba(standardised), atol=1e-6)


def test_the_probe_layer_must_exist_and_be_a_vector():
    model = build_classifier("baseline_cnn", "gap", 3, (32, 32, 1))
    assert encoder_of(model, None).output.shape == (None, 256)
    with pytest.raises(UserError, match="has no layer 'pooled'"):
        encoder_of(model, "pooled")
    with pytest.raises(UserError, match="a linear probe reads a \\(batch, features\\) output"):
        encoder_of(model, next(layer.name for layer in model.layers
                               if isinstance(layer, keras.layers.Conv2D)))


def density_config(scenario: str, **training) -> dict:
    return {"name": f"probe-{scenario}",
            "data": {"task": "density", "synthetic": {"count": 32, "size": 256},
                     "image_size": 32, "split": [0.5, 0.25, 0.25]},
            "model": {"head": "gap"},
            "training": {"scenario": scenario, "epochs": 40, "batch_size": 8,
                         "tensorboard": False, **training},
            "evaluation": {"resamples": 10}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("probe-phantoms")


def cached(data_dir: Path, subset: str) -> dict:
    (path,) = (data_dir / "embeddings").glob(f"{subset}-32-*.npz")
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def test_linear_and_logistic_probes_train_on_features_computed_once(tmp_path, data_dir):
    config = density_config("linear_probe", schedule="plateau", warmup_epochs=0,
                            plateau_patience=3, plateau_factor=0.2, patience=8,
                            learning_rate=1e-2)
    done = train(config, tmp_path / "linear", data_dir=data_dir, verbose=0)
    assert done["task"] == "density" and set(done["class_names"]) <= set("ABCD")
    model = keras.saving.load_model(tmp_path / "linear" / "model.keras")
    assert model.output.shape == (None, len(done["class_names"]))
    train_set, val_set = cached(data_dir, "train"), cached(data_dir, "val")
    # the run's own model gives the cached features: the encoder stayed frozen
    records = {record.path: record for record in
               load_records("synthetic", next(data_dir.glob("synthetic-*")))}
    first = [records[str(path)] for path in train_set["paths"][:4]]
    images, _ = next(iter(load_dataset(first, target="density", image_size=32, batch_size=4,
                                       class_names=done["class_names"])))
    features = keras.Model(model.input, model.get_layer("embedding").output)(images)
    np.testing.assert_allclose(features, train_set["features"][:4], atol=1e-5)
    # the head kept is the best epoch's: its validation cross-entropy, recomputed here
    kernel, bias = model.get_layer("logits").get_weights()
    p = softmax(val_set["features"] @ kernel + bias)
    cross_entropy = -np.mean(np.log(np.clip(p[np.arange(len(p)), val_set["labels"]], 1e-7, 1)))
    history = list(csv.DictReader(open(tmp_path / "linear" / "history.csv")))
    best = min(float(row["val_cross_entropy"]) for row in history)
    assert cross_entropy == pytest.approx(best, rel=1e-4)
    assert done["best_epoch"] == 1 + [float(row["val_cross_entropy"])
                                      for row in history].index(best)
    rates = [float(row["learning_rate"]) for row in history]
    assert rates[0] == pytest.approx(1e-2) and all(b <= a for a, b in zip(rates, rates[1:]))
    stamps = {path: path.stat().st_mtime_ns for path in (data_dir / "embeddings").glob("*")}

    logistic = train(density_config("logistic_probe"), tmp_path / "logistic",
                     data_dir=data_dir, verbose=0)
    # the same encoder (same seed) on the same images: the cached features, not recomputed
    assert {path: path.stat().st_mtime_ns
            for path in (data_dir / "embeddings").glob("*")} == stamps
    probe = json.loads((tmp_path / "logistic" / "probe.json").read_text())
    assert probe["scenario"] == "logistic_probe" and probe["features"] == 256 and probe["C"] > 0
    assert 0.0 <= logistic["metrics"]["accuracy"] <= 1.0
    assert (tmp_path / "logistic" / "report.md").is_file()


def test_a_saved_model_is_probed_for_another_task_with_its_own_weights(tmp_path, data_dir):
    source = build_classifier("baseline_cnn", "gap", 3, (32, 32, 1), name="malignancy_model")
    source.save(tmp_path / "source.keras")
    config = density_config("logistic_probe")
    config["model"] = {"builder": "saved", "path": str(tmp_path / "source.keras")}
    done = train(config, tmp_path / "probe", data_dir=data_dir, verbose=0)
    probed = keras.saving.load_model(tmp_path / "probe" / "model.keras")
    assert probed.output.shape == (None, len(done["class_names"])) != source.output.shape
    convolutions = [layer.name for layer in source.layers
                    if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions
    for name in convolutions:  # the saved encoder, weight for weight
        ours, theirs = probed.get_layer(name).get_weights(), source.get_layer(name).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    config["data"]["image_size"] = 64
    with pytest.raises(UserError, match="takes 32 x 32 px input; set data.image_size: 32"):
        train(config, tmp_path / "wrong-size", data_dir=data_dir, verbose=0)


def test_a_saved_model_of_another_task_is_fine_tuned_with_a_new_classification_layer(
        tmp_path, data_dir):
    from mammo_keras.models import describe

    source = build_classifier("baseline_cnn", "gap", 4, (32, 32, 1), name="four_findings")
    describe(source, task="malignancy", class_names=("w", "x", "y", "z"))
    source.save(tmp_path / "source.keras")
    from mammo_keras.models.loading import build_from_file

    same_task = build_from_file(str(tmp_path / "source.keras"), 4, (32, 32, 1), "malignancy")
    other_task = build_from_file(str(tmp_path / "source.keras"), 4, (32, 32, 1), "density")
    kept = source.get_layer("logits").get_weights()[0]
    np.testing.assert_array_equal(same_task.get_layer("logits").get_weights()[0], kept)
    assert not np.array_equal(other_task.get_layer("logits").get_weights()[0], kept)  # new
    config = density_config("fine_tune", epochs=1)
    config["model"] = {"builder": "saved", "path": str(tmp_path / "source.keras")}
    # the old head's classes (w..z) would be refused as not the data's: a new head is made
    done = train(config, tmp_path / "tuned", data_dir=data_dir, verbose=0)
    tuned = keras.saving.load_model(tmp_path / "tuned" / "model.keras")
    assert tuple(done["class_names"]) != ("w", "x", "y", "z")
    assert tuned.get_layer("logits").kernel.shape == source.get_layer("logits").kernel.shape
    first = next(layer.name for layer in source.layers if isinstance(layer, keras.layers.Conv2D))
    assert tuned.get_layer(first).kernel.shape == source.get_layer(first).kernel.shape
