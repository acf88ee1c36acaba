"""Training: configs, the optimizer schedule, train (loss falls, resume = uninterrupted), grids."""

from __future__ import annotations

import csv
import gc
import json
import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from mammo_keras import cli
from mammo_keras.data import LABELS, Record, Records, kfold_records
from mammo_keras.training import ConfigError, load_config, resolve_config, train
from mammo_keras.training import experiment, gradient_closures
from mammo_keras.training.experiment import expand_grid, run_experiment, summarise
from mammo_keras.training.data_setup import split_subsets
from mammo_keras.training.optimization import class_weights, learning_rate_schedule

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**training) -> dict:
    """24 phantoms at 64 px: seconds per epoch on a 2-core CPU."""
    return {"name": "tiny",
            "data": {"synthetic": {"count": 24, "size": 256}, "image_size": 64,
                     "split": [0.5, 0.25, 0.25]},
            "training": {"epochs": 3, "batch_size": 4, "tensorboard": False, **training},
            "evaluation": {"resamples": 20}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("phantoms")


# --- configs -------------------------------------------------------------------------------

def test_resolve_config_fills_defaults_and_applies_overrides():
    config = resolve_config({"model": {"head": "gap"}}, ["training.epochs=3", "data.root=/x"])
    assert config["model"] == {**config["model"], "head": "gap", "backbone": "baseline_cnn"}
    assert config["training"]["epochs"] == 3 and config["data"]["root"] == "/x"


@pytest.mark.parametrize("user, message", [
    ({"training": {"epoch": 3}}, "unknown key 'training.epoch'"),
    ({"training": {"epochs": "ten"}}, "training.epochs must be int"),
    ({"training": {"class_balance": "oversample"}}, "training.class_balance must be one of"),
    ({"data": {"split": [0.5, 0.5]}}, "data.split must be three shares"),
    ({"data": {"folds": 5, "fold": 5}}, "data.fold must be in 0..4"),
    ({"model": "convnext"}, "model must be a mapping"),
    ({"training": {"epochs": None}}, "training.epochs must not be null"),
    ({"training": {"jit_compile": "yes"}}, "training.jit_compile must be one of"),
    ({"data": {"root": 3}}, "data.root must be str or Path"),
    ({"data": {"classes": "F,G,D"}}, "data.classes must be list"),
    ({"data": {"crop_positive_rate": 1.5}}, "data.crop_positive_rate must be in [0, 1]"),
    ({"training": {"weight_decay": True}}, "training.weight_decay must be a number"),
])
def test_resolve_config_names_the_bad_key(user, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_config(user)


def test_load_config_reports_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("trainig:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: unknown key 'trainig'"):
        load_config(wrong)


def test_base_files_are_merged_under_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\ndata: {image_size: 96, folds: 5}\ngrid:\n  data.fold: [0, 1]\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\ndata: {folds: 3}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config["name"] == "child" and config["data"]["image_size"] == 96
    assert config["data"]["folds"] == 3 and config["grid"] == {"data.fold": [0, 1]}
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="include each other"):
        load_config(tmp_path / "loop.yaml")


def test_repository_configs_resolve():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        config = load_config(path)
        assert expand_grid(config), path


# --- grid ----------------------------------------------------------------------------------

def test_expand_grid_products_axes_and_variants():
    config = resolve_config({"grid": {
        "model.backbone": ["baseline_cnn", "convnext_tiny"],
        "variant": {"gap": {"model.head": "gap"},
                    "fsl": {"model.head": "gagm_se", "training.fsl_lambda": 0.05}},
        "data.fold": [0, 1, 2]}, "data": {"folds": 3}})
    cells = expand_grid(config)
    assert len(cells) == 12
    names = [name for name, _, _ in cells]
    assert names[0] == "baseline_cnn-gap-fold0" and "convnext_tiny-fsl-fold2" in names
    by_name = {name: cell for name, _, cell in cells}
    assert by_name["convnext_tiny-fsl-fold2"]["training"]["fsl_lambda"] == 0.05
    assert by_name["convnext_tiny-fsl-fold2"]["data"]["fold"] == 2
    assert by_name["baseline_cnn-gap-fold1"]["model"]["head"] == "gap"
    assert "grid" not in by_name["baseline_cnn-gap-fold1"] or \
        not by_name["baseline_cnn-gap-fold1"]["grid"]


def test_expand_grid_rejects_bad_cells():
    with pytest.raises(ConfigError, match="grid cell 'gap': unknown key 'model.hed'"):
        expand_grid(resolve_config({"grid": {"variant": {"gap": {"model.hed": "gap"}}}}))
    with pytest.raises(ConfigError, match="grid.model.head must be a non-empty list"):
        expand_grid(resolve_config({"grid": {"model.head": []}}))


def test_summarise_gives_mean_and_sample_std_over_folds():
    rows = [{"model.backbone": b, "data.fold": f, "macro_f1": v, "accuracy": v / 2}
            for b, values in (("a", [0.5, 0.7, 0.9]), ("b", [0.2, 0.4])) for f, v in
            enumerate(values)]
    summary = {entry["model.backbone"]: entry
               for entry in summarise(rows, ["model.backbone", "data.fold"])}
    assert summary["a"]["n"] == 3 and summary["b"]["n"] == 2
    assert summary["a"]["macro_f1_mean"] == pytest.approx(0.7)
    assert summary["a"]["macro_f1_std"] == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))
    assert summary["b"]["accuracy_mean"] == pytest.approx(0.15)
    assert "roc_auc_macro_mean" not in summary["a"]  # no row has it: nothing to average


# --- data subsets --------------------------------------------------------------------------

def _records(count: int) -> Records:
    return Records(Record(path=f"img{i}.png", label=LABELS[(i // 2) % 3], density=None,
                          patient_id=f"P{i // 2}", laterality=None, view=None, source="test")
                   for i in range(count))


def test_kfold_subsets_rotate_the_test_and_validation_folds():
    records = _records(60)
    folds = kfold_records(records, 5, seed=0, stratify="label")
    for fold in range(5):
        data = resolve_config({"data": {"folds": 5, "fold": fold}})["data"]
        subsets = split_subsets(records, data)
        expected = {name: {r.path for r, f in zip(records, folds) if role(f)}
                    for name, role in (("test", lambda f: f == fold),
                                       ("val", lambda f: f == (fold + 1) % 5),
                                       ("train", lambda f: f not in (fold, (fold + 1) % 5)))}
        assert {name: {r.path for r in subsets[name]} for name in expected} == expected
        patients = [{r.patient_id for r in subsets[name]} for name in ("train", "val", "test")]
        assert not (patients[0] & patients[1] or patients[0] & patients[2] or
                    patients[1] & patients[2])
    with pytest.raises(ConfigError, match="the val subset is empty"):
        split_subsets(records, resolve_config({"data": {"split": [1.0, 0.0, 0.0]},
                                               "evaluation": {"subset": "val"}})["data"])


def test_a_split_without_test_images_must_say_it_evaluates_on_validation():
    with pytest.raises(ConfigError, match=r"data.split \[0.85, 0.15, 0.0\] holds out no test"):
        resolve_config({"data": {"split": [0.85, 0.15, 0.0]}})
    assert resolve_config({"data": {"split": [0.85, 0.15, 0.0]},
                           "evaluation": {"subset": "val"}})["data"]["split"][2] == 0.0
    with pytest.raises(ConfigError, match="data.split must be three shares"):
        resolve_config({"data": {"split": [1.2, -0.2, 0.0]}})
    with pytest.raises(ConfigError, match=r"training.momentum must be in \[0, 1\)"):
        resolve_config({"training": {"optimizer": "sgd", "momentum": 1.5}})


def test_a_per_image_split_lets_a_patients_views_cross_and_is_counted():
    records = _records(60)
    data = resolve_config({"data": {"split_by": "image", "split": [0.5, 0.25, 0.25]}})["data"]
    subsets = split_subsets(records, data)
    assert sum(len(members) for members in subsets.values()) == 60
    patients = [{r.patient_id for r in subsets[name]} for name in ("train", "val", "test")]
    assert patients[0] & patients[2]  # what a per-image split allows, the leakage measured
    assert {len(subsets[name]) for name in ("train", "val", "test")} == {30, 15}
    with pytest.raises(ConfigError, match="cannot keep duplicates together"):
        resolve_config({"data": {"split_by": "image", "group_duplicates": True}})


# --- pieces of the trainer -----------------------------------------------------------------

def test_class_weights_balance_the_classes():
    targets = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = class_weights(targets, ("normal", "benign", "malignant"))
    assert weights == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    counts = np.bincount(targets)
    assert np.allclose(counts * np.array(weights), counts.sum() / 3)
    with pytest.raises(ConfigError, match=r"no training images of class \['malignant'\]"):
        class_weights(np.array([0, 1]), ("normal", "benign", "malignant"))


def test_metric_directions_are_declared_not_guessed():
    from mammo_keras.tasks import LesionSegmentationTask, MalignancyTask, Task

    assert MalignancyTask.metric_direction("val_loss") == "min"
    assert MalignancyTask.metric_direction("val_cross_entropy") == "min"
    assert MalignancyTask.metric_direction("val_feature_smoothing") == "min"
    assert MalignancyTask.metric_direction("val_accuracy") == "max"
    # the old guess from the name called Dice and IoU losses, keeping the worst epoch
    assert LesionSegmentationTask.metric_direction("val_dice") == "max"
    assert LesionSegmentationTask.metric_direction("val_iou") == "max"
    with pytest.raises(ValueError, match="direction is not known.*METRIC_DIRECTIONS"):
        Task.metric_direction("val_sharpness")

    class Declared(Task):
        METRIC_DIRECTIONS = {"sharpness": "max"}

    assert Declared.metric_direction("val_sharpness") == "max"
    with pytest.raises(ConfigError, match="training.monitor 'val_sharpness'"):
        resolve_config({"training": {"monitor": "val_sharpness"}})


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    training = resolve_config({"training": {"epochs": 10, "learning_rate": 1e-3,
                                            "warmup_epochs": 2,
                                            "min_learning_rate_ratio": 0.01}})["training"]
    schedule = learning_rate_schedule(training, steps_per_epoch=5)
    peak, floor, warmup, total = 1e-3, 0.01, 10, 50

    def expected(step):
        if step < warmup:
            return peak * floor + (peak - peak * floor) * step / warmup
        progress = (step - warmup) / (total - warmup)
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    for step in (0, 5, 10, 20, 30, 50):
        value = float(keras.ops.convert_to_numpy(schedule(step)))
        assert value == pytest.approx(expected(step), rel=1e-5), step


# --- training runs -------------------------------------------------------------------------

def test_training_lowers_the_loss_and_leaves_a_report(tmp_path, data_dir):
    config = tiny_config(epochs=5, augment=False, learning_rate=3e-3, label_smoothing=0.0)
    config["model"] = {"dropout": 0.0}
    summary = train(config, tmp_path / "run", data_dir=data_dir, verbose=0)
    history = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert len(history) == 5
    assert float(history[-1]["loss"]) < 0.8 * float(history[0]["loss"])
    for name in ("model.keras", "metrics.json", "report.md", "roc.png", "confusion.png",
                 "training.png", "splits.csv", "config.yaml", "done.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "cache").exists()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["metrics"]["macro_f1"] == metrics["macro_f1"]
    assert summary["images"] == {"train": 12, "val": 6, "test": 6}
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.output_shape == (None, 3) and model.input_shape == (None, 64, 64, 1)


class Interrupt(keras.callbacks.Callback):
    """Stops the process-like run in the middle of an epoch."""

    def __init__(self, at_step: int):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at_step:
            raise KeyboardInterrupt


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, data_dir):
    config = tiny_config(deterministic=True, fsl_lambda=0.05, monitor="val_accuracy")
    whole = train(config, tmp_path / "whole", data_dir=data_dir, verbose=0)
    with pytest.raises(KeyboardInterrupt):  # 3 steps per epoch: stop inside epoch 2
        train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0,
              callbacks=[Interrupt(at_step=5)])
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    with pytest.raises(ConfigError, match="unfinished run .*pass --resume"):
        train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0)
    changed = tiny_config(deterministic=True, fsl_lambda=0.1, monitor="val_accuracy")
    with pytest.raises(ConfigError, match="holds a run of another config"):
        train(changed, tmp_path / "resumed", data_dir=data_dir, verbose=0, resume=True)
    resumed = train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0, resume=True)

    def rows(run):
        return list(csv.DictReader(open(tmp_path / run / "history.csv")))

    for a, b in zip(rows("whole"), rows("resumed")):
        for key in ("loss", "cross_entropy", "feature_smoothing", "val_loss", "val_accuracy"):
            assert float(a[key]) == float(b[key]), (a["epoch"], key)
    assert len(rows("resumed")) == 3
    weights = [keras.saving.load_model(tmp_path / run / "model.keras").get_weights()
               for run in ("whole", "resumed")]
    assert all(np.array_equal(x, y) for x, y in zip(*weights))
    assert whole["metrics"] == resumed["metrics"]
    # a finished run is returned as it is, without training again
    assert train(config, tmp_path / "whole", data_dir=data_dir, verbose=0) == whole


def reference_plateau_rates(values: list[float], rate: float, factor: float, patience: int,
                            mode: str) -> list[float]:
    """The learning rate of each epoch under Keras' own ReduceLROnPlateau, fed `values`."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(rate), loss="mse")
    callback = keras.callbacks.ReduceLROnPlateau("m", factor=factor, patience=patience,
                                                 mode=mode, min_delta=0.0, verbose=0)
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        rates.append(float(model.optimizer.learning_rate.numpy()))
        callback.on_epoch_end(epoch, {"m": value})
    return rates


def test_plateau_schedule_with_gradient_accumulation_trains_and_resumes(tmp_path, data_dir):
    """Molina-Roman's recipe: a constant rate reduced on plateau (as Keras' ReduceLROnPlateau
    does), a batch made of two accumulated half-batches; a resumed run ends the same."""
    config = tiny_config(epochs=4, deterministic=True, schedule="plateau", warmup_epochs=0,
                         plateau_factor=0.5, plateau_patience=1, gradient_accumulation=2,
                         monitor="val_cross_entropy", learning_rate=1e-3)
    whole = train(config, tmp_path / "whole", data_dir=data_dir, verbose=0)
    rows = history_rows(tmp_path / "whole")
    rates = [float(row["learning_rate"]) for row in rows]
    expected = reference_plateau_rates([float(row["val_cross_entropy"]) for row in rows],
                                       1e-3, 0.5, 1, "min")
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    with pytest.raises(KeyboardInterrupt):  # 3 updates of 2 half-batches an epoch: epoch 2
        train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0,
              callbacks=[Interrupt(at_step=4)])
    checkpoint = keras.saving.load_model(tmp_path / "resumed" / "checkpoints" / "last-0001.keras")
    assert int(checkpoint.optimizer.iterations.numpy()) == 3  # updates, after 6 batches of 2
    assert checkpoint.optimizer.gradient_accumulation_steps == 2
    resumed = train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0, resume=True)
    assert [float(row["learning_rate"]) for row in history_rows(tmp_path / "resumed")] == rates
    assert resumed["metrics"] == whole["metrics"]


@pytest.mark.parametrize("training, message", [
    ({"gradient_accumulation": 3}, "gradient_accumulation must be >= 1 and divide"),
    ({"schedule": "plateau"}, "'plateau' has no warm-up"),
    ({"schedule": "step"}, "training.schedule must be one of"),
    ({"plateau_factor": 1.5}, r"plateau_factor must be in \[0, 1\)"),
])
def test_schedule_settings_that_cannot_work_are_named(training, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config({"training": {"batch_size": 16, **training}})


def history_rows(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


def test_stages_change_the_input_size_and_resume_inside_a_later_stage(tmp_path, data_dir):
    config = tiny_config(deterministic=True, monitor="val_loss",
                         stages=[{"image_size": 32, "epochs": 1},
                                 {"image_size": 48, "epochs": 2, "learning_rate": 1e-4}])
    whole = train(config, tmp_path / "whole", data_dir=data_dir, verbose=0)
    rows = history_rows(tmp_path / "whole")
    assert [(row["stage"], row["image_size"]) for row in rows] == [("1", "32"), ("2", "48"),
                                                                    ("2", "48")]
    # each stage decays to its own floor (1 % of its peak): 1e-3 in stage 1, 1e-4 in stage 2
    rates = [float(row["learning_rate"]) for row in rows]
    assert rates[0] == pytest.approx(1e-5, rel=1e-4) and rates[2] == pytest.approx(1e-6, rel=1e-4)
    assert 1e-6 < rates[1] < 1e-4
    model = keras.saving.load_model(tmp_path / "whole" / "model.keras")
    assert model.input_shape == (None, 48, 48, 1)
    # the optimizer's step count runs on across stages: step 8 is the middle of the last
    # epoch (3 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0,
              callbacks=[Interrupt(at_step=8)])
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2
    resumed = train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0, resume=True)
    for a, b in zip(rows, history_rows(tmp_path / "resumed"), strict=True):
        for key in ("loss", "val_loss", "val_accuracy", "learning_rate"):
            assert float(a[key]) == float(b[key]), (a["epoch"], key)
    weights = [keras.saving.load_model(tmp_path / run / "model.keras").get_weights()
               for run in ("whole", "resumed")]
    assert all(np.array_equal(x, y) for x, y in zip(*weights, strict=True))
    assert whole["metrics"] == resumed["metrics"]


class StageBoundary(keras.callbacks.Callback):
    """Records the classifier's logits on fixed images, the FSL centres and an AdamW moment
    at the end of each `fit` (one per epoch) and at the start of the next."""

    def __init__(self, images: dict):
        super().__init__()
        self.images, self.ends, self.starts = images, [], []

    def _snapshot(self):
        trainer = self.model
        classifier = trainer.classifier
        size = classifier.input_shape[1]
        logits = keras.Model(classifier.input, classifier.get_layer("logits").output)
        moments = {v.name: v.numpy().copy() for v in trainer.optimizer.variables
                   if v.name == "logits_kernel_momentum"}
        return {"size": size, "logits": logits.predict(self.images[size], verbose=0),
                "centres": trainer.class_centres.numpy().copy(),
                "step": int(trainer.optimizer.iterations.numpy()), **moments}

    def on_train_begin(self, logs=None):
        self.starts.append(self._snapshot())

    def on_train_end(self, logs=None):
        self.ends.append(self._snapshot())


def test_a_morph_stage_continues_the_function_optimizer_and_centres_and_resumes(tmp_path,
                                                                                data_dir):
    """MorphHR's schedule: 32 px, then to_resolution to 64 px. At the boundary the 64 px model
    computes what the 32 px one did on the downsampled image, with AdamW's moments, its step
    count and the Feature-Smoothing centres carried; a run killed inside the morphed stage
    resumes to the same result."""
    config = tiny_config(deterministic=True, monitor="val_loss", fsl_lambda=0.1,
                         stages=[{"image_size": 32, "epochs": 1},
                                 {"image_size": 64, "epochs": 2, "learning_rate": 3e-4,
                                  "morph": [{"operation": "to_resolution", "front_width": 4}]}])
    low = np.random.default_rng(0).random((3, 32, 32, 1), np.float32)
    high = low.repeat(2, axis=1).repeat(2, axis=2)  # its 2 x 2 area mean is `low`
    boundary = StageBoundary({32: low, 64: high})
    whole = train(config, tmp_path / "whole", data_dir=data_dir, verbose=0,
                  callbacks=[boundary])
    before, after = boundary.ends[0], boundary.starts[1]
    assert (before["size"], after["size"]) == (32, 64)
    np.testing.assert_allclose(after["logits"], before["logits"], atol=1e-5)
    assert after["step"] == before["step"] == 3
    np.testing.assert_array_equal(after["centres"], before["centres"])
    assert np.abs(before["centres"]).max() > 0
    np.testing.assert_array_equal(after["logits_kernel_momentum"],
                                  before["logits_kernel_momentum"])
    rows = history_rows(tmp_path / "whole")
    assert [(row["stage"], row["image_size"]) for row in rows] == [("1", "32"), ("2", "64"),
                                                                    ("2", "64")]
    assert float(rows[2]["learning_rate"]) == pytest.approx(3e-6, rel=1e-4)  # its own floor
    model = keras.saving.load_model(tmp_path / "whole" / "model.keras")
    assert model.input_shape == (None, 64, 64, 1)
    assert model.get_layer("morph_downsample").kernel.shape == (2, 2, 4, 1)
    assert [step["operation"] for step in model.description.builder["morphs"]] == \
        ["to_resolution"]
    with pytest.raises(KeyboardInterrupt):  # inside the last epoch, in the morphed stage
        train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0,
              callbacks=[Interrupt(at_step=8)])
    resumed = train(config, tmp_path / "resumed", data_dir=data_dir, verbose=0, resume=True)
    for a, b in zip(rows, history_rows(tmp_path / "resumed"), strict=True):
        for key in ("loss", "val_loss", "learning_rate"):
            assert float(a[key]) == float(b[key]), (a["epoch"], key)
    assert whole["metrics"] == resumed["metrics"]


@pytest.mark.parametrize("stages, message", [
    ([{"image_size": 32, "morph": "to_resolution"}], "the first stage has no trained model"),
    ([{"image_size": 32}, {"image_size": 48, "morph": "to_resolution"}],
     "2, 3, 4... times the last stage's 32, got 48"),
    ([{"image_size": 32}, {"image_size": 64, "morph": "stretch"}], "one of \\['deepen'"),
    ([{"image_size": 32}, {"image_size": 64, "morph": {"operation": "widen", "units": 3}}],
     "widen takes no argument 'units'"),
])
def test_stage_morphs_that_cannot_work_are_named(stages, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config({"training": {"stages": stages}})
    with pytest.raises(ConfigError, match="a lesion_segmentation stage cannot train"):
        resolve_config({"data": {"task": "lesion_segmentation"}, "model": {
            "builder": "hds_unet"}, "training": {"stages": [
                {"image_size": 128}, {"image_size": 256, "morph": "to_resolution"}]}})


def test_zero_epochs_evaluates_the_built_model_without_training(tmp_path, data_dir):
    summary = train(tiny_config(epochs=0), tmp_path / "run", data_dir=data_dir, verbose=0)
    run = tmp_path / "run"
    assert not (run / "history.csv").exists() and not (run / "checkpoints").exists()
    assert summary["images"] == {"train": 12, "val": 6, "test": 6}
    model = keras.saving.load_model(run / "model.keras")
    assert model.input_shape == (None, 64, 64, 1)
    metrics = json.loads((run / "metrics.json").read_text())
    assert sum(row["support"] for row in metrics["per_class"].values()) == 6
    assert np.sum(metrics["confusion_matrix"]) == 6
    assert summary["metrics"]["accuracy"] == metrics["accuracy"]
    assert json.loads((run / "done.json").read_text())["name"] == "tiny"


def test_grid_rerun_skips_finished_cells_and_reports_failures(tmp_path, data_dir, monkeypatch):
    config = tiny_config(epochs=1)
    config["evaluation"]["resamples"] = 0
    config["grid"] = {"model.head": ["gap", "gagm"],
                      "variant": {"ok": {}, "broken": {"data.image_size": 16}}}
    logs: list[str] = []
    result = run_experiment(config, tmp_path, verbose=0, log=logs.append)
    assert [row["cell"] for row in result["rows"]] == ["gap-ok", "gagm-ok"]
    assert set(result["failed"]) == {"gap-broken", "gagm-broken"}
    assert "too small" in result["failed"]["gap-broken"]
    assert (tmp_path / "cells" / "gap-broken" / "error.txt").is_file()
    table = (tmp_path / "summary.md").read_text()
    assert "| gap | ok | 1 |" in table and "Failed cells:" in table and "commit" in table
    assert (tmp_path / "summary.png").is_file()
    assert len(list(csv.DictReader(open(tmp_path / "results.csv")))) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(experiment, "train", no_training)
    config["grid"]["variant"] = {"ok": {}}
    logs.clear()
    again = run_experiment(config, tmp_path, verbose=0, log=logs.append)
    assert [row["cell"] for row in again["rows"]] == ["gap-ok", "gagm-ok"]
    assert all(line.endswith("finished earlier, skipped") for line in logs
               if ": warning: " not in line)  # a cell's warnings are told again


def _live_traced_graphs() -> int:
    gc.collect()
    return sum(type(item).__name__ == "FuncGraph" for item in gc.get_objects())


def _custom_gradients() -> set[str]:
    from tensorflow.python.framework import ops

    return {name for name in ops._gradient_registry._registry
            if name.startswith(gradient_closures.CUSTOM_GRADIENT_PREFIX)}


def test_a_grid_frees_each_finished_cells_traced_graphs(tmp_path):
    """Each fit registers custom-gradient closures that pin its train graph and variables;
    after a grid none of its cells' graphs may be left, however many cells ran."""
    config = tiny_config(epochs=1)
    config["evaluation"]["resamples"] = 0
    config["grid"] = {"training.seed": [0]}
    gradients_before = _custom_gradients()
    run_experiment(config, tmp_path / "one", verbose=0, log=lambda line: None)
    graphs_after_one = _live_traced_graphs()
    config["grid"] = {"training.seed": [1, 2, 3]}
    run_experiment(config, tmp_path / "three", verbose=0, log=lambda line: None)
    assert _live_traced_graphs() == graphs_after_one
    assert _custom_gradients() == gradients_before


def test_released_gradient_closures_unregisters_only_what_its_body_registered():
    import tensorflow as tf

    @tf.custom_gradient
    def doubled(x):
        return 2.0 * x, lambda upstream: 3.0 * upstream  # not the gradient autodiff would give

    def custom_gradient_of(x):
        @tf.function
        def gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = doubled(x)
            return tape.gradient(y, x)
        return gradient(x).numpy()

    start = _custom_gradients()
    assert custom_gradient_of(tf.constant(1.0)) == 3.0
    traced_before = _custom_gradients() - start
    with gradient_closures.released_gradient_closures():
        assert custom_gradient_of(tf.constant(1.0)) == 3.0
        traced_inside = _custom_gradients() - start - traced_before
    assert traced_before and traced_inside
    assert _custom_gradients() - start == traced_before
    np.testing.assert_array_equal(custom_gradient_of(tf.constant([1.0, 2.0])), [3.0, 3.0])


def test_quickstart_config_in_reduced_form_through_the_command_line(tmp_path, capsys):
    out = tmp_path / "quickstart"
    status = cli.main(["run", str(ROOT / "experiments" / "quickstart.yaml"), "--out", str(out),
                       "--set", "data.synthetic.count=24", "--set", "data.image_size=64",
                       "--set", "training.epochs=2", "--set", "evaluation.resamples=20"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "macro_f1" in printed and "model.keras" in printed
    for name in ("model.keras", "metrics.json", "report.md", "roc.png", "pr.png",
                 "confusion.png", "reliability.png", "embedding.png", "training.png",
                 "summary.md", "results.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    confusion = np.array(metrics["confusion_matrix"])
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert [metrics["per_class"][name]["support"] for name in metrics["class_names"]] == \
        confusion.sum(axis=1).tolist()
    # predict finds the class names in the run folder of the model
    image = next((out / "data").rglob("*.dcm"))
    assert cli.main(["predict", str(out / "model.keras"), str(image), "--out",
                     str(tmp_path / "p.csv")]) == 0
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "path,prediction,p_normal,p_benign,p_malignant,note"
    with open(tmp_path / "p.csv", newline="") as handle:  # a phantom-trained model says so
        assert "trained on synthetic phantoms only" in next(csv.DictReader(handle))["note"]


def test_train_command_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "none.yaml"), "--out",
                     str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("none.yaml: config file not found") and "\n" not in error
    config = tmp_path / "grid.yaml"
    config.write_text("grid:\n  model.head: [gap, gagm]\n")
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "has a grid; run it with 'mammo-keras run'" in capsys.readouterr().err
    assert cli.main(["run", str(config), "--out", str(tmp_path / "o"), "--backend",
                     "tensorflow", "--set", "training.epochs=zero"]) == 2
    assert "training.epochs must be int" in capsys.readouterr().err


@pytest.mark.parametrize("moment", [
    pytest.param("before_commit", marks=pytest.mark.slow),  # the retrain path resume tests too
    "after_commit"])
def test_a_kill_around_the_last_commit_loses_no_history_row_and_logs_each_epoch_once(
        tmp_path, data_dir, monkeypatch, moment):
    from mammo_keras.training.checkpoints import TrainingState
    from mammo_keras.training.tensorboard_log import logged_epochs

    config = tiny_config(epochs=2, deterministic=True, tensorboard=True)
    config["evaluation"]["resamples"] = 0
    commit = TrainingState.commit

    def killed_commit(state, folder, trainer, **options):
        if state.epoch == 2 and moment == "before_commit":
            raise KeyboardInterrupt
        commit(state, folder, trainer, **options)
        if state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingState, "commit", killed_commit)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", data_dir=data_dir, verbose=0)
    monkeypatch.undo()
    train(config, tmp_path / "run", data_dir=data_dir, verbose=0, resume=True)
    assert [row["epoch"] for row in history_rows(tmp_path / "run")] == ["1", "2"]
    assert logged_epochs(tmp_path / "run" / "tensorboard") == [1, 2]


def test_impossible_numbers_and_bad_files_are_one_line_config_errors(tmp_path):
    for key, value, message in [("training.learning_rate", float("nan"), "must be in"),
                                ("training.learning_rate", 0.0, "must be above 0"),
                                ("data.image_size", 0, "data.image_size must be in"),
                                ("data.image_size", -64, "data.image_size must be in"),
                                ("training.label_smoothing", 1.0, "must be in [0, 1)"),
                                ("model.dropout", "high", "must be a number")]:
        section, name = key.split(".")
        with pytest.raises(ConfigError, match=re.escape(message)):
            resolve_config({section: {name: value}})
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
        for i in range(8)) + "data:\n  classes: *i\n"
    (tmp_path / "bomb.yaml").write_text(bomb)
    assert len(bomb) < 600
    with pytest.raises(ConfigError, match="expands to more than 100,000 values") as error:
        load_config(tmp_path / "bomb.yaml")
    assert len(str(error.value)) < 300
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="binary.yaml: not a text"):
        load_config(tmp_path / "binary.yaml")


def test_a_split_manifest_without_its_columns_is_named(tmp_path):
    from mammo_keras.data import read_split_manifest
    from mammo_keras.errors import UserError

    (tmp_path / "s.csv").write_text("file,fold\na.png,1\n")
    with pytest.raises(UserError, match=r"s\.csv: not a split manifest \(no path or split"):
        read_split_manifest(tmp_path / "s.csv", [])
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UserError, match=r"b\.csv: not a text"):
        read_split_manifest(tmp_path / "b.csv", [])


def test_a_grid_summary_does_not_print_the_base_size_when_cells_set_their_own():
    from mammo_keras.training.config import load_config
    from mammo_keras.training.experiment import summary_markdown

    origin = [{"commit": "c", "hardware": "h", "command": "run"}]
    staged = summary_markdown(load_config(ROOT / "experiments" / "morphhr_phantoms.yaml"), [],
                              ["data.fold", "variant"], {}, origin)
    assert "input size set per cell" in staged and "64 px input" not in staged
    plain = summary_markdown(load_config(ROOT / "experiments" / "quickstart.yaml"), [], [], {},
                             origin)
    assert "128 px input" in plain and "12 epochs at most" in plain


def test_a_resume_keeps_the_split_of_the_first_epoch(tmp_path):
    """Images added since the run started are left out (listed), images gone are a refusal:
    a resume never re-splits, so no training image moves into the test set."""
    from mammo_keras.data import write_synthetic
    from mammo_keras.errors import UserError

    root = write_synthetic(tmp_path / "set", 24, size=256, seed=4)
    manifest = root / "synthetic.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-2]) + "\n")  # the run starts without the last 2
    config = {**tiny_config(), "data": {**tiny_config()["data"], "dataset": "synthetic",
                                        "root": str(root), "synthetic": None,
                                        "image_size": 32}}
    config["data"].pop("synthetic")
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, out, verbose=0, callbacks=[Interrupt(at_step=5)])
    split = (out / "splits.csv").read_text()
    manifest.write_text("\n".join(lines) + "\n")  # two images added
    done = train(config, out, verbose=0, resume=True)
    assert (out / "splits.csv").read_text() == split  # the first epoch's split, unchanged
    assert len([entry for entry in done["skipped"]
                if "added to the data after the run started" in entry]) == 2
    again = tmp_path / "again"
    with pytest.raises(KeyboardInterrupt):
        train(config, again, verbose=0, callbacks=[Interrupt(at_step=5)])
    manifest.write_text("\n".join(lines[:-4]) + "\n")  # images of its split are gone
    with pytest.raises(UserError, match=r"again: the data changed since the run started: 4 of "
                                        r"the 24 images of its split are gone"):
        train(config, again, verbose=0, resume=True)
