"""Laterality and view from a mammogram's file name, for formats that carry no tags.

Sites and public sets name their files after the breast and the view:

    NYU            0_L-CC.png, 3_R-MLO.png         Kaggle-style   1_L_CC.png, 0_R-MLO.png
    CBIS-DDSM      Mass-Training_P_00001_LEFT_CC    INbreast       22678622_..._MG_R_ML_ANON.dcm
    DDSM-style     case0001.LEFT_CC.LJPEG, patient_RMLO.png

The name (not its folders) is cut into tokens at every non-alphanumeric character; a
token L / R / LEFT / RIGHT gives the laterality, CC / MLO / ML (INbreast's name for MLO)
the view, and a fused token such as LCC or RMLO both. Contradicting tokens give None.

>>> laterality_and_view_from_name("scans/0_R-MLO.png")
('R', 'MLO')
>>> laterality_and_view_from_name("Calc-Test_P_00038_LEFT_CC_1.dcm")
('L', 'CC')
>>> laterality_and_view_from_name("mdb001.pgm")
(None, None)
"""

from __future__ import annotations

import re
from pathlib import PurePath

_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp",
             ".ljpeg", ".gz")
_SIDES = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
_VIEWS = {"CC": "CC", "MLO": "MLO", "ML": "MLO"}
_FUSED = re.compile(r"^(L|R|LEFT|RIGHT)(CC|MLO|ML)$")


def _tokens(path: str) -> list[str]:
    name = PurePath(str(path).split("::")[-1]).name
    lowered = name.lower()
    for _ in range(2):  # e.g. .tar.gz, .LJPEG.gz
        for suffix in _SUFFIXES:
            if lowered.endswith(suffix):
                name, lowered = name[:-len(suffix)], lowered[:-len(suffix)]
    return [token for token in re.split(r"[^A-Za-z0-9]+", name.upper()) if token]


def _only(found: set[str]) -> str | None:
    return found.pop() if len(found) == 1 else None


def laterality_and_view_from_name(path: str | PurePath) -> tuple[str | None, str | None]:
    """("L" / "R" / None, "CC" / "MLO" / None) read from a file name (archive members too)."""
    sides, views = set(), set()
    for token in _tokens(str(path)):
        fused = _FUSED.match(token)
        if fused:
            sides.add(_SIDES[fused.group(1)])
            views.add(_VIEWS[fused.group(2)])
        elif token in _SIDES:
            sides.add(_SIDES[token])
        elif token in _VIEWS:
            views.add(_VIEWS[token])
    return _only(sides), _only(views)

