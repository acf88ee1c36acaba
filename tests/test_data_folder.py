"""Class-folder datasets (the Kaggle merged INbreast + MIAS + DDSM layout) and load_records."""

import numpy as np
import pytest
from PIL import Image

from mammo_keras.data import load_records


def touch_image(path, suffix_format="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(path, format=suffix_format)


@pytest.fixture
def merged(tmp_path):
    touch_image(tmp_path / "Normal" / "n1.png")
    touch_image(tmp_path / "BENIGN" / "INbreast" / "b1.png")
    touch_image(tmp_path / "benign" / "MIAS" / "b2.jpg", "JPEG")
    touch_image(tmp_path / "DDSM" / "Malignant" / "m1.png")  # source above the class
    touch_image(tmp_path / "cancer" / "m2.png")  # a synonym
    touch_image(tmp_path / "unsorted" / "u1.png")
    (tmp_path / "Normal" / "README.txt").write_text("notes")
    (tmp_path / "Normal" / ".DS_Store").write_text("")
    return tmp_path


def test_kaggle_merged_layout(merged):
    records = load_records("kaggle_merged", root=merged)
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in records}
    assert {name: r.label for name, r in by_name.items()} == {
        "n1.png": "normal", "b1.png": "benign", "b2.jpg": "benign",
        "m1.png": "malignant", "m2.png": "malignant"}
    assert by_name["b1.png"].source == "inbreast" and by_name["m1.png"].source == "ddsm"
    assert by_name["n1.png"].source == "kaggle_merged"
    assert records.counts("label") == {"benign": 2, "malignant": 2, "normal": 1}
    skipped = sorted(str(e) for e in records.skipped)
    assert len(skipped) == 2
    assert any("README.txt: not an image file" in s for s in skipped)
    assert any("u1.png: not inside a class folder" in s for s in skipped)


def test_any_class_names_and_auto_detection(merged):
    records = load_records(merged, classes=None)
    assert records.counts("label") == {"benign": 2, "ddsm": 1, "malignant": 1, "normal": 1,
                                       "unsorted": 1}
    assert len(load_records(merged)) == 5  # a plain folder: the default three classes


def test_load_records_errors(tmp_path):
    with pytest.raises(ValueError, match="needs root"):
        load_records("mias")
    with pytest.raises(ValueError, match="Unknown dataset 'ddsm2'"):
        load_records("ddsm2", root=tmp_path)
    with pytest.raises(ValueError, match="neither a dataset name"):
        load_records(tmp_path / "nothing")


def test_dicoms_in_class_folders_name_their_patient_study_breast_and_view(tmp_path):
    """The header of a DICOM says who, which study, which breast and view, though the
    folder layout does not: splits group by patient, `data inspect` counts the views."""
    import pydicom

    from mammo_keras.data import write_synthetic

    source = write_synthetic(tmp_path / "source", 4, size=256, fmt="dicom", seed=2)
    films = sorted(source.rglob("images/*.dcm"))
    expected = {}
    for index, film in enumerate(films):
        dataset = pydicom.dcmread(film)
        dataset.PatientID = f"P{index % 2}"
        if index == 3:  # no ViewPosition: the view comes from the series description
            del dataset.ViewPosition
            dataset.SeriesDescription = f"{dataset.ImageLaterality} MLO"
        target = tmp_path / "set" / ("benign" if index < 2 else "normal") / f"f{index}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(target)
        expected[target.name] = (f"P{index % 2}", dataset.StudyInstanceUID,
                                 dataset.ImageLaterality,
                                 "MLO" if index == 3 else dataset.ViewPosition)
    records = load_records(tmp_path / "set")
    found = {record.path.rsplit("/", 1)[-1]: (record.patient_id, record.extra["study_uid"],
                                             record.laterality, record.view)
             for record in records}
    assert found == expected
    summary = records.summary()
    assert "4 images, 2 patients" in summary and "None" not in summary.split("view")[1]


def test_entries_that_are_not_files_are_listed_not_dropped(tmp_path):
    """FIFOs, devices, broken links and link loops in an input folder are left out and each
    is listed with its reason (reading a FIFO would block)."""
    import os

    from mammo_keras.predict import collect_files

    root = tmp_path / "set"
    touch_image(root / "normal" / "n1.png")
    os.mkfifo(root / "normal" / "pipe.png")
    (root / "normal" / "loop_a.png").symlink_to(root / "normal" / "loop_b.png")
    (root / "normal" / "loop_b.png").symlink_to(root / "normal" / "loop_a.png")
    (root / "normal" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "normal" / "null.png").symlink_to("/dev/null")
    (root / "normal" / "back").symlink_to(root)
    records = load_records(root)
    assert [record.path.rsplit("/", 1)[-1] for record in records] == ["n1.png"]
    reasons = {error.path.rsplit("/", 1)[-1]: error.problem for error in records.skipped}
    assert reasons == {"pipe.png": "a FIFO (named pipe), not an image file; left out",
                       "loop_a.png": "a link loop; left out", "loop_b.png": "a link loop; left out",
                       "gone.png": "a broken link; left out",
                       "null.png": "a character device, not an image file; left out",
                       "back": "a link back to a folder already read (a link loop); left out"}
    files, skipped = collect_files([root])
    assert [name.rsplit("/", 1)[-1] for name in files] == ["n1.png"] and len(skipped) == 6


def test_an_image_listed_twice_with_other_facts_is_refused(tmp_path):
    import csv

    from mammo_keras.data import write_synthetic
    from mammo_keras.data.errors import DataError

    root = write_synthetic(tmp_path / "set", 4, size=256)
    with open(root / "synthetic.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    again = dict(rows[0])

    def write(extra):
        with open(root / "synthetic.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows + [extra])
    write(again)  # the same facts: kept once, the repeat listed
    records = load_records(root)
    assert len(records) == 4 and any("listed twice" in str(e) for e in records.skipped)
    write({**again, "patient_id": "OTHER", "label": "malignant" if again["label"] != "malignant"
           else "normal"})
    with pytest.raises(DataError, match=r"case00000.dcm: listed twice with different facts "
                                        r"\(label .*; patient_id '.*' / 'OTHER'\)"):
        load_records(root)


def test_a_plain_folder_of_a_site_s_images_is_read_where_no_label_is_needed(tmp_path, capsys):
    """`data inspect` and int8 calibration take a folder without class folders; evaluate,
    which needs the truth, says so and points to predict."""
    from mammo_keras import cli
    from mammo_keras.data import load_images
    from mammo_keras.export.exporter import sample_images

    for index in range(3):
        image = (np.random.default_rng(index).random((64, 48)) * 255).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / f"site_{index}.png")
    records = load_images(tmp_path)
    assert len(records) == 3 and {record.label for record in records} == {None}
    assert cli.main(["data", "inspect", str(tmp_path)]) == 0
    assert "3 images" in capsys.readouterr().out
    images, labels, source = sample_images(None, 32, 3, str(tmp_path),
                                           {"crop": False, "flip": False})
    assert images.shape == (3, 32, 32, 1) and labels is None and str(tmp_path) in source
    from mammo_keras.models import build_classifier

    model = tmp_path.parent / f"{tmp_path.name}_m.keras"
    build_classifier("baseline_cnn", "gap", 3, (32, 32, 1)).save(model)
    assert cli.main(["evaluate", str(model), str(tmp_path), "--out",
                     str(tmp_path.parent / f"{tmp_path.name}_e")]) == 2
    assert "no labelled images (no class folders such as normal / benign / malignant): " \
        "evaluate needs the truth; `mammo-keras predict" in capsys.readouterr().err
