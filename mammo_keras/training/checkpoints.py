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

PREVIOUS = "state-previous.json"


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
    def read(cls, folder: str | Path, epoch: int | None = None) -> "TrainingState | None":
        """The state in `folder`; with `epoch`, the one of that epoch, which may be the
        previous state a multi-worker commit keeps (`commit(..., keep_previous=True)`)."""
        folder = Path(folder)
        for name in ("state.json", PREVIOUS):
            path = folder / name
            if not path.is_file():
                continue
            try:
                state = cls(**json.loads(path.read_text()))
            except (json.JSONDecodeError, TypeError) as error:
                raise UserError(f"{path}: unreadable training state ({error})") from None
            if epoch is None or state.epoch == epoch:
                return state
        if epoch is None:
            return None
        raise UserError(f"{folder}: no checkpoint of epoch {epoch}, which every worker finished; "
                        "this worker's folder is not the one of this run")

    def commit(self, folder: str | Path, trainer: keras.Model, keep_previous: bool = False
               ) -> None:
        """Save `trainer` as the checkpoint of `self.epoch`, then point state.json at it.

        With `keep_previous`, the previous checkpoint stays (as `state-previous.json`) until
        `release_previous`: a worker of a cluster drops it only once every worker has
        committed, so a restart finds the epoch they all finished."""
        folder = Path(folder)
        previous = self.checkpoint
        self.checkpoint = f"last-{self.epoch:04d}.keras"
        save_model_atomically(trainer, folder / self.checkpoint)
        if keep_previous and (folder / "state.json").is_file():
            self.release_previous(folder)  # one left by a kill before its release
            (folder / "state.json").replace(folder / PREVIOUS)
        write_json_atomically(folder / "state.json", dataclasses.asdict(self))
        if not keep_previous and previous and previous != self.checkpoint:
            (folder / previous).unlink(missing_ok=True)

    def release_previous(self, folder: str | Path) -> None:
        """Delete the previous checkpoint `commit(..., keep_previous=True)` kept."""
        folder = Path(folder)
        path = folder / PREVIOUS
        if path.is_file():
            kept = json.loads(path.read_text()).get("checkpoint")
            if kept and kept != self.checkpoint:
                (folder / kept).unlink(missing_ok=True)
            path.unlink()


class Checkpointer:
    """Where a run keeps its progress, so a kill loses at most the epoch in flight.

    Every worker commits the last epoch's training model and `TrainingState` in its own
    `checkpoints/`; the chief also keeps the best model (`out/model.keras`, written whenever
    the selection improves), `history.csv` and the TensorBoard logs.

    Args:
        out: the run folder; folder: this worker's folder in it (`out` on one machine).
        cluster: the run's `Cluster` (chief or not, barriers between workers).
        tensorboard: write TensorBoard logs of the history.
    """

    def __init__(self, out: Path, folder: Path, cluster, tensorboard: bool):
        self.out, self.folder, self.cluster = Path(out), Path(folder), cluster
        self.checkpoints = self.folder / "checkpoints"
        self.tensorboard = tensorboard
        self.multi_worker = cluster.kind == "multi_worker"

    def resume(self, state: TrainingState) -> keras.Model | None:
        """The training model of the last committed epoch (its optimizer's learning rate where
        the plateau schedule had brought it), or None when nothing was committed."""
        if not state.checkpoint:
            return None
        trainer = keras.saving.load_model(self.checkpoints / state.checkpoint)
        if state.learning_rate is not None:
            trainer.optimizer.learning_rate = state.learning_rate
        return trainer

    def save_best(self, model: keras.Model) -> None:
        """The model of a new best epoch, written atomically (the chief only)."""
        if self.cluster.is_chief:
            save_model_atomically(model, self.out / "model.keras")

    def commit(self, state: TrainingState, trainer: keras.Model) -> None:
        """Commit the epoch `state` ends: history.csv first (a kill before the commit retrains
        the epoch and rewrites it), then the checkpoint; a cluster drops the epoch before only
        once every worker holds this one."""
        from mammo_keras.atomic import write_csv_atomically
        from mammo_keras.training.tensorboard_log import log_epochs

        if self.cluster.is_chief:
            write_csv_atomically(self.out / "history.csv", state.history)
        state.commit(self.checkpoints, trainer, keep_previous=self.multi_worker)
        if self.multi_worker:
            self.cluster.barrier()
            state.release_previous(self.checkpoints)
        if self.tensorboard and self.cluster.is_chief:
            log_epochs(self.out / "tensorboard", state.history)
