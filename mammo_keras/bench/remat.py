"""Segment rematerialisation for the resolution benchmark (TensorFlow backend).

`keras.RematScope` wraps each layer call in `tf.recompute_grad`, which on the TensorFlow
backend refuses layers called with keyword arguments in graph mode (BatchNormalization and
Dropout get `training=`), and a layer's input is kept for its own recomputation anyway, so
per-layer recomputation cannot lower a plain chain's memory. What does is recomputing whole
stretches: only the tensors at the cuts between stretches are kept through the forward pass,
and each stretch's activations live only while its gradient is computed.

`rematerialized(model)` cuts a functional model at its feature-pyramid levels (the last
tensor at each stride, where every path of a ConvNeXt or InceptionV3 stage meets) and runs
each stretch under `tf.recompute_grad`. The stretches share the model's layers and weights.
BatchNormalization's moving statistics are updated again during the recomputation, so this
is for measuring memory and speed, not for training a model to keep.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mammo_keras.compat import producing_operation
from mammo_keras.models.backbones import feature_pyramid


class Recomputed(keras.layers.Layer):
    """Runs `segment` (a functional model) with its activations recomputed for the gradient."""

    def __init__(self, segment: keras.Model, **kwargs):
        super().__init__(name=f"recomputed_{segment.name}", **kwargs)
        self.segment = segment

    def call(self, inputs, training=None):
        segment = self.segment

        @tf.recompute_grad
        def forward(x):
            return segment(x, training=training)

        return forward(inputs)

    def compute_output_shape(self, input_shape):
        return self.segment.compute_output_shape(input_shape)


def _stretch(model: keras.Model, start, end, name: str) -> keras.Model | None:
    """The part of `model` from tensor `start` to tensor `end` as a model of its own (sharing
    layers), or None when other tensors than `start` reach it (not a cut)."""
    start_layer = producing_operation(start).name
    end_layer = producing_operation(end).name
    fresh = keras.Input(shape=tuple(start.shape[1:]), dtype=start.dtype)
    recorded = {}

    def call_function(layer, *args, **kwargs):
        if layer.name == start_layer:
            return fresh
        outputs = layer(*args, **kwargs)
        if layer.name == end_layer:
            recorded["end"] = outputs
        return outputs

    try:  # the clone's own outputs hang on `fresh`, not its input: Keras refuses that model
        keras.models.clone_model(model, clone_function=lambda layer: layer,
                                 call_function=call_function)
    except ValueError:
        pass
    if "end" not in recorded:
        return None
    try:
        return keras.Model(fresh, recorded["end"], name=name)
    except ValueError:
        return None


def rematerialized(model: keras.Model) -> keras.Model:
    """`model` (one image input, one output) with each stretch between its pyramid levels
    recomputed in the backward pass; same layers, same weights."""
    cuts = list(feature_pyramid(model).values())
    segments, start = [], model.inputs[0]
    for index, cut in enumerate(cuts):
        if start is model.inputs[0]:
            stretch = keras.Model(start, cut, name=f"stretch{index}")
        else:
            stretch = _stretch(model, start, cut, f"stretch{index}")
        if stretch is not None:
            segments.append(stretch)
            start = cut
    tail = _stretch(model, start, model.outputs[0], "head") if segments else None
    if tail is None:
        raise ValueError(f"model {model.name!r}: no cut between its pyramid levels")
    x = inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name="image")
    for segment in segments:
        x = Recomputed(segment)(x)
    return keras.Model(inputs, tail(x), name=f"{model.name}_remat")
