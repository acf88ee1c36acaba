"""TensorFlow Datasets builders on top of the adapters: `MammographyBuilder`.

The builders in `datasets/<name>/` subclass it; `tfds build datasets/mias --manual_dir=DIR`
then writes TFRecords of full-resolution 16-bit PNG images, lesion masks and metadata.
TensorFlow Datasets is an optional dependency: `pip install "mammo-keras[tfds]"`.
The data sets are licence-gated, so each reads what the user downloaded into its
manual folder (`MANUAL_DOWNLOAD_INSTRUCTIONS`).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

try:
    import tensorflow_datasets as tfds
except ImportError as missing:  # an extra, not a requirement of the library
    raise ImportError('the TFDS builders need TensorFlow Datasets: pip install '
                      '"mammo-keras[tfds]"') from missing

from mammo_keras.data.adapters import load_records
from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import read_image
from mammo_keras.data.records import LABELS, Record


class MammographyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A data set read by a mammo-keras adapter (`ADAPTER`) from the manual folder.

    Features: image (H, W, 1) uint16 PNG (read_image's [0, 1] scaled to 0-65535), mask
    (H, W, 1) uint8 {0, 1} (all zero where the data set has no annotation), label
    (normal / benign / malignant), density, patient_id, laterality, view, source, path.
    Images whose label is unknown or whose file cannot be read are left out and
    logged with the reason.
    """

    ADAPTER: str = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release, through mammo-keras' adapters."}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # metadata (CITATIONS.bib, README.md) sits beside the builder file, which is run
        # from its folder (`tfds build datasets/mias`), not imported from a package
        cls.pkg_dir_path = Path(inspect.getfile(cls)).parent

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16),
                "mask": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(LABELS)),
                "density": tfds.features.Text(),
                "patient_id": tfds.features.Text(),
                "laterality": tfds.features.Text(),
                "view": tfds.features.Text(),
                "source": tfds.features.Text(),
                "path": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
        )

    def dataset_root(self, manual_dir: Path) -> Path:
        """Where the adapter reads from inside the manual folder (overridable)."""
        return manual_dir

    def split_of(self, record: Record) -> str:
        """The TFDS split of a record: "train" unless the data set has an official split."""
        return record.extra.get("split", "train")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        records = load_records(self.ADAPTER, root=self.dataset_root(Path(dl_manager.manual_dir)))
        for error in records.skipped:
            tfds.core.logging.warning(f"skipped {error}")
        splits: dict[str, list[Record]] = {}
        for record in records:
            splits.setdefault(self.split_of(record), []).append(record)
        return {name: self._generate_examples(members) for name, members in splits.items()}

    def _generate_examples(self, records: list[Record]):
        for record in records:
            if record.label is None:
                tfds.core.logging.warning(f"skipped {record.path}: no label")
                continue
            try:
                image, _ = read_image(record.path)
                mask = record.mask(image.shape)
            except DataError as error:
                tfds.core.logging.warning(f"skipped {error}")
                continue
            yield record.path, {
                "image": np.round(image * 65535).astype(np.uint16)[..., None],
                "mask": mask.astype(np.uint8)[..., None],
                "label": record.label, "density": record.density or "",
                "patient_id": record.patient_id or "", "laterality": record.laterality or "",
                "view": record.view or "", "source": record.source, "path": record.path,
            }
