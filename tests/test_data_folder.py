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
