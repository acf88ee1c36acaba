"""The `Task` interface: what a model learns from a record and how it is trained and judged.

A task names, for one kind of study:

- its targets from a record (`target_names` and `class_names`, fed to `load_dataset`);
- its model (`build_model`: the config's model section -> a `DescribedModel`);
- how that model trains (`training_model`: the model `fit` runs, with its loss(es)
  and metrics, and `trained_model`: the model to save afterwards);
- its evaluation report (`evaluate`) and the headline figures of a run (`summary`);
- the kind of each output (`output_kinds`), stored in the saved model's description:
  what export serves (its signatures) and explanation draws (Grad-CAM of the class
  output, the masks mapped back onto the mammogram), with no task code at hand.

The trainer (`mammo_keras.training.trainer`) calls only these, so a new study is a
new task (a subclass, registered with `register_task` or named in a config as
"package.module:ClassName"), not a fork of the trainer. Explanation and export read
what they need from the saved model's description (`label_output`, `outputs`, class
names), so a model exported on one machine serves on another without the task's module.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

import keras

from mammo_keras.errors import UserError
from mammo_keras.models.outputs import TARGET_KINDS

_REGISTRY: dict[str, type["Task"]] = {}


class Task:
    """A study's targets, model, training and evaluation. Subclass and override.

    Attributes:
        name: the config's `data.task` value that selects it.
        target_names: None for one unnamed target (a class index), or the names of a
            dict of targets (a subset of "label", "mask") matching the model's outputs.
        target_field: the record field holding the class ("label" or "density").
        monitor: the logged value that picks the best epoch when `training.monitor` is
            not set (a loss is minimised; an accuracy / AUC / F1 maximised).
    """

    name: str = ""
    OPTIONS: dict = {}  # the config's `task_options` with their defaults (types checked)
    target_names: tuple[str, ...] | None = None
    target_field: str = "label"
    monitor: str = "val_loss"

    def __init__(self, config: dict):
        self.config = config
        self.options = {**self.OPTIONS, **config.get("task_options", {})}

    def prepare_records(self, records):
        """The records this task studies, from a dataset's (`Records`): by default all of them;
        a task may relabel them or leave some out, listing those in `skipped`."""
        return records

    def start_epoch(self, training_model: keras.Model, epoch: int) -> None:
        """Called before epoch `epoch` (0-based, counted over the whole run) is trained, also
        after a resume: for state that follows the epoch (loss weights that decay)."""

    @property
    def pipeline_task(self) -> str:
        """The `load_dataset` task whose class field this task reads."""
        return "density" if self.target_field == "density" else "malignancy"

    @property
    def output_kinds(self) -> dict[str, str] | None:
        """{output name: kind} of the outputs that export and explanation serve
        (`mammo_keras.models.outputs`): by default each named target's kind ("label": class
        probabilities, "mask": a mask); None: the one class output. Override to serve
        fewer outputs than the model trains (deep-supervision exits stay out)."""
        if self.target_names is None:
            return None
        return {name: TARGET_KINDS[name] for name in self.target_names}

    def class_names(self, records: Sequence) -> tuple[str, ...]:
        """The classes in index order: `data.classes`, else the records' own."""
        from mammo_keras.data.pipeline import class_names_for

        classes = self.config["data"]["classes"]
        return tuple(classes) if classes else class_names_for(records, self.pipeline_task)

    def dataset_options(self, class_names: Sequence[str]) -> dict:
        """Keyword arguments of `load_dataset` for this task's targets and preprocessing."""
        data = self.config["data"]
        options = {"task": self.pipeline_task, "class_names": tuple(class_names),
                   "crop": data["crop"], "flip": data["flip"], "window": data["window"],
                   "equalize": data["equalize"]}
        if self.target_names is not None:
            options["targets"] = self.target_names
        return options

    def build_model(self, class_names: Sequence[str], image_size: int) -> keras.Model:
        """The model the config's `model` section describes, for these classes and size."""
        from mammo_keras.models.builders import build_model

        return build_model(self.config["model"], num_classes=len(class_names),
                           image_size=image_size, task=self.name or None)

    def training_model(self, model: keras.Model, class_weights: list[float] | None
                       ) -> keras.Model:
        """The model `fit` trains (not yet compiled): `model` itself by default."""
        return model

    def losses(self, class_weights: list[float] | None):
        """The `compile(loss=...)` argument: a loss or a dict of losses by output name."""
        raise NotImplementedError

    def metrics(self):
        """The `compile(metrics=...)` argument."""
        return None

    def trained_model(self, training_model: keras.Model) -> keras.Model:
        """The model to save from what `fit` trained."""
        return training_model

    def evaluate(self, model: keras.Model, records: Sequence, out: Path,
                 class_names: Sequence[str], batch_size: int, resamples: int) -> dict:
        """Evaluate `model` on `records`, writing its report into `out`; the metrics."""
        raise NotImplementedError

    def summary(self, metrics: dict) -> dict:
        """The headline figures of done.json: {"metrics": {name: number}, "confidence_intervals":
        {name: (low, high)}, ...}; by default every number `evaluate` returned."""
        return {"metrics": {key: value for key, value in metrics.items()
                            if isinstance(value, (int, float)) and not isinstance(value, bool)},
                "confidence_intervals": metrics.get("confidence_intervals", {})}


def register_task(task: type[Task]) -> type[Task]:
    """Register a `Task` subclass under its `name` (usable as a class decorator)."""
    if not task.name:
        raise ValueError(f"{task.__name__} has no name")
    _REGISTRY[task.name] = task
    return task


def task_names() -> list[str]:
    """The registered task names."""
    _load_builtin_tasks()
    return sorted(_REGISTRY)


def get_task_class(name: str) -> type[Task]:
    """The task registered as `name`, or imported from "package.module:ClassName"."""
    _load_builtin_tasks()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in str(name):
        module, _, attribute = name.partition(":")
        try:
            task = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as error:
            raise UserError(f"data.task {name!r}: cannot import it ({error})") from None
        if not (isinstance(task, type) and issubclass(task, Task)):
            raise UserError(f"data.task {name!r} is not a mammo_keras.tasks.Task subclass")
        return task
    raise UserError(f"unknown task {name!r}; choose one of {sorted(_REGISTRY)} or name a "
                     "Task subclass as 'package.module:ClassName'")


def get_task(config: dict) -> Task:
    """The task of a resolved config (its `data.task`)."""
    return get_task_class(config["data"]["task"])(config)


def _load_builtin_tasks() -> None:
    import mammo_keras.tasks.classification  # noqa: F401  (registers on import)
    import mammo_keras.tasks.segmentation  # noqa: F401
