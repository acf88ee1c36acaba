"""INbreast: DICOM mammograms, the INbreast.csv table and the OsiriX XML ROI files.

    INbreast.csv   "File Name;...;Laterality;View;...;ACR;Bi-Rads" (semicolons; commas accepted)
    AllDICOMs/     <File Name>_<patient hash>_MG_<L|R>_<CC|ML>_ANON.dcm
    AllXML/        <File Name>.xml, a plist: Images[0].ROIs[] with Name and Point_px ["(x, y)"]

Labels follow the usual convention for INbreast, which records a BI-RADS assessment
but no pathology for every image: BI-RADS 1 -> normal, 2-3 -> benign, 4a-6 ->
malignant. Density is the ACR value 1-4 as BI-RADS A-D. The patient id is the hash
in the DICOM file name (one patient's views share it).
"""

from __future__ import annotations

import csv
import plistlib
import re
from xml.parsers.expat import ExpatError
from pathlib import Path

import numpy as np

from mammo_keras.data.errors import DataError
from mammo_keras.data.records import ROI, Record, Records

DENSITY = {"1": "A", "2": "B", "3": "C", "4": "D"}
_FILE = re.compile(r"^(\d+)_([0-9a-fA-F]+)_MG_([LR])_(CC|ML|MLO)_ANON", re.IGNORECASE)
_POINT = re.compile(r"\(\s*([-\d.eE+]+)\s*,\s*([-\d.eE+]+)\s*(?:,[^)]*)?\)")


def label_from_birads(birads: str) -> str | None:
    """BI-RADS 1 -> normal, 2-3 -> benign, 4a/4b/4c/5/6 -> malignant; None if unreadable."""
    match = re.match(r"\s*([1-6])", birads or "")
    if not match:
        return None
    value = int(match.group(1))
    return "normal" if value == 1 else "benign" if value <= 3 else "malignant"


def read_rois(path: Path, label: str | None) -> tuple[ROI, ...]:
    """The ROIs of one INbreast XML file (polygons; single points become 2-px discs)."""
    try:
        with open(path, "rb") as handle:
            document = plistlib.load(handle)
        images = document["Images"]
    except (plistlib.InvalidFileException, ExpatError, KeyError, ValueError, OSError) as error:
        raise DataError(path, f"unreadable ROI file ({type(error).__name__}: {error})") from error
    try:
        return _rois(images, label)
    except (AttributeError, TypeError, ValueError, IndexError) as error:  # a malformed plist
        raise DataError(path, f"unreadable ROI file ({type(error).__name__}: {error})") \
            from None


def _rois(images: list, label: str | None) -> tuple[ROI, ...]:
    rois = []
    for roi in images[0].get("ROIs", []) if images else []:
        points = tuple((float(x), float(y)) for x, y in
                       (_POINT.match(text).groups() for text in roi.get("Point_px", [])
                        if _POINT.match(text)))
        if not points:
            continue
        xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
        centre_x, centre_y = float(xs.mean()), float(ys.mean())
        radius = float(max(2.0, np.hypot(xs - centre_x, ys - centre_y).max()))
        rois.append(ROI(x=centre_x, y=centre_y, radius=radius, abnormality=roi.get("Name"),
                        severity=label if label != "normal" else None,
                        points=points if len(points) >= 3 else ()))
    return tuple(rois)


MALFORMED = "\0malformed"  # a row's key for why it cannot be read (no CSV column has it)


def _table(root: Path) -> tuple[Path, list[dict]]:
    tables = sorted(root.rglob("INbreast*.csv"))
    if not tables:
        raise DataError(root, "no INbreast.csv: is this the INbreast folder?")
    text = tables[0].read_text(encoding="utf-8-sig", errors="replace")
    delimiter = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") \
        else ","
    try:
        raw = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    except csv.Error as error:
        raise DataError(tables[0], f"unreadable CSV ({error})") from None
    rows = []
    for row in raw:  # csv puts the fields beyond the header under the key None, as a list
        extra = row.pop(None, None)
        rows.append({MALFORMED: f"{len(extra)} field(s) more than the header"} if extra else
                    {(key or "").strip().lower(): (value or "").strip()
                     for key, value in row.items()})
    return tables[0], rows


def load_inbreast(root: str | Path) -> Records:
    """One record per INbreast image, with polygon ROIs from AllXML.

    Returns:
        `Records`; rows without a DICOM file or with an unreadable BI-RADS, and
        unreadable XML files, are listed in `skipped`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "INbreast folder not found")
    table, rows = _table(root)
    dicoms = {}
    for path in root.rglob("*.dcm"):
        match = _FILE.match(path.name)
        if match:
            dicoms[match.group(1)] = (path, match)
    xmls = {path.stem: path for path in root.rglob("*.xml")}
    records, skipped = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{table}:{line}"
        if MALFORMED in row:
            skipped.append(DataError(where, row[MALFORMED]))
            continue
        name = row.get("file name", "").split(".")[0]
        label = label_from_birads(row.get("bi-rads", ""))
        if name not in dicoms:
            skipped.append(DataError(where, f"no DICOM file for File Name {name!r}"))
            continue
        if label is None:
            skipped.append(DataError(where, f"unreadable Bi-Rads {row.get('bi-rads')!r}"))
            continue
        path, match = dicoms[name]
        rois: tuple[ROI, ...] = ()
        if name in xmls:
            try:
                rois = read_rois(xmls[name], label)
            except DataError as error:
                skipped.append(error)
                continue
        view = match.group(4).upper()
        records.append(Record(
            path=str(path), label=label, density=DENSITY.get(row.get("acr", "")),
            patient_id=match.group(2).lower(), laterality=match.group(3).upper(),
            view="CC" if view == "CC" else "MLO", source="inbreast", rois=rois,
            extra={"birads": row.get("bi-rads"), "file_name": name}))
    return Records(records, skipped)
