"""Dataset adapters: one module per dataset, each returning `Records`.

`load_records(name_or_path, root=None)` picks the adapter by name, or recognises
a path (a folder with synthetic.csv -> "synthetic"; with CBIS-DDSM case-description
CSVs -> "cbis_ddsm"; with INbreast.csv -> "inbreast"; an archive or folder holding MIAS' Info.txt -> "mias"; otherwise
a folder of class subfolders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mammo_keras.errors import UserError
from mammo_keras.data.adapters.cbis_ddsm import load_cbis_ddsm
from mammo_keras.data.adapters.folder import load_class_folders
from mammo_keras.data.adapters.inbreast import load_inbreast
from mammo_keras.data.adapters.mias import load_mias
from mammo_keras.data.adapters.synthetic import MANIFEST, load_synthetic
from mammo_keras.data.archive import is_archive
from mammo_keras.data.errors import DataError, no_images
from mammo_keras.data.records import Record, Records

ADAPTERS: dict[str, Callable[..., Records]] = {
    "mias": load_mias,
    "cbis_ddsm": load_cbis_ddsm,
    "inbreast": load_inbreast,
    "synthetic": load_synthetic,
    "kaggle_merged": lambda root, **options: load_class_folders(root, source="kaggle_merged",
                                                                **options),
    "folder": load_class_folders,
}


def load_records(name_or_path: str | Path, root: str | Path | None = None, **options) -> Records:
    """The records of a dataset.

    Args:
        name_or_path: a dataset name ("mias", "cbis_ddsm", "inbreast", "kaggle_merged",
            "synthetic", "folder") with its
            location in `root`, or directly the location (archive or folder).
        root: where the dataset is, when `name_or_path` is a name.
        **options: passed to the adapter (e.g. `classes=None` for class folders).

    Returns:
        `Records`: a list of `Record`, with the skipped files and rows in `.skipped`.

    Raises:
        UserError: the dataset holds no usable image (one line naming where, and the
            first skipped item when there were some).

    Example::

        records = load_records("mias", root="all-mias.tar.gz")
        len(records), records.counts("label")
        # (322, {'benign': 63, 'malignant': 52, 'normal': 207})
    """
    name = str(name_or_path)
    where = f"{name} in {root}" if root is not None else name
    return require_records(without_repeats(_adapter_records(name, root, **options)), where)


# What one image's records must agree on when a label file lists it more than once
_IDENTITY = ("label", "density", "patient_id", "laterality", "view")


def without_repeats(records: Records) -> Records:
    """`records` with each image once: a file listed again with the same facts is left out
    and listed in `skipped`; listed with other facts (label, density, patient, side, view)
    it is a DataError, since either copy may be the wrong one and the two would land in
    different splits.

    Raises:
        DataError: one line naming the file and the facts that differ.
    """
    first: dict[str, Record] = {}
    kept = []
    for record in records:
        earlier = first.setdefault(record.path, record)
        if earlier is record:
            kept.append(record)
            continue
        differ = [f"{key} {getattr(earlier, key)!r} / {getattr(record, key)!r}"
                  for key in _IDENTITY if getattr(earlier, key) != getattr(record, key)]
        if differ:
            raise DataError(record.path, f"listed twice with different facts "
                                         f"({'; '.join(differ)}); correct the label file")
        records.skipped.append(DataError(record.path, "listed twice; the second entry is left "
                                                      "out"))
    return Records(kept, records.skipped, subset=records.subset) if len(kept) < len(records) \
        else records


def load_images(path: str | Path) -> Records:
    """The records of a dataset at `path`, or, where it is a plain folder of images with no
    labels (a site's own films), every image as a record with no label: for what needs no
    truth (`data inspect`, int8 calibration)."""
    try:
        return load_records(path)
    except UserError:
        if not Path(path).is_dir():
            raise
    return require_records(without_repeats(load_class_folders(path, unlabelled=True)),
                           str(path))


def require_records(records: Records, where: str) -> Records:
    """`records` itself, or a one-line UserError when it holds no record."""
    if len(records):
        return records
    raise no_images(where, records.skipped)


def _adapter_records(name: str, root: str | Path | None, **options) -> Records:
    if name in ADAPTERS:
        if root is None:
            raise UserError(f"load_records({name!r}) needs root=<where the dataset is>.")
        return ADAPTERS[name](root, **options)
    if root is not None:
        raise UserError(f"Unknown dataset {name!r}; choose one of {sorted(ADAPTERS)} "
                         "or pass a path.")
    path = Path(name)
    if not path.exists():
        raise UserError(f"{name}: neither a dataset name ({', '.join(sorted(ADAPTERS))}) "
                         "nor an existing file or folder.")
    if (path / MANIFEST).is_file():
        return load_synthetic(path, **options)
    if path.is_dir() and next(path.rglob("*case_description*.csv"), None) is not None:
        return load_cbis_ddsm(path, **options)
    if path.is_dir() and next(path.rglob("INbreast*.csv"), None) is not None:
        return load_inbreast(path, **options)
    if is_archive(path) or any(p.name.lower() == "info.txt" for p in path.glob("*")):
        return load_mias(path, **options)
    return load_class_folders(path, **options)
