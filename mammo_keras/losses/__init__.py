"""Losses of mammo-keras.

- `FeatureSmoothingLoss`: label-smoothed cross-entropy + lambda * ||f - c_y||^2 with
  EMA class centres (Dahes 2025). Train with it through
  `mammo_keras.models.FeatureSmoothingModel`.
- `pixel_cross_entropy`, `dice_loss`, `dice_ce_loss`: 2-class pixel losses (MONAI's
  DiceCELoss semantics); `sparse_mil_loss`: the sparse multiple-instance loss of HDS.
- `HybridDeepSupervisionLoss`, `exit_weights`: HDS's weighted, decaying exits (Zhang 2018).
  Train with it through `mammo_keras.models.DeepSupervisionModel`.
"""

from mammo_keras.losses.deep_supervision import HybridDeepSupervisionLoss, exit_weights
from mammo_keras.losses.feature_smoothing import FeatureSmoothingLoss
from mammo_keras.losses.mil import sparse_mil_loss
from mammo_keras.losses.segmentation import dice_ce_loss, dice_loss, pixel_cross_entropy

__all__ = ["FeatureSmoothingLoss", "HybridDeepSupervisionLoss", "dice_ce_loss", "dice_loss",
           "exit_weights", "pixel_cross_entropy", "sparse_mil_loss"]
