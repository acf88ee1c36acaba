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

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import keras

from mammo_keras.errors import UserError
from mammo_keras.models.description import register_task_classes
from mammo_keras.models.outputs import TARGET_KINDS
from mammo_keras.trust import import_reference

if TYPE_CHECKING:
    from mammo_keras.data.targets import TargetSpec

_REGISTRY: dict[str, type["Task"]] = {}


class Task:
    """A study's targets, model, training and evaluation. Subclass and override.

    Attributes:
        name: the config's `data.task` value that selects it (registered tasks); a task
            named in a config as "package.module:ClassName" is known by that reference.
        target_names: None for one unnamed target (a class index), or the names of a
            dict of targets (a subset of "label", "mask") matching the model's outputs.
        target_field: the record field holding the class: a `Record` attribute ("label",
            "density") or a dataset's own field in `Record.extra`.
        ordinal: the classes are a scale in their index order (density A < B < C < D).
        default_classes: the classes in index order when a config names none and a model
            names none (None: the records' own values, `default_class_names`).
        monitor: the logged value that picks the best epoch when `training.monitor` is
            not set; its direction is `metric_direction(monitor)`.
        METRIC_DIRECTIONS: {metric name: "max" | "min"} for the task's own metrics whose
            direction the common names (`COMMON_DIRECTIONS`) do not give.
        report_columns: (metric, heading) pairs of a grid's summary table.
        plot_metrics: the metrics of a grid's summary.png (mean +- std per row).
    """

    name: str = ""
    OPTIONS: dict = {}  # the config's `task_options` with their defaults (types checked)
    target_names: tuple[str, ...] | None = None
    target_field: str = "label"
    ordinal: bool = False
    default_classes: tuple[str, ...] | None = None
    monitor: str = "val_loss"
    METRIC_DIRECTIONS: dict[str, str] = {}
    report_columns: tuple[tuple[str, str], ...] = (
        ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
        ("macro_f1", "macro F1"), ("roc_auc_macro", "ROC-AUC (macro)"))
    plot_metrics: tuple[str, ...] | None = None

    def __init__(self, config: dict):
        self.config = config
        self.options = {**self.OPTIONS, **config.get("task_options", {})}

    @classmethod
    def reference(cls) -> str:
        """How a config or a model's description names this task: its registered name, else
        "package.module:ClassName"."""
        if cls.name and _REGISTRY.get(cls.name) is cls:
            return cls.name
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def for_model(cls, description) -> "Task":
        """The task that trained a model, rebuilt from its `ModelDescription` (its task
        options, classes, preprocessing and builder): what `evaluate` asks for records,
        targets and the report, with no run folder at hand."""
        builder = description.builder or {}
        config = {"name": (description.provenance or {}).get("run", "model"),
                  "data": {"task": cls.reference(),
                           "classes": list(description.class_names or ()) or None,
                           "image_size": description.image_size, "train_crop": None,
                           **description.preprocessing},
                  "task_options": dict(description.task_options or {}),
                  "model": dict(builder.get("arguments") or {},
                                builder=builder.get("name", "classifier")),
                  "training": {}}
        return cls(config)

    @classmethod
    def check_stages(cls, stages: list[dict]) -> str | None:
        """What makes these training stages untrainable for this task (each stage resolved,
        its `morph` a list of steps), in words; None when they train."""
        return None

    @classmethod
    def metric_direction(cls, metric: str) -> str:
        """"max" or "min": which way `metric` (a logged name such as "val_dice") improves.

        The task's `METRIC_DIRECTIONS` first, then the common names; a name neither
        knows is refused rather than guessed."""
        bare = metric[4:] if metric.startswith("val_") else metric
        for table in (cls.METRIC_DIRECTIONS, COMMON_DIRECTIONS):
            if metric in table:
                return table[metric]
            if bare in table:
                return table[bare]
        for suffix, direction in (("loss", "min"), ("cross_entropy", "min")):
            if bare.endswith(suffix):
                return direction
        raise UserError(f"training.monitor {metric!r}: its direction is not known; declare it "
                        f"in the task's METRIC_DIRECTIONS ({cls.__name__})")

    @property
    def total_epochs(self) -> int:
        """The epochs of the whole run (every stage)."""
        training = self.config["training"]
        if training.get("stages"):
            return sum(int(stage["epochs"]) for stage in training["stages"])
        return int(training["epochs"])

    @property
    def stratify_field(self) -> str:
        """The record field splits stratify by (the patient's classes stay balanced)."""
        return self.target_field

    def prepare_records(self, records):
        """The records this task studies, from a dataset's (`Records`): by default all of them;
        a task may relabel them or leave some out, listing those in `skipped`."""
        return records

    def start_epoch(self, training_model: keras.Model, epoch: int) -> None:
        """Called before epoch `epoch` (0-based, counted over the whole run) is trained, also
        after a resume: for state that follows the epoch (loss weights that decay)."""

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
        """The classes in index order: `data.classes`, else `default_classes`, else the
        records' own (`default_class_names` of the target field)."""
        from mammo_keras.data.targets import default_class_names

        classes = self.config["data"].get("classes")
        if classes:
            return tuple(classes)
        return self.default_classes or default_class_names(records, self.target_field)

    def target_spec(self, class_names: Sequence[str]) -> "TargetSpec":
        """What the pipeline yields for this task: the class field, the classes in order,
        masks when a target is one, named targets for a model with named outputs."""
        from mammo_keras.data.targets import TargetSpec

        names = self.target_names
        return TargetSpec(field=self.target_field if names is None or "label" in names
                          else None, class_names=tuple(class_names),
                          masks="mask" in (names or ()), named=names, ordinal=self.ordinal)

    def dataset_options(self, class_names: Sequence[str]) -> dict:
        """Keyword arguments of `load_dataset` for this task's targets and preprocessing."""
        data = self.config["data"]
        return {"target": self.target_spec(class_names), "crop": data["crop"],
                "flip": data["flip"], "window": data["window"], "equalize": data["equalize"]}

    def build_model(self, class_names: Sequence[str], image_size: int) -> keras.Model:
        """The model the config's `model` section describes, for these classes and size."""
        from mammo_keras.models.builders import build_model

        return build_model(self.config["model"], num_classes=len(class_names),
                           image_size=image_size, task=self.reference())

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
        """Evaluate `model` on `records`, writing its report into `out`; the metrics.
        By default the classification report of its class output."""
        from mammo_keras.evaluation import evaluate_model

        return evaluate_model(model, records, out, batch_size=batch_size,
                              resamples=resamples, **self.dataset_options(class_names))

    def summary(self, metrics: dict) -> dict:
        """The headline figures of done.json: {"metrics": {name: number}, "confidence_intervals":
        {name: (low, high)}, ...}; by default every number `evaluate` returned."""
        return {"metrics": {key: value for key, value in metrics.items()
                            if isinstance(value, (int, float)) and not isinstance(value, bool)},
                "confidence_intervals": metrics.get("confidence_intervals", {})}


# Which way the common metrics improve (logged with or without Keras' "val_" prefix)
COMMON_DIRECTIONS = {name: "max" for name in (
    "accuracy", "balanced_accuracy", "auc", "roc_auc", "roc_auc_macro", "pr_auc_macro",
    "macro_f1", "weighted_f1", "f1", "dice", "iou", "mean_io_u", "precision", "recall",
    "quadratic_kappa", "sparse_categorical_accuracy", "categorical_accuracy",
    "binary_accuracy")}
COMMON_DIRECTIONS.update({name: "min" for name in ("ece", "recall_variance", "brier",
                                                   "mean_squared_error", "mean_absolute_error")})


def register_task(task: type[Task]) -> type[Task]:
    """Register a `Task` subclass under its `name` (usable as a class decorator)."""
    if not task.name:
        raise ValueError(f"{task.__name__} has no name")
    _REGISTRY[task.name] = task
    if task.default_classes:
        register_task_classes(task.name, task.default_classes)
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
        task = import_reference(name, "task")
        if not (isinstance(task, type) and issubclass(task, Task)):
            raise UserError(f"task {name!r} is not a mammo_keras.tasks.Task subclass")
        return task
    raise UserError(f"unknown task {name!r}; choose one of {sorted(_REGISTRY)} or name a "
                     "Task subclass as 'package.module:ClassName'")


def get_task(config: dict) -> Task:
    """The task of a resolved config (its `data.task`)."""
    return get_task_class(config["data"]["task"])(config)


def task_for_model(description, fallback: str = "malignancy") -> Task:
    """The task a model's `ModelDescription` names, rebuilt with its options
    (`Task.for_model`); a model that names none is read as `fallback`'s classification."""
    return get_task_class(description.task or fallback).for_model(description)


def _load_builtin_tasks() -> None:
    import mammo_keras.tasks.classification  # noqa: F401  (registers on import)
    import mammo_keras.tasks.segmentation  # noqa: F401
