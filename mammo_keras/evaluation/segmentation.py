"""Segmentation and detection metrics of lesion masks, in NumPy / SciPy.

- `overlap_scores(masks, probabilities)`: per-image Dice and IoU of the thresholded
  prediction. An image with no lesion and an empty prediction scores 1 (the eps-smoothed
  Dice of most code, the HDS authors' included), so `segmentation_summary` reports them over
  the images with a lesion and over all images separately, with the share of lesion-free
  images on which anything was predicted.
- `detection_candidates` / `froc(...)`: lesion detection as a free-response ROC. Candidates
  are the connected components of the probability map above `candidate_threshold` (0.1),
  each scored by its largest probability; a candidate whose IoU with a true lesion (a
  connected component of the mask) is at least `min_iou` (0.1) detects it, any other
  candidate is a false positive (a region that spills over half the breast does not detect
  the small mass it covers). Sweeping
  the score gives sensitivity against false positives per image; `detection_rates` reads
  the sensitivity at fixed rates (0.125 ... 4 per image).
- `grouped_mean_interval(values, groups)`: percentile bootstrap of a mean, resampling
  patients.

Shapes: masks (N, H, W[, 1]) in {0, 1}; probabilities (N, H, W[, 1]) in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)


def _flat(array) -> np.ndarray:
    array = np.asarray(array)
    return array.reshape(array.shape[0], -1)


def overlap_scores(masks, probabilities, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """{"dice": (N,), "iou": (N,)} of each image's prediction (probability > threshold); an
    empty truth with an empty prediction scores 1."""
    truth = _flat(masks) > 0.5
    predicted = _flat(probabilities) > threshold
    intersection = (truth & predicted).sum(axis=1).astype(np.float64)
    sizes = truth.sum(axis=1) + predicted.sum(axis=1)
    union = (truth | predicted).sum(axis=1)
    both_empty = sizes == 0
    dice = np.where(both_empty, 1.0, 2.0 * intersection / np.maximum(sizes, 1))
    iou = np.where(both_empty, 1.0, intersection / np.maximum(union, 1))
    return {"dice": dice, "iou": iou}


def grouped_mean_interval(values, groups: Sequence | None = None, resamples: int = 1000,
                          seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`, resampling whole `groups`
    (patients) with replacement; (nan, nan) for no values or no resamples."""
    values = np.asarray(values, np.float64)
    if not len(values) or resamples <= 0:
        return float("nan"), float("nan")
    groups = list(range(len(values))) if groups is None else list(groups)
    members: dict = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    sums = np.array([values[m].sum() for m in members.values()])
    counts = np.array([len(m) for m in members.values()])
    chosen = np.random.default_rng(seed).integers(len(sums), size=(resamples, len(sums)))
    means = sums[chosen].sum(axis=1) / counts[chosen].sum(axis=1)
    tail = (1.0 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def segmentation_summary(masks, probabilities, groups: Sequence | None = None,
                         threshold: float = 0.5, resamples: int = 1000, seed: int = 0) -> dict:
    """Dice and IoU over the images with a lesion and over all images (means with
    patient-grouped intervals), and how often a lesion-free image gets a predicted pixel."""
    scores = overlap_scores(masks, probabilities, threshold)
    has_lesion = _flat(masks).max(axis=1) > 0.5 if len(scores["dice"]) else np.zeros(0, bool)
    predicted_any = _flat(probabilities).max(axis=1) > threshold if len(scores["dice"]) \
        else np.zeros(0, bool)
    groups = np.asarray(groups if groups is not None else np.arange(len(has_lesion)), object)
    result: dict = {"images": int(len(has_lesion)), "images_with_lesion": int(has_lesion.sum()),
                    "threshold": threshold, "confidence_intervals": {}}
    for name, values in scores.items():
        for subset, chosen in (("lesion", has_lesion), ("all", np.ones_like(has_lesion))):
            key = f"{name}_{subset}"
            result[key] = float(values[chosen].mean()) if chosen.any() else None
            if chosen.any():
                result["confidence_intervals"][key] = grouped_mean_interval(
                    values[chosen], groups[chosen], resamples, seed)
    free = ~has_lesion
    result["false_positive_image_rate"] = float(predicted_any[free].mean()) if free.any() else None
    return result


def detection_candidates(probability: np.ndarray, candidate_threshold: float = 0.1
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(labels (H, W) int of the candidate regions, scores (K,) their largest probability)."""
    probability = np.asarray(probability, np.float64).reshape(np.shape(probability)[:2])
    labels, count = ndimage.label(probability > candidate_threshold)
    if not count:
        return labels, np.zeros(0)
    scores = ndimage.maximum(probability, labels, index=np.arange(1, count + 1))
    return labels, np.asarray(scores, np.float64)


def froc(masks, probabilities, candidate_threshold: float = 0.1, min_iou: float = 0.1) -> dict:
    """The free-response ROC: {"thresholds", "sensitivity", "fp_per_image"} arrays (by
    decreasing score threshold), "lesions" (true lesions) and "images"."""
    masks = np.asarray(masks)
    probabilities = np.asarray(probabilities)
    lesion_scores, false_scores, lesions = [], [], 0
    for mask, probability in zip(masks, probabilities):
        truth, count = ndimage.label(np.asarray(mask).reshape(mask.shape[:2]) > 0.5)
        lesions += count
        labels, scores = detection_candidates(probability, candidate_threshold)
        best = np.zeros(count)  # the best score of a candidate touching each true lesion
        areas = np.bincount(truth.ravel(), minlength=count + 1)
        for index, score in enumerate(scores, start=1):
            region = labels == index
            touched, shared = np.unique(truth[region & (truth > 0)], return_counts=True)
            iou = shared / (region.sum() + areas[touched] - shared)
            hits = touched[iou >= min_iou]
            if hits.size:
                best[hits - 1] = np.maximum(best[hits - 1], score)
            else:
                false_scores.append(score)
        lesion_scores.extend(best.tolist())  # 0: never detected
    lesion_scores, false_scores = np.asarray(lesion_scores), np.asarray(false_scores)
    thresholds = np.unique(np.concatenate([lesion_scores[lesion_scores > 0], false_scores]))[::-1]
    images = max(len(masks), 1)
    sensitivity = np.array([(lesion_scores >= t).sum() / max(lesions, 1) for t in thresholds])
    fp_per_image = np.array([(false_scores >= t).sum() / images for t in thresholds])
    return {"thresholds": thresholds, "sensitivity": sensitivity,
            "fp_per_image": fp_per_image, "lesions": int(lesions), "images": int(len(masks))}


def detection_rates(curve: dict, rates: Sequence[float] = FP_RATES) -> dict[str, float | None]:
    """Sensitivity at each false-positive rate per image: the best sensitivity of the curve's
    operating points with at most that many false positives per image (None: no lesions)."""
    if not curve["lesions"]:
        return {f"{rate:g}": None for rate in rates}
    result = {}
    for rate in rates:
        allowed = curve["fp_per_image"] <= rate
        result[f"{rate:g}"] = float(curve["sensitivity"][allowed].max()) if allowed.any() else 0.0
    return result
