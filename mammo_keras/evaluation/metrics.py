"""Classification metrics of mammo-keras, from labels and class probabilities (NumPy / scikit-learn).

`classification_metrics` computes what the Dahes 2025 comparison and the density
study report: accuracy, balanced accuracy, macro / weighted F1, per-class
precision / recall / specificity / F1 / ROC-AUC / PR-AUC, the variance of the
per-class recalls, one-vs-rest macro ROC-AUC and PR-AUC, the sensitivity of one
class at fixed specificities, the confusion matrix, the expected calibration
error and quadratic-weighted Cohen's kappa (for ordinal classes such as density).
`bootstrap_intervals` adds 95 % confidence intervals, resampling patients when
they are known; `embedding_metrics` measures how compact and separable the
embedding is (what GAGM, SEVector and FSL are meant to improve).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from sklearn import metrics as sk

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "weighted_f1",
            "quadratic_kappa")
# Density scales split into non-dense / dense for the binary view of a density model: BI-RADS
# A+B / C+D (the usual "dense breasts" notification line); MIAS fatty + fatty-glandular /
# dense-glandular (our reading of its three classes).
DENSE_SPLITS = ((("A", "B"), ("C", "D")), (("F", "G"), ("D",)))
SPECIFICITIES = (0.9, 0.95)  # the fixed specificities of the sensitivity figures


def _validated(y_true, probabilities, class_names) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != y_true.shape[0]:
        raise ValueError(f"probabilities must be (N, K) for N = {len(y_true)} labels; got "
                         f"{probabilities.shape}.")
    if probabilities.shape[1] != len(class_names):
        raise ValueError(f"{probabilities.shape[1]} probability columns for "
                         f"{len(class_names)} class names.")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= len(class_names)):
        raise ValueError(f"labels must be class indices in 0..{len(class_names) - 1}.")
    return y_true, probabilities


def expected_calibration_error(y_true, probabilities, bins: int = 15) -> float:
    """ECE of the top-1 confidence: sum over equal-width bins of |accuracy - confidence| x share
    (the bins of `reliability_curve`)."""
    curve = reliability_curve(y_true, probabilities, bins)
    total = sum(curve["count"])
    return float(sum(count / total * abs(accuracy - confidence) for confidence, accuracy, count
                     in zip(curve["confidence"], curve["accuracy"], curve["count"]))) \
        if total else 0.0


def reliability_curve(y_true, probabilities, bins: int = 15) -> dict:
    """Per non-empty equal-width bin of top-1 confidence (bins are right-closed, the first
    also holds 0): mean confidence, accuracy and count (for the reliability diagram)."""
    confidence = np.asarray(probabilities).max(axis=1)
    correct = np.asarray(probabilities).argmax(axis=1) == np.asarray(y_true).reshape(-1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = [(float(confidence[which == b].mean()), float(correct[which == b].mean()),
             int((which == b).sum())) for b in range(bins) if (which == b).any()]
    return {"confidence": [r[0] for r in rows], "accuracy": [r[1] for r in rows],
            "count": [r[2] for r in rows]}


def sensitivity_at_specificity(positive: np.ndarray, scores: np.ndarray,
                               specificity: float) -> float:
    """Highest sensitivity among thresholds whose specificity is at least `specificity`."""
    fpr, tpr, _ = sk.roc_curve(positive, scores)
    allowed = (1.0 - fpr) >= specificity - 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray,
                           class_names: Sequence[str], positive_class: str | None = "malignant",
                           specificities: Sequence[float] = SPECIFICITIES,
                           calibration_bins: int = 15) -> dict:
    """All classification metrics of one set of predictions.

    Args:
        y_true: (N,) class indices.
        probabilities: (N, K) class probabilities (rows sum to 1).
        class_names: the K names, in index order.
        positive_class: the class whose sensitivity at fixed specificity is reported
            (one-vs-rest); None or a name not in `class_names` to skip it.
        specificities: the fixed specificities.
        calibration_bins: bins of the expected calibration error.

    Returns:
        A JSON-ready dict with `accuracy`, `balanced_accuracy`, `macro_f1`, `weighted_f1`,
        `roc_auc_macro`, `pr_auc_macro`, `recall_variance`, `ece`, `quadratic_kappa`,
        `confusion_matrix` (rows = truth), `per_class` {name: precision, recall,
        specificity, f1, support, roc_auc, pr_auc} and `sensitivity_at_specificity`.
        A class absent from `y_true` is named in `absent_classes`: its recall, F1 and AUCs
        are None, and the macro figures (balanced accuracy, macro F1, AUCs) average the
        classes present.
    """
    y_true, probabilities = _validated(y_true, probabilities, class_names)
    labels = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1)
    confusion = sk.confusion_matrix(y_true, predicted, labels=labels)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0)
    per_class, aucs, pr_aucs = {}, [], []
    for k, name in enumerate(class_names):
        positive = y_true == k
        negatives = (~positive).sum()
        true_negatives = ((predicted != k) & ~positive).sum()
        has_both = positive.any() and (~positive).any()
        roc = float(sk.roc_auc_score(positive, probabilities[:, k])) if has_both else None
        pr = float(sk.average_precision_score(positive, probabilities[:, k])) if has_both \
            else None
        defined = bool(support[k])  # recall and F1 of a class with no image are undefined
        per_class[name] = {"precision": float(precision[k]),
                           "recall": float(recall[k]) if defined else None,
                           "specificity": float(true_negatives / negatives) if negatives else None,
                           "f1": float(f1[k]) if defined else None, "support": int(support[k]),
                           "roc_auc": roc, "pr_auc": pr}
        if roc is not None:
            aucs.append(roc)
            pr_aucs.append(pr)
    present = [k for k in labels if support[k] > 0]
    result = {
        "accuracy": float(sk.accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(np.mean(recall[present])) if present else 0.0,
        "macro_f1": float(sk.f1_score(y_true, predicted, labels=present, average="macro",
                                      zero_division=0)) if present else 0.0,
        "weighted_f1": float(sk.f1_score(y_true, predicted, labels=labels, average="weighted",
                                         zero_division=0)),
        "roc_auc_macro": float(np.mean(aucs)) if aucs else None,
        "pr_auc_macro": float(np.mean(pr_aucs)) if pr_aucs else None,
        "recall_variance": float(np.var(recall[present])) if present else 0.0,
        "ece": expected_calibration_error(y_true, probabilities, calibration_bins),
        "quadratic_kappa": float(sk.cohen_kappa_score(y_true, predicted, labels=labels,
                                                      weights="quadratic")),
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
        "absent_classes": [class_names[k] for k in labels if not support[k]],
        "per_class": per_class,
        "sensitivity_at_specificity": {},
    }
    if positive_class in class_names:
        k = list(class_names).index(positive_class)
        positive = y_true == k
        if positive.any() and (~positive).any():
            result["sensitivity_at_specificity"] = {
                f"{positive_class}@{spec:g}": sensitivity_at_specificity(
                    positive, probabilities[:, k], spec) for spec in specificities}
    return result


def bootstrap_intervals(y_true, probabilities, class_names: Sequence[str],
                        groups: Sequence | None = None, resamples: int = 1000, seed: int = 0,
                        confidence: float = 0.95, keys: Sequence[str] = HEADLINE,
                        positive_class: str | None = None,
                        specificities: Sequence[float] = SPECIFICITIES
                        ) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of the headline metrics, of each class's
    recall (keys "recall.<class>") and of the sensitivity of `positive_class` at each fixed
    specificity (keys "sensitivity_at_specificity.<class>@<specificity>", as
    `classification_metrics` names them).

    Resamples whole groups (patients) with replacement when `groups` is given, so that
    correlated images of one patient do not narrow the interval; images otherwise.
    Resamples where a metric is undefined (e.g. an AUC with one class) are left out.

    Returns:
        {metric: (low, high)}.
    """
    y_true, probabilities = _validated(y_true, probabilities, class_names)
    rng = np.random.default_rng(seed)
    members = _group_members(len(y_true), groups)
    sensitivities = {}
    k = list(class_names).index(positive_class) if positive_class in class_names else None
    if k is not None and (y_true == k).any() and (y_true != k).any():  # as the point estimate
        sensitivities = {f"sensitivity_at_specificity.{positive_class}@{spec:g}": (k, spec)
                         for spec in specificities}
    recalls = {f"recall.{name}": k for k, name in enumerate(class_names) if (y_true == k).any()}
    present = np.asarray(sorted(recalls.values()), int)  # the point estimate's macro classes
    values: dict[str, list[float]] = {key: [] for key in [*keys, *sensitivities, *recalls]}
    for _ in range(resamples):
        chosen = rng.integers(len(members), size=len(members))
        index = np.concatenate([members[g] for g in chosen])
        with warnings.catch_warnings():  # a resample may lack a class: expected here
            warnings.simplefilter("ignore", UserWarning)
            sample = _headline(y_true[index], probabilities[index], keys, present)
        for key, (k, spec) in sensitivities.items():
            positive = y_true[index] == k
            sample[key] = sensitivity_at_specificity(positive, probabilities[index, k], spec) \
                if positive.any() and (~positive).any() else None
        predicted = probabilities[index].argmax(axis=1)
        for key, k in recalls.items():
            truth = y_true[index] == k
            sample[key] = float((predicted[truth] == k).mean()) if truth.any() else None
        for key in values:
            if sample[key] is not None:
                values[key].append(sample[key])
    tail = (1.0 - confidence) / 2
    return {key: (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) if v else
            (float("nan"), float("nan")) for key, v in values.items()}


def _group_members(count: int, groups: Sequence | None) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(count)]
    if len(groups) != count:
        raise ValueError(f"groups has {len(groups)} entries for {count} predictions.")
    index: dict = {}
    for i, group in enumerate(groups):
        index.setdefault(group, []).append(i)
    return [np.array(v) for v in index.values()]


def _headline(y_true: np.ndarray, probabilities: np.ndarray, keys: Sequence[str],
              present: np.ndarray) -> dict:
    """The cheap subset of metrics the bootstrap needs; macro F1 over the classes `present`
    in the evaluated set, as the point estimate."""
    predicted = probabilities.argmax(axis=1)
    out: dict[str, float | None] = {}
    computations: dict[str, Callable[[], float | None]] = {
        "accuracy": lambda: float((predicted == y_true).mean()),
        "balanced_accuracy": lambda: float(sk.balanced_accuracy_score(y_true, predicted)),
        # the classes of the point estimate: the interval must bracket the same statistic
        "macro_f1": lambda: float(sk.f1_score(y_true, predicted, average="macro",
                                              labels=present, zero_division=0)),
        "roc_auc_macro": lambda: macro_auc(y_true, probabilities),
        "weighted_f1": lambda: float(sk.f1_score(y_true, predicted, average="weighted",
                                                 labels=np.arange(probabilities.shape[1]),
                                                 zero_division=0)),
        "quadratic_kappa": lambda: _finite(sk.cohen_kappa_score(
            y_true, predicted, labels=np.arange(probabilities.shape[1]), weights="quadratic")),
    }
    for key in keys:
        out[key] = computations[key]()
    return out


def _finite(value: float) -> float | None:
    """None for NaN (kappa of a resample with one class in truth and prediction)."""
    return float(value) if np.isfinite(value) else None


def dense_split(class_names: Sequence[str]) -> tuple[list[int], list[int]] | None:
    """(non-dense class indices, dense class indices) when `class_names` are a density
    scale of DENSE_SPLITS, else None."""
    for low, high in DENSE_SPLITS:
        if set(class_names) == set(low) | set(high):
            return ([list(class_names).index(name) for name in low],
                    [list(class_names).index(name) for name in high])
    return None


def dense_view(y_true, probabilities, class_names: Sequence[str], groups: Sequence | None = None,
               resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict | None:
    """Dense vs non-dense, from a density model's (N, K) probabilities: a prediction is dense
    when its most likely class is; the score of "dense" is the dense classes' summed
    probability. None unless `class_names` are a density scale (`dense_split`).

    Returns:
        {"non_dense": [names], "dense": [names], "accuracy", "sensitivity" (of dense),
        "specificity", "roc_auc" (None with one group absent), "images", "dense_images",
        "confidence_intervals": {metric: (low, high)}} with percentile bootstrap intervals
        resampling `groups` (patients) when given.
    """
    split = dense_split(class_names)
    if split is None:
        return None
    y_true, probabilities = _validated(y_true, probabilities, class_names)
    dense = np.isin(y_true, split[1])
    called = np.isin(probabilities.argmax(axis=1), split[1])
    score = probabilities[:, split[1]].sum(axis=1)

    def figures(index: np.ndarray) -> dict:
        truth, guess = dense[index], called[index]
        both = truth.any() and (~truth).any()
        return {"accuracy": float((truth == guess).mean()),
                "sensitivity": float(guess[truth].mean()) if truth.any() else None,
                "specificity": float((~guess[~truth]).mean()) if (~truth).any() else None,
                "roc_auc": float(sk.roc_auc_score(truth, score[index])) if both else None}

    result = {"non_dense": [class_names[k] for k in split[0]],
              "dense": [class_names[k] for k in split[1]],
              **figures(np.arange(len(y_true))), "images": int(len(y_true)),
              "dense_images": int(dense.sum())}
    rng = np.random.default_rng(seed)
    members = _group_members(len(y_true), groups)
    samples: dict[str, list[float]] = {key: [] for key in ("accuracy", "sensitivity",
                                                           "specificity", "roc_auc")}
    for _ in range(resamples):
        index = np.concatenate([members[g] for g in rng.integers(len(members),
                                                                size=len(members))])
        for key, value in figures(index).items():
            if value is not None:
                samples[key].append(value)
    tail = (1.0 - confidence) / 2
    result["confidence_intervals"] = {
        key: (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail)))
        for key, v in samples.items() if v}
    return result


def macro_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """One-vs-rest ROC-AUC (N,) labels x (N, K) scores, averaged over the classes that have
    both positives and negatives; None when no class has."""
    aucs = [sk.roc_auc_score(y_true == k, probabilities[:, k])
            for k in range(probabilities.shape[1])
            if (y_true == k).any() and (y_true != k).any()]
    return float(np.mean(aucs)) if aucs else None


def embedding_metrics(embedding: np.ndarray, labels: Sequence[int]) -> dict:
    """Compactness and separability of an embedding (N, D) given class labels.

    Returns:
        `intra_class_variance`: mean over classes of the mean squared distance to the class
        centre; `silhouette`: scikit-learn's silhouette (Euclidean); `fisher_ratio`:
        trace of the between-class scatter over trace of the within-class scatter.
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    classes = np.unique(labels)
    centre = embedding.mean(axis=0)
    within = between = 0.0
    spreads = []
    for k in classes:
        members = embedding[labels == k]
        class_centre = members.mean(axis=0)
        squared = ((members - class_centre) ** 2).sum(axis=1)
        spreads.append(squared.mean())
        within += squared.sum()
        between += len(members) * ((class_centre - centre) ** 2).sum()
    silhouette = float(sk.silhouette_score(embedding, labels)) if 1 < len(classes) < len(labels) \
        else None
    return {"intra_class_variance": float(np.mean(spreads)), "silhouette": silhouette,
            "fisher_ratio": float(between / within) if within > 0 else None}
