"""What every reader refuses: too many pixels (checked from the header, before decoding), too
few to be a mammogram, pixel values that are not finite, and blank images.

The pixel limit is `MAX_PIXELS` (100 megapixels: full-field mammograms are at most about
30), or the environment variable `MAMMO_KERAS_MAX_PIXELS` for every command and process
that a user starts:

    >>> check_pixel_count("big.dcm", 12000, 12000)
    Traceback (most recent call last):
    ...
    mammo_keras.data.errors.DataError: big.dcm: image of 12000 x 12000 px (144 megapixels) is over the limit of 100 megapixels (set MAMMO_KERAS_MAX_PIXELS to change it)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mammo_keras.data.errors import DataError
from mammo_keras.errors import UserError

MAX_PIXELS = 100_000_000
MIN_SIDE = 16  # px: smaller is an icon, never a mammogram (or lesion patch) to classify
_VARIABLE = "MAMMO_KERAS_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit in force: `MAMMO_KERAS_MAX_PIXELS` when set, else `MAX_PIXELS`."""
    text = os.environ.get(_VARIABLE)
    if not text:
        return MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        raise UserError(f"{_VARIABLE}={text!r} must be a number of pixels") from None
    if value < 1:
        raise UserError(f"{_VARIABLE}={text!r} must be positive")
    return value


def check_pixel_count(path: str | Path, rows: int, columns: int, frames: int = 1) -> None:
    """Refuse, before decoding, an image whose header declares more than `max_pixels()`."""
    rows, columns, frames = int(rows), int(columns), max(int(frames), 1)
    count, limit = rows * columns * frames, max_pixels()
    if count > limit:
        shape = f"{rows} x {columns} px" + (f" x {frames} frames" if frames > 1 else "")
        raise DataError(path, f"image of {shape} ({count / 1e6:.0f} megapixels) is over the "
                              f"limit of {limit / 1e6:g} megapixels (set {_VARIABLE} to "
                              "change it)")


def check_finite(image: np.ndarray, path: str | Path) -> np.ndarray:
    """`image` if every value is finite (a rescale can overflow); else a DataError."""
    if not np.isfinite(image).all():
        raise DataError(path, "pixel values are not finite numbers (NaN or infinity after "
                              "the file's rescale)")
    return image


def check_mammogram(image: np.ndarray, path: str | Path) -> np.ndarray:
    """`image` (H, W) if it can be a mammogram: at least MIN_SIDE px on each side, and more
    than two values (one value everywhere is blank; two is a mask or a label map, such as a
    16-bit PNG of 0 and 1 that would read as a black film); otherwise a DataError naming the
    problem. (Masks are exempt:
    a normal film's lesion mask is blank.)"""
    height, width = image.shape
    if min(height, width) < MIN_SIDE:
        raise DataError(path, f"image of {height} x {width} px is smaller than {MIN_SIDE} px on "
                              "a side: not a mammogram")
    if image.max() == image.min():
        raise DataError(path, f"blank image: every pixel is {float(image.flat[0]):.3g}")
    sample = np.unique(image[::7, ::7])  # a mammogram has hundreds of grey levels
    if sample.size <= 2 and np.unique(image).size == 2:
        low, high = np.unique(image)
        raise DataError(path, f"binary image (values {float(low):.3g} and {float(high):.3g} "
                              "only): a mask or a label map, not a mammogram")
    return image
