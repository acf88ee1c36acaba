"""`predict_files`: class probabilities for image files with a classifier in any exported format.

Files go through the same reader and preprocessing as training (`load_dataset`),
batched; files that cannot be read are listed, never fatal. Folders are searched
recursively for image files (by name: DICOM, PGM, PNG, JPEG, TIFF, BMP, or no
extension, as DICOM files often have).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from mammo_keras.errors import UserError
from mammo_keras.atomic import write_csv_atomically, write_text_atomically
from mammo_keras.data.adapters.folder import IMAGE_SUFFIXES
from mammo_keras.data.errors import DataError
from mammo_keras.data.pipeline import DataReport, load_dataset
from mammo_keras.data.records import Record
from mammo_keras.export.runtime import Predictor, keras_predictor


def collect_files(inputs: Sequence[str | Path]) -> tuple[list[str], list[DataError]]:
    """The image files named or contained (recursively) in `inputs`, and the inputs not found."""
    files, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file()
                         and not p.name.startswith(".")
                         and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ""))
        elif path.is_file():
            files.append(str(path))
        else:
            missing.append(DataError(path, "file or folder not found"))
    return files, missing


def predict_files(model: "keras.Model | Predictor", inputs: Sequence[str | Path],
                  class_names: Sequence[str] | None = None, batch_size: int = 16,
                  progress: Callable[[int, int], None] | None = None
                  ) -> tuple[list[dict], list[DataError]]:
    """Probabilities for every readable image in `inputs`.

    Args:
        model: a Keras classifier, or a `Predictor` from `load_predictor` (a `.keras`
            file, a SavedModel or a `.tflite` file); either brings its class names and
            preprocessing options from its description.
        class_names: override the class names.

    Files are read, preprocessed and predicted a batch at a time (nothing is cached),
    so memory stays flat in the number of files.

    Returns:
        (rows, skipped): one row per image {"path", "prediction", "p_<class>", ...} in
        input order, and a DataError per file or input that could not be used.
    """
    predictor = model if isinstance(model, Predictor) else keras_predictor(model)
    classes = predictor.num_classes
    names = tuple(class_names or predictor.class_names)
    if len(names) != classes:
        raise UserError(f"{len(names)} class names {list(names)} for a model with {classes} "
                         "class outputs")
    files, skipped = collect_files(inputs)
    if not files:
        return [], skipped
    records = [Record(path=p, label=None, density=None, patient_id=None, laterality=None,
                      view=None, source="predict") for p in files]
    report = DataReport()
    dataset = load_dataset(records, task=None, image_size=predictor.image_size,
                           batch_size=batch_size, report=report, cache=False,
                           **predictor.preprocessing)
    probabilities = []
    for images, _ in dataset:
        probabilities.append(predictor(images.numpy()))
        if progress is not None:
            progress(min(sum(len(p) for p in probabilities), len(files)), len(files))
    kept = [record.path for record in report.kept(records)]
    values = np.concatenate(probabilities) if probabilities else np.zeros((0, classes))
    rows = [{"path": path, "prediction": names[int(np.argmax(row))],
             **{f"p_{name}": float(value) for name, value in zip(names, row)}}
            for path, row in zip(kept, values)]
    return rows, skipped + list(report.skipped)


def write_predictions(path: str | Path, rows: list[dict]) -> Path:
    """Write rows as CSV (path, prediction, p_<class>...) or JSON (by suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"{path}: the output must end in .csv or .json")
    if path.suffix.lower() == ".json":
        return write_text_atomically(path, json.dumps(rows, indent=2) + "\n")
    return write_csv_atomically(path, rows, None if rows else ("path", "prediction"))
