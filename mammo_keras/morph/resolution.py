"""`to_resolution`: a trained network made to take k times larger images, same function at first.

The front added before the model's input:

    image (N, kH, kW, C)
      -> [Conv2D 3x3 C -> width, identity on the first C channels, new ones NetMorph-widened
          -> P-activation phi_a at a = 1] x depth         (the deepened high-resolution layers)
      -> Conv2D k x k, stride k, C -> C, each output the mean of its k x k block
                                                         ("morph_downsample", trainable)
      -> the model as it was

At initialisation the front is exactly area downsampling by k (a box filter, the
anti-aliasing of `tf.image.resize(method="area")` for an integer factor), so the new model's
output on an image is the old model's on that image downsampled. Training then lets the
front learn high-resolution features the downsampling threw away. The front is built with
this package's own `deepen` and `widen`, so it is exact for the same reasons they are.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from mammo_keras.compat import producing_operation
from mammo_keras.errors import UserError
from mammo_keras.models.description import DescribedModel, describe
from mammo_keras.morph.deepen import deepen
from mammo_keras.morph.graph import Surgery, functional, rebuild, record_morph
from mammo_keras.morph.widen import widen

DOWNSAMPLE_LAYER = "morph_downsample"
FRONT_PREFIX = "morph_front"


def to_resolution(model: keras.Model, size: int | Sequence[int], *, factor: int | None = None,
                  front_width: int = 8, front_depth: int = 1, kernel_size: int = 3,
                  activation="relu", seed: int = 0) -> keras.Model:
    """`model` behind a front that takes images `factor` times larger on each side.

    Args:
        model: a functional model with one (N, H, W, C) input.
        size: the new input size S (square) or (height, width), an integer multiple of the
            model's input size.
        factor: the multiple, needed only when the model's input size is not fixed.
        front_width: channels of the high-resolution layers (at least C).
        front_depth: how many high-resolution layers (0: the downsampling layer alone).
        kernel_size: their kernel size (odd).
        activation: phi of their P-activations.
        seed: initialises the new channels of the high-resolution layers.

    Returns:
        A new model with input (N, height, width, C) whose output at initialisation equals
        `model` on the image area-downsampled by `factor` (float32 round-off aside); a
        `DescribedModel` records the new image size and the morph.
    """
    model = functional(model, "to_resolution")
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise UserError(f"to_resolution: model {model.name!r} needs one (N, H, W, C) input")
    shape = tuple(model.inputs[0].shape[1:])
    new_size = (int(size),) * 2 if np.isscalar(size) else tuple(int(s) for s in size)
    factor = _factor(shape[:2], new_size, factor)
    channels = int(shape[2])
    if front_width < channels:
        raise UserError(f"to_resolution: front_width {front_width} is below the input's "
                        f"{channels} channels")
    input_name = producing_operation(model.inputs[0]).name

    def downsample(x):
        layer = keras.layers.Conv2D(channels, factor, strides=factor, use_bias=False,
                                    name=DOWNSAMPLE_LAYER)
        y = layer(x)
        box = np.zeros((factor, factor, channels, channels), "float32")
        box[:, :] = np.eye(channels, dtype="float32") / factor ** 2
        layer.set_weights([box])
        return y

    morphed = rebuild(model, Surgery(after={input_name: downsample},
                                     input_shape=(*new_size, channels)))
    previous = input_name
    for level in range(1, front_depth + 1):
        prefix = f"{FRONT_PREFIX}{level}"
        morphed = deepen(morphed, previous, kernel_size=kernel_size, activation=activation,
                         name=prefix)
        if int(morphed.get_layer(f"{prefix}_conv").output.shape[-1]) < front_width:
            morphed = widen(morphed, f"{prefix}_conv", front_width, method="netmorph",
                            seed=seed + level)
        previous = f"{prefix}_act"
    if isinstance(morphed, DescribedModel):  # one record of this morph, not of its parts
        describe(morphed, builder=model.description.builder,
                 **({"image_size": new_size[0]} if new_size[0] == new_size[1] else {}))
    return record_morph(morphed, "to_resolution", size=list(new_size), factor=factor,
                        front_width=front_width, front_depth=front_depth,
                        kernel_size=kernel_size, seed=seed)


def _factor(old: tuple, new: tuple, factor: int | None) -> int:
    if None in old:
        if factor is None:
            raise UserError("to_resolution: the model's input size is not fixed; pass factor")
        return int(factor)
    ratios = {n / o for n, o in zip(new, old)}
    if len(ratios) != 1 or not float(next(iter(ratios))).is_integer() or \
            next(iter(ratios)) < 2:
        raise UserError(f"to_resolution: {new[0]}x{new[1]} is not an integer multiple (2 or "
                        f"more, the same on both sides) of the model's {old[0]}x{old[1]}")
    found = int(next(iter(ratios)))
    if factor is not None and factor != found:
        raise UserError(f"to_resolution: factor {factor} does not match {old} -> {new}")
    return found
