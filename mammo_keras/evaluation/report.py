"""Evaluation runs: predictions -> metrics.json, plots and report.md in an output folder.

The report says what it is about before its figures: which data (source, folder, subset,
images and patients), which model (builder, input size, preprocessing, what it was trained
on) and which commit, and it says so when the data or preprocessing differ from the
model's training; the figures are explained where their names are not standard.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import keras
import numpy as np

from mammo_keras.atomic import (write_csv_atomically, write_json_atomically,
                                write_text_atomically)
from mammo_keras.evaluation.competence import SIZE_TOLERANCE, SOURCE_NAMES
from mammo_keras.evaluation.metrics import (bootstrap_intervals, classification_metrics,
                                            dense_view, embedding_metrics, reliability_curve)
from mammo_keras.evaluation.plots import (plot_confusion, plot_embedding,
                                          plot_precision_recall, plot_reliability, plot_roc)
from mammo_keras.models.description import description_of, label_tensor, validated_class_names
from mammo_keras.models.output_checks import check_probabilities

if TYPE_CHECKING:
    from mammo_keras.data.targets import TargetSpec


# What the figures of the report mean, where the name alone does not say.
GLOSSARY = {
    "balanced_accuracy": "the mean of the per-class recalls (chance: 1 / classes)",
    "macro_f1": "the unweighted mean of the per-class F1 scores",
    "roc_auc_macro": "one-vs-rest ROC-AUC of each class present, averaged (chance: 0.5)",
    "pr_auc_macro": "one-vs-rest average precision of each class present, averaged",
    "recall_variance": "the variance of the per-class recalls: 0 when every class is "
                       "recalled equally well (Dahes 2025's stability figure)",
    "ece": "expected calibration error: |accuracy - confidence| per confidence bin (15 bins), "
           "weighted by the bin's images; 0 = calibrated",
    "quadratic_kappa": "Cohen's kappa with quadratic weights: agreement beyond chance, "
                       "counting far misses more (for ordered classes such as density)",
    "sensitivity at specificity s": "the class's highest recall among thresholds that keep "
                                    "its one-vs-rest specificity at s or more",
    "dense vs non-dense": "a density model's classes in two groups: dense when its most "
                          "likely class is dense; sensitivity = dense images called dense, "
                          "ROC-AUC of the dense classes' summed probability",
    "embedding": "intra-class variance: mean squared distance of an image's embedding to its "
                 "class mean; silhouette (-1..1) and Fisher ratio (between- / within-class "
                 "scatter): how separated the classes are",
}


def describe_data(context: dict | None) -> str:
    """A short line naming the data: "test subset: 44 images, 22 patients, synthetic phantoms"."""
    data = (context or {}).get("data") or {}
    if not data:
        return ""
    sources = ", ".join(SOURCE_NAMES.get(source, str(source))
                        for source in data.get("sources", {})) or "images"
    patients = f", {data['patients']} patients" if data.get("patients") else ""
    subset = f"{data['subset']} subset: " if data.get("subset") else ""
    return f"{subset}{data['images']} images{patients}, {sources}"


def evaluate_predictions(y_true, probabilities, class_names: Sequence[str], out: str | Path,
                         embedding: np.ndarray | None = None, groups: Sequence | None = None,
                         positive_class: str | None = "malignant", resamples: int = 1000,
                         seed: int = 0, title: str = "Evaluation",
                         context: dict | None = None) -> dict:
    """Metrics with 95 % bootstrap intervals, plots and a report, written to `out`.

    Args:
        y_true: (N,) class indices. probabilities: (N, K).
        class_names: the K class names.
        out: output folder (created).
        embedding: optional (N, D) feature vectors (the "embedding" layer): adds
            compactness / separability metrics and the PCA plot.
        groups: optional patient id per prediction: the bootstrap resamples patients.
        positive_class: the class of the sensitivity-at-specificity figures.
        resamples: bootstrap resamples (0 to skip the intervals).
        context: what was evaluated (`evaluation_context`), stated in the report, in the
            plots' titles and in metrics.json ("evaluated").

    Returns:
        The metrics dict, also written as `out/metrics.json` (keys include `accuracy`,
        `macro_f1`, `roc_auc_macro`, `per_class`, `confidence_intervals`, and
        `embedding` when given). Plots: roc.png, pr.png, confusion.png,
        reliability.png, embedding.png; `report.md` summarises them.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    result = classification_metrics(y_true, probabilities, class_names, positive_class)
    result["images"] = int(len(y_true))
    result["bootstrap_unit"] = "patient" if groups is not None else "image"
    result["confidence_intervals"] = bootstrap_intervals(
        y_true, probabilities, class_names, groups=groups, resamples=resamples,
        seed=seed, positive_class=positive_class) if resamples else {}
    dense = dense_view(y_true, probabilities, class_names, groups=groups, resamples=resamples,
                       seed=seed)
    if dense is not None:
        result["dense_view"] = dense
    if context is not None:
        result["evaluated"] = context
    note = describe_data(context) or f"{len(y_true)} images"
    if context and context.get("warnings"):  # beside the figures, not only in report.md
        note += "; unlike the training data (see report.md)"
    curve = reliability_curve(y_true, probabilities)
    plot_roc(y_true, probabilities, class_names, out / "roc.png", note)
    plot_precision_recall(y_true, probabilities, class_names, out / "pr.png", note)
    plot_confusion(result["confusion_matrix"], class_names, out / "confusion.png", note)
    plot_reliability(curve, result["ece"], out / "reliability.png", note)
    if embedding is not None:
        result["embedding"] = embedding_metrics(embedding, y_true)
        plot_embedding(embedding, y_true, class_names, out / "embedding.png", note)
    write_json_atomically(out / "metrics.json", result)
    write_text_atomically(out / "report.md", render_report(result, title, embedding is not None,
                                                 grouped=groups is not None))
    return result


def _sizes(data: dict) -> str:
    """", original size 1024 x 1024 px (median; 1024 x 1024 to 1024 x 1024)" or ""."""
    shape = data.get("image_shape")
    if not shape:
        return ""
    spread = ("" if shape["smallest"] == shape["largest"] else
              " (median; {} x {}".format(*shape["smallest"])
              + " to {} x {})".format(*shape["largest"]))
    return ", original size {} x {} px".format(*shape["median"]) + spread


def _context_lines(context: dict) -> list[str]:
    """The "What was evaluated" section of report.md."""
    data, model = context.get("data") or {}, context.get("model") or {}
    lines = ["## What was evaluated", ""]
    if data:
        root = f" under `{data['root']}`" if data.get("root") else ""
        lines.append(f"- **Data**: {describe_data(context)}{root}{_sizes(data)}.")
    if model:
        builder = model.get("builder") or {}
        arguments = ", ".join(f"{key}={value}" for key, value in
                              (builder.get("arguments") or {}).items() if value is not None)
        made = f" ({builder.get('name')}: {arguments})" if builder.get("name") else ""
        options = ", ".join(key for key, on in (model.get("preprocessing") or {}).items() if on)
        lines.append(f"- **Model**: `{model.get('name')}`{made}, task {model.get('task')}, "
                     f"input {model.get('input_size')} px, preprocessing: {options or 'none'}.")
    trained = context.get("trained_on") or {}
    if any(trained.values()):
        place = f" (`{trained['root']}`)" if trained.get("root") else ""
        run = f", run {trained['run']}" if trained.get("run") else ""
        commit = f", commit {trained['commit']}" if trained.get("commit") else ""
        lines.append(f"- **Trained on**: {trained.get('dataset')}{place}{run}{commit}"
                     f"{_sizes(trained)}.")
    if context.get("commit"):
        lines.append(f"- **Evaluated by** mammo-keras at commit {context['commit']}.")
    for warning in context.get("warnings") or []:
        lines.append(f"- **Note**: {warning}")
    return lines + [""]


def render_report(result: dict, title: str, with_embedding: bool, grouped: bool) -> str:
    """report.md: what was evaluated, headline metrics with intervals, per-class table, plots,
    and what the less standard figures mean."""
    intervals = result.get("confidence_intervals", {})

    def with_interval(value, low_high) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f} ({low_high[0]:.3f}-{low_high[1]:.3f})" if low_high else f"{value:.3f}"

    lines = [f"# {title}", ""]
    if result.get("evaluated"):
        lines += _context_lines(result["evaluated"])
    unit = "resampling patients" if grouped else \
        "resampling images: the data names no patients, so one patient's images may count as " \
        "independent and the intervals be too narrow"
    lines += ["## Figures", "", f"{result['images']} images. 95 % bootstrap intervals "
              f"({unit}) in brackets.", "",
              "| metric | value |", "|---|---:|"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "weighted_f1",
                "pr_auc_macro", "recall_variance", "ece", "quadratic_kappa"):
        lines.append(f"| {key} | {with_interval(result.get(key), intervals.get(key))} |")
    for key, value in result.get("sensitivity_at_specificity", {}).items():
        interval = intervals.get(f"sensitivity_at_specificity.{key}")
        lines.append(f"| sensitivity {key.replace('@', ' at specificity ')} | "
                     f"{with_interval(value, interval)} |")
    if result.get("absent_classes"):
        absent = ", ".join(result["absent_classes"])
        lines += ["", f"No image of class {absent} in this set: its recall, F1 and AUCs are "
                      "undefined (n/a), and the macro figures average the classes present."]
    lines += ["", "| class | precision | recall | specificity | F1 | ROC-AUC | PR-AUC | images |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for name, row in result["per_class"].items():
        recall = with_interval(row["recall"], intervals.get(f"recall.{name}"))
        lines.append(f"| {name} | {cell(row['precision'])} | {recall} | "
                     f"{cell(row['specificity'])} | {cell(row['f1'])} | {cell(row['roc_auc'])} | "
                     f"{cell(row['pr_auc'])} | {row['support']} |")
    dense = result.get("dense_view")
    if dense:
        spread = dense.get("confidence_intervals", {})
        lines += ["", f"Dense ({' + '.join(dense['dense'])}) vs non-dense "
                  f"({' + '.join(dense['non_dense'])}), {dense['dense_images']} of "
                  f"{dense['images']} images dense:", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {key} | {with_interval(dense[key], spread.get(key))} |"
                  for key in ("accuracy", "sensitivity", "specificity", "roc_auc")]
    if with_embedding:
        embedding = result["embedding"]
        lines += ["", "Embedding: intra-class variance "
                  f"{cell(embedding['intra_class_variance'])}, silhouette "
                  f"{cell(embedding['silhouette'])}, Fisher ratio "
                  f"{cell(embedding['fisher_ratio'])}."]
    lines += ["", "![ROC](roc.png) ![PR](pr.png)", "", "![confusion](confusion.png) "
              "![reliability](reliability.png)"]
    if with_embedding:
        lines += ["", "![embedding](embedding.png)"]
    lines += ["", "## What the figures mean", ""]
    lines += [f"- `{name}`: {meaning}." for name, meaning in GLOSSARY.items()
              if (with_embedding or name != "embedding")
              and (dense or name != "dense vs non-dense")]
    return "\n".join(lines) + "\n"


def size_warning(evaluated: dict | None, trained: dict | None) -> str | None:
    """A note when the evaluated images' median original size (H, W) is unlike the training
    images' (both `DataReport.shape_summary`) by more than SIZE_TOLERANCE in height or width
    (the crop and resize then show the model the breast at another scale), else None."""
    if not evaluated or not trained:
        return None
    ratios = [here / there for here, there in zip(evaluated["median"], trained["median"])
              if there]
    if all(1 / SIZE_TOLERANCE <= ratio <= SIZE_TOLERANCE for ratio in ratios):
        return None
    here, there = ("{} x {} px".format(*shape["median"]) for shape in (evaluated, trained))
    return (f"these images are {here} (median height x width) where the training images "
            f"were {there}: the model sees the breast at another scale, so figures need not "
            "match the training figures")


def evaluation_context(model: keras.Model, description, records: Sequence,
                       kept: Sequence, preprocessing: dict,
                       image_shape: dict | None = None) -> dict:
    """What an evaluation is about, for its report: the data (sources, common folder, subset,
    images and patients, original sizes), the model (builder, input size, preprocessing),
    what it was trained on, the commit, and warnings where the data (source, size) or the
    preprocessing differ from training (`preprocessing`: the options this evaluation used;
    `image_shape`: the evaluated images' sizes, `DataReport.shape_summary`)."""
    from mammo_keras.provenance import git_commit

    folders = [os.path.dirname(os.path.abspath(record.path.split("::")[0])) for record in kept]
    try:
        root = os.path.commonpath(folders) if folders else None
    except ValueError:  # paths on different drives
        root = None
    sources = collections.Counter(record.source for record in kept)
    patients = {record.patient_id for record in kept if record.patient_id}
    provenance = description.provenance or {}
    trained = {key: provenance.get(key)
               for key in ("dataset", "root", "run", "commit", "image_shape")}
    warnings = []
    if trained["dataset"] in SOURCE_NAMES and sources and trained["dataset"] not in sources:
        warnings.append(f"the model was trained on {SOURCE_NAMES[trained['dataset']]}; these "
                        f"images are {', '.join(SOURCE_NAMES.get(s, str(s)) for s in sources)}: "
                        "figures on another source need not match the training figures")
    size_note = size_warning(image_shape, provenance.get("image_shape"))
    if size_note:
        warnings.append(size_note)
    changed = {key: value for key, value in preprocessing.items()
               if description.preprocessing.get(key) != value}
    if changed:
        warnings.append(f"preprocessing differs from training ({changed} here, "
                        f"{ {key: description.preprocessing.get(key) for key in changed} } "
                        "in training)")
    return {"data": {"sources": dict(sources), "root": root,
                     "subset": getattr(records, "subset", None), "images": len(kept),
                     "patients": len(patients) or None, "image_shape": image_shape},
            "model": {"name": model.name, "task": description.task,
                      "input_size": description.image_size, "builder": description.builder,
                      "preprocessing": dict(preprocessing)},
            "trained_on": trained if any(trained.values()) else None,
            "commit": git_commit(), "warnings": warnings}


def prediction_rows(records: Sequence, y_true: np.ndarray, probabilities: np.ndarray,
                    class_names: Sequence[str]) -> list[dict]:
    """The rows of predictions.csv: one per evaluated image, in evaluation order.

    Columns: path, patient_id, label, prediction, p_<class> for each class, rois (JSON
    list of [x, y, radius] in original pixels) and masks (JSON list of lesion mask files);
    both [] when the dataset gives none.
    """
    rows = []
    for record, truth, row in zip(records, y_true, probabilities):
        rows.append({"path": record.path, "patient_id": record.patient_id or "",
                     "label": class_names[int(truth)],
                     "prediction": class_names[int(np.argmax(row))],
                     **{f"p_{name}": float(p) for name, p in zip(class_names, row)},
                     "rois": json.dumps([[round(roi.x, 1), round(roi.y, 1), round(roi.radius, 1)]
                                         for roi in record.rois]),
                     "masks": json.dumps(list(record.mask_paths))})
    return rows


def evaluate_model(model: keras.Model, records: Sequence, out: str | Path,
                   class_names: Sequence[str] | None = None, batch_size: int = 16,
                   resamples: int = 1000, target: "TargetSpec | str" = "label",
                   **dataset_options) -> dict:
    """Run `model` on `records` (through `load_dataset`, no shuffling) and evaluate its class
    output.

    `target`: the record field with the truth, or a task's `TargetSpec` (`Task.target_spec`;
    only its class is read here, a mask target is left out). Class names: `class_names`, else
    the model's description, else the target's (`default_class_names`: normal / benign /
    malignant, BI-RADS A-D, MIAS density F / G / D). Image size and preprocessing come from
    the model's description (`dataset_options` such as crop=False override it). The embedding (layer "embedding", when the model has one) is collected
    in the same pass; patients are the bootstrap groups.
    Besides `evaluate_predictions`' files, writes `predictions.csv` (`prediction_rows`),
    which the dashboard's cohort page reads.
    Records that cannot be read are skipped by the pipeline and reported, together with
    what the scan of the dataset skipped when `records` is a `Records` (its `skipped`),
    in `metrics.json`'s "skipped"; the metrics cover the images that were read.
    """
    from mammo_keras.data.pipeline import DataReport, as_target_spec, load_dataset

    description = description_of(model)
    spec = dataclasses.replace(as_target_spec(target), masks=False, named=None)
    options = {**description.preprocessing, **dataset_options}
    named = description_of(model, fill=False).class_names
    names = validated_class_names(class_names or named or spec.resolved(records).class_names,
                                  model, description.label_output)
    report = DataReport()
    dataset = load_dataset(records, spec, image_size=int(description.image_size),
                           batch_size=batch_size, class_names=names, report=report, **options)
    outputs = [label_tensor(model, description.label_output)]
    try:
        outputs.append(model.get_layer("embedding").output)
    except ValueError:
        pass
    probe = keras.Model(model.inputs, outputs)
    labels, probabilities, embeddings = [], [], []
    for images, targets in dataset:
        batch = probe(images, training=False)
        batch = batch if isinstance(batch, (list, tuple)) else [batch]
        probabilities.append(keras.ops.convert_to_numpy(batch[0]))
        if len(batch) == 2:
            embeddings.append(keras.ops.convert_to_numpy(batch[1]))
        labels.append(targets.numpy())
    Path(out).mkdir(parents=True, exist_ok=True)
    kept = report.kept(records)
    # the bootstrap's unit: patients where the data names them (an image without a patient
    # id counts as its own), images where no record does (a class folder of PNGs)
    groups = [record.patient_id or record.path for record in kept] \
        if any(record.patient_id for record in kept) else None
    y_true = np.concatenate(labels)
    probabilities = check_probabilities(np.concatenate(probabilities), model.name)
    write_csv_atomically(Path(out) / "predictions.csv",
                         prediction_rows(kept, y_true, probabilities, names))
    preprocessing = {key: options[key] for key in description.preprocessing if key in options}
    result = evaluate_predictions(
        y_true, probabilities, names, out,
        embedding=np.concatenate(embeddings) if embeddings else None,
        groups=groups, resamples=resamples,
        title=f"Evaluation of {model.name}",
        context=evaluation_context(model, description, records, kept, preprocessing,
                                   report.shape_summary(kept)))
    # what the dataset scan left out (a `Records`' skipped rows) and what the pipeline could not read
    left_out = list(dict.fromkeys([*getattr(records, "skipped", ()), *report.skipped]))
    result["skipped"] = list(dict.fromkeys(str(error) for error in left_out))
    write_json_atomically(Path(out) / "metrics.json", result)
    if left_out:
        _append_left_out(Path(out) / "report.md", left_out)
    return result


def _append_left_out(report: Path, left_out: Sequence) -> None:
    """A section of report.md that counts the images left out of the figures, by reason."""
    reasons = collections.Counter(getattr(error, "problem", str(error)) for error in left_out)
    lines = ["", "## Left out", "", f"{len(left_out)} images are not in these figures:", ""]
    lines += [f"- {count} x {reason}" for reason, count in reasons.most_common()]
    write_text_atomically(report, report.read_text() + "\n".join(lines) + "\n")
