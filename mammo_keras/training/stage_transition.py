"""What a new stage of `training.stages` starts from: the last stage's weights, optimizer state
and Feature-Smoothing centres, through the stage's morphs (MorphHR) when it names any.

- Without a morph the stage's model is built anew at its input size (the networks are
  convolutional, so every variable keeps its shape) and variables correspond in order.
- With morphs (`mammo_keras.morph`) the new model is the last one transformed, computing the
  same function at first; variables correspond by path (a morph keeps layer names), and the
  variables a morph adds start as it made them.

The optimizer's slots (AdamW's moments, SGD's momentum) and its step count go across for
every variable that corresponds with the same shape, so Adam's bias correction does not
restart on old moments; the stage's learning-rate schedule counts from the carried step
(`OffsetSchedule`).
"""

from __future__ import annotations

import inspect

import keras

from mammo_keras.errors import ConfigError
from mammo_keras import morph

MORPHS = {name: getattr(morph, name) for name in morph.__all__}
SLOT_SUFFIXES = ("momentum", "velocity", "velocity_hat")


@keras.saving.register_keras_serializable(package="mammo_keras")
class OffsetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` counted from optimizer step `start`: rate(step) = schedule(step - start)."""

    def __init__(self, schedule, start: int):
        self.schedule = keras.optimizers.schedules.deserialize(schedule) \
            if isinstance(schedule, dict) else schedule
        self.start = int(start)

    def __call__(self, step):
        return self.schedule(keras.ops.maximum(step - self.start, 0))

    def get_config(self) -> dict:
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "start": self.start}


def resolve_morphs(value, where: str) -> list[dict]:
    """A stage's `morph` as a list of {"operation": name, **arguments}, checked against the
    operations' signatures. "to_resolution" alone is short for [{"operation": "to_resolution"}];
    to_resolution's size is the stage's image_size."""
    steps = [value] if isinstance(value, (str, dict)) else value
    if not isinstance(steps, list):
        raise ConfigError(f"{where} must be an operation name, a mapping or a list of them")
    resolved = []
    for step in steps:
        step = {"operation": step} if isinstance(step, str) else dict(step) \
            if isinstance(step, dict) else None
        if step is None or step.get("operation") not in MORPHS:
            raise ConfigError(f"{where}: each morph names an operation, one of {sorted(MORPHS)}")
        accepted = set(inspect.signature(MORPHS[step["operation"]]).parameters) - {"model"}
        if step["operation"] == "to_resolution":
            accepted.discard("size")
        unknown = sorted(set(step) - accepted - {"operation"})
        if unknown:
            raise ConfigError(f"{where}: {step['operation']} takes no argument {unknown[0]!r} "
                              f"(it takes {sorted(accepted)})")
        resolved.append(step)
    return resolved


def apply_morphs(model: keras.Model, steps: list[dict], image_size: int) -> keras.Model:
    """`model` transformed by each step in turn (`resolve_morphs`' form)."""
    for step in steps:
        arguments = {key: value for key, value in step.items() if key != "operation"}
        if step["operation"] == "to_resolution":
            arguments["size"] = image_size
        model = MORPHS[step["operation"]](model, **arguments)
    return model


def carry_state(previous: keras.Model, trainer: keras.Model, by_path: bool) -> int:
    """Copy `previous`'s variables and optimizer state into the compiled `trainer`.

    Args:
        previous: the last stage's training model (compiled, trained).
        trainer: the new stage's training model, compiled.
        by_path: match variables by path (after a morph) rather than by order.

    Returns:
        How many of `trainer`'s variables start from `previous` (the rest are a morph's new
        ones).
    """
    pairs = _corresponding(previous.variables, trainer.variables, by_path)
    for old, new in pairs:
        new.assign(old)
    old_optimizer, optimizer = previous.optimizer, trainer.optimizer
    optimizer.build(trainer.trainable_variables)
    old_slots = {variable.name: variable for variable in old_optimizer.variables}
    new_slots = {variable.name: variable for variable in optimizer.variables}
    for old, new in pairs:
        if not new.trainable:
            continue
        for suffix in SLOT_SUFFIXES:
            source = old_slots.get(f"{_slot_stem(old)}_{suffix}")
            target = new_slots.get(f"{_slot_stem(new)}_{suffix}")
            if source is not None and target is not None and source.shape == target.shape:
                target.assign(source)
    optimizer.iterations.assign(old_optimizer.iterations)
    return len(pairs)


def _slot_stem(variable) -> str:
    """The prefix Keras names an optimizer slot of `variable` with."""
    return variable.path.replace("/", "_")


def _corresponding(old: list, new: list, by_path: bool) -> list[tuple]:
    if not by_path:
        if [tuple(v.shape) for v in old] != [tuple(v.shape) for v in new]:
            raise ConfigError("a new stage's model does not have the last stage's variables; "
                              "name a morph in the stage to change the architecture")
        return list(zip(old, new))
    by_name = {variable.path: variable for variable in old}
    return [(by_name[variable.path], variable) for variable in new
            if variable.path in by_name and tuple(by_name[variable.path].shape)
            == tuple(variable.shape)]
