"""Mammogram preprocessing in TensorFlow ops: one implementation for training, prediction and export.

    image (H, W) in [0, 1]
      -> foreground by Otsu's threshold on a downsampled copy, opened (thin strips removed)
      -> flip so the chest wall is on the left (the half holding more tissue)
      -> breast crop: the run of foreground columns that starts at the chest wall and
         the run of foreground rows around the widest row, plus a margin; labels and
         markers separated from the breast by background fall outside both runs
      -> optional intensity window (percentiles of the breast's pixels) and CLAHE
      -> aspect-preserving resize, zero padding right / bottom -> (size, size)

Everything is traceable by `tf.function` (dynamic H and W), so an exported
SavedModel runs exactly the code the training pipeline ran. The crop and flip
are returned as a `geometry` vector, so masks can follow the image
(`apply_geometry`) and heat-maps can be mapped back onto the original film.
"""

from __future__ import annotations

import tensorflow as tf

ANALYSIS_SIZE = 256  # side of the downsampled copy the crop is found on
MIN_RUN_FRACTION = 0.02  # a row / column is breast if >= 2 % of it is foreground
OPENING_SIZE = 9  # px at ANALYSIS_SIZE: thinner structures (film-edge strips, lines) are removed
# geometry vector: [flipped (0/1), top, left, height, width] in original pixels
GEOMETRY_FIELDS = ("flipped", "top", "left", "height", "width")


def otsu_threshold(image: tf.Tensor, bins: int = 256) -> tf.Tensor:
    """Otsu's threshold of values in [0, 1] (scalar): maximises the between-class variance."""
    histogram = tf.cast(tf.histogram_fixed_width(image, [0.0, 1.0], nbins=bins), tf.float32)
    centres = (tf.range(bins, dtype=tf.float32) + 0.5) / bins
    weight_low = tf.cumsum(histogram)
    weight_high = tf.reduce_sum(histogram) - weight_low
    mass_low = tf.cumsum(histogram * centres)
    mean_low = mass_low / tf.maximum(weight_low, 1.0)
    mean_high = (tf.reduce_sum(histogram * centres) - mass_low) / tf.maximum(weight_high, 1.0)
    between = weight_low * weight_high * tf.square(mean_low - mean_high)
    return (tf.cast(tf.argmax(between), tf.float32) + 1.0) / bins


def _window_count(x: tf.Tensor, size: int, axis: int) -> tf.Tensor:
    """Sum of a centred window of `size` along `axis` of a 2-D tensor (zero outside), by cumsum."""
    half = size // 2
    paddings = [[0, 0], [0, 0]]
    paddings[axis] = [half + 1, half]
    total = tf.cumsum(tf.pad(x, paddings), axis=axis)
    n = tf.shape(x)[axis]
    upper = tf.gather(total, tf.range(size, n + size), axis=axis)
    lower = tf.gather(total, tf.range(0, n), axis=axis)
    return upper - lower


def _opening(mask: tf.Tensor, size: int) -> tf.Tensor:
    """Morphological opening of a 2-D boolean mask with a size x size square.

    Erosion keeps pixels whose whole window is foreground, dilation marks pixels with any
    foreground in the window; both are separable, and window sums are cumulative-sum
    differences (TensorFlow's CPU pooling is an order of magnitude slower here).
    """
    x = tf.cast(mask, tf.float32)
    full = float(size)
    eroded = tf.cast(_window_count(x, size, 1) >= full, tf.float32)
    eroded = tf.cast(_window_count(eroded, size, 0) >= full, tf.float32)
    dilated = tf.cast(_window_count(eroded, size, 1) > 0, tf.float32)
    return _window_count(dilated, size, 0) > 0


def _run_around(flags: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """[start, stop) of the run of True in 1-D `flags` that contains `index`."""
    n = tf.shape(flags, out_type=tf.int64)[0]
    positions = tf.range(n)
    gaps = tf.logical_not(flags)
    start = tf.reduce_max(tf.where(gaps & (positions < index), positions, -1)) + 1
    stop = tf.reduce_min(tf.where(gaps & (positions > index), positions, n))
    return start, stop


def breast_geometry(image: tf.Tensor, margin: float = 0.02) -> tf.Tensor:
    """Where the breast is: [flipped, top, left, height, width] (float32, original pixels).

    Args:
        image: (H, W) or (H, W, 1) float in [0, 1], bright = dense.
        margin: added around the crop, as a fraction of the image size.

    The crop box is in the coordinates of the *flipped* image when `flipped` is 1.
    """
    image = tf.reshape(image, tf.shape(image)[:2])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    small = tf.image.resize(image[..., None], [ANALYSIS_SIZE, ANALYSIS_SIZE], method="area")[..., 0]
    foreground = _opening(small > otsu_threshold(small), OPENING_SIZE)
    tissue = tf.where(foreground, small, 0.0)
    half = ANALYSIS_SIZE // 2
    flipped = tf.reduce_sum(tissue[:, half:]) > tf.reduce_sum(tissue[:, :half])
    foreground = tf.cond(flipped, lambda: tf.reverse(foreground, [1]), lambda: foreground)
    fraction = tf.cast(foreground, tf.float32)
    cols = tf.reduce_mean(fraction, axis=0) >= MIN_RUN_FRACTION
    first_col = tf.argmax(tf.cast(cols, tf.int32))  # chest-wall side: the first breast column
    left, right = _run_around(cols, first_col)
    in_breast_columns = fraction[:, left:right]  # rows are judged inside the breast's columns only
    rows = tf.reduce_mean(in_breast_columns, axis=1) * tf.cast(right - left, tf.float32) \
        / ANALYSIS_SIZE >= MIN_RUN_FRACTION
    widest_row = tf.argmax(tf.reduce_sum(in_breast_columns, axis=1))
    top, bottom = _run_around(rows, widest_row)
    pad = tf.cast(tf.round(margin * ANALYSIS_SIZE), tf.int64)
    top, left = tf.maximum(top - pad, 0), tf.maximum(left - pad, 0)
    bottom = tf.minimum(bottom + pad, ANALYSIS_SIZE)
    right = tf.minimum(right + pad, ANALYSIS_SIZE)
    # nothing found (blank image): keep the whole image
    empty = tf.logical_not(tf.reduce_any(cols) & tf.reduce_any(rows))
    scale_y = tf.cast(height, tf.float32) / ANALYSIS_SIZE
    scale_x = tf.cast(width, tf.float32) / ANALYSIS_SIZE
    box = tf.stack([
        tf.floor(tf.cast(top, tf.float32) * scale_y), tf.floor(tf.cast(left, tf.float32) * scale_x),
        tf.math.ceil(tf.cast(bottom, tf.float32) * scale_y),
        tf.math.ceil(tf.cast(right, tf.float32) * scale_x)])
    full = tf.stack([0.0, 0.0, tf.cast(height, tf.float32), tf.cast(width, tf.float32)])
    box = tf.where(empty, full, box)
    box = tf.minimum(box, tf.stack([tf.cast(height, tf.float32), tf.cast(width, tf.float32)] * 2))
    return tf.stack([tf.cast(flipped, tf.float32), box[0], box[1], box[2] - box[0],
                     box[3] - box[1]])


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
    `shape` = (H, W) and undoes the flip. Used to draw heat-maps on the uncropped mammogram.
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
    full = tf.image.pad_to_bounding_box(restored, top, left, int(shape[0]), int(shape[1]))
    return tf.cond(geometry[0] > 0.5, lambda: tf.reverse(full, [1]), lambda: full)


def intensity_window(image: tf.Tensor, low: float = 0.005, high: float = 0.995) -> tf.Tensor:
    """Stretch the [low, high] quantiles of the non-zero (breast) pixels onto [0, 1]."""
    values = tf.sort(tf.boolean_mask(image, image > 0.0))
    count = tf.shape(values)[0]

    def stretched():
        last = tf.cast(count - 1, tf.float32)
        lo = tf.gather(values, tf.cast(tf.round(low * last), tf.int32))
        hi = tf.gather(values, tf.cast(tf.round(high * last), tf.int32))
        return tf.clip_by_value((image - lo) / tf.maximum(hi - lo, 1e-6), 0.0, 1.0)

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
               window: bool = False, equalize: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """The preprocessing of mammo-keras. Returns (image (size, size, 1) float32 in [0, 1], geometry).

    Args:
        image: (H, W) or (H, W, 1) float in [0, 1] at full resolution (from `read_image`).
        size: side of the square output.
        crop: crop to the breast (removes background, labels and markers).
        flip: flip so that the chest wall is on the left.
        window: stretch the breast's 0.5-99.5 % intensity quantiles onto [0, 1].
        equalize: CLAHE (8 x 8 tiles, clip limit 2) on the output, after the window;
            the background stays 0.

    Returns:
        (image, geometry): geometry is [flipped, top, left, height, width] in
        original pixels; pass it to `apply_geometry` to transform a mask the same way.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    image = tf.reshape(image, tf.shape(image)[:2])
    geometry = breast_geometry(image)
    shape = tf.cast(tf.shape(image), tf.float32)
    if not flip:  # keep the orientation; the box was found on the flipped image: mirror it
        left = tf.where(geometry[0] > 0.5, shape[1] - geometry[2] - geometry[4], geometry[2])
        geometry = tf.stack([0.0, geometry[1], left, geometry[3], geometry[4]])
    if not crop:
        geometry = tf.stack([geometry[0], 0.0, 0.0, shape[0], shape[1]])
    output = apply_geometry(image, geometry, size)
    if window:
        output = intensity_window(output)
    if equalize:
        output = tf.where(output > 0.0, clahe(output), 0.0)
    return output, geometry
