"""How a run ends and what it leaves: the described best model, the evaluation, done.json.

`describe_for_run` writes into a model what it is for (task, classes, input size,
preprocessing, outputs, training data); `finish_run` evaluates the best model on the held-out
subset, plots the curves, writes `done.json` and drops the checkpoints and the cache. Every
scenario of a run (fine-tuning, a probe) ends here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import keras

from mammo_keras.atomic import save_model_atomically, write_csv_atomically, write_json_atomically
from mammo_keras.data import DataReport, Records
from mammo_keras.errors import ConfigError
from mammo_keras.evaluation.plots import plot_training_history
from mammo_keras.models.description import describe, description_of
from mammo_keras.provenance import provenance
from mammo_keras.training.checkpoints import TrainingState
from mammo_keras.training.health import run_warnings
from mammo_keras.training.tensorboard_log import log_epochs

DONE = "done.json"


def read_done(out: str | Path) -> dict | None:
    """The summary of a finished run in `out`, or None."""
    path = Path(out) / DONE
    return json.loads(path.read_text()) if path.is_file() else None


def describe_for_run(model: keras.Model, task, names: tuple, options: dict, size: int,
                     image_shape: dict | None = None, seen: Sequence[str] = (),
                     views: dict | None = None, **extra) -> keras.Model:
    """`model` described as a run of `task` makes it: task, classes `names` (which must be the
    model's own when it names any), input size, preprocessing `options`, outputs, and the
    training data with its original image sizes (`image_shape`), the keys of its training
    and validation images (`seen`, `data.seen.seen_keys`) and the views it trained on
    (`views`, {"CC": n, "MLO": m}) as provenance."""
    preprocessing = {key: options[key] for key in ("crop", "flip", "window", "equalize")}
    named = description_of(model, fill=False).class_names
    if named is not None and tuple(named) != tuple(names):
        raise ConfigError(f"the model's classes {list(named)} are not the data's {list(names)}"
                          "; set data.classes to the model's, in its order")
    label_output = "label" if task.target_names and "label" in task.target_names else None
    data = task.config["data"]  # what it trains on, known before it is evaluated
    extra.setdefault("provenance", {"run": task.config["name"], "dataset": data["dataset"],
                                    "root": data["root"], "image_shape": image_shape,
                                    "seen": list(seen), "views": views or {}})
    return describe(model, task=task.reference(), task_options=dict(task.options),
                    class_names=names,
                    image_size=size, preprocessing=preprocessing, label_output=label_output,
                    outputs=task.output_kinds, **extra)


def finish_run(config: dict, out: Path, state: TrainingState, subsets: dict, names: tuple,
               task, report: DataReport, distribute: dict | None = None) -> dict:
    """Evaluate the best model, plot the curves, write done.json, drop checkpoints and cache."""
    if state.history:  # rewritten: a kill after the last commit may have left it behind
        write_csv_atomically(out / "history.csv", state.history)
        if config["training"]["tensorboard"]:
            log_epochs(out / "tensorboard", state.history)
        counts = {name: len(members) for name, members in subsets.items()}
        plot_training_history(state.history, out / "training.png", best_epoch=state.best_epoch,
                              monitor=config["training"]["monitor"],
                              note=f"{config['name']}: {counts.get('train', 0)} training, "
                                   f"{counts.get('val', 0)} validation images "
                                   f"({config['data']['dataset']})")
    subset = config["evaluation"]["subset"]
    if not subsets.get(subset):
        subset = "val"
    model = keras.saving.load_model(out / "model.keras")
    evaluated = Records(subsets[subset], skipped=report.skipped, subset=subset)
    metrics = task.evaluate(model, evaluated, out, names,
                            batch_size=config["training"]["batch_size"],
                            resamples=config["evaluation"]["resamples"])
    headline = task.summary(metrics)
    warnings = run_warnings(state.history, metrics, names)
    summary = {
        "name": config["name"], "config_hash": state.config_hash, **provenance(),
        "task": config["data"]["task"],
        "best_epoch": state.best_epoch, "epochs_run": len(state.history),
        "stopped_early": state.stopped_early, "monitor": config["training"]["monitor"],
        "best_value": state.best_value, "train_seconds": round(state.train_seconds, 1),
        "images": {name: len(members) for name, members in subsets.items()},
        "evaluated_on": subset, "class_names": list(names), **headline,
        "distribute": distribute or {"strategy": "none", "workers": 1, "replicas": 1},
        "skipped": sorted({str(error) for error in report.skipped}
                          | set(metrics.get("skipped", []))),
        "warnings": warnings,
    }
    data = config["data"]
    trained_on = description_of(model, fill=False).provenance or {}
    describe(model, provenance={
        "image_shape": trained_on.get("image_shape"), "seen": trained_on.get("seen") or [],
        "views": trained_on.get("views") or {},
        "run": config["name"], "dataset": data["dataset"], "root": data["root"],
        "commit": summary["commit"], "images": summary["images"],
        "evaluated_on": subset, "metrics": headline.get("metrics", {}),
        "confidence_intervals": headline.get("confidence_intervals", {})})
    save_model_atomically(model, out / "model.keras")
    write_json_atomically(out / DONE, summary)
    for folder in ("checkpoints", "cache", "workers"):
        shutil.rmtree(out / folder, ignore_errors=True)
    return read_done(out)
