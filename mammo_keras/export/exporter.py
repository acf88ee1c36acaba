"""`export_model`: a trained `.keras` model -> SavedModel and / or TFLite, checked for parity.

The class names, task and preprocessing come from the model's own description
and are stored inside every artefact (and in a JSON beside it). Parity is
checked at export time on a sample of real images (`calibration_data`, the
training split of the run folder the model lies in, or else synthetic
phantoms): the exported artefact and the Keras model see the same preprocessed
batch. What is exported is what the model's description serves
(`mammo_keras.models.outputs`): the class probabilities, and the masks of a model
that segments, each checked. Float32 exports must agree within `FLOAT_TOLERANCE` in every probability;
quantised TFLite models (dynamic, float16, int8) must keep top-1 agreement of at
least `MIN_AGREEMENT`, and the change in macro ROC-AUC on the sample is reported
when it has labels. A failure raises `ExportParityError` with the figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from mammo_keras.errors import UserError
from mammo_keras.data import LABELS, Record, load_dataset, load_images
from mammo_keras.data.preprocessing import preprocess
from mammo_keras.data.synthetic import generate_phantom, synthetic_specs
from mammo_keras.evaluation.metrics import macro_auc
from mammo_keras.export.metadata import build_metadata
from mammo_keras.export.publish import publish, staging_folder
from mammo_keras.export.runtime import load_predictor
from mammo_keras.export.savedmodel import export_savedmodel, write_savedmodel_metadata
from mammo_keras.export import FORMATS, QUANTIZATIONS
from mammo_keras.export.tflite import export_tflite, write_tflite_metadata
from mammo_keras.models.description import description_of, label_tensor
from mammo_keras.models.loading import load_model
from mammo_keras.models.outputs import served_model, split_outputs

FLOAT_TOLERANCE = 1e-4
MIN_AGREEMENT = 0.98


class ExportParityError(UserError):
    """The exported model does not reproduce the Keras model within the tolerance."""


def model_to_export(model: keras.Model, description) -> keras.Model:
    """The part of `model` mammo-keras exports (`served_model`): its one square grayscale
    (N, S, S, 1) input to its (N, K) class probabilities, and to the masks its description
    names."""
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] != 1 or \
            shape[1] is None or shape[1] != shape[2]:
        raise UserError(f"model {model.name!r} takes {shape}; export needs one square "
                         "grayscale input (N, S, S, 1)")
    probabilities = label_tensor(model, description.label_output)
    if len(probabilities.shape) != 2:
        raise UserError(f"model {model.name!r} must have one (N, num_classes) class output "
                         f"to export, it has {model.output_shape}")
    return served_model(model, description)


def _records_from_manifest(path: str, subset: str = "train") -> list[Record]:
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == subset]
    return [Record(path=row["path"], label=row["label"] or None, density=None,
                   patient_id=row["patient_id"] or None, laterality=None, view=None,
                   source="manifest") for row in rows]


def _spread(items: Sequence, count: int) -> list:
    """`count` items evenly spread over the sequence (all when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]


def sample_images(splits: Path | None, size: int, count: int, calibration_data: str | None,
                  preprocessing: dict) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(images (M, S, S, 1), labels (M,) or None, where they came from).

    `splits`: a run folder's splits.csv, whose training split is the sample when no
    `calibration_data` is given; else synthetic phantoms.
    """
    options = dict(preprocessing)
    records, source = None, ""
    if calibration_data:
        records = list(load_images(calibration_data))  # labels where it has them
        source = f"calibration data {calibration_data}"
    elif splits is not None and splits.is_file():
        records = [r for r in _records_from_manifest(str(splits)) if Path(
            r.path.split("::")[0]).exists()]
        source = f"training split of {splits}"
    if records:
        records = _spread(records, count)
        labelled = all(record.label in LABELS for record in records)
        dataset = load_dataset(records, target="label" if labelled else None,
                               image_size=size, batch_size=16, **options)
        batches = [(images.numpy(), targets.numpy()) for images, targets in dataset]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches]) if labelled else None
        return images, labels, source
    specs = synthetic_specs(count, seed=0, size=256)
    images, labels = [], []
    for spec in specs:
        phantom = generate_phantom(spec)[0]
        images.append(preprocess(phantom, size, **options)[0].numpy())
        labels.append(LABELS.index(spec.label))
    return np.stack(images), np.array(labels), f"{count} synthetic phantoms"


def check_parity(reference: np.ndarray, exported: np.ndarray, quantize: str,
                 labels: np.ndarray | None, artefact: str) -> dict:
    """Compare probabilities (M, K); raise ExportParityError when outside the tolerance."""
    if not np.all(np.isfinite(exported)):
        raise ExportParityError(f"{artefact}: the exported model returns non-finite "
                                f"probabilities on the sample")
    difference = float(np.max(np.abs(reference - exported)))
    agreement = float(np.mean(reference.argmax(1) == exported.argmax(1)))
    report = {"images": int(len(reference)), "max_abs_difference": difference,
              "top1_agreement": agreement}
    if labels is not None:
        before, after = macro_auc(labels, reference), macro_auc(labels, exported)
        if before is not None:
            report.update(roc_auc_macro_keras=before, roc_auc_macro_exported=after,
                          roc_auc_macro_change=after - before)
    if quantize == "none":
        report["criterion"] = f"max |difference| <= {FLOAT_TOLERANCE}"
        if difference > FLOAT_TOLERANCE:
            raise ExportParityError(
                f"{artefact}: probabilities differ from the Keras model by up to "
                f"{difference:.2e} (> {FLOAT_TOLERANCE}) on {len(reference)} images")
    else:
        report["criterion"] = f"top-1 agreement >= {MIN_AGREEMENT}"
        if agreement < MIN_AGREEMENT:
            change = report.get("roc_auc_macro_change")
            raise ExportParityError(
                f"{artefact}: {quantize} quantization keeps top-1 agreement {agreement:.3f} "
                f"(< {MIN_AGREEMENT}) on {len(reference)} images"
                + (f", macro AUC change {change:+.3f}" if change is not None else ""))
    return report


def check_mask_parity(reference: dict, exported: dict, quantize: str, artefact: str) -> dict:
    """Compare mask outputs {name: (M, S, S, 1)}: float32 exports within FLOAT_TOLERANCE in
    every pixel, quantised ones with at least MIN_AGREEMENT of the pixels on the same side
    of 0.5; {name: figures}. Raises ExportParityError outside the tolerance."""
    report = {}
    for name, expected in reference.items():
        if name not in exported:
            raise ExportParityError(f"{artefact}: the exported model has no mask {name!r}")
        got = exported[name]
        if not np.all(np.isfinite(got)):
            raise ExportParityError(f"{artefact}: mask {name!r} is not finite on the sample")
        difference = float(np.max(np.abs(expected - got)))
        agreement = float(np.mean((expected > 0.5) == (got > 0.5)))
        report[name] = {"max_abs_difference": difference, "pixel_agreement": agreement}
        if quantize == "none" and difference > FLOAT_TOLERANCE:
            raise ExportParityError(f"{artefact}: mask {name!r} differs from the Keras model by "
                                    f"up to {difference:.2e} (> {FLOAT_TOLERANCE})")
        if quantize != "none" and agreement < MIN_AGREEMENT:
            raise ExportParityError(f"{artefact}: {quantize} quantization keeps {agreement:.3f} "
                                    f"of mask {name!r}'s pixels (< {MIN_AGREEMENT})")
    return report


def _check_and_publish(staged: Path, target: Path, kind: str, quantization: str,
                       model: keras.Model, description, reference: tuple,
                       sample: tuple, enforce_parity: bool) -> dict:
    """Check the staged artefact's parity, store its metadata inside, then publish it at
    `target` (`publish`); its metadata. A failed check raises before anything is visible."""
    images, labels, source = sample
    expected, expected_masks = reference
    exported = load_predictor(staged).outputs(images)
    try:
        parity = {"sample": source, "passed": True,
                  **check_parity(expected, exported["probabilities"], quantization, labels,
                                 str(target))}
        if expected_masks:
            parity["masks"] = check_mask_parity(expected_masks, exported, quantization,
                                                str(target))
    except ExportParityError as error:
        if enforce_parity:
            raise
        parity = {"sample": source, "passed": False, "failure": str(error)}
    meta = build_metadata(model, description, str(target), kind, quantization, parity)
    if kind == "tflite":
        write_tflite_metadata(staged, meta)
    else:
        write_savedmodel_metadata(staged, meta)
    return publish(staged, target, meta)


def export_model(model_path: str | Path, out: str | Path, fmt: str = "all",
                 quantize: str = "none", calibration_data: str | None = None,
                 samples: int = 32, version: int = 1, enforce_parity: bool = True) -> dict:
    """Export a `.keras` classifier; returns {artefact path: metadata} (also written as JSON).

    Args:
        model_path: a `.keras` file; its description gives class names, task,
            preprocessing and provenance (for models saved before descriptions existed,
            its run folder does).
        out: output folder: OUT/savedmodel/<version>/ and OUT/model[_<quantize>].tflite,
            each with a metadata JSON beside it.
        fmt: "savedmodel", "tflite" or "all". `quantize` applies to TFLite only.
        calibration_data: images (a dataset path) for int8 calibration and the parity
            sample, instead of the run's training split.
        samples: images in the parity / calibration sample.
        enforce_parity: False records a parity failure in the metadata
            (`parity["passed"]`) instead of raising; for benchmarks of untrained models,
            whose near-uniform outputs make top-1 agreement meaningless.
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; choose one of {list(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise UserError(f"Unknown quantization {quantize!r}; choose one of {list(QUANTIZATIONS)}.")
    model_path = Path(model_path)
    loaded = load_model(model_path)
    description = description_of(loaded, model_path)
    model = model_to_export(loaded, description)
    size = int(model.input_shape[1])
    images, labels, source = sample_images(model_path.parent / "splits.csv", size, samples,
                                           calibration_data, description.preprocessing)
    probabilities, masks = split_outputs(model(images, training=False))
    reference = (keras.ops.convert_to_numpy(probabilities),
                 {name: keras.ops.convert_to_numpy(mask) for name, mask in masks.items()})
    out = Path(out)
    result = {}
    with staging_folder(out) as staging:
        if fmt in ("savedmodel", "all"):
            staged = export_savedmodel(model, staging / "savedmodel",
                                       list(description.class_names), description.preprocessing)
            target = out / "savedmodel" / str(version)
            result[str(target)] = _check_and_publish(
                staged, target, "savedmodel", "none", model, description, reference,
                (images, labels, source), enforce_parity)
        if fmt in ("tflite", "all"):
            name = "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"
            staged = export_tflite(model, staging / name, quantize, images)
            result[str(out / name)] = _check_and_publish(
                staged, out / name, "tflite", quantize, model, description, reference,
                (images, labels, source), enforce_parity)
    return json.loads(json.dumps(result))
