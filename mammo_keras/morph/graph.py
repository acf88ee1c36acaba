"""Rebuilding a functional model with some layers changed, replaced or inserted.

Every morph is one `rebuild`: the model's graph is run again (`keras.models.clone_model`
with a `clone_function` and a `call_function`, the public hooks for this) on copies of its
layers, so the result shares no variable with the original. Each copy gets the original's
weights unless the morph gives it new ones; layers keep their names, so Grad-CAM, the
feature pyramid and saved-model loaders find them where they were.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np

from mammo_keras.compat import producing_operation
from mammo_keras.errors import UserError, did_you_mean
from mammo_keras.models.description import DescribedModel, clone_described

# new weights of a copied layer: (original layer, its copy, built) -> arrays for set_weights
WeightRule = Callable[[keras.layers.Layer, keras.layers.Layer], list]
# builds layers on a tensor and returns the tensor that takes its place
Insertion = Callable[[object], object]
# builds layers in place of a layer's call: (call args, call kwargs) -> outputs
Replacement = Callable[[tuple, dict], object]


@dataclasses.dataclass
class Surgery:
    """What a `rebuild` changes, all keyed by layer name.

    Attributes:
        configs: config entries that replace the copy's (e.g. {"filters": 96}).
        weights: rules giving a copy its new weights instead of the original's.
        after: insertions on a layer's output (an input layer's name: on the model input).
        replace: layers whose call is replaced by other layers (their copy is unused).
        input_shape: a new shape (without batch) of the model's single input.
    """

    configs: dict[str, dict] = dataclasses.field(default_factory=dict)
    weights: dict[str, WeightRule] = dataclasses.field(default_factory=dict)
    after: dict[str, Insertion] = dataclasses.field(default_factory=dict)
    replace: dict[str, Replacement] = dataclasses.field(default_factory=dict)
    input_shape: tuple | None = None


def functional(model: keras.Model, operation: str) -> keras.Model:
    """`model` itself when it is a functional model (one graph of named layers), else an
    error naming the morph."""
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth") \
            or isinstance(model, keras.Sequential):
        raise UserError(f"{operation}: {getattr(model, 'name', model)!r} is not a functional "
                        "Keras model; morph the classifier or U-Net a builder made, not a "
                        "training wrapper")
    return model


def find_layer(model: keras.Model, name: str, operation: str) -> keras.layers.Layer:
    """The layer `name` of `model`, or an error naming the closest layer name."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    raise UserError(f"{operation}: model {model.name!r} has no layer {name!r}"
                    f"{did_you_mean(name, [layer.name for layer in model.layers])}")


def unused_name(model: keras.Model, stem: str) -> str:
    """`stem`, or `stem_2`, `stem_3`... : the first name no layer of `model` has."""
    names = {layer.name for layer in model.layers}
    name, count = stem, 1
    while any(existing == name or existing.startswith(name + "_") for existing in names):
        count += 1
        name = f"{stem}_{count}"
    return name


def consumers(model: keras.Model, tensor) -> list[keras.layers.Layer]:
    """The layers of `model` called on `tensor` (alone or among their inputs), graph order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if any(candidate is tensor for candidate in keras.tree.flatten(_layer_input(layer))):
            found.append(layer)
    return found


def _layer_input(layer: keras.layers.Layer):
    try:
        return layer.input
    except (AttributeError, ValueError):
        raise UserError(f"layer {layer.name!r} is called more than once in the graph; "
                        "morphs need each layer called once") from None


def is_model_output(model: keras.Model, tensor) -> bool:
    return any(output is tensor for output in keras.tree.flatten(model.outputs))


def rebuild(model: keras.Model, surgery: Surgery) -> keras.Model:
    """A new model: `model`'s graph on copies of its layers, changed as `surgery` says.

    Returns a model of the same class (a `DescribedModel` keeps its description) whose
    copied layers hold the original weights, except where `surgery.weights` rules.
    """
    inputs = model.inputs
    for name in [*surgery.configs, *surgery.weights, *surgery.after, *surgery.replace]:
        find_layer(model, name, "morph")
    if surgery.input_shape is not None and len(inputs) != 1:
        raise UserError(f"morph: model {model.name!r} has {len(inputs)} inputs; a new input "
                        "size needs a single-input model")
    new_inputs = [keras.Input(shape=surgery.input_shape or tuple(tensor.shape[1:]),
                              dtype=tensor.dtype, name=_producer(tensor).name)
                  for tensor in inputs]
    fronts = {id(new): _insert(surgery.after, _producer(old).name, new)
              for old, new in zip(inputs, new_inputs)}
    copies: dict[int, tuple] = {}

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless keras.ops operation (ConvNeXt's additions)
        if id(layer) not in copies:
            config = {**layer.get_config(), **surgery.configs.get(layer.name, {})}
            copies[id(layer)] = (layer, layer.__class__.from_config(config))
        return copies[id(layer)][1]

    def call_function(layer, *args, **kwargs):
        args, kwargs = keras.tree.map_structure(
            lambda value: fronts.get(id(value), value), (args, kwargs))
        if layer.name in surgery.replace:
            outputs = surgery.replace[layer.name](args, kwargs)
        else:
            outputs = layer(*args, **kwargs)
        return _insert(surgery.after, layer.name, outputs)

    structure = keras.tree.pack_sequence_as(model.input, new_inputs) \
        if isinstance(model.input, (list, tuple, dict)) else new_inputs[0]
    rebuilt = clone_described(model, clone_function=clone_function,
                              call_function=call_function, input_tensors=structure)
    for original, copy in copies.values():
        if original.name in surgery.replace:
            continue
        rule = surgery.weights.get(original.name)
        values = rule(original, copy) if rule else original.get_weights()
        if values:
            copy.set_weights([np.asarray(value, dtype=weight.dtype)
                              for value, weight in zip(values, copy.weights)])
    return rebuilt


def _insert(after: dict[str, Insertion], name: str, tensor):
    return after[name](tensor) if name in after else tensor


def _producer(tensor) -> keras.layers.Layer:
    return producing_operation(tensor)


def record_morph(model: keras.Model, operation: str, **arguments) -> keras.Model:
    """`model` with `operation` appended to its description's builder record, so a saved model
    says how it was made (the builder alone cannot rebuild a morphed model)."""
    if isinstance(model, DescribedModel):
        builder = dict(model.description.builder or {})
        builder["morphs"] = [*builder.get("morphs", []), {"operation": operation, **arguments}]
        model.description = dataclasses.replace(model.description, builder=builder)
    return model


def channel_count(tensor, operation: str, layer: str) -> int:
    channels = tensor.shape[-1]
    if channels is None:
        raise UserError(f"{operation}: the output of {layer!r} has no static channel count")
    return int(channels)
