"""Does a heat-map point at the lesion? The pointing game and the heat-map / mask IoU."""

from __future__ import annotations

import numpy as np


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """True when the heat-map's peak (H, W) lies inside the lesion mask (H, W)."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heat-map {heatmap.shape} and mask {mask.shape} differ in shape")
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return bool(mask[peak])


def heatmap_iou(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of {heat-map >= threshold} and the mask (0 when both are empty)."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heat-map {heatmap.shape} and mask {mask.shape} differ in shape")
    hot, lesion = heatmap >= threshold, mask.astype(bool)
    union = np.logical_or(hot, lesion).sum()
    return float(np.logical_and(hot, lesion).sum() / union) if union else 0.0
