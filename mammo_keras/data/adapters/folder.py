"""A folder of class subfolders, e.g. the Kaggle "INbreast + MIAS + DDSM" merged set (`kaggle_merged`).

    root/<class>/[<source>/...]/<image>        or        root/<source>/<class>/<image>

Class folders match in any case. For `kaggle_merged` (and by default) the classes are
normal / benign / malignant, with common synonyms (cancer -> malignant); any other
folder level becomes the record's `source`. With `classes=None` every top-level
folder name is a class (for other labellings). The set has no patient ids: splits
must group near-duplicates instead (`mammo-keras data audit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mammo_keras.data.errors import DataError
from mammo_keras.data.records import LABELS, Record, Records

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp", ".dcm", ".dicom")
SYNONYMS = {"cancer": "malignant", "malign": "malignant", "benigh": "benign",
            "healthy": "normal", "negative": "normal"}


def _class_of(part: str, classes: Iterable[str] | None) -> str | None:
    name = part.strip().lower()
    name = SYNONYMS.get(name, name)
    if classes is None:
        return name
    return name if name in classes else None


def load_class_folders(root: str | Path, classes: Iterable[str] | None = LABELS,
                       source: str = "folder") -> Records:
    """Records of every image under `root`, labelled by its class folder.

    Args:
        root: the folder.
        classes: accepted class names (lower case), or None to take every top-level
            folder as a class.
        source: the record source when no source folder level exists.

    Returns:
        `Records` sorted by path; files in no class folder, or that are not images,
        are listed in `skipped`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    classes = None if classes is None else tuple(classes)
    records, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = path.relative_to(root).parts[:-1]
        if path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(DataError(path, "not an image file (by its name)"))
            continue
        levels = parts[:1] if classes is None else parts
        found = [(i, _class_of(part, classes)) for i, part in enumerate(levels)]
        found = [(i, label) for i, label in found if label is not None]
        if not found:
            skipped.append(DataError(path, "not inside a class folder"
                                     + (f" ({', '.join(classes)})" if classes else "")))
            continue
        index, label = found[0]
        others = [part for i, part in enumerate(parts) if i != index]
        records.append(Record(path=str(path), label=label, density=None, patient_id=None,
                              laterality=None, view=None,
                              source=others[0].lower() if others else source))
    return Records(records, skipped)
