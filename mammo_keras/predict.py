"""`predict_files`: class probabilities for image files with a classifier in any exported format;
`predict_masks`: probabilities and lesion masks of a segmentation model (HDS), written as
PNG files at each image's own resolution and as DICOM Segmentation objects for DICOM sources.

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
from mammo_keras.data.walk import walk_files
from mammo_keras.evaluation.competence import answer_note
from mammo_keras.export.runtime import Predictor, keras_predictor


def collect_files(inputs: Sequence[str | Path]) -> tuple[list[str], list[DataError]]:
    """The image files named or contained (recursively) in `inputs`, and a DataError for
    each input not found and each entry of a folder that is not a regular file (FIFOs,
    devices, broken links, link loops: `walk_files`)."""
    files, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, left_out = walk_files(path)
            files.extend(str(p) for p in found
                         if p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == "")
            missing.extend(left_out)
        elif path.is_file():
            files.append(str(path))
        elif path.exists():
            missing.append(DataError(path, "not a regular file (a FIFO, device or socket)"))
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
        (rows, skipped): one row per image {"path", "prediction", "p_<class>", "note"} in
        input order ("note": what the model was trained on where the image is unlike it,
        `evaluation.competence.answer_note`, else ""), and a DataError per file or input
        that could not be used.
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
    dataset = load_dataset(records, target=None, image_size=predictor.image_size,
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
             **{f"p_{name}": float(value) for name, value in zip(names, row)},
             "note": answer_note(predictor.description, report.shapes.get(path),
                                 report.views.get(path))}
            for path, row in zip(kept, values)]
    return rows, skipped + list(report.skipped)


def predict_masks(predictor: Predictor, inputs: Sequence[str | Path], out: str | Path,
                  threshold: float = 0.5, dicom_seg: bool = True,
                  progress: Callable[[int, int], None] | None = None
                  ) -> tuple[list[dict], list[DataError]]:
    """Probabilities and the lesion mask of every readable image in `inputs`, the mask mapped
    back through the breast crop, resize and flip onto the image as it was read.

    For each image, `out` receives `<name>_mask.png` (8-bit, 255 where the lesion probability
    exceeds `threshold`, the image's own height and width) and, for a DICOM source and
    `dicom_seg`, `<name>_seg.dcm`, a DICOM SEG referencing it (`data.dicom_seg`). Names of
    files from different folders that would collide get a numeric suffix.

    Returns:
        (rows, skipped): rows as `predict_files`' plus "mask_png", "mask_dicom" (or "") and
        "mask_pixels"; a DataError per file that could not be read or written, and one per
        DICOM SEG that could not be written (that file's row and PNG mask are kept).
    """
    from mammo_keras.data.dicom_seg import write_dicom_seg
    from mammo_keras.data.readers import read_image
    from mammo_keras.models.outputs import MASK

    names = [name for name, kind in (predictor.description.outputs or {}).items()
             if kind == MASK]
    if not names:
        raise UserError(f"{predictor.path}: the model has no mask output; use predict_files")
    files, skipped = collect_files(inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = predictor.class_names
    rows, used = [], set()
    for done, path in enumerate(files, start=1):
        try:
            image, meta = read_image(path)
            processed, geometry = predictor.preprocess(image, meta.get("laterality"))
            outputs = predictor.outputs(processed[None])
            full = predictor.preprocessor.invert(outputs[names[0]][0], geometry,
                                                 image.shape[:2]).numpy()
            mask = full[..., 0] > threshold
            stem = _unique_stem(Path(path.split("::")[-1]).stem, used)
            png = out / f"{stem}_mask.png"
            _write_mask_png(mask, png)
        except DataError as error:
            skipped.append(error)
            continue
        except OSError as error:
            skipped.append(DataError(path, f"mask not written ({error.strerror or error})"))
            continue
        seg = ""
        if dicom_seg and meta.get("format") == "dicom":
            try:  # a SEG that cannot be written loses neither the answer nor the PNG mask
                seg = str(write_dicom_seg(path, mask, out / f"{stem}_seg.dcm",
                                          algorithm=predictor.description.task or "mammo-keras",
                                          version=_version()))
            except (DataError, OSError) as error:
                problem = error.problem if isinstance(error, DataError) else \
                    error.strerror or str(error)
                skipped.append(DataError(path, f"DICOM SEG not written ({problem}); the "
                                               "prediction and PNG mask were written"))
        probabilities = outputs["probabilities"][0]
        rows.append({"path": path, "prediction": classes[int(np.argmax(probabilities))],
                     **{f"p_{name}": float(p) for name, p in zip(classes, probabilities)},
                     "mask_png": str(png), "mask_dicom": seg, "mask_pixels": int(mask.sum()),
                     "note": answer_note(predictor.description, image.shape[:2],
                                         meta.get("view"))})
        if progress is not None:
            progress(done, len(files))
    return rows, skipped


def _unique_stem(stem: str, used: set) -> str:
    candidate, number = stem, 1
    while candidate in used:
        number += 1
        candidate = f"{stem}-{number}"
    used.add(candidate)
    return candidate


def _write_mask_png(mask: np.ndarray, path: Path) -> None:
    from PIL import Image

    from mammo_keras.atomic import atomic_path

    with atomic_path(path) as partial:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(partial, format="PNG")


def _version() -> str:
    from mammo_keras import __version__

    return __version__


def write_predictions(path: str | Path, rows: list[dict]) -> Path:
    """Write rows as CSV (path, prediction, p_<class>...) or JSON (by suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"{path}: the output must end in .csv or .json")
    if path.suffix.lower() == ".json":
        return write_text_atomically(path, json.dumps(rows, indent=2) + "\n")
    return write_csv_atomically(path, rows, None if rows else ("path", "prediction"))
