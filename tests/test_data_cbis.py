"""CBIS-DDSM adapter on the official CSV format with a TCIA-style DICOM tree (written synthetically)."""

import csv

import numpy as np
import pytest

from mammo_keras.data import DataError, generate_phantom, load_records, synthetic_specs
from mammo_keras.data.synthetic_writer import write_synthetic


@pytest.fixture
def cbis(tmp_path):
    return write_synthetic(tmp_path / "cbis", 10, size=256, fmt="cbis", seed=5)


def test_records_masks_and_official_split(cbis):
    records = load_records("cbis_ddsm", root=cbis)
    assert len(records) == 10 and records.skipped == []
    specs = synthetic_specs(10, seed=5, size=256, label_weights=(0, 1, 1))
    by_case = {r.path.split("/CBIS-DDSM/")[1].split("/")[0]: r for r in records}
    for index, spec in enumerate(specs):
        patient = index // 2
        kind = "Mass" if spec.finding.endswith("mass") else "Calc"
        split = "Test" if patient % 5 == 4 else "Training"
        side = "LEFT" if spec.laterality == "L" else "RIGHT"
        record = by_case[f"{kind}-{split}_P_{patient:05d}_{side}_{spec.view}"]
        assert (record.label, record.density, record.laterality, record.view) == (
            spec.label, spec.density, spec.laterality, spec.view)
        assert record.patient_id == f"P_{patient:05d}"
        assert record.extra["split"] == ("test" if split == "Test" else "train")
        _, mask, _ = generate_phantom(spec)
        if mask.any():
            np.testing.assert_array_equal(record.mask(), mask)
    assert load_records(cbis).counts("source") == {"cbis_ddsm": 10}  # found by its CSVs


def append_row(table, **changes):
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    row = {**rows[0], **changes}
    with open(table, "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=fields).writerow(row)
    return rows[0]


def test_several_abnormalities_worst_label_and_bad_rows(cbis):
    table = next(cbis.glob("mass_case_description_train_set.csv"), None) or next(
        cbis.glob("calc_case_description_train_set.csv"))
    first = append_row(table, pathology="BENIGN", **{"abnormality id": "2"})
    append_row(table, pathology="UNKNOWN")
    append_row(table, **{"image file path": "Mass-Training_P_99999_LEFT_CC/x/y/000000.dcm"})
    records = load_records("cbis_ddsm", root=cbis)
    assert len(records) == 10
    image = next(r for r in records if first["image file path"].split("/")[0] in r.path)
    assert len(image.extra["abnormality_types"]) == 2
    assert image.label == ("malignant" if "MALIGNANT" in first["pathology"] else "benign")
    problems = [str(e) for e in records.skipped]
    assert len(problems) == 2
    assert any("unreadable row (pathology 'UNKNOWN'" in p for p in problems)
    assert any("full mammogram not found" in p and "P_99999" in p for p in problems)


def test_not_a_cbis_folder(tmp_path):
    with pytest.raises(DataError, match="case_description"):
        load_records("cbis_ddsm", root=tmp_path)
