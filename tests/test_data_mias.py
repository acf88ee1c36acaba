"""The MIAS adapter: the real archive from ../shared/data/mias (skipped when absent), and a
hand-made MIAS-style folder with every kind of Info.txt row (always runs)."""

from pathlib import Path

import numpy as np
import pytest

from mammo_keras.data import ROI, DataError, load_records, read_image

MIAS_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mias" / "all-mias.tar.gz"
MASS_CLASSES = ("CIRC", "SPIC", "MISC")


@pytest.fixture(scope="module")
def mias():
    if not MIAS_ARCHIVE.exists():
        pytest.skip(f"real MIAS archive not found at {MIAS_ARCHIVE}")
    return load_records("mias", root=MIAS_ARCHIVE)


def test_mias_known_counts(mias):
    assert len(mias) == 322 and mias.skipped == []
    assert mias.counts("label") == {"benign": 63, "malignant": 52, "normal": 207}
    assert mias.counts("density") == {"D": 112, "F": 106, "G": 104}
    assert mias.counts("view") == {"MLO": 322}
    assert sum(len(record.rois) for record in mias) == 119  # rows with coordinates


def test_mias_patients_are_film_pairs(mias):
    by_patient = {}
    for record in mias:
        by_patient.setdefault(record.patient_id, []).append(record)
    assert len(by_patient) == 161
    for films in by_patient.values():
        numbers = sorted(int(f.extra["refnum"][3:]) for f in films)
        assert len(numbers) == 2 and numbers[0] % 2 == 1 and numbers[1] == numbers[0] + 1
        assert {f.laterality for f in films} == {"L", "R"}
        assert next(f for f in films if f.laterality == "L").extra["refnum"].endswith(
            ("0", "2", "4", "6", "8"))


def test_mias_rows_without_coordinates_and_several_findings(mias):
    by_ref = {record.extra["refnum"]: record for record in mias}
    for refnum in ("mdb216", "mdb233", "mdb245"):  # *NOTE 3*: calcifications spread out
        assert by_ref[refnum].label == "malignant" and by_ref[refnum].rois == ()
        assert by_ref[refnum].extra["abnormalities"] == ["CALC"]
    assert by_ref["mdb059"].label == "benign" and by_ref["mdb059"].rois == ()
    assert len(by_ref["mdb005"].rois) == 2 and by_ref["mdb005"].label == "benign"
    assert by_ref["mdb003"].label == "normal" and not by_ref["mdb003"].mask().any()


def test_mias_images_read_from_the_archive(mias):
    image, meta = read_image(mias[0].path)
    assert image.shape == (1024, 1024) and image.dtype == np.float32
    assert meta["format"] == "pgm" and 0.0 <= image.min() and image.max() <= 1.0


def test_mias_masks_sit_on_the_masses(mias):
    """A mass is denser than the ring around it: true for every MIAS mass with the bottom-left
    origin, and clearly not with the coordinates read from the top-left."""
    right = wrong = count = 0
    for record in mias:
        masses = [roi for roi in record.rois if roi.abnormality in MASS_CLASSES]
        if not masses:
            continue
        image, _ = read_image(record.path)
        mask = record.mask()
        for roi in masses:
            assert mask[int(round(roi.y)), int(round(roi.x))]
            for y, tally in ((roi.y, "right"), (1023 - roi.y, "wrong")):
                disc = ROI(roi.x, y, roi.radius).mask(1024, 1024)
                ring = ROI(roi.x, y, 2 * roi.radius).mask(1024, 1024) & ~disc
                brighter = image[disc].mean() > image[ring].mean()
                right, wrong = (right + brighter, wrong) if tally == "right" else (right, wrong + brighter)
            count += 1
    assert count == 58
    assert right == count
    assert wrong < 0.8 * count


def write_pgm(path: Path, value: int = 100) -> None:
    path.write_bytes(b"P5\n16 16\n255\n" + bytes([value]) * 256)


INFO_ROWS = """\
Some header text of the real file
mdb001 G CIRC B 8 4 3
mdb002 G NORM 
mdb003 D CALC M *NOTE 3*
mdb004 D SPIC M 5 5 2
mdb004 D CALC B 10 10 2
mdb005 F CIRC B
mdb006 Q NORM
mdb007 F ARCH X 1 1 1
mdb008 F NORM
mdb010 G CIRC B 3 3 1
mdb010 G SPIC M x y 2
this is not a row
"""


def test_mias_style_folder_with_every_kind_of_row(tmp_path):
    for number in range(1, 8):
        write_pgm(tmp_path / f"mdb{number:03d}.pgm")
    write_pgm(tmp_path / "mdb009.pgm")  # an image without a row
    write_pgm(tmp_path / "mdb010.pgm")  # one good row, one bad: the film is left out whole
    (tmp_path / "Info.txt").write_text(INFO_ROWS)
    records = load_records(tmp_path)  # recognised as MIAS by its Info.txt
    by_ref = {r.extra["refnum"]: r for r in records}
    assert sorted(by_ref) == ["mdb001", "mdb002", "mdb003", "mdb004", "mdb005"]
    assert [by_ref[k].label for k in sorted(by_ref)] == [
        "benign", "normal", "malignant", "malignant", "benign"]
    assert by_ref["mdb004"].extra["abnormalities"] == ["SPIC", "CALC"]
    roi = by_ref["mdb001"].rois[0]
    assert (roi.x, roi.y, roi.radius) == (8.0, 1019.0, 3.0)  # 1023 - 4: origin bottom-left
    assert by_ref["mdb001"].patient_id == by_ref["mdb002"].patient_id != by_ref["mdb003"].patient_id
    problems = sorted(str(error) for error in records.skipped)
    assert len(problems) == 5
    assert any("mdb006: unknown background tissue 'Q'" in p for p in problems)
    assert any("mdb007: abnormality ARCH without severity" in p for p in problems)
    assert any("film mdb008 is listed but its image is missing" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "mdb009.pgm")) and "no row" in p for p in problems)
    assert any("mdb010: x 'x' is not a number" in p for p in problems)
    assert "skipped  5" in records.summary()


def test_mias_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_records("mias", root=tmp_path / "nowhere.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Info.txt"):
        load_records("mias", root=tmp_path / "empty")


@pytest.mark.parametrize("row, problem", [
    ("mdb001 G CIRC B nan 4 3", "x 'nan' is not a finite number"),
    ("mdb001 G CIRC B 8 inf 3", "y 'inf' is not a finite number"),
    ("mdb001 G CIRC B -8 4 3", "x = -8 is outside the 1024 x 1024 film"),
    ("mdb001 G CIRC B 1e9 4 3", "x = 1e+09 is outside the 1024 x 1024 film"),
    ("mdb001 G CIRC B 8 4 1e308", "radius = 1e+308 must be in 1..1024 px"),
    ("mdb001 G CIRC B 8 4 0", "radius = 0 must be in 1..1024 px"),
    ("mdb001 G CIRC B 8 4", "radius missing after the severity"),
    ("mdb001 G CIRC B 8 4 3 9", "extra fields after the severity"),
    ("mdb001 G CIRC B 8 4 3\nmdb001 D CIRC B 9 9 3", "rows disagree (background tissue D after G)"),
    ("mdb001 G NORM\nmdb001 G CIRC B 9 9 3", "rows disagree (a normal row and an abnormality"),
    ("mdb001 G CIRC B 8 4 3\nmdb001 G CIRC B 8 4 3", "rows disagree (the same row twice)"),
])
def test_mias_impossible_rows_leave_their_film_out_with_the_reason(tmp_path, row, problem):
    write_pgm(tmp_path / "mdb001.pgm")
    write_pgm(tmp_path / "mdb002.pgm")
    (tmp_path / "Info.txt").write_text(row + "\nmdb002 G NORM\n")
    records = load_records(tmp_path)
    assert [record.extra["refnum"] for record in records] == ["mdb002"]
    assert any(problem in str(error) for error in records.skipped), records.skipped


def test_rows_left_out_are_listed_by_train_and_evaluate(tmp_path):
    """Films dropped from a corrupted Info.txt reach done.json, metrics.json and the CLI."""
    import json

    from mammo_keras import cli
    from mammo_keras.training import train

    from mammo_keras.data import PhantomSpec, generate_phantom

    rows = []
    for number in range(1, 25):
        film = generate_phantom(PhantomSpec(seed=number, size=256))[0]
        pixels = np.round(film * 255).astype(np.uint8)
        header = f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n255\n".encode()
        (tmp_path / f"mdb{number:03d}.pgm").write_bytes(header + pixels.tobytes())
        rows.append(f"mdb{number:03d} G " + ("NORM" if number % 3 else "CIRC B 30 30 5"))
    rows[4] = "mdb005 G CIRC B nan 30 5"
    rows[9] = "mdb010 G CIRC B 30 30"
    (tmp_path / "Info.txt").write_text("\n".join(rows) + "\n")
    config = {"name": "mias_bad_rows",
              "data": {"dataset": "mias", "root": str(tmp_path), "image_size": 32,
                       "split": [0.5, 0.25, 0.25], "classes": ["normal", "benign"]},
              "training": {"epochs": 1, "batch_size": 4, "tensorboard": False,
                           "class_balance": "none"},
              "evaluation": {"resamples": 0}}
    summary = train(config, tmp_path / "run", verbose=0)
    for where in (summary["skipped"],
                  json.loads((tmp_path / "run" / "metrics.json").read_text())["skipped"]):
        assert any("mdb005: x 'nan' is not a finite number" in line for line in where), where
        assert any("mdb010: radius missing" in line for line in where), where
    assert sum(summary["images"].values()) == 22
    assert cli.main(["evaluate", str(tmp_path / "run" / "model.keras"), "--data", "mias",
                     "--root", str(tmp_path), "--out", str(tmp_path / "eval"),
                     "--resamples", "0"]) == 3  # partial success
    skipped = json.loads((tmp_path / "eval" / "metrics.json").read_text())["skipped"]
    assert sum("mdb005" in line or "mdb010" in line for line in skipped) == 2
    listed = (tmp_path / "eval" / "skipped.csv").read_text()
    assert "mdb005" in listed and "radius missing" in listed
