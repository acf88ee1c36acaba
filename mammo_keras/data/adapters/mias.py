"""MIAS (mini-MIAS): the official `all-mias.tar.gz`, read in place, or its extracted folder.

`Info.txt` rows are `refnum tissue class [severity [x y radius]]`; a film may have
several rows (one per abnormality); `*NOTE 3*` rows and some others have no
coordinates (calcifications spread through the breast). Facts used here, from the
database's own notes:
- films come in pairs of one patient: mdb001 / mdb002 are one patient, mdb003 /
  mdb004 the next; even numbers are left breasts, odd numbers right;
- every image is 1024 x 1024; coordinates have their origin at the bottom-left
  corner, so row = 1023 - y;
- MIAS films are medio-lateral oblique (MLO) views.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from mammo_keras.data.archive import is_archive, list_members, member_path, read_member
from mammo_keras.data.errors import DataError
from mammo_keras.data.records import ROI, Record, Records, worst_label

IMAGE_SIZE = 1024
TISSUES = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
ABNORMALITIES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM")
SEVERITIES = {"B": "benign", "M": "malignant"}
_ROW = re.compile(r"^(mdb\d{3})\s+(\S+)\s+(\S+)(.*)$")


def _parse_row(line: str, where: str) -> tuple[str, str, str, str | None, ROI | None]:
    """(refnum, tissue, abnormality, severity, roi) of one Info.txt row."""
    match = _ROW.match(line.strip())
    if not match:
        raise DataError(where, f"unreadable label row {line.strip()!r}")
    refnum, tissue, abnormality, rest = match.groups()
    if tissue not in TISSUES:
        raise DataError(where, f"row {refnum}: unknown background tissue {tissue!r}")
    if abnormality not in ABNORMALITIES:
        raise DataError(where, f"row {refnum}: unknown abnormality class {abnormality!r}")
    fields = rest.replace("*NOTE 3*", "").split()
    if abnormality == "NORM":
        if fields:
            raise DataError(where, f"row {refnum}: a normal film with extra fields {fields}")
        return refnum, tissue, abnormality, None, None
    if not fields or fields[0] not in SEVERITIES:
        raise DataError(where, f"row {refnum}: abnormality {abnormality} without severity B/M")
    severity = SEVERITIES[fields[0]]
    if len(fields) == 1:
        return refnum, tissue, abnormality, severity, None  # spread out: no coordinates
    if len(fields) != 4:
        problem = {2: "y and radius missing", 3: "radius missing"}.get(len(fields),
                                                                      "extra fields")
        raise DataError(where, f"row {refnum}: {problem} after the severity (x y radius "
                               f"expected, got {fields[1:]})")
    x, y, radius = (_number(value, name, refnum, where)
                    for value, name in zip(fields[1:], ("x", "y", "radius")))
    for value, name in ((x, "x"), (y, "y")):
        if not 0 <= value <= IMAGE_SIZE - 1:
            raise DataError(where, f"row {refnum}: {name} = {value:g} is outside the "
                                   f"{IMAGE_SIZE} x {IMAGE_SIZE} film")
    if not 0 < radius <= IMAGE_SIZE:
        raise DataError(where, f"row {refnum}: radius = {radius:g} must be in 1..{IMAGE_SIZE} px")
    roi = ROI(x=x, y=IMAGE_SIZE - 1 - y, radius=radius, abnormality=abnormality,
              severity=severity)
    return refnum, tissue, abnormality, severity, roi


def _number(text: str, name: str, refnum: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(where, f"row {refnum}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(where, f"row {refnum}: {name} {text!r} is not a finite number")
    return value


def _conflict(film: dict, tissue: str, abnormality: str, line: str) -> str | None:
    """Why a further row of a film contradicts its earlier ones (None: it does not)."""
    if tissue != film["tissue"]:
        return f"background tissue {tissue} after {film['tissue']}"
    if (abnormality == "NORM") != (film["findings"][0][0] == "NORM"):
        return "a normal row and an abnormality row"
    if line in film["lines"]:
        return "the same row twice"
    return None


def _locate(root: Path) -> tuple[str, dict[str, str]]:
    """(Info.txt text, {refnum: image path}) from the archive or the folder."""
    if is_archive(root):
        members = list_members(root)
        info = [m for m in members if Path(m).name.lower() == "info.txt"]
        if not info:
            raise DataError(root, "no Info.txt in the archive: is this all-mias.tar.gz?")
        text = read_member(root, info[0]).decode("latin-1")
        images = {Path(m).stem: member_path(root, m) for m in members
                  if m.lower().endswith(".pgm")}
        return text, images
    info = [p for p in root.rglob("*") if p.name.lower() == "info.txt"]
    if not info:
        raise DataError(root, "no Info.txt in the folder: is this the extracted MIAS database?")
    images = {p.stem: str(p) for p in root.rglob("*.pgm")}
    return info[0].read_text(encoding="latin-1"), images


def load_mias(root: str | Path) -> Records:
    """The 322 MIAS films as records (label = worst finding, density = F/G/D, circle ROIs).

    Args:
        root: `all-mias.tar.gz` (read in place) or the folder it was extracted to.

    Returns:
        `Records` in film order. In `Records.skipped`: rows that cannot be read
        (their film is left out whole, as its worst finding is unsure: impossible
        coordinates and rows of one film that disagree included), films without an
        image, and images without a row.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "MIAS archive or folder not found")
    text, images = _locate(root)
    info_path = f"{root}::Info.txt" if is_archive(root) else str(root / "Info.txt")
    films: dict[str, dict] = {}
    skipped: list[DataError] = []
    unreadable: set[str] = set()  # films with a bad row: skipped whole, their label is unsure
    for line in text.splitlines():
        if not line.strip().startswith("mdb"):
            continue
        try:
            refnum, tissue, abnormality, severity, roi = _parse_row(line, info_path)
        except DataError as error:
            skipped.append(error)
            unreadable.add(line.split()[0])
            continue
        film = films.setdefault(refnum, {"tissue": tissue, "findings": [], "rois": [],
                                         "lines": []})
        conflict = film["findings"] and _conflict(film, tissue, abnormality, " ".join(line.split()))
        if conflict:
            skipped.append(DataError(info_path, f"film {refnum}: its rows disagree ({conflict})"))
            unreadable.add(refnum)
            continue
        film["lines"].append(" ".join(line.split()))
        film["findings"].append((abnormality, severity))
        if roi is not None:
            film["rois"].append(roi)
    for refnum in unreadable:
        films.pop(refnum, None)
    records = []
    for refnum, film in films.items():
        if refnum not in images:
            skipped.append(DataError(info_path, f"film {refnum} is listed but its image is missing"))
            continue
        number = int(refnum[3:])
        records.append(Record(
            path=images[refnum],
            label=worst_label(severity or "normal" for _, severity in film["findings"]),
            density=film["tissue"],
            patient_id=f"mias_{(number + 1) // 2:03d}",
            laterality="L" if number % 2 == 0 else "R",
            view="MLO",
            source="mias",
            rois=tuple(film["rois"]),
            image_shape=(IMAGE_SIZE, IMAGE_SIZE),
            extra={"refnum": refnum,
                   "abnormalities": [a for a, _ in film["findings"] if a != "NORM"]},
        ))
    skipped.extend(DataError(path, "image has no row in Info.txt")
                   for refnum, path in sorted(images.items())
                   if refnum not in films and refnum not in unreadable)
    return Records(records, skipped)
