"""Evaluation of a lesion segmentation + detection model (HDS): metrics.json, report.md,
predictions.csv (`report.prediction_rows`' columns, which the dashboard's cohort page reads,
plus the film's finding and its Dice), roc.png and froc.png in an output folder.

Masks are compared on the model's input grid (after the breast crop, flip and resize that
training used). Figures, each with a patient-grouped 95 % bootstrap interval where it is a
mean or an AUC:

- segmentation (models with a mask output): Dice and IoU at 0.5 over images with a lesion
  and over all images, and the share of lesion-free images with any predicted pixel;
- lesion present (the image label, "mass" vs "no_mass"): accuracy at 0.5, ROC-AUC,
  sensitivity and specificity;
- malignancy AUC: the lesion score of the malignant films against the benign ones among the
  films with a lesion, where the dataset gives pathology (`extra["finding_label"]`);
- detection: the FROC and the lesion sensitivity at 0.125 ... 4 false positives per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import sklearn.metrics as sk

from mammo_keras.atomic import write_csv_atomically, write_json_atomically, write_text_atomically
from mammo_keras.evaluation.metrics import bootstrap_intervals, classification_metrics
from mammo_keras.evaluation.plots import plot_froc, plot_roc
from mammo_keras.evaluation.report import describe_data, evaluation_context, prediction_rows
from mammo_keras.evaluation.segmentation import (detection_rates, froc, overlap_scores,
                                                 segmentation_summary)
from mammo_keras.models.description import description_of

LESION_HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc_macro")


def _predict(model: keras.Model, records: Sequence, class_names: Sequence[str], batch_size: int,
             options: dict):
    """(kept records, labels (N,), lesion probability (N,), masks (N, S, S, 1) or None,
    predicted masks or None, skipped) of one pass over `records`."""
    from mammo_keras.data.pipeline import DataReport, load_dataset

    description = description_of(model)
    report = DataReport()
    dataset = load_dataset(records, target="label", class_names=class_names,
                           image_size=int(description.image_size), batch_size=batch_size,
                           targets=("label", "mask"), report=report, **options)
    has_mask = isinstance(model.output, dict) and "mask" in model.output
    labels, scores, masks, predicted = [], [], [], []
    for images, targets in dataset:
        outputs = model(images, training=False)
        labels.append(targets["label"].numpy())
        scores.append(keras.ops.convert_to_numpy(outputs["label"])[:, 1])
        if has_mask:
            masks.append(targets["mask"].numpy().astype(np.uint8))
            predicted.append(keras.ops.convert_to_numpy(outputs["mask"]).astype(np.float32))
    kept = report.kept(records)
    skipped = [str(error) for error in [*getattr(records, "skipped", ()), *report.skipped]]
    return (kept, np.concatenate(labels), np.concatenate(scores),
            np.concatenate(masks) if has_mask else None,
            np.concatenate(predicted) if has_mask else None, list(dict.fromkeys(skipped)))


def malignancy_auc(kept: Sequence, scores: np.ndarray, groups: Sequence,
                   resamples: int) -> dict | None:
    """ROC-AUC of the lesion score, malignant vs benign films among those with a lesion, with
    its grouped interval; None when the records give no pathology of both kinds."""
    findings = np.array([record.extra.get("finding_label") for record in kept], object)
    chosen = np.isin(findings, ["benign", "malignant"]) & \
        np.array([record.label == "mass" for record in kept])
    truth = (findings[chosen] == "malignant").astype(int)
    if truth.size < 2 or truth.min() == truth.max():
        return None
    probabilities = np.stack([1 - scores[chosen], scores[chosen]], axis=1)
    auc = float(sk.roc_auc_score(truth, scores[chosen]))
    spread = bootstrap_intervals(truth, probabilities, ("benign", "malignant"),
                                 groups=list(np.asarray(groups, object)[chosen]),
                                 resamples=resamples, keys=("roc_auc_macro",))
    return {"roc_auc": auc, "confidence_interval": spread["roc_auc_macro"],
            "images": int(truth.size), "malignant": int(truth.sum())}


def evaluate_lesion_model(model: keras.Model, records: Sequence, out: str | Path,
                          class_names: Sequence[str], batch_size: int = 8,
                          resamples: int = 1000, **options) -> dict:
    """Run `model` on `records` (lesion records: `data.lesions.lesion_records`) and write the
    evaluation into `out`; returns the metrics (also in metrics.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    description = description_of(model)
    options = {**description.preprocessing, **options}
    kept, labels, scores, masks, predicted, skipped = _predict(model, records, class_names,
                                                               batch_size, options)
    groups = [record.patient_id or record.path for record in kept]
    probabilities = np.stack([1 - scores, scores], axis=1)
    classification = classification_metrics(labels, probabilities, class_names)
    spread = bootstrap_intervals(labels, probabilities, class_names, groups=groups,
                                 resamples=resamples, keys=LESION_HEADLINE) if resamples else {}
    positive = labels == 1
    result = {
        "images": int(len(labels)), "images_with_lesion": int(positive.sum()),
        "patients": len(set(groups)),
        "lesion_present": {key: classification.get(key) for key in LESION_HEADLINE},
        "sensitivity": float((scores[positive] > 0.5).mean()) if positive.any() else None,
        "specificity": float((scores[~positive] <= 0.5).mean()) if (~positive).any() else None,
        "malignancy": malignancy_auc(kept, scores, groups, resamples),
        "confidence_intervals": {f"lesion_{key}": value for key, value in spread.items()
                                 if key in LESION_HEADLINE},
        "skipped": skipped,
    }
    note = describe_data(evaluation_context(model, description, records, kept,
                                            {k: options[k] for k in description.preprocessing}))
    plot_roc(labels, probabilities, class_names, out / "roc.png", note=note)
    if masks is not None:
        segmentation = segmentation_summary(masks, predicted, groups, resamples=resamples)
        result["segmentation"] = segmentation
        result["confidence_intervals"].update(segmentation.pop("confidence_intervals"))
        curve = froc(masks, predicted)
        result["detection"] = {"lesions": curve["lesions"],
                               "sensitivity_at_fp_per_image": detection_rates(curve)}
        plot_froc(curve, out / "froc.png", note=note)
        per_image = list(overlap_scores(masks, predicted)["dice"])
    else:
        per_image = [None] * len(kept)
    rows = prediction_rows(kept, labels, probabilities, class_names)
    for row, record, value in zip(rows, kept, per_image):
        row.update(finding=record.extra.get("finding_label") or "",
                   dice="" if value is None else round(float(value), 4))
    write_csv_atomically(out / "predictions.csv", rows)
    write_json_atomically(out / "metrics.json", result)
    write_text_atomically(out / "report.md", render_lesion_report(result, model.name, note))
    return result



def _with_interval(result: dict, key: str, value) -> str:
    if value is None:
        return "n/a"
    low, high = result["confidence_intervals"].get(key, (float("nan"), float("nan")))
    return f"{value:.3f} ({low:.3f}-{high:.3f})" if np.isfinite(low) else f"{value:.3f}"


def render_lesion_report(result: dict, name: str, note: str) -> str:
    """report.md of `evaluate_lesion_model`."""
    present = result["lesion_present"]
    lines = [f"# Lesion evaluation of {name}", "", note, "",
             "95 % intervals: percentile bootstrap over patients.", "",
             "| lesion present (image label) | value |", "|---|---|",
             f"| accuracy at 0.5 | {_with_interval(result, 'lesion_accuracy', present['accuracy'])} |",
             f"| ROC-AUC | {_with_interval(result, 'lesion_roc_auc_macro', present['roc_auc_macro'])} |",
             f"| sensitivity / specificity | {result['sensitivity'] or 0:.3f} / "
             f"{result['specificity'] or 0:.3f} |"]
    malignancy = result.get("malignancy")
    if malignancy:
        low, high = malignancy["confidence_interval"]
        lines.append(f"| malignancy ROC-AUC ({malignancy['images']} lesion films) | "
                     f"{malignancy['roc_auc']:.3f} ({low:.3f}-{high:.3f}) |")
    segmentation = result.get("segmentation")
    if segmentation:
        lines += ["", f"| segmentation (threshold 0.5) | value |", "|---|---|"]
        for key, label in (("dice_lesion", "Dice, images with a lesion"),
                           ("dice_all", "Dice, all images (empty on empty = 1)"),
                           ("iou_lesion", "IoU, images with a lesion"),
                           ("iou_all", "IoU, all images")):
            lines.append(f"| {label} | {_with_interval(result, key, segmentation[key])} |")
        rate = segmentation["false_positive_image_rate"]
        lines.append(f"| lesion-free images with a predicted pixel | "
                     f"{'n/a' if rate is None else f'{rate:.3f}'} |")
        rates = result["detection"]["sensitivity_at_fp_per_image"]
        lines += ["", f"Lesion detection ({result['detection']['lesions']} lesions; "
                      "a candidate region of probability > 0.1 detects a lesion when their IoU is "
                      ">= 0.1):", "",
                  "| FP / image | " + " | ".join(rates) + " |",
                  "|---" * (len(rates) + 1) + "|",
                  "| sensitivity | " + " | ".join("n/a" if v is None else f"{v:.3f}"
                                                  for v in rates.values()) + " |"]
    if result["skipped"]:
        lines += ["", f"Skipped ({len(result['skipped'])}):", ""]
        lines += [f"- {item}" for item in result["skipped"]]
    return "\n".join(lines) + "\n"


def lesion_headline(metrics: dict) -> dict:
    """The headline figures of `evaluate_lesion_model`'s metrics (done.json, the command line):
    {"metrics": {name: number or None}, "confidence_intervals": {name: (low, high)}}."""
    present = metrics["lesion_present"]
    headline = {"lesion_accuracy": present["accuracy"],
                "lesion_roc_auc": present["roc_auc_macro"],
                "sensitivity": metrics["sensitivity"], "specificity": metrics["specificity"]}
    segmentation = metrics.get("segmentation") or {}
    for key in ("dice_lesion", "dice_all", "iou_lesion", "iou_all",
                "false_positive_image_rate"):
        headline[key] = segmentation.get(key)
    for rate, value in ((metrics.get("detection") or {}).get(
            "sensitivity_at_fp_per_image") or {}).items():
        headline[f"detection_at_{rate}_fp"] = value
    malignancy = metrics.get("malignancy") or {}
    headline["malignancy_roc_auc"] = malignancy.get("roc_auc")
    spread = dict(metrics.get("confidence_intervals", {}))
    spread["lesion_roc_auc"] = spread.pop("lesion_roc_auc_macro", None)
    if malignancy:
        spread["malignancy_roc_auc"] = malignancy["confidence_interval"]
    return {"metrics": headline,
            "confidence_intervals": {k: v for k, v in spread.items() if v is not None}}
