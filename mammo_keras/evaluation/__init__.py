"""Evaluation of mammo-keras models.

- `classification_metrics(y_true, probabilities, class_names)`: accuracy, balanced accuracy,
  macro / weighted F1, per-class precision / recall / specificity / AUCs, recall variance,
  OvR macro ROC-AUC and PR-AUC, sensitivity at fixed specificity, confusion matrix, ECE,
  quadratic kappa.
- `bootstrap_intervals(...)`: 95 % percentile bootstrap intervals, patient-grouped.
- `embedding_metrics(embedding, labels)`: intra-class variance, silhouette, Fisher ratio.
"""

from mammo_keras.evaluation.metrics import (bootstrap_intervals, classification_metrics,
                                            embedding_metrics, expected_calibration_error,
                                            reliability_curve, sensitivity_at_specificity)

__all__ = ["bootstrap_intervals", "classification_metrics", "embedding_metrics",
           "expected_calibration_error", "reliability_curve", "sensitivity_at_specificity"]
