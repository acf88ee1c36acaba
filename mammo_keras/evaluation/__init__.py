"""Evaluation of mammo-keras models.

- `classification_metrics(y_true, probabilities, class_names)`: accuracy, balanced accuracy,
  macro / weighted F1, per-class precision / recall / specificity / AUCs, recall variance,
  OvR macro ROC-AUC and PR-AUC, sensitivity at fixed specificity, confusion matrix, ECE,
  quadratic kappa.
- `bootstrap_intervals(...)`: 95 % percentile bootstrap intervals, patient-grouped.
- `dense_view(...)`: a density model's dense vs non-dense figures (BI-RADS C+D vs A+B).
- `embedding_metrics(embedding, labels)`: intra-class variance, silhouette, Fisher ratio.
- `evaluate_predictions(...)` / `evaluate_model(model, records, out)`: metrics.json, ROC / PR /
  confusion / reliability / embedding plots and report.md in an output folder.
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "bootstrap_intervals": "mammo_keras.evaluation.metrics",
    "classification_metrics": "mammo_keras.evaluation.metrics",
    "dense_view": "mammo_keras.evaluation.metrics",
    "embedding_metrics": "mammo_keras.evaluation.metrics",
    "evaluate_model": "mammo_keras.evaluation.report",
    "evaluate_predictions": "mammo_keras.evaluation.report",
    "expected_calibration_error": "mammo_keras.evaluation.metrics",
    "reliability_curve": "mammo_keras.evaluation.metrics",
    "sensitivity_at_specificity": "mammo_keras.evaluation.metrics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
