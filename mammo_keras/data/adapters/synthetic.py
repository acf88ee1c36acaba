"""The "synthetic" adapter: phantoms written by `mammo-keras data synth --format dicom`.

Reads `synthetic.csv` (one row per image: path, mask_path, label, density, patient_id,
laterality, view, finding, and the phantom's parameters).
"""

from __future__ import annotations

from pathlib import Path

from mammo_keras.data.csv_files import read_csv_rows
from mammo_keras.data.errors import DataError
from mammo_keras.data.records import LABELS, Record, Records

MANIFEST = "synthetic.csv"  # the writer (synthetic_writer.py) imports it from here


def load_synthetic(root: str | Path) -> Records:
    """Records of a synthetic data set; rows with a missing file or bad label are skipped and listed."""
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise DataError(root, f"no {MANIFEST}: write phantoms with `mammo-keras data synth`")
    records, skipped = [], []
    columns, rows = read_csv_rows(manifest)
    missing = {"path", "label", "patient_id"} - set(columns)
    if rows and missing:
        raise DataError(manifest, f"not a phantom manifest (no {sorted(missing)} columns)")
    for line, row in enumerate(rows, start=2):
        where = f"{manifest}:{line}"
        if row.get("label") not in LABELS:
            skipped.append(DataError(where, f"unknown label {row.get('label')!r}"))
            continue
        path = root / row["path"]
        if not path.is_file():
            skipped.append(DataError(path, "listed in the manifest but missing"))
            continue
        mask = root / row["mask_path"] if row.get("mask_path") else None
        records.append(Record(
            path=str(path), label=row["label"], density=row["density"] or None,
            patient_id=row["patient_id"] or None, laterality=row["laterality"] or None,
            view=row["view"] or None, source="synthetic",
            mask_paths=(str(mask),) if mask and mask.is_file() else (),
            extra={"finding": row["finding"], "seed": int(row["seed"])}))
    return Records(records, skipped)
