"""What a dataset adapter returns: one `Record` per image, and `Records`, a list with a skip report."""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import read_image

LABELS = ("normal", "benign", "malignant")
_SEVERITY_ORDER = {None: 0, "normal": 0, "benign": 1, "malignant": 2}


def worst_label(labels: Iterable[str | None]) -> str:
    """The most severe of a film's findings: malignant > benign > normal."""
    return max(labels, key=lambda label: _SEVERITY_ORDER[label], default="normal") or "normal"


@dataclasses.dataclass(frozen=True)
class ROI:
    """One annotated lesion, in image pixel coordinates (origin top-left, row = y).

    Attributes:
        x, y: centre (column, row) in pixels; radius: of the enclosing circle, in pixels.
        abnormality: the dataset's class of finding (MIAS: CALC, CIRC, SPIC, ...).
        severity: "benign" / "malignant" / None.
        points: the outline as (x, y) vertices when the dataset draws one (INbreast);
            the mask is then the polygon, else the disc.
    """

    x: float
    y: float
    radius: float
    abnormality: str | None = None
    severity: str | None = None
    points: tuple[tuple[float, float], ...] = ()

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean (height, width) polygon or disc of this ROI."""
        if len(self.points) >= 3:
            canvas = Image.new("1", (width, height), 0)
            ImageDraw.Draw(canvas).polygon([tuple(p) for p in self.points], fill=1, outline=1)
            return np.asarray(canvas, dtype=bool)
        rows, cols = np.ogrid[:height, :width]
        return (cols - self.x) ** 2 + (rows - self.y) ** 2 <= self.radius ** 2


@dataclasses.dataclass(frozen=True)
class Record:
    """One image of a dataset and what is known about it.

    Attributes:
        path: file path, or "<archive>::<member>" for a file inside an archive
            (both readable with `read_image`).
        label: "normal" / "benign" / "malignant" (worst finding of the image) or None.
        density: BI-RADS "A"-"D", or the dataset's own scale (MIAS "F" / "G" / "D"), or None.
        patient_id: groups the images of one patient (splits keep them together), or None.
        laterality: "L" / "R" / None. view: "CC" / "MLO" / None.
        source: the dataset (or sub-source) the image comes from.
        rois: annotated lesions; `mask()` rasterises them.
        image_shape: (height, width) when the dataset states it.
        mask_paths: pixel mask files (nonzero = lesion), one per annotated lesion, when the
            dataset has them (CBIS-DDSM ROI masks, synthetic masks).
        extra: dataset-specific fields (e.g. MIAS abnormality classes).
    """

    path: str
    label: str | None
    density: str | None
    patient_id: str | None
    laterality: str | None
    view: str | None
    source: str
    rois: tuple[ROI, ...] = ()
    image_shape: tuple[int, int] | None = None
    mask_paths: tuple[str, ...] = ()
    extra: dict = dataclasses.field(default_factory=dict, compare=False)

    def mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Boolean lesion mask (H, W): the union of the pixel mask files when the dataset has
        them, else of the ROI discs (all False for normal images)."""
        if self.mask_paths:
            masks = [read_image(path, mammogram=False)[0] > 0.5 for path in self.mask_paths]
            if any(mask.shape != masks[0].shape for mask in masks):
                raise DataError(self.path, f"its masks differ in shape: "
                                           f"{[mask.shape for mask in masks]}")
            return np.logical_or.reduce(masks)
        height, width = shape or self.image_shape or (None, None)
        if height is None:
            raise ValueError(f"{self.path}: image shape unknown; pass mask(shape=(H, W)).")
        mask = np.zeros((height, width), dtype=bool)
        for roi in self.rois:
            mask |= roi.mask(height, width)
        return mask


class Records(list):
    """A list of `Record` plus the files or rows a scan skipped (`skipped`, a list of DataError).

    Nothing is dropped silently: every skipped item is listed with its reason. `subset`
    names the part of a split these are ("test", "fold2"), for reports; None: a whole set.
    """

    def __init__(self, records: Iterable[Record] = (), skipped: Iterable[DataError] = (),
                 subset: str | None = None):
        super().__init__(records)
        self.skipped: list[DataError] = list(skipped)
        self.subset = subset

    def counts(self, field: str) -> dict:
        """How many records have each value of `field` (e.g. "label", "density", "source")."""
        return dict(sorted(collections.Counter(getattr(r, field) for r in self).items(),
                           key=lambda item: str(item[0])))

    def summary(self) -> str:
        """A short text table: counts per label, density and source, then the skipped items."""
        patients = {r.patient_id for r in self if r.patient_id is not None}
        lines = [f"{len(self)} images, {len(patients) or 'unknown'} patients"]
        for field in ("label", "density", "source", "view"):
            counts = ", ".join(f"{key}: {value}" for key, value in self.counts(field).items())
            lines.append(f"  {field:<8} {counts}")
        if self.skipped:
            lines.append(f"  skipped  {len(self.skipped)}:")
            lines.extend(f"    {error}" for error in self.skipped)
        return "\n".join(lines)
