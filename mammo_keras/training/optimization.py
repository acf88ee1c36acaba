"""How a stage's model is optimised: class weights, the learning-rate schedule, the compiled
training model, and the plateau schedule's step at the end of an epoch."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from mammo_keras.errors import ConfigError

from mammo_keras.training.checkpoints import TrainingState
from mammo_keras.training.stage_transition import OffsetSchedule


def class_weights(targets: np.ndarray, class_names: Sequence[str]) -> list[float]:
    """n / (K n_k) per class k: every class contributes equally to the loss."""
    return class_weights_of_counts(np.bincount(targets, minlength=len(class_names)), class_names)


def class_weights_of_counts(counts: np.ndarray, class_names: Sequence[str]) -> list[float]:
    """`class_weights` from the number of training images of each class."""
    missing = [name for name, count in zip(class_names, counts) if count == 0]
    if missing:
        raise ConfigError(f"no training images of class {missing}; drop it with data.classes")
    return [float(sum(counts) / (len(class_names) * count)) for count in counts]



def learning_rate_schedule(training: dict, steps_per_epoch: int
                           ) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from min_learning_rate_ratio x the peak to the peak over warmup_epochs,
    then cosine decay back to min_learning_rate_ratio x the peak at the last step."""
    total = training["epochs"] * steps_per_epoch
    warmup = min(int(round(training["warmup_epochs"] * steps_per_epoch)), total - 1)
    peak = float(training["learning_rate"])
    floor = float(training["min_learning_rate_ratio"])
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * floor if warmup else peak, decay_steps=max(total - warmup, 1),
        alpha=floor, warmup_target=peak if warmup else None, warmup_steps=warmup)


def compiled(task, model: keras.Model, weights: list[float] | None, training: dict,
             stage: dict, steps_per_epoch: int, start_step: int = 0) -> keras.Model:
    """The task's training model around `model`, compiled with AdamW (or SGD with momentum:
    `training.optimizer`; Keras applies either's weight decay decoupled) on the stage's schedule
    (`steps_per_epoch`: optimizer steps, which gradient accumulation makes fewer than
    batches), counted from optimizer step `start_step` (where the last stage left it)."""
    trainer = task.training_model(model, weights)
    jit = training["jit_compile"]
    accumulation = training["gradient_accumulation"]
    rate = float(stage["learning_rate"]) if training["schedule"] == "plateau" else \
        learning_rate_schedule({**training, **stage}, steps_per_epoch)
    if start_step and not isinstance(rate, float):
        rate = OffsetSchedule(rate, start_step)
    common = {"weight_decay": float(training["weight_decay"]),
              "gradient_accumulation_steps": accumulation if accumulation > 1 else None}
    if training["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(rate, momentum=float(training["momentum"]), **common)
    else:
        optimizer = keras.optimizers.AdamW(rate, **common)
    losses = task.losses(weights)
    trainer.compile(optimizer=optimizer, metrics=task.metrics(),
                    jit_compile=jit if jit in (True, False) else "auto",
                    **({} if losses is None else {"loss": losses}))
    return trainer


def plateau_step(state: TrainingState, optimizer, training: dict, improved: bool) -> None:
    """ReduceLROnPlateau at the end of an epoch: the learning rate x plateau_factor once
    plateau_patience epochs have passed without a new best of the monitor (counted again
    from each reduction); the rate is kept in `state`, so a resumed run goes on from it."""
    state.plateau_wait = 0 if improved else state.plateau_wait + 1
    rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    if state.plateau_wait >= training["plateau_patience"]:
        rate *= float(training["plateau_factor"])
        optimizer.learning_rate = rate
        state.plateau_wait = 0
    state.learning_rate = rate
