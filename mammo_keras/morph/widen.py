"""Wider layers computing the same function: Net2Net's copies and NetMorph's zero outgoing weights.

A Conv2D or Dense layer gets more output units. Its output is followed through the layers
that act on each channel alone (batch normalisation, activations, pooling, depthwise
convolutions, dropout, concatenation) to the convolutions and dense layers that mix channels,
the consumers; every layer on the way is widened with it:

- "net2net" (Chen et al. 2016): each new unit copies a randomly chosen unit, per-channel
  parameters (BatchNorm's scale, shift and moving statistics, depthwise kernels) included,
  and a consumer's weights from a copied unit are split between its copies (equal parts,
  or with `split="random"` random parts summing to one, which breaks the copies' symmetry
  and is still exact: the copies carry the same activation until they are trained);
- "netmorph" (Wei et al. 2016): new units start from their layer's initialiser and their
  outgoing weights are zero.

A channel that reaches anything else (an addition, a layer normalisation, a flatten, a model
output) cannot be widened exactly; the error names that layer.
"""

from __future__ import annotations

import keras
import numpy as np

from mammo_keras.errors import UserError
from mammo_keras.layers.parametric_activation import ParametricActivation
from mammo_keras.morph.graph import (Surgery, channel_count, consumers, find_layer, functional,
                                     is_model_output, rebuild, record_morph)

METHODS = ("net2net", "netmorph")
SPLITS = ("equal", "random")
FRESH = -1  # a new unit that copies none (netmorph)

# layers that act on each channel alone and have no per-channel parameter
_CHANNEL_PASSTHROUGH = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
    ParametricActivation, keras.layers.Dropout, keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
    keras.layers.ZeroPadding2D, keras.layers.Cropping2D, keras.layers.UpSampling2D,
    keras.layers.Identity,
)


def widen(model: keras.Model, layer: str, width: int, *, method: str = "net2net",
          split: str = "equal", seed: int = 0) -> keras.Model:
    """`model` with Conv2D / Dense `layer` widened to `width` output units.

    Args:
        model: a functional model.
        layer: the layer to widen (a Conv2D with groups 1, or a Dense).
        width: its new number of units (more than it has).
        method: "net2net" (copies) or "netmorph" (new units, zero outgoing weights).
        split: net2net only: "equal" (outgoing weights divided by the number of copies)
            or "random" (random positive parts summing to one).
        seed: draws the copied units (net2net), the random parts and the new kernels.

    Returns:
        A new model computing the same function, float32 round-off aside.

    Raises:
        UserError: an unknown method, a width not above the current one, a layer of another
            kind, or a widened channel reaching a layer that mixes channels other than
            through a Conv2D / Dense (named in the message).
    """
    model = functional(model, "widen")
    if method not in METHODS:
        raise UserError(f"widen: method {method!r} is not one of {list(METHODS)}")
    if split not in SPLITS:
        raise UserError(f"widen: split {split!r} is not one of {list(SPLITS)}")
    target = find_layer(model, layer, "widen")
    if not _mixes_channels(target):
        raise UserError(f"widen: {layer!r} is a {type(target).__name__}; widen a Conv2D with "
                        "groups 1 or a Dense layer")
    units = channel_count(target.output, "widen", layer)
    if width <= units:
        raise UserError(f"widen: {layer!r} has {units} units; the new width {width} must be "
                        "larger")
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, units, width - units) if method == "net2net" \
        else np.full(width - units, FRESH)
    mapping = np.concatenate([np.arange(units), sources])
    per_channel, mixing = _follow(model, target, mapping)
    surgery = Surgery(configs={layer: {"units" if isinstance(target, keras.layers.Dense)
                                       else "filters": width}})
    surgery.weights[layer] = _selection_rule(mapping)
    for item, item_mapping in per_channel:
        if _grouped(item):
            surgery.configs[item.name] = {"filters": len(item_mapping),
                                          "groups": len(item_mapping)}
        surgery.weights[item.name] = _selection_rule(item_mapping)
    for item, item_mapping in mixing:
        surgery.weights[item.name] = _consumer_rule(item_mapping, split, rng)
    morphed = rebuild(model, surgery)
    return record_morph(morphed, "widen", layer=layer, width=width, method=method, split=split,
                        seed=seed)


def _mixes_channels(layer) -> bool:
    """A Conv2D with groups 1 or a Dense: a layer whose inputs are weighted per channel."""
    if isinstance(layer, keras.layers.Dense):
        return True
    return isinstance(layer, keras.layers.Conv2D) and layer.groups == 1 \
        and layer.data_format == "channels_last"


def _grouped(layer) -> bool:
    """A grouped Conv2D with one channel per group (ConvNeXt's "depthwise" convolutions)."""
    return isinstance(layer, keras.layers.Conv2D) and layer.groups > 1 \
        and layer.groups == layer.filters and layer.kernel.shape[-2] == 1


def _per_channel(layer) -> bool:
    """A layer with parameters of each channel alone (ChannelwiseConv2D is a grouped Conv2D)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.axis in (-1, len(layer.input.shape) - 1)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return layer.depth_multiplier == 1
    return _grouped(layer)


def _follow(model: keras.Model, target, mapping: np.ndarray) -> tuple[list, list]:
    """The per-channel layers and the consumers the widened channels reach, each with the
    channel mapping of its input (entry j: the original channel that channel j copies)."""
    mappings = {id(target.output): mapping}
    pending = [target.output]
    per_channel, mixing, seen = [], [], set()
    while pending:
        tensor = pending.pop(0)
        if is_model_output(model, tensor):
            raise UserError(f"widen: the widened channels reach the model output; widen a "
                            f"layer inside the network ({target.name!r} is too late)")
        for layer in consumers(model, tensor):
            if id(layer) in seen:
                raise UserError(f"widen: the widened channels of {target.name!r} reach "
                                f"{layer.name!r} twice; widen another layer")
            seen.add(id(layer))
            current = mappings[id(tensor)]
            if _mixes_channels(layer):
                mixing.append((layer, current))
                continue
            if _per_channel(layer):
                per_channel.append((layer, current))
                out = current
            elif isinstance(layer, _CHANNEL_PASSTHROUGH):
                out = current
            elif isinstance(layer, keras.layers.Concatenate) and \
                    layer.axis in (-1, len(tensor.shape) - 1):
                out = _concatenated(layer, mappings)
            else:
                raise UserError(
                    f"widen: the channels of {target.name!r} reach {layer.name!r} "
                    f"({type(layer).__name__}), which combines channels in a way no exact "
                    "widening keeps; widen a layer whose output reaches only per-channel "
                    "layers, concatenations, Conv2D and Dense layers")
            mappings[id(layer.output)] = out
            pending.append(layer.output)
    return per_channel, mixing


def _concatenated(layer, mappings: dict) -> np.ndarray:
    parts, offset = [], 0
    for tensor in layer.input:
        count = int(tensor.shape[-1])
        part = mappings.get(id(tensor), np.arange(count))
        parts.append(np.where(part == FRESH, FRESH, part + offset))
        offset += count
    return np.concatenate(parts)


def _selection_rule(mapping: np.ndarray):
    """Weights of a widened layer or a per-channel layer after it: copies of the mapped channels
    on the one axis whose size changed; fresh channels keep the new layer's initialisation."""

    def rule(old, new):
        values = []
        for old_weight, new_weight in zip(old.get_weights(), new.get_weights()):
            changed = [axis for axis in range(old_weight.ndim)
                       if old_weight.shape[axis] != new_weight.shape[axis]]
            values.append(_take(old_weight, new_weight, mapping, axis=changed[0])
                          if changed else old_weight)
        return values

    return rule


def _take(old: np.ndarray, new: np.ndarray, mapping: np.ndarray, axis: int) -> np.ndarray:
    taken = np.take(old, np.maximum(mapping, 0), axis=axis)
    fresh = np.expand_dims(mapping == FRESH, [a for a in range(old.ndim)
                                              if a != axis % old.ndim])
    return np.where(fresh, new, taken)


def _consumer_rule(mapping: np.ndarray, split: str, rng: np.random.Generator):
    """A consumer's weights: rows of copied channels share the original row (parts summing
    to one), rows of fresh channels are zero; everything else is kept."""

    def rule(old, new):
        kernel, *rest = old.get_weights()
        axis = kernel.ndim - 2  # (..., in, out): the input-channel axis
        outputs = kernel.shape[-1]
        parts = np.zeros((len(mapping), outputs))
        for channel in np.unique(mapping[mapping != FRESH]):
            rows = np.flatnonzero(mapping == channel)
            parts[rows] = 1.0 / len(rows) if split == "equal" or len(rows) == 1 else \
                rng.dirichlet(np.ones(len(rows)), size=outputs).T
        taken = np.take(kernel, np.maximum(mapping, 0), axis=axis)
        return [taken * parts.reshape((1,) * axis + parts.shape), *rest]

    return rule
