"""Hybrid deep supervision (HDS, Zhang 2018): every exit's segmentation and MIL losses, weighted.

    L = seg_weight * sum_k w_k(e) * pixel_loss(mask, seg_logits_k)
      + cls_weight * sum_k v_k(e) * sparse_mil_loss(label, mil_logits_k)

Exit weights start at (3.5, 3, 2.5, 2, 1.5, 1), deepest exit first (the authors' values;
a model with fewer exits takes the last ones); after each epoch e the auxiliary exits (all
but the final, full-resolution one) are multiplied by a decay factor chosen so that by the
last epoch they have fallen to `seg_final` (5e-3) / `cls_final` (5e-2) of their start:
the authors' `lw_decay = final ** (1 / max_epoch)`. seg_weight 1.0 and cls_weight 0.03 are
the authors' `segcls_weight`.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from mammo_keras.losses.segmentation import PIXEL_LOSSES

EXIT_WEIGHTS = (3.5, 3.0, 2.5, 2.0, 1.5, 1.0)


def exit_weights(count: int, epoch: int, epochs: int, final_fraction: float,
                 start: Sequence[float] = EXIT_WEIGHTS) -> np.ndarray:
    """The weights (count,) of `count` exits, deepest first, at the start of epoch `epoch`
    (0-based) of `epochs`: the auxiliary ones decayed `epoch` times by
    final_fraction ** (1 / epochs), the final exit's kept.

    >>> exit_weights(3, 0, 10, 0.01).tolist()
    [2.0, 1.5, 1.0]
    >>> [round(float(w), 4) for w in exit_weights(3, 10, 10, 0.01)]
    [0.02, 0.015, 1.0]
    """
    if count > len(start):
        raise ValueError(f"{count} exits but only {len(start)} starting weights")
    weights = np.asarray(start[len(start) - count:], np.float64)
    decay = final_fraction ** (1.0 / max(epochs, 1))
    weights[:-1] *= decay ** epoch
    return weights.astype(np.float32)


@keras.saving.register_keras_serializable(package="mammo_keras")
class HybridDeepSupervisionLoss:
    """The settings of the HDS loss (the mathematics lives in `losses.segmentation` and
    `losses.mil`; `mammo_keras.models.DeepSupervisionModel` applies it in `fit`).

    Args:
        pixel_loss: "ce" (the authors') or "dice_ce" (MONAI's DiceCELoss).
        seg_weight, cls_weight: weights of the segmentation and classification sums.
        seg_final, cls_final: what the auxiliary exits' weights have decayed to (a fraction
            of their start) by the last epoch; 1.0: no decay.
        sparsity: the MIL loss's sparsity factor.
        epochs: the epochs the decay spreads over (the run's; the trainer sets it).
    """

    def __init__(self, pixel_loss: str = "ce", seg_weight: float = 1.0, cls_weight: float = 0.03,
                 seg_final: float = 5e-3, cls_final: float = 5e-2, sparsity: float = 1e-6,
                 epochs: int = 1):
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss must be one of {sorted(PIXEL_LOSSES)}, got {pixel_loss!r}")
        for name, value in (("seg_final", seg_final), ("cls_final", cls_final)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        self.pixel_loss, self.seg_weight, self.cls_weight = pixel_loss, seg_weight, cls_weight
        self.seg_final, self.cls_final, self.sparsity = seg_final, cls_final, sparsity
        self.epochs = int(epochs)

    def seg_exit_weights(self, count: int, epoch: int) -> np.ndarray:
        return exit_weights(count, epoch, self.epochs, self.seg_final)

    def cls_exit_weights(self, count: int, epoch: int) -> np.ndarray:
        return exit_weights(count, epoch, self.epochs, self.cls_final)

    def get_config(self) -> dict:
        return {"pixel_loss": self.pixel_loss, "seg_weight": self.seg_weight,
                "cls_weight": self.cls_weight, "seg_final": self.seg_final,
                "cls_final": self.cls_final, "sparsity": self.sparsity, "epochs": self.epochs}

    @classmethod
    def from_config(cls, config: dict) -> "HybridDeepSupervisionLoss":
        return cls(**config)
