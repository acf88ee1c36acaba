"""Patient-grouped stratified splits and k folds: no patient in two splits, fractions kept, manifest."""

import collections

import numpy as np
import pytest

from mammo_keras.data import load_records
from mammo_keras.data.records import Record
from mammo_keras.data.splits import (kfold_records, read_split_manifest, split_records,
                                     write_split_manifest)
from test_data_mias import MIAS_ARCHIVE


def fake_records(patients=60, seed=0):
    """Patients with 1-4 images; a patient's images share its label (for a clear check)."""
    rng = np.random.default_rng(seed)
    records = []
    for patient in range(patients):
        label = ["normal", "benign", "malignant"][patient % 3]
        for image in range(rng.integers(1, 5)):
            records.append(Record(path=f"p{patient}/i{image}.png", label=label, density="B",
                                  patient_id=f"p{patient}", laterality=None, view=None,
                                  source="test"))
    return records


def patients(records):
    return {r.patient_id for r in records}


def test_split_keeps_patients_whole_and_follows_fractions():
    records = fake_records()
    splits = split_records(records, (0.6, 0.2, 0.2), seed=1)
    assert sum(len(s) for s in splits.values()) == len(records)
    assert not patients(splits["train"]) & patients(splits["val"])
    assert not patients(splits["train"]) & patients(splits["test"])
    assert not patients(splits["val"]) & patients(splits["test"])
    for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert abs(len(splits[name]) / len(records) - share) < 0.06
        labels = collections.Counter(r.label for r in splits[name])
        assert set(labels) == {"normal", "benign", "malignant"}  # stratified: every class present


def test_same_seed_same_split_other_seed_differs():
    records = fake_records()
    first = split_records(records, seed=3)
    assert [r.path for r in split_records(records, seed=3)["test"]] == [r.path for r in first["test"]]
    assert [r.path for r in split_records(records, seed=4)["test"]] != [r.path for r in first["test"]]


def test_kfold_groups_and_balance():
    records = fake_records(patients=90)
    folds = kfold_records(records, folds=5, seed=0)
    by_patient = collections.defaultdict(set)
    for record, fold in zip(records, folds):
        by_patient[record.patient_id].add(fold)
    assert all(len(f) == 1 for f in by_patient.values())
    sizes = np.bincount(folds, minlength=5)
    assert sizes.min() >= 0.8 * len(records) / 5
    with pytest.raises(ValueError):
        kfold_records(records, folds=1)


def test_manifest_round_trip(tmp_path):
    records = fake_records()
    splits = split_records(records, seed=2)
    path = write_split_manifest(tmp_path / "split.csv", splits)
    again = read_split_manifest(path, records)
    for name in ("train", "val", "test"):
        assert [r.path for r in again[name]] == [r.path for r in splits[name]]
    with pytest.raises(ValueError, match="not among the dataset's records"):
        read_split_manifest(path, records[:5])
    lines = path.read_text().splitlines()
    first = lines[1].split(",")
    path.write_text("\n".join(lines + [",".join([first[0], *first[1:-1], "val"
                                                  if first[-1] != "val" else "train"])]) + "\n")
    with pytest.raises(ValueError, match=r"is listed again \(line 2, .*\); an image belongs to "
                                         "one subset"):
        read_split_manifest(path, records)


def test_bad_fractions():
    with pytest.raises(ValueError, match="summing to 1"):
        split_records(fake_records(), (0.5, 0.2, 0.2))


def test_mias_no_patient_in_two_splits_or_folds():
    if not MIAS_ARCHIVE.exists():
        pytest.skip(f"real MIAS archive not found at {MIAS_ARCHIVE}")
    records = load_records("mias", root=MIAS_ARCHIVE)
    splits = split_records(records, seed=0)
    names = list(splits)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not patients(splits[first]) & patients(splits[second])
    for split in splits.values():
        assert {"normal", "benign", "malignant"} <= {r.label for r in split}
    folds = kfold_records(records, folds=5, seed=0)
    fold_of_patient = collections.defaultdict(set)
    for record, fold in zip(records, folds):
        fold_of_patient[record.patient_id].add(fold)
    assert len(fold_of_patient) == 161 and all(len(f) == 1 for f in fold_of_patient.values())


def test_small_dataset_still_fills_every_split():
    """10 patients of 2 images: every split gets patients (a per-stratum greedy rule left test empty)."""
    records = fake_records(patients=10)
    for seed in range(5):
        splits = split_records(records, seed=seed)
        assert all(len(split) > 0 for split in splits.values()), seed
