"""CBIS-DDSM: the official case-description CSVs with the DICOM tree from TCIA.

The four CSVs (mass / calc x train / test) have one row per abnormality; a
mammogram with several abnormalities has several rows. Columns used: patient_id,
breast_density (mass CSVs) or "breast density" (calc CSVs), "left or right
breast", "image view", "abnormality type", assessment (BI-RADS), pathology
(MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK), "image file path", "ROI mask file
path". The paths in the CSVs rarely match a TCIA download exactly (series folders
and file names differ, some cells hold stray newlines), so files are found by the
case folder (the path's first component): the full mammogram is the case folder's
DICOM, the ROI mask the DICOM under "<case>_<abnormality id>" in a "ROI mask"
series, or the larger of its two DICOMs (the other is the cropped patch).

CBIS-DDSM has no normal images: labels are benign / malignant (worst per image).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from mammo_keras.data.csv_files import read_csv_rows
from mammo_keras.data.errors import DataError
from mammo_keras.data.records import Record, Records, worst_label

PATHOLOGY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
DENSITY = {"1": "A", "2": "B", "3": "C", "4": "D"}
SIDES = {"LEFT": "L", "RIGHT": "R"}


def _dicom_index(root: Path) -> dict[str, list[Path]]:
    """{top-level case folder name: its DICOM files}, for every case folder under root."""
    index: dict[str, list[Path]] = collections.defaultdict(list)
    for folder, _, files in os.walk(root):
        dicoms = [name for name in files if name.lower().endswith(".dcm")]
        if not dicoms:
            continue
        parts = Path(folder).relative_to(root).parts
        case = next((part for part in parts if part.startswith(("Mass-", "Calc-"))), None)
        if case is not None:
            index[case].extend(Path(folder) / name for name in dicoms)
    return index


def _resolve(root: Path, csv_path: str, index: dict[str, list[Path]], mask: bool) -> Path | None:
    relative = csv_path.strip().replace("\\", "/")
    if (root / relative).is_file():
        return root / relative
    candidates = index.get(relative.split("/")[0], [])
    if not mask:
        return candidates[0] if len(candidates) == 1 else None
    labelled = [p for p in candidates if "roi mask" in str(p.parent).lower()]
    if len(labelled) == 1:
        return labelled[0]
    return max(candidates, key=lambda p: p.stat().st_size) if candidates else None


def _read_rows(path: Path) -> list[dict]:
    return [{key.strip().lower(): (value or "").strip()
             for key, value in row.items() if isinstance(key, str)}
            for row in read_csv_rows(path, encoding="utf-8-sig")[1]]


def load_cbis_ddsm(root: str | Path) -> Records:
    """One record per mammogram of CBIS-DDSM.

    Args:
        root: the folder holding the case-description CSVs (anywhere below it) and
            the DICOM tree as TCIA delivers it.

    Returns:
        `Records`: label (worst pathology), density (BI-RADS A-D), patient id,
        laterality, view, the ROI mask files (`mask_paths`), and in `extra` the
        official split ("train" / "test"), abnormality types and BI-RADS assessments.
        Rows whose files cannot be found or whose fields cannot be read are skipped
        and listed.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "CBIS-DDSM folder not found")
    tables = sorted(root.rglob("*case_description*.csv"))
    if not tables:
        raise DataError(root, "no *_case_description_*.csv: is this the CBIS-DDSM folder?")
    index = _dicom_index(root)
    images: dict[Path, dict] = {}
    skipped: list[DataError] = []
    for table in tables:
        split = "test" if "test" in table.name.lower() else "train"
        for line, row in enumerate(_read_rows(table), start=2):
            where = f"{table}:{line}"
            pathology = PATHOLOGY.get(row.get("pathology", "").upper())
            density = DENSITY.get(row.get("breast_density") or row.get("breast density", ""))
            side = SIDES.get(row.get("left or right breast", "").upper())
            view = row.get("image view", "").upper()
            if pathology is None or side is None or view not in ("CC", "MLO"):
                skipped.append(DataError(where, "unreadable row (pathology "
                                                f"{row.get('pathology')!r}, side, view {view!r})"))
                continue
            image = _resolve(root, row.get("image file path", ""), index, mask=False)
            if image is None:
                skipped.append(DataError(where, "full mammogram not found for "
                                                f"{row.get('image file path', '')!r}"))
                continue
            mask = _resolve(root, row.get("roi mask file path", ""), index, mask=True)
            entry = images.setdefault(image, {
                "patient": row.get("patient_id"), "density": density, "side": side,
                "view": view, "split": split, "labels": [], "masks": [], "types": [],
                "assessments": []})
            entry["labels"].append(pathology)
            entry["types"].append(row.get("abnormality type", ""))
            entry["assessments"].append(row.get("assessment", ""))
            if mask is not None:
                entry["masks"].append(str(mask))
            else:
                skipped.append(DataError(where, "ROI mask not found; the image is kept without "
                                                "this lesion's mask"))
    records = [Record(path=str(path), label=worst_label(entry["labels"]),
                      density=entry["density"], patient_id=entry["patient"],
                      laterality=entry["side"], view=entry["view"], source="cbis_ddsm",
                      mask_paths=tuple(entry["masks"]),
                      extra={"split": entry["split"], "abnormality_types": entry["types"],
                             "pathologies": entry["labels"],
                             "assessments": entry["assessments"]})
               for path, entry in sorted(images.items())]
    return Records(records, skipped)
