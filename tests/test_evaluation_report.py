"""Evaluation runs: files written, contents consistent, the CLI on a saved model."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammo_keras.cli import main
from mammo_keras.data import load_records, read_image, write_synthetic
from mammo_keras.evaluation import evaluate_model, evaluate_predictions
from mammo_keras.models import build_classifier

NAMES = ("normal", "benign", "malignant")
PLOTS = ("roc.png", "pr.png", "confusion.png", "reliability.png")


def test_evaluate_predictions_writes_metrics_plots_and_report(tmp_path, rng):
    y = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    embedding = rng.normal(size=(90, 6))
    result = evaluate_predictions(y, p, NAMES, tmp_path, embedding=embedding,
                                  groups=np.arange(90) // 2, resamples=200)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    # the saved figures against NumPy computed here
    assert saved["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y)) == result["accuracy"]
    for k, name in enumerate(NAMES):
        assert saved["per_class"][name]["support"] == int(np.sum(y == k))
        assert saved["per_class"][name]["recall"] == pytest.approx(np.mean(p[y == k].argmax(1) == k))
    spreads = [((embedding[y == k] - embedding[y == k].mean(0)) ** 2).sum(1).mean() for k in range(3)]
    assert saved["embedding"]["intra_class_variance"] == pytest.approx(np.mean(spreads))
    low, high = saved["confidence_intervals"]["accuracy"]
    assert low < saved["accuracy"] < high and high - low < 0.3
    for name in PLOTS + ("embedding.png",):
        with Image.open(tmp_path / name) as picture:
            assert picture.size[0] > 300
    report = (tmp_path / "report.md").read_text()
    assert "resampling patients" in report and f"{result['accuracy']:.3f}" in report
    assert not list(tmp_path.glob(".*partial*"))


def test_evaluate_model_and_the_cli(tmp_path):
    data = write_synthetic(tmp_path / "data", 12, size=256, fmt="dicom", seed=3)
    model = build_classifier("baseline_cnn", "gagm_se", 3, (64, 64, 1))
    result = evaluate_model(model, load_records(data), tmp_path / "direct", resamples=50)
    assert result["images"] == 12 and result["skipped"] == []
    model.save(tmp_path / "model.keras")
    assert main(["evaluate", str(tmp_path / "model.keras"), "--data", str(data), "--out",
                 str(tmp_path / "cli"), "--resamples", "50"]) == 0
    saved = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert saved["images"] == 12
    assert saved["confusion_matrix"] == result["confusion_matrix"]  # same model, same data
    assert main(["evaluate", str(tmp_path / "missing.keras"), "--data", str(data), "--out",
                 str(tmp_path / "x")]) == 2


def test_evaluate_model_keeps_patients_aligned_when_records_are_skipped(tmp_path):
    import dataclasses

    data = write_synthetic(tmp_path / "data", 10, size=256, fmt="dicom", seed=4)
    records = list(load_records(data))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM")
    records[1] = dataclasses.replace(records[1], label=None)
    records.append(dataclasses.replace(records[0], path=str(broken)))
    model = build_classifier("baseline_cnn", "gap", 3, (64, 64, 1))
    result = evaluate_model(model, records, tmp_path / "out", resamples=50)
    assert result["images"] == 9 and len(result["skipped"]) == 2
    with open(tmp_path / "out" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [record for record in records if record.label is not None
            and record.path != str(broken)]
    assert [row["path"] for row in rows] == [record.path for record in kept]
    assert [row["label"] for row in rows] == [record.label for record in kept]
    assert set(result["confidence_intervals"]) >= {"accuracy", "macro_f1"}


def _sensitivity_at_specificity(positive: np.ndarray, scores: np.ndarray, spec: float) -> float:
    """Reference: every distinct score as a threshold (score >= t is positive)."""
    best = 0.0
    for threshold in np.concatenate([[np.inf], np.unique(scores)]):
        called = scores >= threshold
        specificity = np.mean(~called[~positive])
        if specificity >= spec - 1e-12:
            best = max(best, np.mean(called[positive]))
    return best


def test_sensitivity_at_fixed_specificity_has_its_interval(rng):
    from mammo_keras.evaluation import bootstrap_intervals

    y = rng.integers(0, 3, 80)
    p = rng.dirichlet(np.ones(3), size=80)
    p[:, 2] += 0.3 * (y == 2)
    p /= p.sum(1, keepdims=True)
    intervals = bootstrap_intervals(y, p, NAMES, resamples=60, seed=5, positive_class="malignant")
    # the same resamples drawn here (images, with replacement), the statistic computed apart
    draws = np.random.default_rng(5)
    values = []
    for _ in range(60):
        index = draws.integers(80, size=80)
        values.append(_sensitivity_at_specificity(y[index] == 2, p[index, 2], 0.9))
    expected = (np.quantile(values, 0.025), np.quantile(values, 0.975))
    np.testing.assert_allclose(intervals["sensitivity_at_specificity.malignant@0.9"], expected)
    separated = np.eye(3)[y] * 0.9 + 0.1 / 3
    perfect = bootstrap_intervals(y, separated, NAMES, resamples=20, positive_class="malignant")
    assert perfect["sensitivity_at_specificity.malignant@0.95"] == (1.0, 1.0)


def test_the_report_says_what_was_evaluated(tmp_path):
    from mammo_keras.data import Records
    from mammo_keras.models import describe

    data = write_synthetic(tmp_path / "data", 12, size=256, fmt="dicom", seed=3)
    records = load_records(data)
    subset = Records(records, subset="test")
    assert {"normal", "malignant"} <= {record.label for record in records}
    model = describe(build_classifier("baseline_cnn", "gagm_se", 3, (64, 64, 1)),
                     task="malignancy", provenance={"dataset": "mias", "root": "all-mias.tar.gz"})
    result = evaluate_model(model, subset, tmp_path / "out", resamples=30)
    patients = len({record.patient_id for record in records})
    shape = list(read_image(records[0].path)[0].shape)  # every phantom has this size
    evaluated = result["evaluated"]
    root = Path(evaluated["data"]["root"])
    assert root.is_relative_to(data.resolve())
    assert all(Path(record.path).resolve().is_relative_to(root) for record in records)
    assert {key: value for key, value in evaluated["data"].items() if key != "root"} == \
        {"sources": {"synthetic": 12}, "subset": "test", "images": 12, "patients": patients,
         "image_shape": {"median": shape, "smallest": shape, "largest": shape, "images": 12}}
    assert evaluated["model"]["input_size"] == 64 and evaluated["commit"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"test subset: 12 images, {patients} patients, synthetic phantoms" in report
    assert "input 64 px" in report and "commit" in report
    assert "Note**: the model was trained on MIAS" in report  # another source than training
    assert "original size {} x {} px".format(*shape) in report
    interval = result["confidence_intervals"]["sensitivity_at_specificity.malignant@0.9"]
    assert f"({interval[0]:.3f}-{interval[1]:.3f})" in report
    assert "`recall_variance`: the variance of the per-class recalls" in report
    assert "`ece`: expected calibration error" in report


def test_images_of_another_size_than_training_get_a_note(tmp_path):
    from mammo_keras.models import describe

    data = write_synthetic(tmp_path / "data", 6, size=256, seed=4)
    model = build_classifier("baseline_cnn", "gap", 3, (64, 64, 1))
    trained = {"median": [512, 384], "smallest": [500, 380], "largest": [520, 390], "images": 9}
    describe(model, task="malignancy", provenance={"dataset": "synthetic",
                                                   "image_shape": trained})
    result = evaluate_model(model, load_records(data), tmp_path / "out", resamples=0)
    notes = result["evaluated"]["warnings"]
    height, width = read_image(load_records(data)[0].path)[0].shape
    assert notes == [f"these images are {height} x {width} px (median height x width) where the "
                     "training images were 512 x 384 px: the model sees the breast at another "
                     "scale, so figures need not match the training figures"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "original size 512 x 384 px (median; 500 x 380 to 520 x 390)" in report  # trained on
    same = {**trained, "median": [height + 40, width - 30]}  # within the tolerance: no note
    describe(model, provenance={"dataset": "synthetic", "image_shape": same})
    again = evaluate_model(model, load_records(data), tmp_path / "again", resamples=0)
    assert again["evaluated"]["warnings"] == []


def test_plots_state_their_data_and_scales(tmp_path, monkeypatch, rng):
    from mammo_keras.evaluation import plots

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.setdefault(
        path.name, figure))
    embedding = rng.normal(size=(40, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1])
    y = rng.integers(0, 3, 40)
    plots.plot_embedding(embedding, y, NAMES, tmp_path / "embedding.png", note="test: 40 images")
    centred = embedding - embedding.mean(0)
    shares = np.linalg.svd(centred, compute_uv=False) ** 2
    shares /= shares.sum()
    axis = figures["embedding.png"].axes[0]
    assert axis.get_xlabel() == f"PC 1 ({shares[0]:.0%} of the variance)"
    assert axis.get_ylabel() == f"PC 2 ({shares[1]:.0%} of the variance)"
    assert axis.get_title().endswith("test: 40 images")
    long = "test subset: 44 images, 22 patients, synthetic phantoms, INbreast and CBIS-DDSM"
    plots.plot_roc(y, np.eye(3)[y], NAMES, tmp_path / "roc.png", note=long)
    title = figures["roc.png"].axes[0].get_title().splitlines()
    assert " ".join(title[1:]) == long and max(map(len, title)) <= 52  # wrapped, all of it
    history = [{"epoch": e, "loss": 1 / e, "val_loss": 1 / e + 0.1, "accuracy": e / 10,
                "val_accuracy": e / 11} for e in range(1, 6)]
    plots.plot_training_history(history, tmp_path / "training.png", best_epoch=3,
                                monitor="val_loss", note="run: 10 training images")
    for axis in figures["training.png"].axes:
        marks = [line for line in axis.get_lines() if line.get_label().startswith("best epoch")]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
        assert marks[0].get_label() == "best epoch 3 (val_loss)"
    curve = {"confidence": [0.4, 0.7, 0.9], "accuracy": [0.3, 0.6, 0.95], "count": [4, 10, 26]}
    plots.plot_reliability(curve, 0.05, tmp_path / "reliability.png")
    labels = [text.get_text() for text in figures["reliability.png"].axes[0].get_legend().texts]
    assert "6 images" in labels and "26 images" in labels  # the marker-size key


def test_a_missing_class_is_noted_and_metrics_json_is_standard_json(tmp_path):
    """No image of one class: the report says so; metrics.json holds null, never bare NaN."""
    y = np.array([0, 1] * 6)
    p = np.eye(3)[y] * 0.8 + 0.2 / 3
    evaluate_predictions(y, p, ["normal", "benign", "malignant"], tmp_path, resamples=20)
    text = (tmp_path / "metrics.json").read_text()

    def refuse(constant):
        raise AssertionError(f"metrics.json holds {constant}")
    metrics = json.loads(text, parse_constant=refuse)
    assert metrics["absent_classes"] == ["malignant"]
    assert metrics["per_class"]["malignant"]["recall"] is None
    report = (tmp_path / "report.md").read_text()
    assert "No image of class malignant in this set: its recall, F1 and AUCs are undefined" \
        in report


def test_the_report_says_which_unit_the_bootstrap_resampled(tmp_path):
    y = np.array([0, 1, 2] * 4)
    p = np.eye(3)[y] * 0.7 + 0.1
    by_image = evaluate_predictions(y, p, ["normal", "benign", "malignant"], tmp_path / "a",
                                    resamples=10)
    assert by_image["bootstrap_unit"] == "image"
    assert "resampling images: the data names no patients" in (tmp_path / "a" / "report.md"
                                                                 ).read_text()
    by_patient = evaluate_predictions(y, p, ["normal", "benign", "malignant"], tmp_path / "b",
                                      groups=[f"P{k // 2}" for k in range(12)], resamples=10)
    assert by_patient["bootstrap_unit"] == "patient"
    assert "(resampling patients)" in (tmp_path / "b" / "report.md").read_text()
