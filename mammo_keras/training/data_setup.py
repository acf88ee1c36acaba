"""The records and the patient-grouped train / val / test subsets a config asks for."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from mammo_keras.data import Records, kfold_records, load_records, split_records, write_synthetic
from mammo_keras.data.audit import duplicate_groups
from mammo_keras.data.csv_files import read_csv_rows
from mammo_keras.data.errors import DataError
from mammo_keras.errors import UserError
from mammo_keras.training.config import ConfigError, without_default_synthetic_keys

SUBSETS = ("train", "val", "test")


def synthetic_root(data: dict, data_dir: str | Path) -> Path:
    """Where the phantoms of `data["synthetic"]` live: one folder per parameter set."""
    options = without_default_synthetic_keys(data["synthetic"])
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return Path(data_dir) / f"synthetic-{data['synthetic']['count']}-{key}"


def dataset_records(data: dict, data_dir: str | Path,
                    progress: Callable[[int, int], None] | None = None) -> Records:
    """The records of `data` (the config's data section).

    With dataset "synthetic" and no root, phantoms (DICOM) are written under
    `data_dir` first; an interrupted write resumes, a finished one is reused.
    """
    root = data["root"]
    if data["dataset"] == "synthetic" and root is None:
        root = synthetic_root(data, data_dir)
        if not (root / "synthetic.csv").is_file():
            options = data["synthetic"]
            write_synthetic(root, options["count"], size=options["size"], fmt="dicom",
                            seed=options["seed"], contrast=options["contrast"],
                            lesion_scale=options["lesion_scale"], progress=progress,
                            calcification_share=options["calcification_share"],
                            calcification_radius=options["calcification_radius"])
    elif root is None:
        raise ConfigError(f"data.root is needed for dataset {data['dataset']!r}")
    return load_records(data["dataset"], root=root)


def split_subsets(records: Records, data: dict, stratify: str | None = "label"
                  ) -> dict[str, Records]:
    """{"train", "val", "test"}: patient-grouped and stratified by the record field `stratify`
    (the task's `stratify_field`; `data["split_by"]` "image": per image instead, the leaky split some papers used, to
    measure what it adds).

    With `data["folds"]` = k > 1, fold `data["fold"]` is the test set, the next
    fold (mod k) the validation set and the others the training set; otherwise
    `data["split"]` gives the shares. With `data["group_duplicates"]`, near-duplicate
    images (the audit's perceptual hash) stay on one side too, for sets such as the
    pre-augmented Kaggle collection that have no patient ids.
    """
    if data["split_by"] == "image":  # every image its own group: a patient's views may leak
        groups = [record.path for record in records]
    else:
        groups = duplicate_groups(records) if data["group_duplicates"] else None
    if data["folds"] and data["folds"] > 1:
        folds = kfold_records(records, data["folds"], seed=data["split_seed"], stratify=stratify,
                              groups=groups)
        test, val = data["fold"], (data["fold"] + 1) % data["folds"]
        roles = {test: "test", val: "val"}
        subsets = {name: Records() for name in SUBSETS}
        for record, fold in zip(records, folds):
            subsets[roles.get(fold, "train")].append(record)
    else:
        subsets = split_records(records, data["split"], seed=data["split_seed"],
                                stratify=stratify, groups=groups)
    for name in ("train", "val"):
        if not subsets[name]:
            raise ConfigError(f"the {name} subset is empty ({len(records)} records); "
                              "change data.split or data.folds")
    return subsets


def resumed_subsets(manifest: Path, records: Records) -> tuple[dict[str, Records], list]:
    """The split a run wrote at its first epoch (`manifest`, its splits.csv), rebuilt from
    today's `records`, for a resume: the split never changes under a run, so no image the
    best model was trained on moves into the test set.

    Returns:
        (subsets, added): {"train", "val", "test"} and a DataError for each record that was
        not in the data when the run started (left out of every subset).

    Raises:
        UserError: images of the run's split are gone from the data.
    """
    columns, rows = read_csv_rows(manifest)
    by_path = {record.path: record for record in records}
    gone = [row["path"] for row in rows if row.get("path") not in by_path]
    if gone:
        raise UserError(f"{manifest.parent}: the data changed since the run started: "
                        f"{len(gone)} of the {len(rows)} images of its split are gone (e.g. "
                        f"{gone[0]}); resume with the data it started with, or start a new run")
    subsets = {name: Records(subset=name) for name in SUBSETS}
    for row in rows:
        subsets.setdefault(row["split"], Records(subset=row["split"])).append(
            by_path[row["path"]])
    listed = {row["path"] for row in rows}
    added = [DataError(record.path, "added to the data after the run started; left out of "
                                    "its split") for record in records if record.path not in listed]
    return subsets, added
