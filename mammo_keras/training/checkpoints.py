"""Crash-safe training state: atomic model files and a state file that names the last checkpoint.

A run folder holds `checkpoints/state.json` and the `checkpoints/last-EEEE.keras` it
points to (the trainer with its optimizer state after epoch EEEE). A new
checkpoint is written completely before state.json moves to it, and the old one
is deleted only afterwards, so an interruption at any moment leaves a state
file that names a complete checkpoint of the same epoch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras

from mammo_keras.errors import UserError
from mammo_keras.atomic import save_model_atomically, write_json_atomically


@dataclasses.dataclass
class TrainingState:
    """Where a run stands after `epoch` finished epochs (0: nothing trained yet)."""

    config_hash: str
    epoch: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_gain: int = 0
    plateau_wait: int = 0                 # epochs without gain since the last reduction
    learning_rate: float | None = None    # the plateau schedule's current rate
    stopped_early: bool = False
    train_seconds: float = 0.0
    checkpoint: str | None = None
    history: list = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, folder: str | Path) -> "TrainingState | None":
        path = Path(folder) / "state.json"
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise UserError(f"{path}: unreadable training state ({error})") from None

    def commit(self, folder: str | Path, trainer: keras.Model) -> None:
        """Save `trainer` as the checkpoint of `self.epoch`, then point state.json at it."""
        folder = Path(folder)
        previous = self.checkpoint
        self.checkpoint = f"last-{self.epoch:04d}.keras"
        save_model_atomically(trainer, folder / self.checkpoint)
        write_json_atomically(folder / "state.json", dataclasses.asdict(self))
        if previous and previous != self.checkpoint:
            (folder / previous).unlink(missing_ok=True)
