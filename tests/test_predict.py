"""mammo-keras predict: DICOM / PNG / PGM files and folders, unreadable files listed, CSV and JSON."""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mammo_keras.cli import main
from mammo_keras.data import generate_phantom, PhantomSpec, preprocess, read_image
from mammo_keras.data.dicom_writer import write_dicom
from mammo_keras.models import build_classifier
from mammo_keras.predict import predict_files


def test_predict_matches_the_model_on_each_format(tmp_path):
    image = generate_phantom(PhantomSpec(seed=1, size=256, finding="malignant_mass"))[0]
    folder = tmp_path / "scans"
    folder.mkdir()
    write_dicom(folder / "a.dcm", image)
    Image.fromarray((image * 255).astype(np.uint8)).save(folder / "b.png")
    pixels = (image * 255).astype(np.uint8)
    (tmp_path / "c.pgm").write_bytes(f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n255\n".encode()
                                     + pixels.tobytes())
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    model = build_classifier("baseline_cnn", "gagm_se", 3, (64, 64, 1))
    rows, skipped = predict_files(model, [folder, tmp_path / "c.pgm", tmp_path / "nope.dcm"])
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["a.dcm", "b.png", "c.pgm"]
    assert sorted(str(e).rsplit("/", 1)[-1].split(":")[0] for e in skipped) == [
        "broken.png", "nope.dcm"]
    for row in rows:
        expected = model.predict(preprocess(read_image(row["path"])[0], 64)[0][None],
                                 verbose=0)[0]
        got = [row["p_normal"], row["p_benign"], row["p_malignant"]]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert row["prediction"] == ("normal", "benign", "malignant")[int(np.argmax(expected))]


def test_cli_writes_csv_and_json(tmp_path):
    image = generate_phantom(PhantomSpec(seed=2, size=256))[0]
    write_dicom(tmp_path / "x.dcm", image)
    model = build_classifier("baseline_cnn", "gap", 3, (64, 64, 1))
    model.save(tmp_path / "m.keras")
    assert main(["predict", str(tmp_path / "m.keras"), str(tmp_path / "x.dcm"), "--out",
                 str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "prediction", "p_normal", "p_benign", "p_malignant",
                             "note"]
    assert rows[0]["note"] == ""  # a model that states no training data has nothing to note
    assert abs(sum(float(rows[0][f"p_{c}"]) for c in ("normal", "benign", "malignant")) - 1) < 1e-5
    assert main(["predict", str(tmp_path / "m.keras"), str(tmp_path / "x.dcm"), "--out",
                 str(tmp_path / "out.json"), "--classes", "a,b,c"]) == 0
    assert set(json.loads((tmp_path / "out.json").read_text())[0]) == {
        "path", "prediction", "p_a", "p_b", "p_c", "note"}
    assert main(["predict", str(tmp_path / "m.keras"), str(tmp_path / "x.dcm"), "--out",
                 str(tmp_path / "out.txt")]) == 2


def test_a_cohort_with_impossible_files_predicts_every_good_one(tmp_path):
    """WindowWidth 0, RescaleSlope 1e308, a 1 x 1 PNG, a blank image and uniform noise (no
    breast) among good films: a subprocess (a hang in tf.data fails the timeout) predicts the
    good ones and lists the rest."""
    import subprocess
    import sys

    import pydicom

    build_classifier("baseline_cnn", "gap", 3, (32, 32, 1)).save(tmp_path / "m.keras")
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        write_dicom(scans / f"good{index}.dcm",
                    generate_phantom(PhantomSpec(seed=index, size=256))[0])
    write_dicom(scans / "noise.dcm", rng.uniform(size=(96, 80)).astype(np.float32))
    for name, tag, value in (("width0.dcm", "WindowWidth", 0), ("slope.dcm", "RescaleSlope", "1e308")):
        ds = pydicom.dcmread(write_dicom(scans / name, rng.uniform(size=(96, 80)).astype(
            np.float32), window=(2000.0, 1000.0)))
        setattr(ds, tag, value)
        ds.save_as(scans / name)
    Image.new("L", (1, 1), 9).save(scans / "pixel.png")
    Image.new("L", (64, 64), 0).save(scans / "blank.png")
    result = subprocess.run([sys.executable, "-m", "mammo_keras.cli", "predict",
                             str(tmp_path / "m.keras"), str(scans), "--out",
                             str(tmp_path / "p.csv")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]  # partial success
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert sorted(Path(row.split(",")[0]).name for row in rows[1:]) == [
        "good0.dcm", "good1.dcm", "good2.dcm"]
    listed = list(csv.DictReader(open(tmp_path / "p.skipped.csv")))
    assert sorted(Path(row["path"]).name for row in listed) == [
        "blank.png", "noise.dcm", "pixel.png", "slope.dcm", "width0.dcm"]
    assert all(row["reason"] for row in listed)
    skipped = [line for line in result.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 5
    for name, reason in (("width0.dcm", "rescale / window"), ("slope.dcm", "not finite"),
                         ("pixel.png", "smaller than 16 px"), ("blank.png", "blank image"),
                         ("noise.dcm", "no breast found")):
        assert any(name in line and reason in line for line in skipped), (name, skipped)
