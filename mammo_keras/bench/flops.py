"""Floating-point operations of a Keras model's forward pass, counted from its layers.

Counts the layers that hold nearly all the arithmetic of a CNN: Conv2D (with groups),
DepthwiseConv2D and Dense (2 FLOPs per multiply-add, bias ignored), recursing into nested
models. Normalisation, activations and pooling are left out (a few % of a ConvNeXt). A
training step is taken as 3x the forward pass (forward + gradients of inputs and weights).

>>> import keras
>>> inputs = keras.Input((8, 8, 3))
>>> model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
>>> forward_flops(model) == 2 * 8 * 8 * 3 * 3 * 3 * 4
True
"""

from __future__ import annotations

import math

import keras

TRAIN_STEP_FACTOR = 3


def _positions(layer: keras.layers.Layer) -> int:
    """Positions the layer's kernel is applied at per example: the product of its output's
    middle dimensions (None, ..., C). A sublayer called inside another layer's `call` (e.g.
    the Dense layers of SEVector, on a pooled vector) has no symbolic output: 1 position."""
    try:
        shape = layer.output.shape
    except AttributeError:
        return 1
    return math.prod(int(d) for d in shape[1:-1])


def layer_flops(layer: keras.layers.Layer) -> int:
    """FLOPs of one call of `layer` on one example (0 for layers not counted)."""
    if isinstance(layer, keras.Model):
        return sum(layer_flops(inner) for inner in layer.layers)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, channels, multiplier = layer.kernel.shape
        return 2 * _positions(layer) * kh * kw * channels * multiplier
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, per_group, filters = layer.kernel.shape
        return 2 * _positions(layer) * kh * kw * per_group * filters
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        return 2 * _positions(layer) * fan_in * units
    return sum(layer_flops(inner) for inner in getattr(layer, "_layers", []) or [])


def forward_flops(model: keras.Model) -> int:
    """FLOPs of the forward pass of one example through `model` (a built functional model)."""
    return layer_flops(model)
