"""Does a heat-map point at the lesion? The pointing game and the heat-map / mask IoU."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def lesion_distance(mask: np.ndarray) -> np.ndarray:
    """Distance in pixels from every pixel to the nearest lesion pixel (0 inside)."""
    return ndimage.distance_transform_edt(~mask.astype(bool))


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True when the heat-map's peak (H, W) lies in the lesion mask (H, W), or within
    `tolerance` pixels of it (the pointing game of Zhang et al. 2018 allows 15 px)."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heat-map {heatmap.shape} and mask {mask.shape} differ in shape")
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    if tolerance <= 0:
        return bool(mask[peak])
    return bool(lesion_distance(mask)[peak] <= tolerance)


def heatmap_iou(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of {heat-map >= threshold} and the mask (0 when both are empty)."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heat-map {heatmap.shape} and mask {mask.shape} differ in shape")
    hot, lesion = heatmap >= threshold, mask.astype(bool)
    union = np.logical_or(hot, lesion).sum()
    return float(np.logical_and(hot, lesion).sum() / union) if union else 0.0


def wilson_interval(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion hits / total."""
    if total == 0:
        return (0.0, 1.0)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (float(centre - half), float(centre + half))


def localization_metrics(model, records, class_names, method: str = "gradcam",
                         layer: str | None = None, preprocessing: dict | None = None,
                         threshold: float = 0.5, tolerance: float = 15.0) -> dict:
    """Pointing game and heat-map / mask IoU over the records that have a lesion mask.

    Each image is explained for its true class (the standard pointing game), on the
    original image; a hit is a peak within `tolerance` pixels of the lesion at the model's
    input scale (15 px, as Zhang et al. 2018 at 224 px), converted to original pixels; records without a lesion (or whose label is not a class) are left
    out; unreadable files are listed under "skipped".

    Returns {"images", "pointing_game", "pointing_game_ci" (Wilson 95 %), "iou_mean",
    "iou_median", "chance_pointing" (the mean share of the breast crop within the tolerance
    of the lesion: the hit rate of a peak placed at random in the crop), "per_image": [{"path", "label",
    "hit", "iou", "lesion_share"}], "skipped"}.
    """
    from mammo_keras.data.errors import DataError
    from mammo_keras.data.readers import read_image
    from mammo_keras.explain.explain import explain_image

    per_image, skipped = [], []
    for record in records:
        if record.label not in class_names or not (record.rois or record.mask_paths):
            continue
        try:
            image, _ = read_image(record.path)
            mask = record.mask(image.shape)
        except DataError as error:
            skipped.append(str(error))
            continue
        if not mask.any():
            continue
        result = explain_image(model, image, method, layer, list(class_names).index(
            record.label), preprocessing)
        _, top, left, height, width = (int(v) for v in result["geometry"])
        pixels = tolerance * max(height, width) / int(model.input_shape[1])
        near = lesion_distance(mask) <= pixels
        crop = near[top:top + height, left:left + width] if not result["geometry"][0] else \
            near[top:top + height, mask.shape[1] - left - width:mask.shape[1] - left]
        per_image.append({"path": record.path, "label": record.label,
                          "hit": bool(near[np.unravel_index(int(np.argmax(result["heatmap"])),
                                                            mask.shape)]),
                          "iou": heatmap_iou(result["heatmap"], mask, threshold),
                          "lesion_share": float(crop.mean()) if crop.size else 0.0})
    hits = sum(row["hit"] for row in per_image)
    ious = [row["iou"] for row in per_image]
    return {"images": len(per_image), "method": method, "threshold": threshold,
            "tolerance_px": tolerance,
            "pointing_game": hits / len(per_image) if per_image else None,
            "pointing_game_ci": wilson_interval(hits, len(per_image)),
            "iou_mean": float(np.mean(ious)) if ious else None,
            "iou_median": float(np.median(ious)) if ious else None,
            "chance_pointing": float(np.mean([row["lesion_share"] for row in per_image]))
            if per_image else None,
            "per_image": per_image, "skipped": skipped}
