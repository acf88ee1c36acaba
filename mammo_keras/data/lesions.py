"""Lesion-presence records for segmentation + detection studies (HDS): which films hold a
lesion of the studied kind, with that lesion's outline and nothing else.

HDS's image label is "mass present" (the authors' `cls_label = 1 if mask.sum() > 0`), so a
film's target is the union of its *mass* outlines: a calcification-only film is a negative
with an empty mask, as in the authors' INbreast masks. What counts as a mass, per dataset:

- MIAS: rows of class CIRC, SPIC or MISC (circles from Info.txt);
- CBIS-DDSM: rows of abnormality type "mass" (their ROI mask DICOMs);
- INbreast: ROIs named "Mass" (XML polygons);
- phantoms: findings "benign_mass" / "malignant_mass" (their pixel masks);
- a folder of class subfolders has no outlines: it cannot be used.

`kinds="all"` keeps every annotated lesion instead. A film with a lesion of the studied kind
whose outline is unknown (a MIAS row without coordinates, a CBIS-DDSM mass whose ROI mask is
missing) cannot be given a mask: it is reported, never guessed as negative or as a circle.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from mammo_keras.data.errors import DataError
from mammo_keras.data.records import Record, Records

LESION_CLASSES = ("no_mass", "mass")
KINDS = ("masses", "all")
MIAS_MASSES = ("CIRC", "SPIC", "MISC")


def _is_mass(name: str | None) -> bool:
    return str(name or "").strip().lower() == "mass"


def lesion_record(record: Record, kinds: str = "masses") -> Record:
    """`record` with label "mass" / "no_mass" (LESION_CLASSES) and only the outlines of the
    studied lesions (`kinds`: "masses" or "all"); the original label stays in
    `extra["finding_label"]` (for a malignancy AUC).

    Raises:
        DataError: the film holds a lesion of the studied kind without an outline.
    """
    if kinds not in KINDS:
        raise ValueError(f"lesion kinds must be one of {list(KINDS)}, got {kinds!r}")
    rois, masks = record.rois, record.mask_paths
    if record.source == "mias":
        studied = [a for a in record.extra.get("abnormalities", [])
                   if kinds == "all" or a in MIAS_MASSES]
        rois = tuple(roi for roi in rois if kinds == "all" or roi.abnormality in MIAS_MASSES)
        if len(rois) < len(studied):
            raise DataError(record.path, f"{len(studied) - len(rois)} of its "
                                         f"{'lesions' if kinds == 'all' else 'masses'} "
                                         "has no coordinates in Info.txt: no mask can be drawn")
    elif record.source == "cbis_ddsm":
        types = record.extra.get("abnormality_types", [])
        if len(masks) != len(types):
            if kinds == "all" or any(_is_mass(kind) for kind in types):
                raise DataError(record.path, "an ROI mask of one of its lesions is missing")
        elif kinds == "masses":
            masks = tuple(mask for mask, kind in zip(masks, types) if _is_mass(kind))
    elif record.source == "inbreast" and kinds == "masses":
        rois = tuple(roi for roi in rois if _is_mass(roi.abnormality))
    elif record.source == "synthetic" and kinds == "masses":
        if not str(record.extra.get("finding", "")).endswith("_mass"):
            masks = ()
    elif not (rois or masks) and record.label not in (None, "normal"):
        raise DataError(record.path, f"a {record.label} film from {record.source!r} has no "
                                     "lesion outline: this dataset cannot train segmentation")
    present = bool(rois or masks)
    return dataclasses.replace(record, rois=rois, mask_paths=masks,
                               label=LESION_CLASSES[int(present)],
                               extra={**record.extra, "finding_label": record.label})


def lesion_records(records: Iterable[Record], kinds: str = "masses") -> Records:
    """`lesion_record` of each; the films that cannot be used are in `skipped` (with the
    records' own skipped items)."""
    kept, skipped = [], list(getattr(records, "skipped", []))
    for record in records:
        try:
            kept.append(lesion_record(record, kinds))
        except DataError as error:
            skipped.append(error)
    return Records(kept, skipped, subset=getattr(records, "subset", None))
