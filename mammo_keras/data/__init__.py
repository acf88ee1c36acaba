"""Mammography data: readers, dataset adapters and records.

- `read_image(path) -> (image, meta)`: DICOM, PGM, PNG 8/16-bit, JPEG, TIFF, or a member of an
  archive ("all-mias.tar.gz::mdb001.pgm"); float32 (H, W) in [0, 1] at full resolution.
- `load_records(name_or_path, root=None)`: the records of a dataset ("mias", "kaggle_merged",
  a folder of class subfolders), with skipped files listed, never silently dropped.
- `load_dataset(records, target, image_size, batch_size, training=...)`: the tf.data pipeline;
  `target` a record field or a `TargetSpec` (field, ordered classes, masks), built by a task.
- `preprocess(image, size)`: breast crop, chest-wall flip, resize / pad, in TF ops;
  `MammogramPreprocessor`: those options and the input size as one object, forward and inverse,
  the one every consumer of a model builds from its description (`description.preprocessor()`).
- `make_patches(records, out, PatchOptions(...))`: lesion and normal-tissue patches at a stated
  mm scale, optionally pre-augmented, with a manifest of patients and sources.
- `split_records`, `kfold_records`, `write_split_manifest`: patient-grouped, stratified splits.
- `generate_phantom`, `write_synthetic`: the built-in synthetic mammography phantoms.
- `Record`, `ROI`, `Records`, `DataError`.
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "apply_geometry": "mammo_keras.data.preprocessing",
    "DataError": "mammo_keras.data.errors",
    "DataReport": "mammo_keras.data.pipeline",
    "generate_phantom": "mammo_keras.data.synthetic",
    "invert_geometry": "mammo_keras.data.preprocessing",
    "kfold_records": "mammo_keras.data.splits",
    "LABELS": "mammo_keras.data.records",
    "make_patches": "mammo_keras.data.patches",
    "MammogramPreprocessor": "mammo_keras.data.preprocessor",
    "PatchOptions": "mammo_keras.data.patches",
    "load_dataset": "mammo_keras.data.pipeline",
    "load_records": "mammo_keras.data.adapters",
    "load_images": "mammo_keras.data.adapters",
    "PhantomSpec": "mammo_keras.data.synthetic",
    "preprocess": "mammo_keras.data.preprocessing",
    "read_image": "mammo_keras.data.readers",
    "read_split_manifest": "mammo_keras.data.splits",
    "Record": "mammo_keras.data.records",
    "Records": "mammo_keras.data.records",
    "ROI": "mammo_keras.data.records",
    "split_records": "mammo_keras.data.splits",
    "synthetic_specs": "mammo_keras.data.synthetic",
    "TargetSpec": "mammo_keras.data.targets",
    "write_split_manifest": "mammo_keras.data.splits",
    "write_synthetic": "mammo_keras.data.synthetic_writer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
