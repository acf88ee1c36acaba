"""Synthetic phantoms: determinism, sizes, density, lesions and masks; every on-disk layout read back."""

import dataclasses

import numpy as np
import pytest

from mammo_keras.data import load_records, read_image
from mammo_keras.data.synthetic import (DENSITY_FRACTIONS, PhantomSpec, generate_phantom,
                                        power_law_noise, synthetic_specs)
from mammo_keras.data.synthetic_writer import _square, write_synthetic


def test_same_seed_same_phantom_and_different_seeds_differ():
    spec = PhantomSpec(seed=5, size=256, finding="malignant_mass")
    first, mask, _ = generate_phantom(spec)
    second, mask_again, _ = generate_phantom(spec)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(mask, mask_again)
    other, _, _ = generate_phantom(dataclasses.replace(spec, seed=6))
    assert np.abs(first - other).mean() > 0.01


@pytest.mark.parametrize("size", [256, 1000])
def test_size_range_and_value_range(size):
    image, mask, _ = generate_phantom(PhantomSpec(seed=1, size=size))
    assert image.shape == (size, round(0.78 * size)) and mask.shape == image.shape
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    with pytest.raises(ValueError, match="256..4096"):
        PhantomSpec(seed=1, size=128)


def test_power_law_noise_has_the_asked_spectral_slope(rng):
    field = power_law_noise((256, 256), 3.0, rng)
    spectrum = np.abs(np.fft.fft2(field)) ** 2
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256)))
    band = (frequency > 0.02) & (frequency < 0.3)
    slope = np.polyfit(np.log(frequency[band]), np.log(spectrum[band]), 1)[0]
    assert abs(slope + 3.0) < 0.2


@pytest.mark.parametrize("density", list(DENSITY_FRACTIONS))
def test_dense_fraction_sets_the_density(density):
    fractions = [generate_phantom(PhantomSpec(seed=s, size=256, density=density))[2]
                 ["dense_fraction"] for s in range(3)]
    low, high = DENSITY_FRACTIONS[density]
    assert all(low - 0.1 <= f <= high + 0.1 for f in fractions), fractions


def test_lesions_have_masks_and_raise_the_intensity():
    for finding in ("benign_mass", "malignant_mass", "benign_calcification",
                    "malignant_calcification"):
        spec = PhantomSpec(seed=2, size=1024, finding=finding, contrast=0.1)
        image, mask, meta = generate_phantom(spec)
        normal, _, _ = generate_phantom(dataclasses.replace(spec, finding="normal"))
        assert mask.any() and meta["lesion_centre"] is not None, finding
        assert (image - normal)[mask].mean() > 0.03, finding  # the lesion adds signal on its mask
        if finding.endswith("calcification"):
            assert mask.sum() < 0.002 * mask.size  # a few tiny specks
    image, mask, meta = generate_phantom(PhantomSpec(seed=2, size=256))
    assert not mask.any() and meta["label"] == "normal"


def test_mlo_has_a_pectoral_muscle_on_the_chest_wall_side():
    cc, _, _ = generate_phantom(PhantomSpec(seed=3, size=512, view="CC", laterality="L"))
    mlo, _, _ = generate_phantom(PhantomSpec(seed=3, size=512, view="MLO", laterality="L"))
    corner = (slice(0, 20), slice(0, 20))  # top of the chest wall (left for "L")
    assert mlo[corner].mean() > 0.5 and cc[corner].mean() < 0.1


def test_specs_are_patients_with_two_views():
    specs = synthetic_specs(9, seed=0)
    assert len(specs) == 9
    for first, second in zip(specs[0::2], specs[1::2]):
        assert (first.view, second.view) == ("CC", "MLO")
        assert (first.laterality, first.density, first.finding) == (
            second.laterality, second.density, second.finding)
    labels = {spec.label for spec in synthetic_specs(60, seed=0)}
    assert labels == {"normal", "benign", "malignant"}


def test_dicom_layout_round_trip(tmp_path):
    write_synthetic(tmp_path, 6, size=256, fmt="dicom", seed=4)
    records = load_records("synthetic", root=tmp_path)
    assert len(records) == 6 and records.skipped == []
    assert len({r.patient_id for r in records}) == 3
    specs = synthetic_specs(6, seed=4, size=256)
    for record, spec in zip(records, specs):
        image, meta = read_image(record.path)
        expected, mask, _ = generate_phantom(spec)
        np.testing.assert_allclose(image, expected, atol=0.5 / 4095 + 1e-6)  # 12-bit DICOM
        assert (meta["laterality"], meta["view"]) == (spec.laterality, spec.view)
        np.testing.assert_array_equal(record.mask(), mask)
        assert record.label == spec.label and record.density == spec.density


def test_rerun_resumes_without_rewriting(tmp_path):
    write_synthetic(tmp_path, 4, size=256, fmt="dicom", seed=4)
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()}
    calls = []
    write_synthetic(tmp_path, 4, size=256, fmt="dicom", seed=4,
                    progress=lambda done, total: calls.append((done, total)))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()} == first
    assert calls[-1] == (4, 4)
    assert not list(tmp_path.rglob(".*.partial"))


def test_mias_layout_circles_cover_the_lesions(tmp_path):
    write_synthetic(tmp_path, 10, size=256, fmt="mias", seed=3)
    records = load_records(tmp_path)  # recognised by Info.txt
    assert len(records) == 10 and records.skipped == []
    specs = synthetic_specs(10, seed=3, size=256)
    for number, record in enumerate(records):
        spec = dataclasses.replace(specs[number], view="MLO",
                                   laterality="R" if number % 2 == 0 else "L")
        assert record.laterality == spec.laterality and record.label == spec.label
        image, mask, _ = generate_phantom(spec)
        _, true_mask = _square(image, mask, 1024, chest_wall_left=spec.laterality == "L")
        if true_mask.any():
            assert record.mask()[true_mask].mean() > 0.99  # the circle encloses the lesion
        assert read_image(record.path)[0].shape == (1024, 1024)


def test_folder_layout_is_the_kaggle_layout(tmp_path):
    write_synthetic(tmp_path, 6, size=256, fmt="folder", seed=2)
    records = load_records("kaggle_merged", root=tmp_path)
    assert len(records) == 6 and records.skipped == []
    expected = [spec.label for spec in synthetic_specs(6, seed=2, size=256)]
    assert sorted(records.counts("label").items()) == sorted(
        {label: expected.count(label) for label in set(expected)}.items())
    assert read_image(records[0].path)[1]["bits_stored"] == 16


def test_calcification_only_phantoms_with_a_set_dot_size_fade_when_downsampled():
    """MorphHR's phantoms: every lesion a calcification cluster, dots of a set radius, so
    small that area downsampling by 8 dilutes a dot's signal about 8 x 8 times more than by 2."""
    specs = synthetic_specs(40, seed=3, size=512, calcification_share=1.0,
                            calcification_radius=0.5)
    findings = {spec.finding for spec in specs}
    assert findings <= {"normal", "benign_calcification", "malignant_calcification"}
    assert findings & {"benign_calcification", "malignant_calcification"}
    assert all(spec.calcification_radius == 0.5 for spec in specs)
    spec = next(s for s in specs if s.finding == "benign_calcification")
    from mammo_keras.data.synthetic import draw_phantom_layers

    lesion = draw_phantom_layers(spec).lesion[:512, :392]
    peaks = {factor: lesion.reshape(512 // factor, factor, 392 // factor, factor)
             .mean(axis=(1, 3)).max() for factor in (2, 8)}
    assert peaks[8] < peaks[2] / 4
    wider = draw_phantom_layers(dataclasses.replace(spec, calcification_radius=1.5)).lesion
    assert wider.sum() > 4 * lesion.sum()  # the radius sets the dots' size
    # the default keeps the 30 % share of calcification clusters
    default = synthetic_specs(400, seed=3)
    share = np.mean(["calcification" in s.finding for s in default if s.finding != "normal"])
    assert 0.2 < share < 0.4


def test_default_specs_are_the_phantoms_every_committed_result_was_drawn_from():
    """New phantom options must not move the random draws of the defaults: the first twelve
    patients of seed 0, as drawn before the calcification options existed."""
    findings = [spec.finding for spec in synthetic_specs(24, seed=0)][::2]
    assert findings == ["normal", "malignant_mass", "malignant_calcification", "normal",
                        "benign_mass", "normal", "benign_calcification", "benign_mass",
                        "malignant_mass", "malignant_calcification", "normal", "malignant_mass"]


def test_a_second_synth_into_a_folder_of_other_phantoms_is_refused(tmp_path):
    """Pixels of one set and labels of another never meet: a folder written with other
    options (or holding other files) is refused; the same options finish a write."""
    from mammo_keras.data import load_records, write_synthetic
    from mammo_keras.errors import UserError

    out = write_synthetic(tmp_path / "set", 10, size=256, seed=0)
    labels = (out / "synthetic.csv").read_text()
    with pytest.raises(UserError, match=r"set: not empty \(it holds phantoms of other options\)"):
        write_synthetic(out, 10, size=256, seed=1)
    assert (out / "synthetic.csv").read_text() == labels
    first = sorted(out.rglob("images/*.dcm"))[0]
    first.unlink()  # an interrupted write: the same options finish it
    write_synthetic(out, 10, size=256, seed=0)
    assert first.is_file() and len(load_records(out)) == 10
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(UserError, match="holds files that are not phantoms"):
        write_synthetic(tmp_path / "mine", 4, size=256)
