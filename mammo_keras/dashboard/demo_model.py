"""The model the dashboard uses when started without one: the quickstart run's model if it
is in the working folder, else a model trained on synthetic phantoms on first use (a few
minutes on a laptop CPU, once; later starts reuse it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import keras

from mammo_keras.training import read_done, resolve_config, train

SHIPPED_RUN = Path("runs") / "quickstart"
# The quickstart configuration (experiments/quickstart.yaml): baseline CNN, GAGM + SE head,
# 300 phantoms of 150 patients, 128 px, patient-grouped 70 / 15 / 15 split, 12 epochs.
DEMO_CONFIG = {
    "name": "dashboard-demo",
    "data": {"dataset": "synthetic", "synthetic": {"count": 300, "size": 256, "seed": 0},
             "image_size": 128, "split": [0.7, 0.15, 0.15]},
    "model": {"backbone": "baseline_cnn", "head": "gagm_se"},
    "training": {"epochs": 12, "batch_size": 16, "learning_rate": 0.001,
                 "class_balance": "weights", "deterministic": True},
    "evaluation": {"subset": "test"},
}


def mammo_keras_home() -> Path:
    """Where mammo-keras keeps what it builds for the user: $MAMMO_KERAS_HOME, else
    ~/.cache/mammo-keras."""
    return Path(os.environ.get("MAMMO_KERAS_HOME", Path.home() / ".cache" / "mammo-keras"))


def find_demo_run(home: str | Path | None = None) -> Path | None:
    """A finished demo run folder: ./runs/quickstart, else HOME/dashboard-demo; None if
    neither has finished."""
    for folder in (SHIPPED_RUN, Path(home or mammo_keras_home()) / "dashboard-demo"):
        if (folder / "model.keras").is_file() and read_done(folder) is not None:
            return folder
    return None


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, report: Callable[[float, str], None], epochs: int):
        super().__init__()
        self.report, self.epochs = report, epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("val_cross_entropy")
        detail = f", validation cross-entropy {loss:.3f}" if loss is not None else ""
        self.report(0.1 + 0.85 * (epoch + 1) / self.epochs,
                    f"epoch {epoch + 1} of {self.epochs} trained{detail}")


def train_demo_model(home: str | Path | None = None,
                     report: Callable[[float, str], None] = lambda fraction, text: None,
                     overrides: tuple[str, ...] = ()) -> Path:
    """Train (or resume) the demo model in HOME/dashboard-demo; returns the run folder.

    `report(fraction in [0, 1], text)` is called as phantoms are written and after each
    epoch. `overrides` are `--set`-style "a.b=value" strings (the tests shrink the run).
    """
    folder = Path(home or mammo_keras_home()) / "dashboard-demo"
    config = resolve_config(DEMO_CONFIG, overrides)
    epochs = config["training"]["epochs"]
    report(0.0, "writing synthetic phantoms")
    train(config, folder, resume=True, verbose=0,
          callbacks=[_EpochReporter(report, epochs)],
          progress=lambda done, total: report(0.1 * done / total,
                                              f"phantom {done} of {total} written"))
    report(1.0, "evaluated on the held-out test split")
    return folder
