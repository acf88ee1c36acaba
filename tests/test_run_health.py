"""What a model knows is said: a run that diverged or collapsed says so in its output and
done.json; a model keeps what it trained on (images, views, sizes), and evaluate and every
answer say where the input differs."""

from __future__ import annotations

import json

import numpy as np
import yaml

from mammo_keras import cli
from mammo_keras.training.health import run_warnings

HEALTHY = [{"epoch": 1, "loss": 1.2}, {"epoch": 2, "loss": 0.9}]
CONFUSION = {"confusion_matrix": [[3, 1, 0], [1, 2, 0], [0, 1, 2]]}


def test_a_healthy_run_has_no_warnings():
    assert run_warnings(HEALTHY, CONFUSION, ("normal", "benign", "malignant")) == []


def test_a_rising_or_non_finite_loss_is_divergence():
    rising = [{"epoch": 1, "loss": 1.1}, {"epoch": 2, "loss": 0.8}, {"epoch": 3, "loss": 7.5}]
    assert run_warnings(rising, {}) == [
        "training diverged: the training loss rose from 1.1 (epoch 1) to 7.5 (epoch 3); "
        "lower training.learning_rate"]
    nan = [{"epoch": 1, "loss": 1.1}, {"epoch": 2, "loss": float("inf")}]
    assert run_warnings(nan, {})[0].startswith("training diverged: the training loss is not "
                                                 "finite from epoch 2 on")


def test_one_predicted_class_is_collapse():
    collapsed = {"confusion_matrix": [[4, 0, 0], [3, 0, 0], [2, 0, 0]]}
    assert run_warnings(HEALTHY, collapsed, ("normal", "benign", "malignant")) == [
        "the model has collapsed: it predicts normal for all 9 evaluated images (check the "
        "learning rate and the class balance)"]
    one_class_truth = {"confusion_matrix": [[4, 0], [0, 0]]}  # nothing else to predict
    assert run_warnings(HEALTHY, one_class_truth, ("normal", "malignant")) == []


def test_a_learning_rate_of_10_is_reported(tmp_path, capsys):
    config = {"name": "lr10", "data": {"synthetic": {"count": 24, "size": 256}, "image_size": 32,
                                       "split": [0.5, 0.25, 0.25]},
              "model": {"backbone": "baseline_cnn", "head": "gap"},
              "training": {"epochs": 3, "batch_size": 4, "learning_rate": 10.0,
                           "warmup_epochs": 0, "tensorboard": False},
              "evaluation": {"resamples": 0}}
    path = tmp_path / "lr10.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    done = json.loads((tmp_path / "run" / "done.json").read_text())
    assert done["warnings"] and all(warning.startswith(("training diverged",
                                                         "the model has collapsed"))
                                    for warning in done["warnings"])
    printed = capsys.readouterr().out
    assert all(f"warning: {warning}" in printed for warning in done["warnings"])


def test_evaluate_leaves_out_the_images_the_model_was_trained_on(tmp_path, capsys):
    """The model keeps the keys of its training and validation images; evaluate names the
    overlap, leaves it out by default (listed in skipped.csv) and evaluates only the rest."""
    import csv

    from mammo_keras.data import load_records
    from mammo_keras.models import description_of, load_model

    config = {"name": "seen", "data": {"synthetic": {"count": 24, "size": 256}, "image_size": 32,
                                       "split": [0.5, 0.25, 0.25]},
              "model": {"backbone": "baseline_cnn", "head": "gap"},
              "training": {"epochs": 1, "batch_size": 4, "tensorboard": False},
              "evaluation": {"resamples": 0}}
    path = tmp_path / "seen.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--out", str(run)]) == 0
    provenance = description_of(load_model(run / "model.keras")).provenance
    seen = provenance["seen"]
    assert set(provenance["views"]) == {"CC", "MLO"}  # the views it trained on, for the notes
    splits = list(csv.DictReader(open(run / "splits.csv")))
    trained = [row["path"] for row in splits if row["split"] in ("train", "val")]
    assert len(seen) == len(trained) == 18
    data = next((run / "data").glob("synthetic-*"))
    assert len(load_records(data)) == 24
    capsys.readouterr()
    assert cli.main(["evaluate", str(run / "model.keras"), str(data), "--out",
                     str(tmp_path / "evaluation"), "--resamples", "0"]) == 3
    assert "18 of the 24 images were in the model's training or validation data" in \
        capsys.readouterr().out
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["images"] == 6
    left_out = {row["path"] for row in csv.DictReader(open(tmp_path / "evaluation"
                                                             / "skipped.csv"))}
    assert left_out == set(trained)
    assert cli.main(["evaluate", str(run / "model.keras"), str(data), "--out",
                     str(tmp_path / "all"), "--resamples", "0", "--include-seen"]) == 0
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["images"] == 24


def test_a_phantom_trained_model_says_so_beside_each_answer(tmp_path):
    """predict, explain and the case report carry what the model was trained on when it is
    not what it is shown (phantoms only; a film far from the training size)."""
    from mammo_keras.dashboard.case_reports import case_report
    from mammo_keras.evaluation.competence import answer_note
    from mammo_keras.models import ModelDescription

    demo = ModelDescription(provenance={"dataset": "synthetic", "images": {"train": 120},
                                        "image_shape": {"median": [512, 416]}})
    note = answer_note(demo, (3328, 2560))
    assert "trained on synthetic phantoms only" in note
    assert "this image is 3328 x 2560 px where the training images were 512 x 416 px" in note
    real = ModelDescription(provenance={"dataset": "mias", "image_shape": {"median": [1024,
                                                                                    1024]}})
    assert answer_note(real, (1024, 1024)) == "" and answer_note(real, (4096, 3328)) != ""
    mlo_only = ModelDescription(provenance={"dataset": "mias", "views": {"MLO": 322}})
    assert answer_note(mlo_only, None, "CC") == "this is a CC view; the model was trained on " \
        "MLO views only"
    assert answer_note(mlo_only, None, "MLO") == answer_note(mlo_only, None, None) == ""
    from PIL import Image

    pdf = case_report(Image.new("RGB", (40, 60)), "case", [0.2, 0.8], ["normal", "malignant"],
                      {"positive": "malignant", "p_positive": 0.8, "flagged": True,
                       "most_likely": "malignant"}, 0.5, "demo.keras", "none", fmt="pdf",
                      note=note)
    assert pdf.startswith(b"%PDF")



def test_predict_notes_a_view_the_model_never_trained_on(tmp_path):
    """The view comes from the file as the pipeline reads it (a DICOM's tags), no second read."""
    from mammo_keras.data.dicom_writer import write_dicom
    from mammo_keras.models import build_classifier, describe
    from mammo_keras.predict import predict_files

    film = np.zeros((96, 64), np.float32)
    film[8:88, :40] = np.linspace(0.3, 0.9, 80)[:, None]
    write_dicom(tmp_path / "anonymous.dcm", film, laterality="L", view="CC")
    model = describe(build_classifier("baseline_cnn", "gap", 3, (32, 32, 1)), image_size=32,
                     provenance={"dataset": "mias", "views": {"MLO": 322}})
    rows, skipped = predict_files(model, [tmp_path])
    assert not skipped and rows[0]["note"] == "this is a CC view; the model was trained on " \
        "MLO views only"
