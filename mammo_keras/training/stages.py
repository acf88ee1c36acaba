"""`StageManager`: the model each training stage trains.

A stage builds the model at its input size, or, when it names a `morph`, transforms the last
stage's model (MorphHR); either way it carries the variables, the optimizer's slots and step
count and the FSL centres over (`stage_transition.carry_state`), and starts choosing its own
best epoch (`SelectionPolicy.new_stage`).
"""

from __future__ import annotations

import keras

from mammo_keras.training.checkpoints import TrainingState
from mammo_keras.training.optimization import class_weights_of_counts, compiled
from mammo_keras.training.selection import SelectionPolicy
from mammo_keras.training.stage_transition import apply_morphs, carry_state


class StageManager:
    """Builds and compiles the training model of each stage of `stages` for `task`.

    Args:
        task: the run's `Task`.
        training: the config's `training` section.
        stages: the resolved stages (`training_stages`).
        class_names: the classes in index order.
    """

    def __init__(self, task, training: dict, stages: list[dict], class_names: tuple):
        self.task, self.training, self.stages = task, training, stages
        self.class_names = class_names

    def enter(self, index: int, previous: keras.Model | None, class_counts,
              updates_per_epoch: int, state: TrainingState) -> keras.Model:
        """The compiled training model of stage `index`, built at its size or morphed from
        `previous` (the last stage's training model, or None for the first), with the
        training state so far carried over. `class_counts`: training images per class (the
        class weights); `updates_per_epoch`: optimizer steps of one epoch (the schedule)."""
        stage = self.stages[index]
        weights = class_weights_of_counts(class_counts, self.class_names) \
            if self.training["class_balance"] == "weights" else None
        morphs = stage.get("morph")
        model = apply_morphs(self.task.trained_model(previous), morphs, stage["image_size"]) \
            if previous is not None and morphs else \
            self.task.build_model(self.class_names, stage["image_size"])
        start = int(previous.optimizer.iterations.numpy()) if previous is not None else 0
        trainer = compiled(self.task, model, weights, self.training, stage, updates_per_epoch,
                           start)
        if previous is not None:
            carry_state(previous, trainer, by_path=bool(morphs))
            SelectionPolicy.new_stage(state)
        return trainer
