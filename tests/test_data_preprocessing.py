"""Preprocessing in TF ops: Otsu, opening, crop / flip / resize / pad, on drawn images and on MIAS."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from mammo_keras.data import load_records, read_image
from mammo_keras.data.breast_mask import opening, otsu_threshold
from mammo_keras.data.preprocessing import (apply_geometry, breast_geometry, intensity_window,
                                            preprocess)
from test_data_mias import MIAS_ARCHIVE


def numpy_otsu(values: np.ndarray, bins: int = 256) -> float:
    """Brute force: the threshold with the smallest within-class variance."""
    histogram, _ = np.histogram(values, bins=bins, range=(0, 1))
    centres = (np.arange(bins) + 0.5) / bins
    best, best_threshold = np.inf, None
    for t in range(1, bins):
        low, high = histogram[:t], histogram[t:]
        if low.sum() == 0 or high.sum() == 0:
            continue
        var_low = np.average((centres[:t] - np.average(centres[:t], weights=low)) ** 2, weights=low)
        var_high = np.average((centres[t:] - np.average(centres[t:], weights=high)) ** 2,
                              weights=high)
        within = low.sum() * var_low + high.sum() * var_high
        if within < best:
            best, best_threshold = within, t / bins
    return best_threshold


def drawn_mammogram(height=400, width=300, chest_wall="right", label=True, strip=True):
    """A half-ellipse 'breast' on the chest-wall side, a bright label far from it, a film-edge strip."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 0.04, (height, width))
    rows, cols = np.ogrid[:height, :width]
    wall = width - 1 if chest_wall == "right" else 0
    breast = ((rows - height / 2) / (0.35 * height)) ** 2 + ((cols - wall) / (0.5 * width)) ** 2 <= 1
    image[breast] = 0.5 + 0.2 * rng.random(breast.sum())
    if label:
        image[20:45, (10 if chest_wall == "right" else width - 40):][:, :30] = 0.95
    if strip:
        image[height - 3:, :] = 0.9
    return image.astype("float32"), breast


def test_otsu_matches_brute_force(rng):
    values = np.concatenate([rng.normal(0.1, 0.03, 5000), rng.normal(0.6, 0.1, 3000)]).clip(0, 1)
    ours = float(otsu_threshold(tf.constant(values, tf.float32)))
    assert abs(ours - numpy_otsu(values)) <= 1 / 256 + 1e-9
    assert 0.2 < ours < 0.5


def test_opening_matches_scipy(rng):
    mask = rng.random((128, 96)) > 0.35
    expected = ndimage.binary_opening(mask, structure=np.ones((9, 9)), border_value=0)
    np.testing.assert_array_equal(opening(tf.constant(mask), 9).numpy(), expected)


@pytest.mark.parametrize("chest_wall", ["left", "right"])
def test_breast_crop_flips_and_drops_label_and_strip(chest_wall):
    image, breast = drawn_mammogram(chest_wall=chest_wall)
    flipped, top, left, height, width = breast_geometry(tf.constant(image)).numpy()
    assert flipped == (chest_wall == "right")
    canonical = breast[:, ::-1] if flipped else breast
    rows, cols = np.nonzero(canonical)
    assert top <= rows.min() and rows.max() < top + height  # all of the breast is kept
    assert left <= cols.min() and cols.max() < left + width
    assert top + height < 397  # the strip at the bottom is left out
    assert left + width < 0.6 * image.shape[1]  # the label on the far side is left out
    assert height * width < 0.6 * image.size


def test_apply_geometry_against_numpy():
    image = np.arange(40 * 30, dtype="float32").reshape(40, 30) / 1200.0
    geometry = tf.constant([1.0, 5.0, 2.0, 20.0, 10.0])  # flip, crop rows 5..25, cols 2..12
    out = apply_geometry(tf.constant(image), geometry, size=40, method="nearest").numpy()[..., 0]
    expected = image[:, ::-1][5:25, 2:12]
    assert out.shape == (40, 40)
    np.testing.assert_array_equal(out[:, 20:], 0.0)  # padded on the right: aspect 2:1 kept
    np.testing.assert_array_equal(out[::2, ::2][:, :10], expected)  # nearest, 2x upscale


def test_mask_follows_the_image():
    image, breast = drawn_mammogram(label=False, strip=False)
    processed, geometry = preprocess(image, 128)
    mask = apply_geometry(tf.constant(breast.astype("uint8")), geometry, 128, method="nearest")
    mask = mask.numpy()[..., 0].astype(bool)
    assert set(np.unique(mask)) <= {False, True}
    assert processed.numpy()[..., 0][mask].mean() > 0.45
    assert processed.numpy()[..., 0][~mask].mean() < 0.1


def test_preprocess_options_shapes_and_graph_equals_eager():
    image, _ = drawn_mammogram()
    eager, geometry = preprocess(image, 64)
    traced = tf.function(lambda x: preprocess(x, 64),
                         input_signature=[tf.TensorSpec([None, None], tf.float32)])
    graph, graph_geometry = traced(image)
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), atol=1e-6)
    np.testing.assert_array_equal(graph_geometry.numpy(), geometry.numpy())
    assert eager.shape == (64, 64, 1) and eager.dtype == tf.float32
    whole, whole_geometry = preprocess(image, 64, crop=False, flip=False)
    np.testing.assert_array_equal(whole_geometry.numpy(), [0, 0, 0, 400, 300])
    _, kept_side = preprocess(image, 64, flip=False)
    assert kept_side.numpy()[0] == 0 and kept_side.numpy()[2] > 100  # box mirrored back right
    windowed = intensity_window(eager)
    assert float(tf.reduce_max(windowed)) == 1.0 and float(tf.reduce_min(windowed)) == 0.0


def test_blank_image_keeps_everything():
    _, geometry = preprocess(np.zeros((50, 70), "float32"), 32)
    np.testing.assert_array_equal(geometry.numpy()[1:], [0, 0, 50, 70])


def test_mias_crops_keep_every_lesion_and_match_laterality():
    if not MIAS_ARCHIVE.exists():
        pytest.skip(f"real MIAS archive not found at {MIAS_ARCHIVE}")
    traced = tf.function(breast_geometry, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    inside = total = agree = 0
    areas = []
    records = load_records("mias", root=MIAS_ARCHIVE)
    for record in records:
        image, _ = read_image(record.path)
        flipped, top, left, height, width = traced(image).numpy()
        areas.append(height * width / image.size)
        agree += bool(flipped) == (record.laterality == "R")
        for roi in record.rois:
            x = image.shape[1] - 1 - roi.x if flipped else roi.x
            total += 1
            inside += (top <= roi.y < top + height) and (left <= x < left + width)
    assert inside == total == 119
    assert agree >= 0.98 * len(records)  # chest-wall side found from the pixels alone
    # the films are padded to 1024 x 1024: about half of each is background, labels, markers
    assert np.mean(areas) < 0.6


def test_clahe_with_one_tile_and_no_clipping_is_histogram_equalisation(rng):
    from mammo_keras.data.preprocessing import clahe

    image = (rng.beta(2, 5, size=(60, 80))).astype("float32")
    levels = np.clip(np.floor(image * 256), 0, 255).astype(int)
    cdf = np.cumsum(np.bincount(levels.ravel(), minlength=256)) / image.size
    np.testing.assert_allclose(clahe(image, grid=1, clip_limit=1e9).numpy(), cdf[levels],
                               atol=1e-6)


def test_clahe_raises_local_contrast_and_keeps_the_range(rng):
    from mammo_keras.data.preprocessing import clahe

    flat = (0.4 + 0.05 * rng.random((128, 128))).astype("float32")
    flat[:, 64:] += 0.3  # two regions of low internal contrast
    out = clahe(flat[..., None], grid=4, clip_limit=3.0).numpy()
    assert out.shape == (128, 128, 1) and 0.0 <= out.min() and out.max() <= 1.0
    assert out[:, :48].std() > 3 * flat[:, :48].std()
    clipped = clahe(flat, grid=4, clip_limit=1.0).numpy()  # clip 1: no equalisation at all
    assert clipped[:, :48].std() < out[:, :48].std()
    traced = tf.function(lambda x: clahe(x), input_signature=[tf.TensorSpec([None, None],
                                                                            tf.float32)])
    np.testing.assert_allclose(traced(flat).numpy(), clahe(flat).numpy(), atol=1e-6)
