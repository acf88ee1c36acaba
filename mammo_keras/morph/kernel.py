"""Larger kernels computing the same function: the old kernel zero-padded at the centre."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from mammo_keras.errors import UserError
from mammo_keras.morph.graph import Surgery, find_layer, functional, rebuild, record_morph


def grow_kernel(model: keras.Model, layer: str, kernel_size: int | Sequence[int]) -> keras.Model:
    """`model` with the kernel of convolution `layer` grown to `kernel_size`, zeros around.

    Args:
        model: a functional model.
        layer: a Conv2D (grouped ones included) or DepthwiseConv2D with "same" padding and
            stride 1, so that the larger kernel sees the same centred neighbourhood.
        kernel_size: the new size, an int or (h, w); each side grows by an even number (the
            old kernel sits in the middle: "same" padding adds half the growth each side).

    Returns:
        A new model computing the same function.
    """
    model = functional(model, "grow_kernel")
    conv = find_layer(model, layer, "grow_kernel")
    if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        raise UserError(f"grow_kernel: {layer!r} is a {type(conv).__name__}, not a Conv2D or "
                        "DepthwiseConv2D")
    if conv.padding != "same" or tuple(conv.strides) != (1, 1):
        raise UserError(f"grow_kernel: {layer!r} has padding {conv.padding!r} and stride "
                        f"{tuple(conv.strides)}; a grown kernel keeps the function only with "
                        "'same' padding and stride 1 (otherwise the output size or alignment "
                        "changes)")
    old = tuple(conv.kernel_size)
    new = (int(kernel_size),) * 2 if np.isscalar(kernel_size) else tuple(int(k) for k in
                                                                          kernel_size)
    growth = [n - o for n, o in zip(new, old)]
    if any(g < 0 or g % 2 for g in growth) or growth == [0, 0]:
        raise UserError(f"grow_kernel: {layer!r} has a {old[0]}x{old[1]} kernel; the new size "
                        f"{new[0]}x{new[1]} must be larger by an even number on each side")

    def padded(original, copy):
        kernel, *rest = original.get_weights()
        pad = [(g // 2, g // 2) for g in growth] + [(0, 0)] * (kernel.ndim - 2)
        return [np.pad(kernel, pad), *rest]

    morphed = rebuild(model, Surgery(configs={layer: {"kernel_size": new}},
                                     weights={layer: padded}))
    return record_morph(morphed, "grow_kernel", layer=layer, kernel_size=list(new))
