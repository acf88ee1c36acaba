"""Self-describing models: what a saved model is for travels inside the artefact.

A `ModelDescription` names a model's task, its class names, its input size, the
preprocessing options it was trained with, which output holds the class
probabilities, the builder that made it and (after training) where it came
from. `DescribedModel` is a functional `keras.Model` that carries one and
writes it into its config, so `model.save("x.keras")` stores it and
`keras.saving.load_model` gives it back, with nothing beside the file (the way
keras-hub saves a Task together with its Preprocessor).

    >>> import keras
    >>> inputs = keras.Input((32, 32, 1), name="image")
    >>> x = keras.layers.GlobalAveragePooling2D()(inputs)
    >>> outputs = keras.layers.Softmax(name="predictions")(keras.layers.Dense(3)(x))
    >>> model = describe(keras.Model(inputs, outputs), task="density",
    ...                  class_names=("F", "G", "D"))
    >>> description_of(model).class_names
    ('F', 'G', 'D')

`description_of(model, path)` also reads models saved before descriptions
existed: from the training run folder beside the `.keras` file when there is
one, else from the model's shape alone.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import keras

from mammo_keras.compat import is_functional_graph
from mammo_keras.errors import UserError
from mammo_keras.data.preprocessing import preprocessing_options

if TYPE_CHECKING:
    from mammo_keras.data.preprocessor import MammogramPreprocessor

# A task's classes in index order, for models that name the task but not their classes
# (filled by `mammo_keras.tasks.register_task` for tasks with fixed classes)
_TASK_CLASSES: dict[str, tuple[str, ...]] = {}


@dataclasses.dataclass
class ModelDescription:
    """What a model is for, in JSON-able fields.

    Attributes:
        task: the task's reference: a registered name or "package.module:ClassName"
            (`mammo_keras.tasks`), or None when unknown.
        task_options: the task's resolved options (a config's `task_options`), so the task
            that trained the model can be rebuilt to evaluate it (`Task.for_model`).
        class_names: the names of the class outputs, in index order, or None.
        image_size: side S of the square (S, S, 1) input it was trained at, or None.
        preprocessing: the `mammo_keras.data.preprocess` options (crop, flip, window,
            equalize).
        label_output: the name of the output holding the class probabilities, for
            models with several outputs (a mask and a label); None: the only output.
        outputs: {output name: kind} of the outputs export and explanation serve
            (`mammo_keras.models.outputs`: "class_probabilities", "mask"); None: the
            class probabilities alone.
        builder: {"name": ..., "arguments": {...}} of the builder that made it.
        provenance: after training: the dataset, commit and headline metrics.
    """

    task: str | None = None
    task_options: dict = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    image_size: int | None = None
    preprocessing: dict = dataclasses.field(default_factory=preprocessing_options)
    label_output: str | None = None
    outputs: dict | None = None
    builder: dict | None = None
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.class_names is not None:
            self.class_names = tuple(str(name) for name in self.class_names)
        self.preprocessing = preprocessing_options(self.preprocessing)
        from mammo_keras.models.outputs import check_output_kinds  # it imports this module

        self.outputs = check_output_kinds(self.outputs)

    def to_dict(self) -> dict:
        """A JSON-able dict (the form stored in the model's config)."""
        values = dataclasses.asdict(self)
        values["class_names"] = None if self.class_names is None else list(self.class_names)
        return json.loads(json.dumps(values, default=str))

    @classmethod
    def from_dict(cls, values: dict | None) -> "ModelDescription":
        """The inverse of `to_dict`; unknown keys (from a newer version) are ignored."""
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in (values or {}).items() if key in fields})

    def preprocessor(self) -> "MammogramPreprocessor":
        """The `MammogramPreprocessor` of this model: its input side and preprocessing
        options (the image size must be known: `description_of(model)` fills it)."""
        from mammo_keras.data.preprocessor import MammogramPreprocessor

        if self.image_size is None:
            raise UserError("the model's input size is not known; describe it with image_size")
        return MammogramPreprocessor(int(self.image_size), **self.preprocessing)

    def with_defaults(self, model: keras.Model) -> "ModelDescription":
        """This description with what the model's shapes tell filled in where it is silent."""
        filled = dataclasses.replace(self)
        shape = _single_input_shape(model)
        if filled.image_size is None and shape is not None and shape[1] is not None:
            filled.image_size = int(shape[1])
        if filled.class_names is None:
            count = class_count(model, filled.label_output)
            if count is not None:
                filled.class_names = default_class_names(count, filled.task)
        return filled


def register_task_classes(task: str, class_names: Sequence[str]) -> None:
    """Declare the fixed classes of the task `task` names (`default_class_names`)."""
    _TASK_CLASSES[task] = tuple(class_names)


def default_class_names(count: int, task: str | None = None) -> tuple[str, ...]:
    """The classes of a model that names none: its task's fixed classes when the task
    declared them (`register_task_classes`) and their count matches, else class0..class{K-1}.

    A model whose task is unknown is never given another task's names: a density
    model's F / G / D must not come back as normal / benign / malignant.
    """
    names = _TASK_CLASSES.get(task)
    if names is not None and len(names) == count:
        return names
    return tuple(f"class{k}" for k in range(count))


def label_tensor(model: keras.Model, label_output: str | None = None):
    """The output tensor holding class probabilities: `label_output` of a model with
    named outputs, or the only output."""
    output = model.output
    if isinstance(output, dict):
        if label_output is None:
            if len(output) != 1:
                raise UserError(f"model {model.name!r} has outputs {sorted(output)}; its "
                                 "description must name the label_output")
            label_output = next(iter(output))
        if label_output not in output:
            raise UserError(f"model {model.name!r} has no output {label_output!r}; it has "
                             f"{sorted(output)}")
        return output[label_output]
    if isinstance(output, (list, tuple)):
        if len(output) != 1:
            raise UserError(f"model {model.name!r} has {len(output)} unnamed outputs; name "
                             "them (a dict of outputs) and set label_output")
        return output[0]
    return output


def class_count(model: keras.Model, label_output: str | None = None) -> int | None:
    """K of the (N, K) class output, or None when there is no such output."""
    try:
        shape = label_tensor(model, label_output).shape
    except ValueError:
        return None
    return int(shape[-1]) if len(shape) == 2 and shape[-1] is not None else None


def _single_input_shape(model: keras.Model) -> tuple | None:
    inputs = model.inputs
    return tuple(inputs[0].shape) if len(inputs) == 1 else None


@keras.saving.register_keras_serializable(package="mammo_keras")
class DescribedModel(keras.Model):
    """A functional model that carries its `ModelDescription` in its config.

    Construct it like a functional model, `DescribedModel(inputs, outputs,
    description=ModelDescription(...))`, or wrap an existing one with `describe`.
    Saving and loading (`.keras`) and `from_config` keep the description; layers,
    weights and outputs are those of the graph. `keras.models.clone_model` calls the
    constructor with the graph only, so clone with `clone_described`.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        description = kwargs.pop("description", None)
        super().__init__(inputs, outputs, name=name, **kwargs)
        if isinstance(description, ModelDescription):
            description = dataclasses.replace(description)
        self.description = ModelDescription.from_dict(description) \
            if not isinstance(description, ModelDescription) else description

    def get_config(self) -> dict:
        return {**super().get_config(), "description": self.description.to_dict()}


def clone_described(model: keras.Model, **clone_options: Any) -> keras.Model:
    """`keras.models.clone_model(model, **clone_options)`, keeping a `DescribedModel`'s description."""
    clone = keras.models.clone_model(model, **clone_options)
    if isinstance(model, DescribedModel):
        clone.description = dataclasses.replace(model.description)
    return clone


def describe(model: keras.Model, **fields: Any) -> DescribedModel:
    """`model` with its description set or updated by `fields` (ModelDescription's fields).

    A `DescribedModel` is updated in place and returned; a plain functional model is
    wrapped (same layers and weights, nothing copied).
    """
    if isinstance(model, DescribedModel):
        model.description = dataclasses.replace(model.description, **fields)
        return model
    if not is_functional_graph(model):  # Sequential and subclassed models have no graph
        raise UserError(f"model {model.name!r} is not functional; build it with keras.Model("
                         "inputs, outputs) to describe it")
    base = description_of(model, fill=False)  # defaults (class0..) are filled when read
    return DescribedModel(model.input, model.output, name=model.name,
                          description=dataclasses.replace(base, **fields))


def description_of(model: keras.Model, path: str | Path | None = None,
                   fill: bool = True) -> ModelDescription:
    """The model's description, with what its shapes tell filled in (`fill` False: as
    stored, so a caller can tell "no class names" from the class0.. defaults).

    For a model saved before descriptions existed, `path` (its `.keras` file) lets
    the run folder around it speak: config.yaml gives the task and preprocessing,
    done.json the class names.
    """
    if isinstance(model, DescribedModel):
        description = model.description
    elif path is not None:
        description = legacy_description(Path(path).parent)
    else:
        description = ModelDescription()
    return description.with_defaults(model) if fill else dataclasses.replace(description)


def legacy_description(folder: Path) -> ModelDescription:
    """What a run folder of mammo-keras 0.x says about its model.keras (config.yaml, done.json)."""
    from mammo_keras.yaml_files import read_yaml

    description = ModelDescription()
    config_path, done_path = folder / "config.yaml", folder / "done.json"
    if config_path.is_file():
        config = read_yaml(config_path) or {}
        if not isinstance(config, dict) or not isinstance(config.get("data", {}), dict):
            raise UserError(f"{config_path}: not a mammo-keras run config (a mapping with a "
                            "data section)")
        data = config.get("data", {})
        description.task = data.get("task")
        description.preprocessing = preprocessing_options(
            {key: data[key] for key in description.preprocessing if key in data})
        description.image_size = data.get("image_size")
        model = config.get("model", {})
        description.builder = {"name": "classifier", "arguments": dict(model)}
        description.provenance = {"run": config.get("name"), "dataset": data.get("dataset"),
                                  "root": data.get("root")}
    if done_path.is_file():
        done = json.loads(done_path.read_text())
        description.class_names = tuple(done["class_names"])
        description.provenance.update(
            commit=done.get("commit"), images=done.get("images"),
            evaluated_on=done.get("evaluated_on"), metrics=done.get("metrics", {}),
            confidence_intervals=done.get("confidence_intervals", {}))
    return description


def validated_class_names(names: Sequence[str] | None, model: keras.Model,
                          label_output: str | None = None) -> tuple[str, ...] | None:
    """`names` as a tuple, checked against the model's class count (None stays None)."""
    if names is None:
        return None
    count = class_count(model, label_output)
    if count is not None and len(names) != count:
        raise UserError(f"{len(names)} class names {list(names)} for a model with {count} "
                         "class outputs")
    return tuple(names)
