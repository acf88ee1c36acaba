"""Evaluation of mammo-keras models.

- `classification_metrics(y_true, probabilities, class_names)`: accuracy, balanced accuracy,
  macro / weighted F1, per-class precision / recall / specificity / AUCs, recall variance,
  OvR macro ROC-AUC and PR-AUC, sensitivity at fixed specificity, confusion matrix, ECE,
  quadratic kappa.
- `bootstrap_intervals(...)`: 95 % percentile bootstrap intervals, patient-grouped.
- `embedding_metrics(embedding, labels)`: intra-class variance, silhouette, Fisher ratio.
- `evaluate_predictions(...)` / `evaluate_model(model, records, out)`: metrics.json, ROC / PR /
  confusion / reliability / embedding plots and report.md in an output folder.
"""

from mammo_keras.evaluation.metrics import (bootstrap_intervals, classification_metrics,
                                            embedding_metrics, expected_calibration_error,
                                            reliability_curve, sensitivity_at_specificity)

from mammo_keras.evaluation.report import evaluate_model, evaluate_predictions

__all__ = ["evaluate_model", "evaluate_predictions", "bootstrap_intervals", "classification_metrics", "embedding_metrics",
           "expected_calibration_error", "reliability_curve", "sensitivity_at_specificity"]
