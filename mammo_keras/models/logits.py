"""Class logits of a model, found from its graph rather than from a layer's name.

The rule: a model's class probabilities come out of a `keras.layers.Softmax` (or an
`Activation("softmax")`) layer, and the logits are that layer's input. Classifiers
of mammo-keras end in Dense "logits" -> Softmax "predictions"; a zero-shot model
ends in its scaled image-text similarities -> Softmax; a U-Net's label head the same.
Models saved before this rule (a Dense layer with a softmax activation) still work:
the logits are that layer's pre-activation, recomputed from its kernel.

    >>> import keras, numpy as np
    >>> inputs = keras.Input((8,))
    >>> scores = keras.layers.Dense(3, name="scores")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Softmax()(scores))
    >>> both = with_logits(model)
    >>> out = both(np.ones((2, 8), "float32"))
    >>> sorted(out)
    ['logits', 'probabilities']
"""

from __future__ import annotations

import keras
from keras import ops

from mammo_keras.models.description import label_tensor


def _producer(model: keras.Model, tensor) -> keras.layers.Layer:
    """The layer of `model` whose output is `tensor`."""
    for layer in reversed(model.layers):
        try:
            outputs = layer.output
        except (AttributeError, ValueError):  # a layer called more than once has no .output
            continue
        if any(output is tensor for output in keras.tree.flatten(outputs)):
            return layer
    raise ValueError(f"model {model.name!r}: no layer produces its class output")


def _is_softmax(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return isinstance(layer, keras.layers.Activation) and \
        keras.activations.serialize(layer.activation) == "softmax"


def logits_source(model: keras.Model, label_output: str | None = None):
    """How to get the class logits: ("tensor", logits tensor) for a Softmax-ended model, or
    ("dense", the softmax Dense layer) for a model whose Dense applies the softmax itself.

    Raises:
        ValueError: the class output does not come from a softmax, so there are no logits
            to explain (end the model with `keras.layers.Softmax`).
    """
    layer = _producer(model, label_tensor(model, label_output))
    if _is_softmax(layer):
        return "tensor", layer.input
    if isinstance(layer, keras.layers.Dense) and \
            keras.activations.serialize(layer.activation) == "softmax":
        return "dense", layer
    raise ValueError(f"model {model.name!r}: its class output comes from {layer.name!r} "
                     f"({type(layer).__name__}), not a softmax; end the model with "
                     "keras.layers.Softmax so that its logits are known")


def logits_model(model: keras.Model, extra_outputs=(), label_output: str | None = None):
    """A function images -> (*extra_outputs, logits (N, K) float32) for `model`.

    `extra_outputs` are tensors of the model's graph (a feature map for Grad-CAM).
    The function is differentiable on every backend (a functional model inside).
    """
    kind, source = logits_source(model, label_output)
    extra = list(extra_outputs)
    if kind == "tensor":
        probe = keras.Model(model.inputs, extra + [source])

        def run(images, training=False):
            values = probe(images, training=training)
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            return (*values[:-1], ops.cast(values[-1], "float32"))
        return run
    dense = source
    probe = keras.Model(model.inputs, extra + [dense.input])

    def run_dense(images, training=False):
        values = probe(images, training=training)
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        kernel = ops.cast(dense.kernel, "float32")
        logits = ops.matmul(ops.cast(values[-1], "float32"), kernel)
        if dense.use_bias:
            logits = logits + ops.cast(dense.bias, "float32")
        return (*values[:-1], logits)
    return run_dense


def with_logits(model: keras.Model, label_output: str | None = None) -> keras.Model:
    """A model with outputs {"logits": (N, K), "probabilities": (N, K)} (keras-hub style).

    For Softmax-ended models (every model mammo-keras builds); an older model whose
    Dense layer applies the softmax raises ValueError here (use `logits_model`).
    """
    kind, source = logits_source(model, label_output)
    if kind != "tensor":
        raise ValueError(f"model {model.name!r} applies the softmax inside its Dense layer "
                         f"{source.name!r}; rebuild it with mammo_keras to get a logits output")
    return keras.Model(model.inputs, {"logits": source,
                                      "probabilities": label_tensor(model, label_output)},
                       name=f"{model.name}_with_logits")
