"""What each output of a model is, so export and explanation serve it without knowing its task.

A task declares the kind of each output it trains (`Task.output_kinds`); the trainer stores
them in the model's description (`ModelDescription.outputs`, name -> kind), and the
exporter and the explainer read them from there:

- "class_probabilities": (N, K) softmax over the description's class names; exported as
  "probabilities" (with "prediction" and "class_names"), explained by Grad-CAM.
- "mask": (N, S, S, 1) per-pixel probability in [0, 1] on the model's input grid (a lesion
  segmentation); exported under its own name and mapped back onto the uncropped image,
  written by `explain` beside the heat-map.

A model whose description names no outputs has one served output, its class
probabilities (the classifier family, and every model saved before outputs were named).
"""

from __future__ import annotations

import keras

from mammo_keras.errors import UserError
from mammo_keras.models.description import ModelDescription, label_tensor

CLASS_PROBABILITIES = "class_probabilities"
MASK = "mask"
KINDS = (CLASS_PROBABILITIES, MASK)
# The kind of each target `load_dataset` can give (`Task.target_names`).
TARGET_KINDS = {"label": CLASS_PROBABILITIES, "mask": MASK}
# Keys of the exported signatures that an output may not take as its name.
RESERVED = ("probabilities", "prediction", "class_names", "geometry", "images", "png")


def check_output_kinds(kinds: dict | None) -> dict | None:
    """`kinds` (output name -> kind) checked: known kinds, one class output at most.

    Raises:
        UserError: an unknown kind, a reserved name, or two class outputs.
    """
    if kinds is None:
        return None
    kinds = {str(name): str(kind) for name, kind in dict(kinds).items()}
    for name, kind in kinds.items():
        if kind not in KINDS:
            raise UserError(f"output {name!r}: unknown kind {kind!r}; choose one of {list(KINDS)}")
        if kind == MASK and name in RESERVED:
            raise UserError(f"mask output {name!r}: the name is taken by the exported "
                             f"signatures ({list(RESERVED)}); rename the output")
    if list(kinds.values()).count(CLASS_PROBABILITIES) > 1:
        raise UserError(f"outputs {kinds}: at most one output holds class probabilities")
    return kinds


def mask_outputs(model: keras.Model, description: ModelDescription) -> dict:
    """{name: (N, S, S, 1) tensor} of the outputs the description calls masks ({} for none).

    Raises:
        UserError: a named mask is not an output of the model, or is not one channel on
            the input's grid.
    """
    names = [name for name, kind in (description.outputs or {}).items() if kind == MASK]
    if not names:
        return {}
    output = model.output
    if not isinstance(output, dict):
        raise UserError(f"model {model.name!r}: its description names mask outputs {names} "
                         "but its outputs are not named (a dict)")
    size = tuple(model.inputs[0].shape[1:3])
    masks = {}
    for name in names:
        if name not in output:
            raise UserError(f"model {model.name!r} has no output {name!r}; it has "
                             f"{sorted(output)}")
        shape = tuple(output[name].shape)
        if len(shape) != 4 or shape[-1] != 1 or shape[1:3] != size:
            raise UserError(f"mask output {name!r} of {model.name!r} is {shape}; a mask is "
                             f"(N, {size[0]}, {size[1]}, 1) on the input's grid")
        masks[name] = output[name]
    return masks


def served_model(model: keras.Model, description: ModelDescription) -> keras.Model:
    """The part of `model` that is exported and explained: its input to its class
    probabilities, or to {"probabilities": (N, K), <mask name>: (N, S, S, 1), ...} when its
    description names mask outputs. Outputs of no declared kind (a deep-supervision exit,
    an embedding) are left out."""
    probabilities = label_tensor(model, description.label_output)
    masks = mask_outputs(model, description)
    if not masks:
        if probabilities is model.output:
            return model
        return keras.Model(model.inputs, probabilities, name=model.name)
    return keras.Model(model.inputs, {"probabilities": probabilities, **masks}, name=model.name)


def split_outputs(outputs) -> tuple:
    """(probabilities, {mask name: masks}) of what a `served_model` returns."""
    if isinstance(outputs, dict):
        masks = {name: value for name, value in outputs.items() if name != "probabilities"}
        return outputs["probabilities"], masks
    return outputs, {}
