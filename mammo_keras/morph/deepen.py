"""Deeper networks computing the same function: identity layers and kernel factorisation.

- `deepen(model, after)`: an identity-initialised Conv2D (or Dense) and a P-activation at
  a = 1 after a named layer (Net2Net's deeper operation made exact for any activation by
  Network Morphism's phi_a).
- `deepen_kernel(model, layer)`: NetMorph's deepening of a general kernel: the convolution
  (or dense layer) G becomes F1, a P-activation and F2 with G = F2 * F1
  (`mammo_keras.morph.factorize`).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np

from mammo_keras.errors import UserError
from mammo_keras.layers.parametric_activation import ParametricActivation
from mammo_keras.morph.factorize import factorize, smallest_channels
from mammo_keras.morph.graph import (Surgery, channel_count, find_layer, functional, rebuild,
                                     record_morph, unused_name)


def deepen(model: keras.Model, after: str, *, kernel_size: int = 3, activation="relu",
           name: str | None = None) -> keras.Model:
    """`model` with an identity layer and a P-activation inserted after layer `after`.

    Args:
        model: a functional model (a classifier, the HDS U-Net, a morphed model).
        after: the layer (or input) whose output the new layers take; its output must be
            (N, H, W, C) (a Conv2D of `kernel_size`, "same" padding) or (N, C) (a Dense).
        kernel_size: the new convolution's size (odd, so its identity is centred).
        activation: phi of the P-activation phi_a(x) = (1 - a) phi(x) + a x, a = 1 at first.
        name: prefix of the new layers' names ("<name>_conv" / "_dense", "<name>_act");
            default "<after>_deeper".

    Returns:
        A new model computing the same function (the identity kernel, a zero bias, a = 1).
    """
    model = functional(model, "deepen")
    tensor = find_layer(model, after, "deepen").output
    if isinstance(tensor, (list, tuple, dict)):
        raise UserError(f"deepen: layer {after!r} has several outputs; name a layer with one")
    channels = channel_count(tensor, "deepen", after)
    if len(tensor.shape) == 4 and kernel_size % 2 != 1:
        raise UserError(f"deepen: kernel_size {kernel_size} is even; an identity kernel needs "
                        "a centre (use an odd size)")
    if len(tensor.shape) not in (2, 4):
        raise UserError(f"deepen: the output of {after!r} is {tuple(tensor.shape)}; deepen "
                        "takes (N, H, W, C) or (N, C) outputs")
    prefix = name or unused_name(model, f"{after}_deeper")

    def insert(x):
        if len(x.shape) == 4:
            layer = keras.layers.Conv2D(channels, kernel_size, padding="same",
                                        name=f"{prefix}_conv")
            identity = np.zeros((kernel_size, kernel_size, channels, channels), "float32")
            identity[kernel_size // 2, kernel_size // 2] = np.eye(channels)
        else:
            layer = keras.layers.Dense(channels, name=f"{prefix}_dense")
            identity = np.eye(channels, dtype="float32")
        y = layer(x)
        layer.set_weights([identity, np.zeros(channels, "float32")])
        return ParametricActivation(activation, name=f"{prefix}_act")(y)

    morphed = rebuild(model, Surgery(after={after: insert}))
    return record_morph(morphed, "deepen", after=after, kernel_size=kernel_size,
                        activation=_activation_name(activation), name=prefix)


def deepen_kernel(model: keras.Model, layer: str, *, kernel_sizes: Sequence[int] | None = None,
                  channels: int | None = None, activation="relu", seed: int = 0) -> keras.Model:
    """`model` with the Conv2D (or Dense) `layer` split into two and a P-activation between.

    G (K x K, C_in -> C_out) becomes F1 (k1 x k1, C_in -> C), phi_a at a = 1, and F2
    (k2 x k2, C -> C_out, G's bias and activation, G's name), k1 + k2 - 1 = K, F2 * F1 = G
    solved exactly (`mammo_keras.morph.factorize`). "same" padding becomes an explicit
    ZeroPadding2D before F1, and G's stride moves to F2, so the output is G's at every pixel.
    A Dense layer is the 1 x 1 case: W = F1 F2, exact when C >= min(C_in, C_out).

    Args:
        model: a functional model.
        layer: a Conv2D with groups 1 and dilation 1, or a Dense layer.
        kernel_sizes: (k1, k2); default (K // 2 + 1, K - K // 2): 2 and 2 for a 3 x 3.
        channels: C; default the fewest that give an exact solution.
        activation: phi of the P-activation between F1 and F2.
        seed: draws the factor that is not solved for.

    Raises:
        UserError: another kind of layer, a dilated or grouped convolution, "same" padding
            with a stride on an input of unknown size, or channels too few for an exact
            solution (the message states the condition).
    """
    model = functional(model, "deepen_kernel")
    original = find_layer(model, layer, "deepen_kernel")
    dense = isinstance(original, keras.layers.Dense)
    if not dense and (not isinstance(original, keras.layers.Conv2D) or original.groups != 1
                      or tuple(original.dilation_rate) != (1, 1)
                      or original.data_format != "channels_last"):
        raise UserError(f"deepen_kernel: {layer!r} is a {type(original).__name__}; it splits a "
                        "channels-last Conv2D with groups 1 and dilation 1, or a Dense layer")
    kernel = keras.ops.convert_to_numpy(original.kernel)
    kernel = kernel[None, None] if dense else kernel
    size = kernel.shape[:2]
    k1, k2 = _kernel_pair(size, kernel_sizes)
    middle = channels or smallest_channels(kernel.shape, k1, k2)
    f1, f2 = factorize(kernel, k1, k2, middle, np.random.default_rng(seed), where=repr(layer))
    bias = [keras.ops.convert_to_numpy(original.bias)] if original.use_bias else []
    padding = None if dense else _explicit_padding(original, size)

    def replacement(args, kwargs):
        x = args[0]
        if padding is not None:
            x = keras.layers.ZeroPadding2D(padding, name=f"{layer}_morph_pad")(x)
        if dense:
            first = keras.layers.Dense(middle, use_bias=False, name=f"{layer}_morph_first")
            second = keras.layers.Dense(kernel.shape[3], use_bias=original.use_bias,
                                        activation=original.activation, name=layer)
            f1_weights, f2_weights = f1[0, 0], f2[0, 0]
        else:
            first = keras.layers.Conv2D(middle, k1, use_bias=False, name=f"{layer}_morph_first")
            second = keras.layers.Conv2D(kernel.shape[3], k2, strides=original.strides,
                                         use_bias=original.use_bias,
                                         activation=original.activation, name=layer)
            f1_weights, f2_weights = f1, f2
        x = first(x)
        first.set_weights([f1_weights.astype("float32")])
        x = ParametricActivation(activation, name=f"{layer}_morph_act")(x)
        y = second(x)
        second.set_weights([f2_weights.astype("float32"), *bias])
        return y

    morphed = rebuild(model, Surgery(replace={layer: replacement}))
    return record_morph(morphed, "deepen_kernel", layer=layer, kernel_sizes=[k1, k2],
                        channels=middle, activation=_activation_name(activation), seed=seed)


def _kernel_pair(size: tuple, requested) -> tuple[tuple, tuple]:
    if requested is not None:
        k1, k2 = (int(value) for value in requested)
        return (k1, k1), (k2, k2)
    if size == (1, 1):
        return (1, 1), (1, 1)
    return tuple(s // 2 + 1 for s in size), tuple(s - s // 2 for s in size)


def _explicit_padding(conv: keras.layers.Conv2D, size: tuple):
    """The ZeroPadding2D argument reproducing G's "same" padding (None for "valid")."""
    if conv.padding == "valid":
        return None
    strides = tuple(conv.strides)
    if strides == (1, 1):
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in size)
    extent = conv.input.shape[1:3]
    if any(value is None for value in extent):
        raise UserError(f"deepen_kernel: {conv.name!r} has 'same' padding with stride "
                        f"{strides} on an input of unknown size; its padding depends on the size")
    padding = []
    for length, k, stride in zip(extent, size, strides):
        total = max((math.ceil(length / stride) - 1) * stride + k - length, 0)
        padding.append((total // 2, total - total // 2))
    return tuple(padding)


def _activation_name(activation) -> str:
    return activation if isinstance(activation, str) else getattr(activation, "__name__",
                                                                  str(activation))
