"""`function_difference`: how far a morphed model is from the function of the model it came from."""

from __future__ import annotations

import keras
import numpy as np


def function_difference(original: keras.Model, morphed: keras.Model, *, factor: int = 1,
                        samples: int = 4, side: int = 256, seed: int = 0) -> float:
    """The largest absolute difference between every output of `original` and of `morphed`
    (and between their "logits" layers, where both have one) on random images in [0, 1].

    Args:
        original: the model before the morphs.
        morphed: the model after them.
        factor: `morphed` takes `factor`-times larger images; `original` gets them area-
            downsampled (what `to_resolution` preserves).
        samples: how many images.
        side: the image side of `original` where its input size is not fixed.
        seed: draws the images.
    """
    shape = tuple(original.inputs[0].shape[1:])
    height, width = (dim or side for dim in shape[:2])
    rng = np.random.default_rng(seed)
    images = rng.random((samples, height * factor, width * factor, shape[2]), np.float32)
    small = images.reshape(samples, height, factor, width, factor, shape[2]).mean(axis=(2, 4))
    before, after = _outputs(original, small), _outputs(morphed, images)
    return max(float(np.abs(np.asarray(after[name], np.float64) -
                            np.asarray(before[name], np.float64)).max())
               for name in before if name in after and
               np.shape(before[name]) == np.shape(after[name]))


def _outputs(model: keras.Model, images: np.ndarray) -> dict:
    outputs = dict(model.output) if isinstance(model.output, dict) else {"output": model.output}
    if any(layer.name == "logits" for layer in model.layers):
        outputs["logits"] = model.get_layer("logits").output
    return keras.Model(model.input, outputs).predict(images, verbose=0)
