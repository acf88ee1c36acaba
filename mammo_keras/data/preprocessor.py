"""`MammogramPreprocessor`: one film -> model input, and model-grid maps -> the film.

The one home of how a model sees a mammogram (keras-hub's `ImageClassifierPreprocessor` is the
anchor): its options (crop, flip, window, CLAHE) and input side, a forward pass
(image, laterality) -> (input, geometry), the same geometry applied to a mask, and the inverse
that puts a map on the model's grid (a heat-map, a predicted mask) back onto the original film,
and the input checks the readers make, inside a graph (`with_status`: a status per film, which
the SavedModel's raw signatures return).
Its config is what a model's description stores (`ModelDescription.preprocessor()`), so the
pipeline, the predictor, explanation, the SavedModel signatures and the dashboard all build
the same object from the model they serve.

    >>> import numpy as np
    >>> preprocessor = MammogramPreprocessor(64, window=True)
    >>> preprocessor.get_config()
    {'image_size': 64, 'crop': True, 'flip': True, 'window': True, 'equalize': False}
    >>> film = np.zeros((120, 90), np.float32); film[10:110, :60] = 0.6
    >>> image, geometry = preprocessor(film, "L")
    >>> back = preprocessor.invert(np.ones((64, 64, 1)), geometry, film.shape)
    >>> tuple(image.shape), tuple(back.shape)
    ((64, 64, 1), (120, 90, 1))
"""

from __future__ import annotations

import tensorflow as tf

from mammo_keras.data.limits import MIN_SIDE
from mammo_keras.data.preprocessing import (MIN_BREAST_FRACTION, apply_geometry,
                                            crop_box_in_original, invert_geometry,
                                            preprocess_with_breast, preprocessing_options)


STATUS_OK = "ok"  # a film the model may answer


def guarded(image) -> tuple[tf.Tensor, tf.Tensor]:
    """(an image the preprocessing can run on, the status of the input) for one raw film
    (H, W): the reader's guards inside the graph. A status other than "ok" names what is
    wrong (smaller than MIN_SIDE px, values not finite or outside [0, 1] (raw detector
    values), blank); the image is then made safe to preprocess (padded, cleaned) and its
    answer is refused (`export.savedmodel.refused_answers`)."""
    image = tf.convert_to_tensor(image, tf.float32)
    finite = tf.math.is_finite(image)
    clean = tf.where(finite, image, 0.0)
    low, high = tf.reduce_min(clean), tf.reduce_max(clean)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    status = tf.constant(STATUS_OK)
    status = tf.where(high <= low, "blank image: one value everywhere", status)
    status = tf.where((low < 0.0) | (high > 1.0), "values outside [0, 1]: raw detector values? "
                      "scale the film to [0, 1] as read_image does", status)
    status = tf.where(tf.reduce_all(finite), status, "values that are not finite numbers")
    status = tf.where(tf.minimum(height, width) < MIN_SIDE,
                      f"image smaller than {MIN_SIDE} px on a side: not a mammogram", status)
    padding = [[0, tf.maximum(MIN_SIDE - height, 0)], [0, tf.maximum(MIN_SIDE - width, 0)]]
    return tf.pad(tf.clip_by_value(clean, 0.0, 1.0), padding), status


class MammogramPreprocessor:
    """Crop, flip, window / CLAHE and resize a film to (S, S, 1) in [0, 1], and back.

    Args:
        image_size: side S of the model's square input.
        **options: crop, flip, window, equalize: the `mammo_keras.data.preprocess` options
            (defaults `PREPROCESSING_DEFAULTS`; another name is refused).
    """

    def __init__(self, image_size: int, **options: bool):
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.image_size = image_size
        self.options = preprocessing_options(options)

    def __call__(self, image, laterality=None) -> tuple[tf.Tensor, tf.Tensor]:
        """(input (S, S, 1) float32 in [0, 1], geometry [flipped, top, left, height, width])
        of one film (H, W) or (H, W, 1) in [0, 1]; `laterality` "L" / "R" / None decides the
        flip (a scalar string tensor works too, inside tf.data and SavedModel signatures)."""
        return self.with_breast(image, laterality)[:2]

    def with_breast(self, image, laterality=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`__call__` and the share of the film that is breast (under
        `MIN_BREAST_FRACTION`: no breast was found)."""
        return preprocess_with_breast(image, self.image_size, laterality=laterality,
                                      **self.options)

    def with_status(self, image, laterality=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`__call__` on a film checked first (`guarded`, what the readers refuse, inside a
        graph), and its status: "ok", or what is wrong with it, "no breast found" included
        when the preprocessing crops (under `MIN_BREAST_FRACTION` of the film is breast)."""
        safe, status = guarded(image)
        processed, geometry, breast = self.with_breast(safe, laterality)
        if self.options.get("crop", True):
            status = tf.where(tf.equal(status, STATUS_OK) & (breast < MIN_BREAST_FRACTION),
                              "no breast found", status)
        return processed, geometry, status

    def mask(self, mask, geometry) -> tf.Tensor:
        """A mask (H, W) of the film on the model's grid (S, S, 1), kept binary (nearest)."""
        return apply_geometry(tf.convert_to_tensor(mask), geometry, self.image_size,
                              method="nearest")

    def invert(self, grid_map, geometry, shape) -> tf.Tensor:
        """A map on the model's grid (S, S[, C]) back onto the film (H, W, C) of `shape`:
        padding dropped, resized to the crop, placed, the flip undone."""
        return invert_geometry(tf.cast(grid_map, tf.float32), geometry, shape)

    @staticmethod
    def crop_box(geometry, shape) -> tuple[float, float, float, float]:
        """(top, left, bottom, right) of the crop on the film as it was read."""
        return crop_box_in_original(geometry, shape)

    def get_config(self) -> dict:
        return {"image_size": self.image_size, **self.options}

    @classmethod
    def from_config(cls, config: dict) -> "MammogramPreprocessor":
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, MammogramPreprocessor) and \
            other.get_config() == self.get_config()

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in self.options.items())
        return f"MammogramPreprocessor({self.image_size}, {options})"
