"""Losses of mammo-keras.

- `FeatureSmoothingLoss`: label-smoothed cross-entropy + lambda * ||f - c_y||^2 with
  EMA class centres (Dahes 2025). Train with it through
  `mammo_keras.models.FeatureSmoothingModel`.
"""

from mammo_keras.losses.feature_smoothing import FeatureSmoothingLoss

__all__ = ["FeatureSmoothingLoss"]
