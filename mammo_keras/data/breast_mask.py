"""Where the breast is: breast vs background on a downsampled mammogram, in TensorFlow ops.

    image (H, W) in [0, 1], bright = dense
      -> analysis copy: area-resized to ANALYSIS_SIZE x ANALYSIS_SIZE, and the local
         standard deviation of the full-resolution pixels under each analysis pixel
      -> flat bright pixels (labels, film edges, burned-in text: near-white and without
         the noise of tissue) are set aside
      -> threshold just above the *background*: the triangle method on the histogram of
         the dark side (Zack et al. 1977), never below BACKGROUND_STEP over the
         background's level. Fat is grey on "for presentation" digital images and dark on
         film; either way it is brighter than the background, so dense tissue and fat
         both count as breast (Otsu's threshold split dense from fat on digital images)
      -> opening with an OPENING_SIZE square (thin strips, text strokes, noise removed)
      -> the largest connected component (4-connected); a second pass where a padded film
         shows a second, slightly brighter background inside the first mask
      -> for the intensity window: the flat bright parts joined to it, holes filled

This is how public pipelines find the breast, adapted: NYU's `crop_mammogram` keeps the
largest connected component of the non-background pixels; MONAI's `CropForeground`
crops to a foreground selected by a threshold, with a margin. Both assume a background
of exactly 0; film backgrounds are not, hence the background-relative threshold.

Everything is traceable by `tf.function` with dynamic H and W, so the exported serving
graph runs exactly this code. Works on MONOCHROME2 intensities (MONOCHROME1 is inverted
by the reader) of any bit depth once scaled to [0, 1].
"""

from __future__ import annotations

import tensorflow as tf

ANALYSIS_SIZE = 256  # side of the downsampled copy the breast is found on
OPENING_SIZE = 9  # px at ANALYSIS_SIZE: thinner structures (film-edge strips, text) go
BACKGROUND_STEP = 0.02  # the threshold is at least this far above the background's level
FLAT_BRIGHT_LEVEL = 0.9  # labels and unexposed film edges are at least this bright...
FLAT_STD = 0.002  # ...and flatter than this (tissue carries quantum noise and texture)
SECOND_BACKGROUND_GAP = 0.1  # a second background lies this close above the first threshold
MAX_PROPAGATION_STEPS = 128  # connected-component sweeps; blobs converge in a few
MIN_BACKGROUND_SHARE = 0.05  # of the grid, to fit the background's slope on
MAX_GROWTH = 1.3  # a breast found on the levelled image may be this much larger, no more


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


def background_threshold(values: tf.Tensor, bins: int = 256) -> tf.Tensor:
    """The breast / background threshold of values in [0, 1] (scalar).

    The background is the highest histogram peak below Otsu's threshold (in every
    mammogram it is the darkest large population). The threshold is the triangle
    method's point on the bright flank of that peak: the bin farthest below the line
    from the peak to the brightest occupied bin, i.e. where the peak's foot meets the
    breast's long tail; it adapts to the background's noise and unevenness. At least
    BACKGROUND_STEP above the peak, and never above Otsu's threshold.
    """
    values = tf.reshape(values, [-1])
    histogram = tf.cast(tf.histogram_fixed_width(values, [0.0, 1.0], nbins=bins), tf.float32)
    histogram = tf.nn.conv1d(histogram[None, :, None], tf.ones([3, 1, 1]) / 3.0, 1,
                             "SAME")[0, :, 0]  # 3-bin smoothing against 8-bit comb gaps
    otsu_bin = tf.cast(otsu_threshold(values, bins) * bins, tf.int32)
    positions = tf.range(bins)
    peak = tf.cast(tf.argmax(tf.where(positions < tf.maximum(otsu_bin, 1), histogram, -1.0)),
                   tf.int32)
    last = tf.reduce_max(tf.where(histogram > 0, positions, 0))
    height = tf.gather(histogram, peak)
    span = tf.cast(tf.maximum(last - peak, 1), tf.float32)
    # distance below the line (peak, height) -> (last, 0), in units where both axes are 1
    x = tf.cast(positions - peak, tf.float32) / span
    line = height * (1.0 - x)
    below = (line - histogram) / tf.maximum(height, 1.0)
    candidate = (positions > peak) & (positions <= last)
    triangle = tf.cast(tf.argmax(tf.where(candidate, below, -1e9)), tf.float32)
    level = (tf.cast(peak, tf.float32) + 0.5) / bins
    threshold = tf.maximum((triangle + 0.5) / bins, level + BACKGROUND_STEP)
    return tf.minimum(threshold, tf.maximum(otsu_threshold(values, bins), level
                                            + BACKGROUND_STEP))


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


def opening(mask: tf.Tensor, size: int) -> tf.Tensor:
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


def _run_index(mask: tf.Tensor) -> tf.Tensor:
    """(H, W) int32: the index (1, 2, ...) of the horizontal run of True each pixel is in, 0 off."""
    previous = tf.pad(mask[:, :-1], [[0, 0], [1, 0]])
    starts = tf.reshape(mask & tf.logical_not(previous), [-1])
    index = tf.cumsum(tf.cast(starts, tf.int32))
    return tf.reshape(index, tf.shape(mask)) * tf.cast(mask, tf.int32)


def connected_components(mask: tf.Tensor) -> tf.Tensor:
    """4-connected component labels of a 2-D boolean mask: (H, W) int32, 0 = background.

    Each pixel starts with its own label; labels spread as the maximum over horizontal,
    then vertical runs until nothing changes (at most MAX_PROPAGATION_STEPS sweeps), so a
    component's label is the largest pixel number in it.
    """
    mask = tf.convert_to_tensor(mask, tf.bool)
    height, width = tf.shape(mask)[0], tf.shape(mask)[1]
    labels = tf.reshape(tf.range(1, height * width + 1), [height, width]) * tf.cast(mask,
                                                                                   tf.int32)
    rows = _run_index(mask)
    cols = tf.transpose(_run_index(tf.transpose(mask)))
    row_runs, col_runs = tf.reduce_max(rows) + 1, tf.reduce_max(cols) + 1

    def spread(values, runs, count):  # one segment per run: a few hundred, not H x W
        best = tf.math.unsorted_segment_max(values, runs, count)
        return tf.where(runs > 0, tf.gather(best, runs), 0)

    def step(i, current, _):
        updated = spread(spread(current, rows, row_runs), cols, col_runs)
        return i + 1, updated, tf.reduce_any(tf.not_equal(updated, current))

    _, labels, _ = tf.while_loop(
        lambda i, current, changed: changed & (i < MAX_PROPAGATION_STEPS), step,
        (tf.constant(0), labels, tf.constant(True)))
    return labels


def largest_component(mask: tf.Tensor) -> tf.Tensor:
    """The largest 4-connected component of a 2-D boolean mask (all False if none)."""
    labels = connected_components(mask)
    sizes = tf.math.bincount(tf.reshape(labels, [-1]),
                             minlength=tf.size(labels) + 1)[1:]  # label 0 is background
    largest = tf.cast(tf.argmax(sizes), tf.int32) + 1
    return tf.equal(labels, largest) & (tf.reduce_max(sizes) > 0)


def fill_holes(mask: tf.Tensor) -> tf.Tensor:
    """A 2-D boolean mask with every background region not touching the border filled."""
    outside = tf.logical_not(mask)
    labels = connected_components(outside)
    border = tf.concat([labels[0], labels[-1], labels[:, 0], labels[:, -1]], axis=0)
    # segments with no border pixel get the dtype's minimum, not 0
    touches = tf.math.unsorted_segment_max(tf.ones_like(border), border, tf.size(labels) + 1)
    return mask | (outside & tf.not_equal(tf.gather(touches, labels), 1))


def analysis_views(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean, std) of the full-resolution pixels under each analysis pixel, (S, S) each."""
    image = tf.convert_to_tensor(image, tf.float32)
    image = tf.reshape(image, tf.shape(image)[:2])[..., None]
    size = [ANALYSIS_SIZE, ANALYSIS_SIZE]
    mean = tf.image.resize(image, size, method="area")[..., 0]
    mean_square = tf.image.resize(tf.square(image), size, method="area")[..., 0]
    return mean, tf.sqrt(tf.nn.relu(mean_square - tf.square(mean)))


def flat_bright(mean: tf.Tensor, std: tf.Tensor) -> tf.Tensor:
    """Analysis pixels of labels, unexposed film edges and burned-in text: near-white, flat
    at full resolution and over their 3 x 3 neighbourhood (small images have no
    full-resolution detail under an analysis pixel, so both must agree)."""
    padded = tf.pad(mean, [[1, 1], [1, 1]], mode="SYMMETRIC")
    height, width = tf.shape(mean)[0], tf.shape(mean)[1]
    # the nine shifted copies; reducing them is far cheaper on CPU than 3 x 3 pooling
    shifted = tf.stack([padded[dy:dy + height, dx:dx + width]
                        for dy in range(3) for dx in range(3)])
    local_max, local_min = tf.reduce_max(shifted, axis=0), tf.reduce_min(shifted, axis=0)
    return (mean >= FLAT_BRIGHT_LEVEL) & (std < FLAT_STD) & (local_max - local_min < 2 * FLAT_STD)


def _breast_and_threshold(image: tf.Tensor):
    """(breast without flat bright pixels, holes not filled; the relative image; its
    breast / background threshold; the flat bright pixels), all on the analysis grid."""
    mean, std = analysis_views(image)
    artefact = flat_bright(mean, std)
    tissue = tf.logical_not(artefact)
    # thresholds are relative to the image's own range: a dim image (say 12-bit values
    # read as 16-bit) is found the same way as a full-range one
    scale = tf.maximum(tf.reduce_max(tf.where(tissue, mean, 0.0)), 1e-6)
    relative = tf.clip_by_value(mean / scale, 0.0, 1.0)

    def breast_above(threshold):
        return largest_component(opening((relative > threshold) & tissue, OPENING_SIZE))

    first = background_threshold(tf.boolean_mask(relative, tissue))
    breast = breast_above(first)
    # A film padded to a square has two backgrounds: the padding (the darkest peak) and
    # the film's own, a little brighter, which the first pass keeps. A background peak
    # just above the first threshold, inside what it kept, is that second background.
    second = background_threshold(tf.boolean_mask(relative, breast & tissue))
    again = second < first + SECOND_BACKGROUND_GAP
    breast = tf.cond(again, lambda: breast_above(second), lambda: breast)
    threshold = tf.where(again, second, first)
    return _with_faint_ends(breast, relative, tissue, breast_above), relative, threshold, \
        artefact


def dilation(mask: tf.Tensor, size: int) -> tf.Tensor:
    """Morphological dilation of a 2-D boolean mask with a size x size square."""
    x = tf.cast(mask, tf.float32)
    return _window_count(tf.cast(_window_count(x, size, 1) > 0, tf.float32), size, 0) > 0


def background_trend(relative: tf.Tensor, outside: tf.Tensor) -> tf.Tensor:
    """The plane a + b x + c y (S, S) fitted by least squares to `relative` where `outside`
    (the background): a film exposed unevenly (the heel effect darkens the chest-wall side)
    has a sloping background, which a single threshold cuts into."""
    height, width = tf.shape(relative)[0], tf.shape(relative)[1]
    rows, cols = tf.meshgrid(tf.linspace(0.0, 1.0, height), tf.linspace(0.0, 1.0, width),
                             indexing="ij")
    design = tf.stack([tf.ones_like(rows), cols, rows], axis=-1)
    coefficients = tf.linalg.lstsq(tf.boolean_mask(design, outside),
                                   tf.boolean_mask(relative, outside)[:, None],
                                   l2_regularizer=1e-6)
    return tf.linalg.matvec(design, coefficients[:, 0])


def _with_faint_ends(breast: tf.Tensor, relative: tf.Tensor, tissue: tf.Tensor,
                     breast_above) -> tf.Tensor:
    """`breast` grown by the tissue a sloping background hid: the breast found again on the
    image with the background's plane (`background_trend`) levelled, joined to `breast` when
    it holds it and is not much larger (a levelled background is no breast). On a film
    whose breast fades into it towards the chest wall's upper and lower ends this keeps
    those ends in the crop; on an evenly exposed film it changes nothing."""
    outside = tf.logical_not(dilation(breast, 2 * OPENING_SIZE + 1)) & tissue
    enough = tf.reduce_mean(tf.cast(outside, tf.float32)) > MIN_BACKGROUND_SHARE

    def levelled():
        trend = background_trend(relative, outside)
        level = tf.reduce_mean(tf.boolean_mask(trend, outside))
        flat = tf.clip_by_value(relative - trend + level, 0.0, 1.0)
        again = breast_above(background_threshold(tf.boolean_mask(flat, tissue)))
        area, grown = (tf.reduce_sum(tf.cast(m, tf.float32)) for m in (breast, again))
        holds = tf.reduce_sum(tf.cast(breast & again, tf.float32)) > 0.95 * area
        return tf.where(holds & (grown < MAX_GROWTH * area), breast | again, breast)

    return tf.cond(enough, levelled, lambda: breast)


_IMAGE_2D = tf.TensorSpec([None, None], tf.float32)


def _as_2d(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image, tf.float32)
    return tf.reshape(image, tf.shape(image)[:2])


# One graph each, whatever the image size: eager callers (predict, explain, the dashboard)
# would otherwise pay Python dispatch for every op of every connected-component sweep.
@tf.function(input_signature=[_IMAGE_2D])
def _breast_graph(image: tf.Tensor) -> tf.Tensor:
    return _breast_and_threshold(image)[0]


@tf.function(input_signature=[_IMAGE_2D])
def _breast_masks_graph(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    breast, relative, threshold, artefact = _breast_and_threshold(image)
    joined = connected_components((relative > threshold) | artefact)
    inside = tf.boolean_mask(joined, breast & (joined > 0))
    label = tf.cast(tf.argmax(tf.math.bincount(inside, minlength=tf.size(joined) + 1)),
                    tf.int32)  # the joined component holding most of the breast
    with_flat = tf.equal(joined, label) & (tf.size(inside) > 0)
    return breast, fill_holes(breast | (with_flat & artefact))


def breast_mask(image: tf.Tensor) -> tf.Tensor:
    """The breast on the analysis grid, flat bright pixels left out: (S, S) bool.

    Args:
        image: (H, W) or (H, W, 1) float in [0, 1], bright = dense.

    The crop box is drawn around it; holes (never at its bounding box) are not filled.
    All False for a blank image.
    """
    return _breast_graph(_as_2d(image))


def breast_masks(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The breast on the analysis grid, two ways: (ANALYSIS_SIZE, ANALYSIS_SIZE) bool each.

    Returns:
        (breast, whole): `breast` as `breast_mask` (it gives the crop box); `whole` adds
        the flat bright regions joined to it (saturated tissue, a clipped calcification;
        also the edge of a label touching the breast) and fills the holes, so that the
        intensity window counts every breast pixel.
    """
    return _breast_masks_graph(_as_2d(image))
