"""`TargetSpec`: what `load_dataset` yields as the target of each record, built by a task.

The data layer knows record fields, not studies: a task (`mammo_keras.tasks`) says which
field holds its class, the classes in index order (an ordinal scale in its order), whether
a lesion mask rides along, and whether the targets are a dict named after the model's outputs.

    >>> spec = TargetSpec("density", class_names=("F", "G", "D"), ordinal=True)
    >>> spec.class_index(Record("a.pgm", None, "G", None, None, None, "mias"))
    1
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from mammo_keras.data.records import LABELS, Record

BIRADS_DENSITIES = ("A", "B", "C", "D")
MIAS_DENSITIES = ("F", "G", "D")  # fatty < fatty-glandular < dense-glandular
# Density scales in their order (kappa and every ordinal figure need it, not the alphabet's)
DENSITY_SCALES = (BIRADS_DENSITIES, MIAS_DENSITIES)
TARGET_NAMES = ("label", "mask")  # the names a dict target may hold
_RECORD_FIELDS = frozenset(field.name for field in dataclasses.fields(Record))


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """The targets of one pipeline.

    Attributes:
        field: the record field with the class: a `Record` attribute ("label", "density") or
            a key of `Record.extra` (a dataset's own field, e.g. "birads"); None: no class
            (every record is used and its class target is 0, for prediction).
        class_names: the classes in index order; None: `default_class_names(records)`.
        masks: a lesion mask (S, S, 1) float32 in {0, 1} follows each image.
        named: the names of a dict target (a subset of "label", "mask", matching a model's
            named outputs); None: one unnamed target, the mask when `masks` and no `field`,
            else the class index.
        ordinal: the classes form a scale in their index order (BI-RADS density).
    """

    field: str | None = "label"
    class_names: tuple[str, ...] | None = None
    masks: bool = False
    named: tuple[str, ...] | None = None
    ordinal: bool = False

    def __post_init__(self) -> None:
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if self.named is not None:
            object.__setattr__(self, "named", tuple(self.named))
            unknown = sorted(set(self.named) - set(TARGET_NAMES))
            if unknown or not self.named:
                raise ValueError(f"named targets must be a non-empty subset of "
                                 f"{list(TARGET_NAMES)}; got {list(self.named)}")
            if "label" in self.named and self.field is None:
                raise ValueError("a 'label' target needs a class field")
            if "mask" in self.named and not self.masks:
                object.__setattr__(self, "masks", True)
        elif self.masks and self.field is not None:
            raise ValueError("a class and a mask need named targets (named=('label', 'mask'))")

    @property
    def has_class(self) -> bool:
        """Whether the targets hold a class index (alone or as "label")."""
        return self.field is not None and (self.named is None or "label" in self.named)

    def value(self, record: Record):
        """The record's class value (None when it has none)."""
        if self.field in _RECORD_FIELDS:
            return getattr(record, self.field)
        return record.extra.get(self.field)

    def resolved(self, records: Sequence[Record]) -> "TargetSpec":
        """This spec with its class names filled from `records` where it names none."""
        if self.class_names is not None or self.field is None:
            return self
        return dataclasses.replace(self, class_names=default_class_names(records, self.field))

    def class_index(self, record: Record) -> int | None:
        """The index of the record's class among `class_names`, or None."""
        value = self.value(record)
        return self.class_names.index(value) if value in self.class_names else None

    def check_field(self, records: Sequence[Record]) -> None:
        """Refuse a field no record has (a typo, or a field of another dataset)."""
        if self.field is None or self.field in _RECORD_FIELDS:
            return
        if not any(self.field in record.extra for record in records):
            raise ValueError(f"no record has the field {self.field!r}: a record has "
                             f"{sorted(_RECORD_FIELDS - {'extra'})} and its dataset's own "
                             f"fields ({sorted({k for r in records[:50] for k in r.extra})})")


def default_class_names(records: Sequence[Record], field: str = "label") -> tuple[str, ...]:
    """The classes of `field` when none are given: normal / benign / malignant for "label";
    for a density field, the scale its values belong to in its own order (BI-RADS A < B < C
    < D, MIAS F < G < D); else the values the records hold (sorted)."""
    if field == "label":
        return LABELS
    spec = TargetSpec(field)
    values = sorted({str(v) for v in (spec.value(r) for r in records) if v is not None})
    if field == "density":
        for scale in DENSITY_SCALES:
            if set(values) <= set(scale):
                return scale
    return tuple(values)
