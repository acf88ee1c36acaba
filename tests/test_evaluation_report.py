"""Evaluation runs: files written, contents consistent, the CLI on a saved model."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from mammo_keras.cli import main
from mammo_keras.data import load_records, write_synthetic
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
