"""Patient-grouped, stratified train / val / test splits and k folds, written as a manifest file.

All images of one patient land in one split (records without a patient id are
their own group). Groups are stratified by their worst label (or another field):
within each stratum, groups are shuffled with the seed and each goes to the split
that is furthest below its target share of images (within the stratum plus over
the whole dataset), so the class mix and the sizes follow the fractions closely
even when patients have different numbers of images or a class has few patients.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Sequence

import numpy as np

from mammo_keras.data.csv_files import read_csv_rows
from mammo_keras.errors import UserError
from mammo_keras.atomic import write_csv_atomically
from mammo_keras.data.targets import TargetSpec
from mammo_keras.data.records import LABELS, Record, Records, worst_label

SPLITS = ("train", "val", "test")
MANIFEST_FIELDS = ("path", "patient_id", "label", "split")


def _groups(records: Sequence[Record], stratify: str | None,
            groups: Sequence | None = None) -> dict[str, dict[str, list[int]]]:
    """{stratum: {group id: [record indices]}} in a stable order."""
    if groups is not None and len(groups) != len(records):
        raise ValueError(f"groups has {len(groups)} entries for {len(records)} records.")
    members: dict[str, list[int]] = collections.defaultdict(list)
    for index, record in enumerate(records):
        key = str(groups[index]) if groups is not None else \
            record.patient_id or f"__image__{record.path}"
        members[key].append(index)
    strata: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
    for group, indices in members.items():
        if stratify is None:
            key = "all"
        elif stratify == "label":
            labels = {records[i].label for i in indices}
            # another task's labels (e.g. mass / no_mass): the patient's set of labels
            key = worst_label(labels) if labels <= set(LABELS) | {None} else \
                "|".join(sorted(str(label) for label in labels))
        else:
            key = str(TargetSpec(stratify).value(records[indices[0]]))
        strata[key][group] = indices
    return {key: strata[key] for key in sorted(strata)}


def _assign(records: Sequence[Record], targets: Sequence[float], seed: int,
            stratify: str | None, groups: Sequence | None = None) -> list[int]:
    """A bucket index per record, groups kept whole, buckets filled towards `targets`."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, float)
    bucket_of = [0] * len(records)
    overall = np.zeros(len(targets))  # images per bucket over all strata so far
    for members in _groups(records, stratify, groups).values():
        names = list(members)
        rng.shuffle(names)
        sizes = np.zeros(len(targets))
        total = sum(len(indices) for indices in members.values())
        for name in names:
            # below target within the stratum, plus below target overall: small strata
            # (a few patients) then still feed every bucket over the whole dataset
            size = len(members[name])
            deficit = (targets * total - sizes) + (targets * (overall.sum() + size) - overall)
            bucket = int(np.argmax(deficit))
            sizes[bucket] += size
            overall[bucket] += size
            for index in members[name]:
                bucket_of[index] = bucket
    return bucket_of


def split_records(records: Sequence[Record], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int = 0, stratify: str | None = "label",
                  groups: Sequence | None = None) -> dict[str, Records]:
    """Train / val / test records, grouped by patient and stratified.

    Args:
        records: the dataset (`load_records(...)`).
        fractions: shares of train, val and test images (summing to 1).
        seed: shuffling seed; the same seed gives the same split.
        stratify: the record field to stratify by ("label": the patient's worst
            label; "density"; None).
        groups: a group key per record to keep together instead of the patient id,
            e.g. `audit.duplicate_groups(records)` for sets without patient ids.

    Returns:
        {"train": Records, "val": Records, "test": Records}.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three shares summing to 1; got {tuple(fractions)}.")
    buckets = _assign(records, fractions, seed, stratify, groups)
    return {name: Records(r for r, b in zip(records, buckets) if b == i)
            for i, name in enumerate(SPLITS)}


def kfold_records(records: Sequence[Record], folds: int = 5, seed: int = 0,
                  stratify: str | None = "label", groups: Sequence | None = None) -> list[int]:
    """The fold (0..folds-1) of each record, grouped by patient (or `groups`) and stratified."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2; got {folds}.")
    return _assign(records, [1.0 / folds] * folds, seed, stratify, groups)


def write_split_manifest(path: str | Path, assignment: dict[str, Sequence[Record]]) -> Path:
    """Write {split or fold name: records} as CSV (path, patient_id, label, split), atomically."""
    rows = [{"path": record.path, "patient_id": record.patient_id or "",
             "label": record.label or "", "split": split}
            for split, members in assignment.items() for record in members]
    return write_csv_atomically(path, rows, MANIFEST_FIELDS)


def read_split_manifest(path: str | Path, records: Sequence[Record]) -> dict[str, Records]:
    """Re-create a written split from `records`; a path of the manifest missing from them is an error."""
    by_path = {record.path: record for record in records}
    result: dict[str, Records] = collections.defaultdict(Records)
    columns, rows = read_csv_rows(path)
    missing = [name for name in ("path", "split") if name not in columns]
    if missing:
        raise UserError(f"{path}: not a split manifest (no {' or '.join(missing)} column; "
                        f"it has {columns or 'none'})")
    placed: dict[str, tuple[int, str]] = {}
    for line, row in enumerate(rows, start=2):
        if row["path"] not in by_path:
            raise UserError(f"{path}:{line}: {row['path']} is not among the dataset's records")
        if row["path"] in placed:  # an image in two subsets would be trained and tested on
            earlier, subset = placed[row["path"]]
            raise UserError(f"{path}:{line}: {row['path']} is listed again (line {earlier}, "
                            f"{subset}); an image belongs to one subset")
        placed[row["path"]] = (line, row["split"])
        result[row["split"]].append(by_path[row["path"]])
    return dict(result)


def split_table(assignment: dict[str, Sequence[Record]]) -> str:
    """A text table: images per label for each split, with patients and totals."""
    labels = sorted({r.label or "none" for members in assignment.values() for r in members})
    header = f"{'split':<8}" + "".join(f"{label:>11}" for label in labels) \
        + f"{'images':>9}{'patients':>10}"
    lines = [header]
    for name, members in assignment.items():
        counts = collections.Counter(r.label or "none" for r in members)
        patients = len({r.patient_id or r.path for r in members})
        lines.append(f"{name:<8}" + "".join(f"{counts[label]:>11}" for label in labels)
                     + f"{len(members):>9}{patients:>10}")
    return "\n".join(lines)
