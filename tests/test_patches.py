"""Lesion / normal patches (`mammo_keras.data.patches`, `mammo-keras data patches`): geometry
against NumPy slicing and rotations, the stated mm scale, normals inside the breast, the
manifest read back with patient ids, and the real MIAS counts against its Info.txt."""

import csv
import dataclasses
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammo_keras.cli import main
from mammo_keras.data import load_records, write_synthetic
from mammo_keras.data.errors import DataError
from mammo_keras.data.patches import (Augmentation, PatchOptions, cut_patch, film_spacing_mm,
                                      make_patches, read_summary)
from mammo_keras.data.records import Record
from mammo_keras.errors import UserError

MIAS_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mias" / "all-mias.tar.gz"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("phantoms"), 12, size=256, seed=3)


def _film(rng, size=200):
    return rng.random((size, size)).astype(np.float32)


def test_a_plain_patch_at_film_scale_is_the_films_own_pixels(rng):
    film = _film(rng)
    patch = cut_patch(film, x=100.5, y=80.5, field_px=32, size=32)
    # centre between pixels 100 and 101: the patch is film[65:97, 85:117], exactly
    np.testing.assert_allclose(patch, film[65:97, 85:117], atol=1e-6)


@pytest.mark.parametrize("angle, turns", [(90, 1), (180, 2), (270, 3)])
def test_right_angle_rotations_are_numpys_rotations(rng, angle, turns):
    film = _film(rng)
    plain = cut_patch(film, 100.5, 80.5, 32, 32)
    rotated = cut_patch(film, 100.5, 80.5, 32, 32, Augmentation(rotation_deg=angle))
    np.testing.assert_allclose(rotated, np.rot90(plain, turns), atol=1e-5)


def test_a_shrinking_patch_equals_filtering_the_whole_film_first(rng):
    """cut_patch smooths only the region it samples; the reference smooths the whole film
    (SciPy) and samples it at the same rotated grid."""
    from scipy import ndimage

    film = _film(rng, 400)
    augmentation = Augmentation(rotation_deg=33.0, zoom=0.9)
    patch = cut_patch(film, 150.0, 260.0, field_px=144, size=32, augmentation=augmentation)
    step = 144 / 0.9 / 32
    smooth = ndimage.gaussian_filter(film, sigma=0.5 * step, mode="nearest")
    offsets = (np.arange(32) - 15.5) * step
    u, v = np.meshgrid(offsets, offsets)
    angle = np.deg2rad(33.0)
    rows, cols = 260.0 + np.sin(angle) * u + np.cos(angle) * v, \
        150.0 + np.cos(angle) * u - np.sin(angle) * v
    reference = ndimage.map_coordinates(smooth, [rows, cols], order=1, cval=0.0)
    np.testing.assert_allclose(patch, np.clip(reference, 0, 1), atol=1e-6)


def test_a_flipped_copy_is_the_mirror_image(rng):
    film = _film(rng)
    plain = cut_patch(film, 100.5, 80.5, 32, 32)
    flipped = cut_patch(film, 100.5, 80.5, 32, 32, Augmentation(flipped=True))
    np.testing.assert_allclose(flipped, plain[:, ::-1], atol=1e-6)


def test_the_patch_shows_the_stated_millimetres():
    """A disc of 10 mm diameter on a 0.1 mm / px film, in a 40 mm field at 64 px
    (0.625 mm / px), covers pi * (5 / 0.625)^2 patch pixels; zoom 2 shows half the field."""
    rows, cols = np.mgrid[:1000, :1000]
    film = ((rows - 500) ** 2 + (cols - 400) ** 2 <= 50 ** 2).astype(np.float32)
    record = Record("film.dcm", "benign", None, "p1", None, None, "x")
    spacing = film_spacing_mm(record, {"pixel_spacing_mm": [0.1, 0.1]})
    field_px = 40 / spacing
    area = (cut_patch(film, 400, 500, field_px, 64) > 0.5).sum()
    assert area == pytest.approx(np.pi * (5 / 0.625) ** 2, rel=0.05)
    zoomed = (cut_patch(film, 400, 500, field_px, 64, Augmentation(zoom=2.0)) > 0.5).sum()
    assert zoomed == pytest.approx(4 * area, rel=0.05)


def test_a_film_without_a_known_spacing_is_refused_by_name():
    record = Record("scan.png", "benign", None, "p1", None, None, "folder")
    with pytest.raises(DataError, match=r"^scan.png: its pixel spacing is unknown.*"
                                        r"--film-spacing-mm"):
        film_spacing_mm(record, {})
    assert film_spacing_mm(record, {}, default=0.07) == 0.07
    assert film_spacing_mm(record, {"pixel_spacing_mm": [0.1, 0.1]}, default=0.07) == 0.1
    assert film_spacing_mm(Record("m.pgm", "normal", None, None, None, None, "mias"), {}) == 0.2


def test_phantom_patches_are_read_back_with_their_patients(phantoms, tmp_path):
    records = load_records("synthetic", phantoms)
    options = PatchOptions(size=32, field_mm=6.4, copies=2, seed=1)
    summary = make_patches(records, tmp_path / "patches", options)

    lesions = [r for r in records if r.label != "normal"]  # normal phantoms: empty masks
    normals = [r for r in records if r.label == "normal"]
    assert summary["lesions"] == sum(len(r.mask_paths) for r in lesions)
    assert summary["per_kind"]["normal"] == 3 * len(normals) - 3 * sum(
        "normal" in reason for reason in summary["skipped"])
    assert summary["patches"] == 3 * (summary["lesions"] + summary["per_kind"]["normal"] // 3)

    back = load_records(tmp_path / "patches")
    assert not back.skipped and len(back) == summary["patches"]
    patient_of = {r.path: r.patient_id for r in records}
    label_of = {r.path: r.label for r in records}
    for record in back:
        assert record.patient_id == patient_of[record.extra["film"]]
        assert record.label in {"normal", label_of[record.extra["film"]]}
        image = np.asarray(Image.open(record.path))
        assert image.shape == (32, 32)
        assert float(record.extra["mm_per_px"]) == pytest.approx(
            6.4 / float(record.extra["zoom"]) / 32, rel=1e-3)
    groups = {}
    for record in back:
        groups.setdefault(record.extra["group"], set()).add(record.extra["copy"])
    assert all(copies == {"0", "1", "2"} for copies in groups.values())


def test_a_lesion_patch_is_centred_on_its_mask(phantoms, tmp_path):
    records = [r for r in load_records("synthetic", phantoms) if r.label != "normal"]
    make_patches(records, tmp_path / "p", PatchOptions(size=32, field_mm=6.4))
    for row in csv.DictReader(open(tmp_path / "p" / "manifest.csv")):
        mask = Record(row["film"], "benign", None, None, None, None, "synthetic",
                      mask_paths=(next(r for r in records if r.path == row["film"])
                                  .mask_paths[int(row["index"])],)).mask()
        rows, cols = np.nonzero(mask)
        assert float(row["x_px"]) == pytest.approx(cols.mean(), abs=0.1)
        assert float(row["y_px"]) == pytest.approx(rows.mean(), abs=0.1)


def test_normal_patches_lie_inside_the_breast(phantoms, tmp_path):
    records = [r for r in load_records("synthetic", phantoms) if r.label == "normal"]
    make_patches(records, tmp_path / "n", PatchOptions(size=32, field_mm=6.4,
                                                       normals_per_film=3))
    patches = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "n").glob("normal/*.png"))]
    assert patches
    for patch in patches:  # phantom background is 0; the breast is grey tissue
        assert (patch <= 2).mean() < 0.06


def test_a_folder_that_is_not_a_patch_set_is_not_overwritten(phantoms, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a patch folder"):
        make_patches(load_records("synthetic", phantoms), tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_a_rewritten_patch_set_leaves_no_old_patch(phantoms, tmp_path):
    records = load_records("synthetic", phantoms)
    make_patches(records, tmp_path, PatchOptions(size=32, field_mm=6.4, copies=2))
    make_patches(records, tmp_path, PatchOptions(size=32, field_mm=6.4, copies=0))
    assert len(load_records(tmp_path)) == read_summary(tmp_path)["patches"]
    assert not list(tmp_path.glob("*/*_c1.png"))


def test_films_of_one_name_in_different_folders_keep_their_own_patches(phantoms, tmp_path):
    """CBIS-DDSM names every full mammogram 1-1.dcm, in its own folder."""
    records = [r for r in load_records("synthetic", phantoms) if r.label != "normal"][:2]
    for index, record in enumerate(records):
        folder = tmp_path / "films" / f"case{index}"
        folder.mkdir(parents=True)
        (folder / "1-1.dcm").write_bytes(Path(record.path).read_bytes())
    renamed = [dataclasses.replace(r, path=str(tmp_path / "films" / f"case{i}" / "1-1.dcm"))
               for i, r in enumerate(records)]
    summary = make_patches(renamed, tmp_path / "p", PatchOptions(size=32, field_mm=6.4))
    assert summary["patches"] == len(list((tmp_path / "p").glob("*/*.png"))) == 2
    assert summary["lesions"] == 2


def test_the_folder_manifest_names_a_missing_file(tmp_path):
    (tmp_path / "benign").mkdir()
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(tmp_path / "benign" / "a.png")
    (tmp_path / "manifest.csv").write_text(
        "path,patient_id,source,group\nbenign/a.png,p7,site1,g1\nbenign/gone.png,p8,site1,g2\n")
    records = load_records(tmp_path)
    assert [(r.patient_id, r.source, r.extra["group"]) for r in records] == [("p7", "site1", "g1")]
    assert [str(e) for e in records.skipped] == [
        f"{tmp_path / 'manifest.csv'}: lists benign/gone.png, which is not in the folder"]


def test_the_command_reports_what_gave_no_patch(phantoms, tmp_path, capsys):
    status = main(["data", "patches", str(phantoms), "--out", str(tmp_path / "p"), "--size", "32",
                   "--field-mm", "20", "--normals-per-film", "2"])
    output = capsys.readouterr().out
    assert status == 3  # 20 mm fields do not fit twice in the phantoms' small breasts
    assert re.search(r"^\d+ patches of 32 px \(20 mm, 0.625 mm/px\)", output, re.M)
    assert "skipped" in output and "normal fields of 20 mm" in output


def _mias_lesion_rows() -> tuple[int, int, int]:
    """(benign, malignant, normal films) counted straight from Info.txt: lesion rows with
    coordinates, and films whose rows are all NORM."""
    with tarfile.open(MIAS_ARCHIVE) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("Info.txt"))
        text = archive.extractfile(member).read().decode("latin-1")
    counts = {"B": 0, "M": 0}
    classes: dict[str, set] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("mdb"):
            continue
        classes.setdefault(fields[0], set()).add(fields[2])
        if len(fields) >= 7 and fields[3] in counts:
            counts[fields[3]] += 1
    return counts["B"], counts["M"], sum(c == {"NORM"} for c in classes.values())


def test_mias_gives_a_patch_per_lesion_with_coordinates(tmp_path):
    if not MIAS_ARCHIVE.exists():
        pytest.skip(f"real MIAS archive not found at {MIAS_ARCHIVE}")
    benign, malignant, normal_films = _mias_lesion_rows()
    summary = make_patches(load_records("mias", root=MIAS_ARCHIVE), tmp_path,
                           PatchOptions(size=64))
    assert summary["per_label"]["benign"] == benign
    assert summary["per_label"]["malignant"] == malignant
    too_small = [s for s in summary["skipped"] if "normal fields" in s]
    assert summary["per_label"]["normal"] + len(too_small) == normal_films
    assert summary["patients"] == 161
    assert {float(r["mm_per_px"]) for r in csv.DictReader(open(tmp_path / "manifest.csv"))} == {0.8}


def test_patches_all_tissue_reach_training_without_the_breast_check(tmp_path):
    """A patch filled with tissue has no background, so the whole-film breast check would
    call it "no breast found"; with crop off (patches) every patch comes through."""
    from mammo_keras.data import load_dataset
    from mammo_keras.data.pipeline import DataReport

    (tmp_path / "normal").mkdir()
    texture = np.random.default_rng(0).normal(150, 4, (3, 64, 64)).clip(0, 255)
    for index, tile in enumerate(texture):
        Image.fromarray(tile.astype(np.uint8)).save(tmp_path / "normal" / f"t{index}.png")
    records = load_records(tmp_path)
    counts = {}
    for crop in (True, False):
        report = DataReport()
        batches = load_dataset(records, image_size=64, batch_size=8, crop=crop, flip=False,
                               report=report)
        counts[crop] = sum(int(images.shape[0]) for images, _ in batches)
    assert counts[True] < 3 and counts[False] == 3  # the film check refuses such tiles
