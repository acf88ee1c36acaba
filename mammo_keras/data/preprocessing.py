"""Mammogram preprocessing in TensorFlow ops: one implementation for training, prediction and export.

    image (H, W) in [0, 1]
      -> the breast, as breast vs background (`mammo_keras.data.breast_mask`: a threshold
         just above the background's level, labels and film edges set aside, the largest
         connected component)
      -> flip so the chest wall is on the left: by the laterality when it is known, else
         by the breast's shape (tallest at the chest wall)
      -> breast crop: the bounding box of the breast, plus a margin
      -> optional intensity window (quantiles of the breast's own pixels; background 0)
         and CLAHE
      -> aspect-preserving resize, zero padding right / bottom -> (size, size)

Everything is traceable by `tf.function` (dynamic H and W), so an exported
SavedModel runs exactly the code the training pipeline ran. The crop and flip
are returned as a `geometry` vector, so masks can follow the image
(`apply_geometry`) and heat-maps can be mapped back onto the original film.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mammo_keras.errors import UserError
from mammo_keras.data.breast_mask import breast_mask, breast_masks

# Less of the image than this is breast: none was found (an icon, noise, a page of text), and
# the data pipeline skips the file rather than classify it.
MIN_BREAST_FRACTION = 0.01
# geometry vector: [flipped (0/1), top, left, height, width] in original pixels
GEOMETRY_FIELDS = ("flipped", "top", "left", "height", "width")
# The options of `preprocess` a model is trained with and must be served with.
PREPROCESSING_DEFAULTS = {"crop": True, "flip": True, "window": False, "equalize": False}


def preprocessing_options(options: dict | None = None) -> dict:
    """`PREPROCESSING_DEFAULTS` updated by `options` (booleans); unknown keys are an error.

    >>> preprocessing_options({"window": True})
    {'crop': True, 'flip': True, 'window': True, 'equalize': False}
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(PREPROCESSING_DEFAULTS))
    if unknown:
        raise UserError(f"unknown preprocessing option(s) {unknown}; valid: "
                         f"{list(PREPROCESSING_DEFAULTS)}")
    return {key: bool(options.get(key, default)) for key, default in PREPROCESSING_DEFAULTS.items()}


def chest_wall_on_right(mask: tf.Tensor) -> tf.Tensor:
    """Whether the chest wall of a breast mask (S, S) is on the right (scalar bool).

    The breast is tallest at the chest wall and narrows towards the nipple: compare the
    mean column height of the first and last eighths of the breast's columns (ties: the
    half holding more of the breast). Unlike "the half with more breast", this holds for
    a narrow breast in the middle of a padded film and for one that fills the image.
    """
    heights = tf.reduce_sum(tf.cast(mask, tf.float32), axis=0)
    columns = tf.where(heights > 0)[:, 0]

    def by_shape():
        first, last = tf.reduce_min(columns), tf.reduce_max(columns) + 1
        band = tf.maximum((last - first) // 8, 1)
        left = tf.reduce_mean(heights[first:first + band])
        right = tf.reduce_mean(heights[last - band:last])
        half = tf.shape(heights, out_type=tf.int64)[0] // 2
        more_on_right = tf.reduce_sum(heights[half:]) > tf.reduce_sum(heights[:half])
        return tf.where(tf.equal(left, right), more_on_right, right > left)

    return tf.cond(tf.size(columns) > 0, by_shape, lambda: tf.constant(False))


def geometry_of_mask(mask: tf.Tensor, image_shape: tf.Tensor, margin: float = 0.02,
                     laterality=None) -> tf.Tensor:
    """The crop of a breast mask on the analysis grid: [flipped, top, left, height, width].

    Args:
        mask: (S, S) bool, the breast (`breast_mask`).
        image_shape: (H, W) of the original image.
        margin: added around the breast's bounding box, as a fraction of the image size.
        laterality: "L" / "R" decides the flip (the chest wall goes left); None, "" or
            an unknown value: decided by `chest_wall_on_right`.
            A scalar string tensor works too.

    The box is in original pixels, in the coordinates of the *flipped* image when
    `flipped` is 1; a blank image keeps the whole image.
    """
    # one path for a Python string, None and a string tensor: "R" flips, "L" does not,
    # anything else leaves it to the breast's shape
    side = tf.convert_to_tensor("" if laterality is None else laterality, tf.string)
    side = tf.strings.upper(tf.strings.substr(tf.strings.strip(side), 0, 1))
    flipped = tf.where(tf.equal(side, "R"), True,
                       tf.where(tf.equal(side, "L"), False, chest_wall_on_right(mask)))
    mask = tf.cond(flipped, lambda: tf.reverse(mask, [1]), lambda: mask)
    rows = tf.where(tf.reduce_any(mask, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(mask, axis=0))[:, 0]
    empty = tf.equal(tf.size(rows), 0)
    height, width = tf.cast(image_shape[0], tf.float32), tf.cast(image_shape[1], tf.float32)
    extent = tf.cast(tf.shape(mask)[1], tf.float32)

    def box():
        top = tf.cast(tf.reduce_min(rows), tf.float32) / extent - margin
        bottom = tf.cast(tf.reduce_max(rows) + 1, tf.float32) / extent + margin
        left = tf.cast(tf.reduce_min(cols), tf.float32) / extent - margin
        right = tf.cast(tf.reduce_max(cols) + 1, tf.float32) / extent + margin
        top, left = tf.floor(tf.maximum(top, 0.0) * height), tf.floor(tf.maximum(left, 0.0) * width)
        bottom = tf.math.ceil(tf.minimum(bottom, 1.0) * height)
        right = tf.math.ceil(tf.minimum(right, 1.0) * width)
        return tf.stack([top, left, bottom - top, right - left])

    crop = tf.cond(empty, lambda: tf.stack([0.0, 0.0, height, width]), box)
    return tf.concat([[tf.cast(flipped, tf.float32)], crop], axis=0)


def breast_geometry(image: tf.Tensor, margin: float = 0.02, laterality=None) -> tf.Tensor:
    """Where the breast is: [flipped, top, left, height, width] (float32, original pixels).

    Args:
        image: (H, W) or (H, W, 1) float in [0, 1], bright = dense.
        margin: added around the crop, as a fraction of the image size.
        laterality: "L" / "R" when known (it decides the flip), else None.

    The crop box is in the coordinates of the *flipped* image when `flipped` is 1.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    image = tf.reshape(image, tf.shape(image)[:2])
    return geometry_of_mask(breast_mask(image), tf.shape(image), margin, laterality)


def crop_box_in_original(geometry, shape) -> tuple[float, float, float, float]:
    """The crop of a geometry as (top, left, bottom, right) in the *unflipped* image of
    `shape` (H, W): where to draw it on the mammogram as it was read.

    >>> crop_box_in_original([1, 10, 20, 100, 50], (200, 160))
    (10.0, 90.0, 110.0, 140.0)
    """
    flipped, top, left, height, width = (float(v) for v in np.asarray(geometry))
    if flipped > 0.5:
        left = float(shape[1]) - left - width
    return top, left, top + height, left + width


def apply_geometry(image: tf.Tensor, geometry: tf.Tensor, size: int,
                   method: str = "area") -> tf.Tensor:
    """Flip, crop, resize (aspect kept) and pad (right / bottom) an (H, W[, C]) image to (size, size, C).

    Use method "nearest" for masks so they stay binary.
    """
    image = image if image.shape.rank == 3 else image[..., None]
    image = tf.cond(geometry[0] > 0.5, lambda: tf.reverse(image, [1]), lambda: image)
    top, left, height, width = (tf.cast(geometry[i], tf.int32) for i in range(1, 5))
    image = tf.image.crop_to_bounding_box(image, top, left, height, width)
    scale = tf.cast(size, tf.float32) / tf.cast(tf.maximum(height, width), tf.float32)
    new_height = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method=method,
                              antialias=method != "nearest")
    resized = tf.cast(resized, image.dtype)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, size, size)
    return tf.ensure_shape(padded, [size, size, image.shape[-1]])


def invert_geometry(image: tf.Tensor, geometry: tf.Tensor, shape) -> tf.Tensor:
    """The inverse of `apply_geometry`: a (size, size[, C]) map back onto the original (H, W[, C]).

    Drops the padding, resizes (bilinear) to the crop box, places it in a zero image of
    `shape` = (H, W) (integers or a tensor) and undoes the flip. Used to draw heat-maps and
    masks on the uncropped mammogram.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    image = image if image.shape.rank == 3 else image[..., None]
    size = tf.shape(image)[0]
    top, left, height, width = (tf.cast(geometry[i], tf.int32) for i in range(1, 5))
    scale = tf.cast(size, tf.float32) / tf.cast(tf.maximum(height, width), tf.float32)
    new_height = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
    content = image[:new_height, :new_width]
    restored = tf.image.resize(content, tf.stack([height, width]), method="bilinear")
    full = tf.image.pad_to_bounding_box(restored, top, left, shape[0], shape[1])
    return tf.cond(geometry[0] > 0.5, lambda: tf.reverse(full, [1]), lambda: full)


def intensity_window(image: tf.Tensor, low: float = 0.005, high: float = 0.995,
                     breast: tf.Tensor | None = None) -> tf.Tensor:
    """Stretch the [low, high] quantiles of the breast's pixels onto [0, 1].

    Args:
        image: (H, W[, 1]) float in [0, 1].
        breast: a boolean mask of the image's shape; the pixels outside it become 0.
            Without one, the non-zero pixels are the breast.

    A linear change of the intensities (another bit depth, gain or offset) gives the same
    output, so a model sees one intensity distribution from every source.
    """
    breast = image > 0.0 if breast is None else tf.cast(breast, tf.bool)
    values = tf.sort(tf.boolean_mask(image, breast))
    count = tf.shape(values)[0]

    def stretched():
        last = tf.cast(count - 1, tf.float32)
        lo = tf.gather(values, tf.cast(tf.round(low * last), tf.int32))
        hi = tf.gather(values, tf.cast(tf.round(high * last), tf.int32))
        scaled = tf.clip_by_value((image - lo) / tf.maximum(hi - lo, 1e-6), 0.0, 1.0)
        return tf.where(breast, scaled, 0.0)

    return tf.cond(count > 1, stretched, lambda: image)


def clahe(image: tf.Tensor, grid: int = 8, clip_limit: float = 2.0, bins: int = 256) -> tf.Tensor:
    """Contrast-limited adaptive histogram equalisation of an (H, W[, 1]) image in [0, 1].

    The image is cut into grid x grid tiles; each tile's histogram is clipped at
    clip_limit x its mean bin count, the excess spread evenly over all bins, and
    turned into a mapping (its cumulative distribution); each pixel takes the
    bilinear blend of the mappings of the four nearest tile centres. grid=1 and a
    very large clip_limit give global histogram equalisation.

    Returns the same shape, float32 in [0, 1].
    """
    shape = tf.shape(image)
    gray = tf.reshape(tf.convert_to_tensor(image, tf.float32), shape[:2])
    height, width = shape[0], shape[1]
    levels = tf.cast(tf.clip_by_value(tf.floor(gray * bins), 0, bins - 1), tf.int32)
    rows = tf.range(height)[:, None] * grid // height  # tile of each pixel
    cols = tf.range(width)[None, :] * grid // width
    tile = rows * grid + cols
    counts = tf.math.unsorted_segment_sum(tf.ones_like(gray), tile * bins + levels,
                                          grid * grid * bins)
    histograms = tf.reshape(counts, [grid * grid, bins])
    pixels = tf.reduce_sum(histograms, axis=1, keepdims=True)
    limit = clip_limit * pixels / bins
    excess = tf.reduce_sum(tf.nn.relu(histograms - limit), axis=1, keepdims=True)
    clipped = tf.minimum(histograms, limit) + excess / bins
    mappings = tf.reshape(tf.cumsum(clipped, axis=1) / tf.maximum(pixels, 1.0), [-1])

    def axis_weights(length, index_range):
        centre = (tf.cast(index_range, tf.float32) + 0.5) * grid / tf.cast(length, tf.float32) - 0.5
        low = tf.clip_by_value(tf.floor(centre), 0, grid - 1)
        high = tf.minimum(low + 1, grid - 1)
        weight = tf.clip_by_value(centre - low, 0.0, 1.0)
        return tf.cast(low, tf.int32), tf.cast(high, tf.int32), weight

    row_low, row_high, row_weight = axis_weights(height, tf.range(height))
    col_low, col_high, col_weight = axis_weights(width, tf.range(width))

    def mapped(tile_rows, tile_cols):
        index = (tile_rows[:, None] * grid + tile_cols[None, :]) * bins + levels
        return tf.gather(mappings, index)

    top = mapped(row_low, col_low) * (1 - col_weight[None, :]) \
        + mapped(row_low, col_high) * col_weight[None, :]
    bottom = mapped(row_high, col_low) * (1 - col_weight[None, :]) \
        + mapped(row_high, col_high) * col_weight[None, :]
    result = top * (1 - row_weight[:, None]) + bottom * row_weight[:, None]
    return tf.reshape(tf.clip_by_value(result, 0.0, 1.0), shape)


def preprocess(image: tf.Tensor, size: int, *, crop: bool = True, flip: bool = True,
               window: bool = False, equalize: bool = False,
               laterality=None) -> tuple[tf.Tensor, tf.Tensor]:
    """The preprocessing of mammo-keras. Returns (image (size, size, 1) float32 in [0, 1], geometry).

    Args:
        image: (H, W) or (H, W, 1) float in [0, 1] at full resolution (from `read_image`).
        size: side of the square output.
        crop: crop to the breast (removes background, labels and markers).
        flip: flip so that the chest wall is on the left.
        window: stretch the 0.5-99.5 % intensity quantiles of the breast's own pixels
            onto [0, 1] and set the background to 0 (the per-image intensity
            normalisation: the same for every bit depth, gain and offset).
        equalize: CLAHE (8 x 8 tiles, clip limit 2) on the output, after the window;
            the background stays 0.
        laterality: "L" / "R" when known (DICOM tags, file name, dataset); it decides the
            flip. None / "": decided from the pixels. A scalar string tensor works too.

    Returns:
        (image, geometry): geometry is [flipped, top, left, height, width] in
        original pixels; pass it to `apply_geometry` to transform a mask the same way.
    """
    return preprocess_with_breast(image, size, crop=crop, flip=flip, window=window,
                                  equalize=equalize, laterality=laterality)[:2]


def preprocess_with_breast(image: tf.Tensor, size: int, *, crop: bool = True, flip: bool = True,
                           window: bool = False, equalize: bool = False, laterality=None
                           ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`preprocess`, and the share of the image the breast covers (scalar float32 in [0, 1],
    on the analysis grid): under `MIN_BREAST_FRACTION` no breast was found."""
    image = tf.convert_to_tensor(image, tf.float32)
    image = tf.reshape(image, tf.shape(image)[:2])
    mask, whole = breast_masks(image) if window else (breast_mask(image), None)
    breast_fraction = tf.reduce_mean(tf.cast(mask, tf.float32))
    geometry = geometry_of_mask(mask, tf.shape(image), laterality=laterality)
    shape = tf.cast(tf.shape(image), tf.float32)
    if not flip:  # keep the orientation; the box was found on the flipped image: mirror it
        left = tf.where(geometry[0] > 0.5, shape[1] - geometry[2] - geometry[4], geometry[2])
        geometry = tf.stack([0.0, geometry[1], left, geometry[3], geometry[4]])
    if not crop:
        geometry = tf.stack([geometry[0], 0.0, 0.0, shape[0], shape[1]])
    output = apply_geometry(image, geometry, size)
    if window:
        full_mask = tf.image.resize(tf.cast(whole, tf.uint8)[..., None], tf.shape(image),
                                    method="nearest")
        breast = apply_geometry(full_mask, geometry, size, method="nearest") > 0
        output = intensity_window(output, breast=breast)
    if equalize:
        output = tf.where(output > 0.0, clahe(output), 0.0)
    return output, geometry, breast_fraction
