"""The breast crop on every kind of mammogram: the TF morphology against SciPy, the background
threshold, and coverage of the true breast on the crop test set written to real files."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from mammo_keras.data import read_image
from mammo_keras.data.breast_mask import (BACKGROUND_STEP, background_threshold,
                                          connected_components, fill_holes, largest_component)
from mammo_keras.devtools.crop_testset import KINDS, crop_test_cases, score_crop, write_case
from mammo_keras.data.preprocessing import breast_geometry, preprocess

GEOMETRY = tf.function(breast_geometry, input_signature=[tf.TensorSpec([None, None], tf.float32)])


def blobby_mask(rng, shape=(64, 80), smooth=2.0, fraction=0.5):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), smooth)
    return field > np.quantile(field, 1 - fraction)


def same_partition(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Labels define the same components (ids may differ): a bijection between them."""
    on = reference > 0
    if not np.array_equal(ours > 0, on):
        return False
    pairs = set(zip(ours[on].tolist(), reference[on].tolist()))
    return len(pairs) == len(set(ours[on].tolist())) == len(set(reference[on].tolist()))


@pytest.mark.parametrize("smooth", [1.0, 2.5])
def test_connected_components_match_scipy(rng, smooth):
    for _ in range(3):
        mask = blobby_mask(rng, smooth=smooth)
        reference, count = ndimage.label(mask)  # 4-connectivity by default
        ours = connected_components(tf.constant(mask)).numpy()
        assert count > 1
        assert same_partition(ours, reference)


def test_largest_component_and_holes_match_scipy(rng):
    mask = blobby_mask(rng, smooth=2.0, fraction=0.55)
    reference, _ = ndimage.label(mask)
    sizes = np.bincount(reference.ravel())[1:]
    expected = reference == np.argmax(sizes) + 1
    np.testing.assert_array_equal(largest_component(tf.constant(mask)).numpy(), expected)
    np.testing.assert_array_equal(fill_holes(tf.constant(mask)).numpy(),
                                  ndimage.binary_fill_holes(mask))
    assert not largest_component(tf.zeros((8, 8), tf.bool)).numpy().any()


@pytest.mark.parametrize("level, noise", [(0.0, 0.0), (0.08, 0.01), (0.15, 0.02)])
def test_background_threshold_sits_between_background_and_a_faint_breast(rng, level, noise):
    """A background peak at `level`; a breast whose edge is only 0.06 above it, then fat,
    then (the presentation look) bright dense tissue: the threshold is above the
    background's noise and below the faint edge, where Otsu's is far above it."""
    background = level + noise * rng.standard_normal(30_000)
    edge = level + 0.06 + 0.3 * rng.random(4_000) ** 2
    fat = rng.normal(0.45, 0.03, 8_000)
    dense = rng.normal(0.85, 0.04, 20_000)
    values = np.clip(np.concatenate([background, edge, fat, dense]), 0, 1).astype("float32")
    threshold = float(background_threshold(tf.constant(values)))
    assert threshold >= level + BACKGROUND_STEP
    assert threshold > level + 2.5 * noise
    assert threshold < level + 0.06


@pytest.fixture(scope="module")
def crop_results(tmp_path_factory):
    """Every case of the crop test set, written in its format, read back and cropped."""
    folder = tmp_path_factory.mktemp("crop_cases")
    results = []
    for case in crop_test_cases(size=512):
        image, meta = read_image(write_case(case, folder))
        results.append((case, meta, score_crop(case, GEOMETRY(image).numpy())))
    return results


@pytest.mark.parametrize("kind", KINDS)
def test_crop_keeps_99_percent_of_every_breast(crop_results, kind):
    chosen = [(case, score) for case, _, score in crop_results if case.kind == kind]
    assert len(chosen) == 8 and {case.density for case, _ in chosen} == set("ABCD")
    for case, score in chosen:
        assert score["coverage"] >= 0.99, (case.file_name, score)
        # the box is the breast's, not the image's: labels, markers, film edges left out
        assert score["artefacts_kept"] <= 0.01, (case.file_name, score)
        assert score["box_over_breast"] < 1.25, (case.file_name, score)
        assert score["flipped"] == (case.laterality == "R"), case.file_name


def test_crop_test_set_covers_every_encoding_and_the_artefacts(crop_results):
    encodings = {case.encoding for case, _, _ in crop_results}
    assert encodings == {"png8", "png12in16", "tiff12in16", "dicom_mono1", "dicom_mono2",
                         "jpeg", "pgm"}
    with_artefacts = [case for case, _, _ in crop_results if case.artefacts.any()]
    assert len(with_artefacts) >= 30
    touching = [case for case, _, _ in crop_results if case.kind == "label_touching"]
    for case in touching:  # the label really touches the breast (8-neighbourhood)
        assert (ndimage.binary_dilation(case.breast, np.ones((3, 3))) & case.artefacts).any()
    edges = [case for case, _, _ in crop_results if case.kind == "edges"]
    for case in edges:
        assert case.breast[0].any() and case.breast[-1].any()  # cut by top and bottom


def test_twelve_bit_files_read_at_full_range(crop_results):
    for case, meta, _ in crop_results:
        if case.encoding in ("png12in16", "tiff12in16"):
            assert meta["bits_stored"] == 12 and meta["bits_rule"] == "maximum"


def test_dim_image_is_cropped_like_a_full_range_one():
    """A 12-bit image read as if 16-bit (max 0.06) gives the same crop: thresholds follow
    the image's own range."""
    case = crop_test_cases(size=384, kinds=("faint_film",))[3]
    full = GEOMETRY(case.image).numpy()
    dim = GEOMETRY(case.image * (4095 / 65535)).numpy()
    np.testing.assert_array_equal(full, dim)


def test_laterality_decides_the_flip_and_unknown_falls_back_to_pixels():
    case = crop_test_cases(size=384, kinds=("film",))[1]  # a right breast
    assert case.laterality == "R"
    by_pixels = breast_geometry(case.image).numpy()
    assert by_pixels[0] == 1
    assert breast_geometry(case.image, laterality="L").numpy()[0] == 0  # the record wins
    np.testing.assert_array_equal(breast_geometry(case.image, laterality="").numpy(), by_pixels)
    traced = tf.function(lambda image, side: preprocess(image, 64, laterality=side)[1])
    assert traced(case.image, tf.constant("L")).numpy()[0] == 0
    assert traced(case.image, tf.constant("R")).numpy()[0] == 1
    assert traced(case.image, tf.constant("")).numpy()[0] == 1


def test_window_gives_one_intensity_distribution_whatever_the_gain_and_offset():
    """The same breast at another gain and background offset (another detector or film
    scanner) reaches the model identically once windowed; unwindowed it does not."""
    case = crop_test_cases(size=384, kinds=("presentation",))[2]
    other = np.clip(0.05 + 0.6 * case.image, 0, 1).astype("float32")
    a, geometry_a = preprocess(case.image, 96, window=True)
    b, geometry_b = preprocess(other, 96, window=True)
    a, b = a.numpy(), b.numpy()
    np.testing.assert_array_equal(geometry_a.numpy(), geometry_b.numpy())
    assert a.min() == 0.0 and a.max() == 1.0
    both = (a > 0) & (b > 0)
    assert np.mean((a > 0) != (b > 0)) < 0.03  # the breast masks differ on the skin line only
    assert np.abs(a - b)[both].mean() < 0.01
    plain_a, _ = preprocess(case.image, 96)
    plain_b, _ = preprocess(other, 96)
    assert np.abs(plain_a.numpy() - plain_b.numpy())[both].mean() > 0.1


def test_data_crops_draws_a_contact_sheet_of_your_own_files(tmp_path, capsys):
    from PIL import Image

    from mammo_keras.cli import main
    from mammo_keras.data.crop_sheet import crop_contact_sheet

    folder = tmp_path / "site"
    cases = crop_test_cases(size=256, kinds=("presentation",))[:3]
    for case in cases:
        write_case(case, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "sheet.png"
    assert main(["data", "crops", str(folder), "--out", str(out), "--columns", "2"]) == 0
    printed = capsys.readouterr().out
    assert "3 crops drawn" in printed and "skipped" in printed and "broken.png" in printed
    assert Image.open(out).size[0] > 400
    _, rows, skipped = crop_contact_sheet([write_case(cases[0], tmp_path)], tmp_path / "one.png")
    assert not skipped and rows[0]["laterality"] == cases[0].laterality
    assert rows[0]["laterality_source"] == "file name"
    assert 0.3 < rows[0]["box_fraction"] < 0.9  # the breast, not the whole image
    (tmp_path / "empty").mkdir()
    assert main(["data", "crops", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no image files found" in capsys.readouterr().err


def test_the_background_trend_is_numpy_s_least_squares_plane(rng):
    from mammo_keras.data.breast_mask import background_trend

    rows, cols = np.mgrid[0:48, 0:64]
    image = 0.1 + 0.05 * cols / 63 - 0.03 * rows / 47 + rng.normal(0, 0.01, rows.shape)
    outside = rng.random(rows.shape) > 0.4
    design = np.stack([np.ones(rows.shape), cols / 63, rows / 47], -1)
    coefficients = np.linalg.lstsq(design[outside], image[outside], rcond=None)[0]
    ours = background_trend(tf.constant(image, tf.float32), tf.constant(outside)).numpy()
    np.testing.assert_allclose(ours, design @ coefficients, atol=1e-4)
