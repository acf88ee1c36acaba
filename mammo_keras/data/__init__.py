"""Mammography data: readers, dataset adapters and records.

- `read_image(path) -> (image, meta)`: DICOM, PGM, PNG 8/16-bit, JPEG, TIFF, or a member of an
  archive ("all-mias.tar.gz::mdb001.pgm"); float32 (H, W) in [0, 1] at full resolution.
- `load_records(name_or_path, root=None)`: the records of a dataset ("mias", "kaggle_merged",
  a folder of class subfolders), with skipped files listed, never silently dropped.
- `load_dataset(records, task, image_size, batch_size, training=...)`: the tf.data pipeline.
- `preprocess(image, size)`: breast crop, chest-wall flip, resize / pad, in TF ops.
- `split_records`, `kfold_records`, `write_split_manifest`: patient-grouped, stratified splits.
- `generate_phantom`, `write_synthetic`: the built-in synthetic mammography phantoms.
- `Record`, `ROI`, `Records`, `DataError`.
"""

from mammo_keras.data.adapters import load_records
from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import read_image
from mammo_keras.data.pipeline import DataReport, load_dataset
from mammo_keras.data.preprocessing import apply_geometry, invert_geometry, preprocess
from mammo_keras.data.records import LABELS, ROI, Record, Records
from mammo_keras.data.splits import (kfold_records, read_split_manifest, split_records,
                                     write_split_manifest)
from mammo_keras.data.synthetic import PhantomSpec, generate_phantom, synthetic_specs
from mammo_keras.data.synthetic_writer import write_synthetic

__all__ = ["DataError", "DataReport", "LABELS", "load_dataset", "PhantomSpec", "ROI", "Record", "Records", "apply_geometry", "invert_geometry",
           "generate_phantom", "kfold_records", "load_records", "preprocess", "read_image",
           "read_split_manifest", "split_records", "synthetic_specs", "write_split_manifest",
           "write_synthetic"]
