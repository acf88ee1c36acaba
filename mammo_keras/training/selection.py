"""`SelectionPolicy`: which epoch's model a run keeps, and when a stage stops early.

The best epoch is the one whose `monitor` is best in the direction the task declares
(`Task.metric_direction`: Dice and AUC upwards, losses downwards), never guessed from the name;
it is chosen within each stage, so the saved model is the best of the last stage. Its counters
live in the run's `TrainingState`, so a resumed run selects as an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses

from mammo_keras.errors import ConfigError
from mammo_keras.training.checkpoints import TrainingState


@dataclasses.dataclass(frozen=True)
class SelectionPolicy:
    """Keep the epoch with the best `monitor` ("max" or "min": `direction`); stop a stage after
    `patience` epochs without gain (0: never)."""

    monitor: str
    direction: str
    patience: int = 0

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"direction must be 'max' or 'min', got {self.direction!r}")

    def value(self, logs: dict) -> float:
        """The monitored value of an epoch's logs (refused when the run does not log it)."""
        if self.monitor not in logs:
            raise ConfigError(f"training.monitor {self.monitor!r} is not logged; choose one of "
                              f"{sorted(logs)}")
        return float(logs[self.monitor])

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value < best if self.direction == "min" else value > best)

    def observe(self, state: TrainingState, value: float, epoch: int) -> bool:
        """Record epoch `epoch` (1-based) with `value`; whether it is the new best."""
        if self.better(value, state.best_value):
            state.best_value, state.best_epoch, state.epochs_without_gain = value, epoch, 0
            return True
        state.epochs_without_gain += 1
        return False

    def stage_is_over(self, state: TrainingState) -> bool:
        """Early stopping: `patience` epochs without gain."""
        return bool(self.patience) and state.epochs_without_gain >= self.patience

    @staticmethod
    def new_stage(state: TrainingState) -> None:
        """A new stage chooses its own best epoch, with its own schedule."""
        state.best_value, state.epochs_without_gain = None, 0
        state.plateau_wait, state.learning_rate = 0, None
