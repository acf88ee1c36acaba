"""A folder of class subfolders, e.g. the Kaggle "INbreast + MIAS + DDSM" merged set (`kaggle_merged`).

    root/<class>/[<source>/...]/<image>        or        root/<source>/<class>/<image>

Class folders match in any case. For `kaggle_merged` (and by default) the classes are
normal / benign / malignant, with common synonyms (cancer -> malignant); any other
folder level becomes the record's `source`. With `classes=None` every top-level
folder name is a class (for other labellings).

A `manifest.csv` at the root (written by `mammo-keras data patches`; columns `path`,
relative to the root, and any of `patient_id`, `source` and more) gives the images their
patient ids and sources; its other columns go to `Record.extra`. A DICOM file's own header
gives what the manifest does not: its PatientID, laterality and view, and its
StudyInstanceUID (`extra["study_uid"]`). Without either (the Kaggle set's PNGs) there are no
patient ids: splits must group near-duplicates instead (`mammo-keras data audit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mammo_keras.data.csv_files import read_csv_rows
from mammo_keras.data.dicom import dicom_identity
from mammo_keras.data.errors import DataError
from mammo_keras.data.records import LABELS, Record, Records
from mammo_keras.data.walk import walk_files

MANIFEST = "manifest.csv"
SUMMARY = "patches.json"  # `data patches` describes its set there
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp", *DICOM_SUFFIXES)
SYNONYMS = {"cancer": "malignant", "malign": "malignant", "benigh": "benign",
            "healthy": "normal", "negative": "normal"}


def _class_of(part: str, classes: Iterable[str] | None) -> str | None:
    name = part.strip().lower()
    name = SYNONYMS.get(name, name)
    if classes is None:
        return name
    return name if name in classes else None


def load_class_folders(root: str | Path, classes: Iterable[str] | None = LABELS,
                       source: str = "folder", unlabelled: bool = False) -> Records:
    """Records of every image under `root`, labelled by its class folder.

    Args:
        root: the folder.
        classes: accepted class names (lower case), or None to take every top-level
            folder as a class.
        source: the record source when no source folder level exists.
        unlabelled: an image in no class folder is a record with no label (a site's plain
            folder, for what needs no truth: inspection, int8 calibration), not skipped.

    Returns:
        `Records` sorted by path; files in no class folder, or that are not images,
        are listed in `skipped`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    classes = None if classes is None else tuple(classes)
    described, skipped = _manifest_rows(root)
    found, left_out = walk_files(root)
    skipped.extend(left_out)
    records = []
    for path in found:
        parts = path.relative_to(root).parts[:-1]
        if path in (root / MANIFEST, root / SUMMARY):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(DataError(path, "not an image file (by its name)"))
            continue
        levels = parts[:1] if classes is None else parts
        found = [(i, _class_of(part, classes)) for i, part in enumerate(levels)]
        found = [(i, label) for i, label in found if label is not None]
        if not found and not unlabelled:
            skipped.append(DataError(path, "not inside a class folder"
                                     + (f" ({', '.join(classes)})" if classes else "")))
            continue
        index, label = found[0] if found else (None, None)
        others = [part for i, part in enumerate(parts) if i != index]
        row = described.pop(path.relative_to(root).as_posix(), {})
        header = dicom_identity(str(path)) if path.suffix.lower() in DICOM_SUFFIXES else {}
        extra = {key: value for key, value in row.items()
                 if key not in ("path", "patient_id", "source")}
        if header.get("study_uid"):
            extra.setdefault("study_uid", header["study_uid"])
        records.append(Record(path=str(path), label=label, density=None,
                              patient_id=row.get("patient_id") or header.get("patient_id"),
                              laterality=header.get("laterality"), view=header.get("view"),
                              source=row.get("source") or (others[0].lower() if others
                                                           else source),
                              extra=extra))
    skipped.extend(DataError(root / MANIFEST, f"lists {name}, which is not in the folder")
                   for name in sorted(described))
    return Records(records, skipped)


def _manifest_rows(root: Path) -> tuple[dict[str, dict], list[DataError]]:
    """{relative path: row} of the folder's manifest.csv (empty without one)."""
    path = root / MANIFEST
    if not path.is_file():
        return {}, []
    columns, rows = read_csv_rows(path)
    if "path" not in columns:
        raise DataError(path, f"a manifest needs a 'path' column; it has {columns or 'none'}")
    described, skipped = {}, []
    for line, row in enumerate(rows, start=2):
        name = (row.get("path") or "").strip().replace("\\", "/")
        if not name or name in described:
            skipped.append(DataError(f"{path}:{line}", "empty or repeated path"))
            continue
        described[name] = row
    return described, skipped
