"""Mammography data: readers, dataset adapters and records.

- `read_image(path) -> (image, meta)`: DICOM, PGM, PNG 8/16-bit, JPEG, TIFF, or a member of an
  archive ("all-mias.tar.gz::mdb001.pgm"); float32 (H, W) in [0, 1] at full resolution.
- `load_records(name_or_path, root=None)`: the records of a dataset ("mias", "kaggle_merged",
  a folder of class subfolders), with skipped files listed, never silently dropped.
- `Record`, `ROI`, `Records`, `DataError`.
"""

from mammo_keras.data.adapters import load_records
from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import read_image
from mammo_keras.data.records import LABELS, ROI, Record, Records

__all__ = ["DataError", "LABELS", "ROI", "Record", "Records", "load_records", "read_image"]
