"""The TFDS builders in datasets/: built from synthetic manual folders, read back with tfds."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mammo_keras.data import load_records
from mammo_keras.data.synthetic_writer import write_synthetic

DATASETS = Path(__file__).resolve().parents[1] / "datasets"


def builder_class(name: str):
    """Import datasets/<name>/<name>_dataset_builder.py by path (datasets/ is not a package)."""
    path = DATASETS / name / f"{name}_dataset_builder.py"
    spec = importlib.util.spec_from_file_location(f"{name}_dataset_builder", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # TFDS finds a builder's module by name
    with tfds.core.registered.skip_registration():
        spec.loader.exec_module(module)
    return module.Builder


def build(name: str, manual_dir: Path, data_dir: Path):
    builder = builder_class(name)(data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


@pytest.mark.parametrize("name,layout", [("mias", "mias"), ("cbis_ddsm", "cbis"),
                                         ("inbreast", "inbreast")])
def test_builder_matches_the_adapter(tmp_path, name, layout):
    manual = write_synthetic(tmp_path / "manual", 6, size=256, fmt=layout, seed=1)
    records = load_records(name, root=manual)
    builder = build(name, manual, tmp_path / "tfds")
    splits = builder.info.splits
    assert sum(split.num_examples for split in splits.values()) == len(records)
    by_path = {record.path: record for record in records}
    names = builder.info.features["label"].names
    for split in splits:
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            record = by_path[example["path"].decode()]
            assert names[example["label"]] == record.label
            assert example["image"].dtype == np.uint16 and example["image"].shape[-1] == 1
            mask = record.mask(example["image"].shape[:2])
            np.testing.assert_array_equal(example["mask"][..., 0].astype(bool), mask)
            assert example["patient_id"].decode() == (record.patient_id or "")
    if name == "cbis_ddsm":
        assert set(splits) == {record.extra["split"] for record in records}


def test_every_dataset_folder_has_a_builder():
    for folder in sorted(p for p in DATASETS.iterdir() if p.is_dir()):
        assert issubclass(builder_class(folder.name), tfds.core.GeneratorBasedBuilder)
        assert not (DATASETS / "__init__.py").exists()  # never an importable `datasets`
