"""Evaluation plots as PNG files: ROC, precision-recall, confusion matrix, reliability, embedding.

Each function draws one figure with matplotlib's Agg backend (no display needed) and
writes it atomically (temporary file, then rename).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as sk  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from mammo_keras.atomic import atomic_path  # noqa: E402


def _title(axis, title: str, note: str | None) -> None:
    """The plot's title, with `note` (what data, how many images) on a smaller second line."""
    lines = [title, *textwrap.wrap(note, 52)] if note else [title]
    axis.set_title("\n".join(lines), fontsize=10 if note else None)


def _save(figure, path: str | Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_roc(y_true, probabilities, class_names: Sequence[str], path: str | Path,
             note: str | None = None) -> Path:
    """One-vs-rest ROC curve of every class present, AUC in the legend; `note` under the title
    says what was evaluated."""
    figure, axis = plt.subplots(figsize=(5, 5))
    for k, name in enumerate(class_names):
        positive = np.asarray(y_true) == k
        if positive.any() and (~positive).any():
            fpr, tpr, _ = sk.roc_curve(positive, probabilities[:, k])
            axis.plot(fpr, tpr, label=f"{name} (AUC {sk.auc(fpr, tpr):.3f})")
    axis.plot([0, 1], [0, 1], "k:", linewidth=1)
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    _title(axis, "ROC (one vs rest)", note)
    axis.legend(loc="lower right")
    return _save(figure, path)


def plot_precision_recall(y_true, probabilities, class_names: Sequence[str],
                          path: str | Path, note: str | None = None) -> Path:
    """One-vs-rest precision-recall curve of every class present, average precision in the legend."""
    figure, axis = plt.subplots(figsize=(5, 5))
    for k, name in enumerate(class_names):
        positive = np.asarray(y_true) == k
        if positive.any() and (~positive).any():
            precision, recall, _ = sk.precision_recall_curve(positive, probabilities[:, k])
            average = sk.average_precision_score(positive, probabilities[:, k])
            axis.plot(recall, precision, label=f"{name} (AP {average:.3f})")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    _title(axis, "Precision-recall (one vs rest)", note)
    axis.legend(loc="lower left")
    return _save(figure, path)


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                   path: str | Path, note: str | None = None) -> Path:
    """Confusion matrix, rows = truth, colour = share of the row, counts and row % written in."""
    counts = np.asarray(confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1.4 * len(class_names) + 2, 1.4 * len(class_names) + 1.5))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center",
                      color="white" if shares[i, j] > 0.5 else "black")
    axis.set(xticks=range(len(class_names)), yticks=range(len(class_names)),
             xticklabels=class_names, yticklabels=class_names, xlabel="predicted",
             ylabel="true")
    _title(axis, "Confusion matrix", note)
    return _save(figure, path)


def plot_reliability(curve: dict, ece: float, path: str | Path, note: str | None = None) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin; marker area ~ the bin's
    images, with a key of what the sizes mean."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "k:", linewidth=1, label="perfect calibration")
    counts = np.asarray(curve["count"])
    largest = max(1, int(counts.max(initial=1)))

    def area(count) -> np.ndarray:
        return 20 + 200 * np.asarray(count) / largest

    axis.plot(curve["confidence"], curve["accuracy"], color="C0")
    axis.scatter(curve["confidence"], curve["accuracy"], s=area(counts), color="C0",
                 label="bins")
    for count in sorted({max(1, largest // 4), largest}):  # the size key
        axis.scatter([], [], s=area(count), color="C0", alpha=0.5, label=f"{count} images")
    axis.set(xlabel="confidence (top-1 probability)", ylabel="accuracy", xlim=(0, 1),
             ylim=(0, 1.01))
    _title(axis, f"Reliability (ECE {ece:.3f})", note)
    axis.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def plot_embedding(embedding: np.ndarray, y_true, class_names: Sequence[str],
                   path: str | Path, note: str | None = None) -> Path:
    """The embedding projected on its first two principal components, coloured by true class;
    each axis says the share of the embedding's variance it explains."""
    pca = PCA(n_components=2)
    points = pca.fit_transform(np.asarray(embedding, dtype=np.float64))
    figure, axis = plt.subplots(figsize=(5, 5))
    for k, name in enumerate(class_names):
        members = np.asarray(y_true) == k
        if members.any():
            axis.scatter(points[members, 0], points[members, 1], s=12, alpha=0.7, label=name)
    first, second = pca.explained_variance_ratio_
    axis.set(xlabel=f"PC 1 ({first:.0%} of the variance)",
             ylabel=f"PC 2 ({second:.0%} of the variance)")
    _title(axis, "Embedding (PCA)", note)
    axis.legend()
    return _save(figure, path)


def plot_training_history(history: Sequence[dict], path: str | Path,
                          best_epoch: int | None = None, monitor: str | None = None,
                          note: str | None = None) -> Path:
    """Loss and accuracy per epoch, training and validation (rows as in history.csv); a line
    marks `best_epoch` (1-based, the epoch whose weights were kept), picked by `monitor`."""
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.9 if note else 3.6))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + metric) for row in history]
            if any(value is not None for value in values):
                axis.plot(epochs, values, style, marker="o", markersize=3,
                          label="validation" if prefix else "training")
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", linestyle=":",
                         label=f"best epoch {best_epoch}" + (f" ({monitor})" if monitor else ""))
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if note:
        figure.suptitle(note, fontsize=10)
    return _save(figure, path)


def plot_metric_bars(names: Sequence[str], series: dict, path: str | Path) -> Path:
    """Grouped bars: one group per name, one bar per metric, error bars = std.

    Args:
        names: the G group labels.
        series: {metric: (G means, G stds)}; None values are drawn as 0 without error bar.
    """
    count = len(series)
    width = 0.8 / max(count, 1)
    positions = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 4))
    for index, (metric, (means, stds)) in enumerate(series.items()):
        heights = [0.0 if mean is None else mean for mean in means]
        errors = [0.0 if std is None else std for std in stds]
        axis.bar(positions + (index - (count - 1) / 2) * width, heights, width, yerr=errors,
                 capsize=3, label=metric)
    axis.set_xticks(positions, names, rotation=30, ha="right")
    axis.set_ylim(0, 1.05)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


def plot_froc(curve: dict, path: str | Path, note: str | None = None,
              rates: Sequence[float] = (0.125, 0.25, 0.5, 1, 2, 4)) -> Path:
    """The free-response ROC (`evaluation.segmentation.froc`): lesion sensitivity against
    false positives per image, log x axis, the fixed rates marked."""
    figure, axis = plt.subplots(figsize=(5, 4))
    fp, sensitivity = np.asarray(curve["fp_per_image"]), np.asarray(curve["sensitivity"])
    floor = rates[0] / 2
    axis.step(np.maximum(fp, floor), sensitivity, where="post",
              label=f"{curve['lesions']} lesions, {curve['images']} images")
    for rate in rates:
        axis.axvline(rate, color="0.85", linewidth=0.8, zorder=0)
    axis.set_xscale("log")
    axis.set(xlabel="false positives per image", ylabel="lesion sensitivity", ylim=(0, 1.01),
             xlim=(floor, max(rates[-1], float(fp.max()) if fp.size else 0) * 1.2))
    _title(axis, "FROC: lesion detection", note)
    axis.legend(loc="lower right")
    return _save(figure, path)
