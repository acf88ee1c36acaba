"""The cohort of an evaluated run: operating point, ROC and the errors at a threshold.

Reads `predictions.csv` and `metrics.json`, which every training run (and
`mammo-keras evaluate`) writes into its folder.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as sk  # noqa: E402

from mammo_keras.errors import UserError
from mammo_keras.dashboard.cases import positive_class  # noqa: E402

ERROR_KINDS = ("false negatives", "false positives")


@dataclasses.dataclass
class Cohort:
    """The evaluated images of one run.

    rows: the rows of predictions.csv (path, patient_id, label, prediction, p_*, rois);
    y_positive: (N,) bool, true class is the positive class; p_positive: (N,) its probability.
    """

    folder: Path
    class_names: list[str]
    positive: str
    rows: list[dict]
    y_positive: np.ndarray
    p_positive: np.ndarray
    metrics: dict


def load_cohort(folder: str | Path) -> Cohort:
    """Read an evaluated run folder. Raises FileNotFoundError naming what is missing."""
    folder = Path(folder)
    predictions = folder / "predictions.csv"
    if not predictions.is_file():
        raise FileNotFoundError(f"{folder}: no predictions.csv (evaluate the run with "
                                f"'mammo-keras evaluate MODEL --out {folder}' first)")
    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise UserError(f"{predictions}: no predictions in the file")
    class_names = [key[2:] for key in rows[0] if key.startswith("p_")]
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    positive = positive_class(class_names)
    return Cohort(folder, class_names, positive, rows,
                  np.array([row["label"] == positive for row in rows]),
                  np.array([float(row[f"p_{positive}"]) for row in rows]), metrics)


def operating_point(cohort: Cohort, threshold: float) -> dict:
    """Counts and rates of "flag when P(positive) >= threshold".

    Returns tp, fp, tn, fn and sensitivity, specificity, ppv, npv (None when undefined).
    """
    flagged = cohort.p_positive >= threshold
    tp = int(np.sum(flagged & cohort.y_positive))
    fp = int(np.sum(flagged & ~cohort.y_positive))
    fn = int(np.sum(~flagged & cohort.y_positive))
    tn = int(np.sum(~flagged & ~cohort.y_positive))

    def ratio(a: int, b: int) -> float | None:
        return a / (a + b) if a + b else None

    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "sensitivity": ratio(tp, fn),
            "specificity": ratio(tn, fp), "ppv": ratio(tp, fp), "npv": ratio(tn, fn)}


def error_cases(cohort: Cohort, threshold: float, kind: str) -> list[dict]:
    """The false negatives (positive cases below the threshold, lowest probability first)
    or false positives (others at or above it, highest first) at `threshold`."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"kind must be one of {ERROR_KINDS}, not {kind!r}")
    flagged = cohort.p_positive >= threshold
    wrong = (~flagged & cohort.y_positive) if kind == "false negatives" \
        else (flagged & ~cohort.y_positive)
    indices = np.flatnonzero(wrong)
    order = np.argsort(cohort.p_positive[indices])
    if kind == "false positives":
        order = order[::-1]
    return [cohort.rows[i] for i in indices[order]]


def plot_operating_point(cohort: Cohort, threshold: float) -> plt.Figure:
    """ROC of the positive class against the rest with the threshold's point, beside the
    2 x 2 confusion matrix at that threshold."""
    point = operating_point(cohort, threshold)
    figure, (roc_axis, matrix_axis) = plt.subplots(1, 2, figsize=(9, 4))
    if cohort.y_positive.any() and (~cohort.y_positive).any():
        fpr, tpr, _ = sk.roc_curve(cohort.y_positive, cohort.p_positive)
        roc_axis.plot(fpr, tpr, label=f"{cohort.positive} vs rest (AUC {sk.auc(fpr, tpr):.3f})")
        roc_axis.plot(1 - point["specificity"], point["sensitivity"], "o", color="crimson",
                      label=f"threshold {threshold:.2f}")
        roc_axis.legend(loc="lower right")
    else:
        roc_axis.text(0.5, 0.5, "ROC undefined: one class only", ha="center")
    roc_axis.plot([0, 1], [0, 1], "k:", linewidth=1)
    roc_axis.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01),
                 title="ROC and operating point")
    counts = np.array([[point["tp"], point["fn"]], [point["fp"], point["tn"]]])
    matrix_axis.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        matrix_axis.text(j, i, str(value), ha="center", va="center", fontsize=14,
                         color="white" if value > counts.max() / 2 else "black")
    other = f"not {cohort.positive}"
    matrix_axis.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["flagged", "not flagged"],
                    yticklabels=[cohort.positive, other], xlabel="decision", ylabel="truth",
                    title=f"At threshold {threshold:.2f}")
    figure.tight_layout()
    return figure
