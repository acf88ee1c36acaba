"""Classification tasks: malignancy (normal / benign / malignant) and breast density.

The model is one (N, K) softmax output (the classifier family by default). It trains
inside `FeatureSmoothingModel`, whose loss is label-smoothed, class-weighted
cross-entropy plus `training.fsl_lambda` x the Feature Smoothing term: with lambda 0
(the default) that is plain cross-entropy, and the smoothing term is still logged,
so runs with and without FSL report the same figures.
"""

from __future__ import annotations

import keras

from mammo_keras.data.records import LABELS
from mammo_keras.tasks.base import Task, register_task

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "roc_auc_macro",
            "pr_auc_macro", "recall_variance", "ece", "quadratic_kappa")


class ClassificationTask(Task):
    """One class per image from a record field; evaluated by `evaluate_model`."""

    monitor = "val_cross_entropy"  # comparable across FSL lambdas
    METRIC_DIRECTIONS = {"feature_smoothing": "min"}

    def training_model(self, model: keras.Model, class_weights: list[float] | None
                       ) -> keras.Model:
        from mammo_keras.losses import FeatureSmoothingLoss
        from mammo_keras.models import FeatureSmoothingModel

        training = self.config["training"]
        loss = FeatureSmoothingLoss(lam=float(training["fsl_lambda"]),
                                    momentum=float(training["fsl_momentum"]),
                                    centres=training["fsl_centres"],
                                    label_smoothing=float(training["label_smoothing"]),
                                    class_weights=class_weights)
        return FeatureSmoothingModel(model, loss)

    def losses(self, class_weights: list[float] | None):
        return None  # FeatureSmoothingModel computes its own loss

    def metrics(self):
        return ["accuracy"]

    def trained_model(self, training_model: keras.Model) -> keras.Model:
        return training_model.classifier

    def summary(self, metrics: dict) -> dict:
        return {"metrics": {key: metrics.get(key) for key in HEADLINE},
                "recall": {name: values["recall"]
                           for name, values in metrics["per_class"].items()},
                "confidence_intervals": dict(metrics.get("confidence_intervals", {})),
                "embedding": metrics.get("embedding")}


@register_task
class MalignancyTask(ClassificationTask):
    """normal / benign / malignant from `record.label`."""

    name = "malignancy"
    target_field = "label"
    default_classes = LABELS
    report_columns = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
                      ("macro_f1", "macro F1"), ("roc_auc_macro", "ROC-AUC (macro)"),
                      ("recall_variance", "recall variance"),
                      ("recall_malignant", "malignant recall"), ("fisher_ratio", "Fisher ratio"))


@register_task
class DensityTask(ClassificationTask):
    """Breast density from `record.density`: BI-RADS A-D, or the dataset's scale (MIAS F/G/D);
    its summary adds the dense vs non-dense view (`evaluation.dense_view`)."""

    name = "density"
    target_field = "density"
    ordinal = True
    report_columns = (("accuracy", "accuracy"), ("weighted_f1", "weighted F1"),
                      ("macro_f1", "macro F1"), ("quadratic_kappa", "quadratic kappa"),
                      ("roc_auc_macro", "ROC-AUC (macro)"), ("dense_accuracy", "dense vs not: acc."),
                      ("dense_roc_auc", "dense vs not: AUC"))

    def summary(self, metrics: dict) -> dict:
        headline = super().summary(metrics)
        dense = metrics.get("dense_view") or {}
        headline["metrics"].update(dense_accuracy=dense.get("accuracy"),
                                   dense_roc_auc=dense.get("roc_auc"))
        spread = dense.get("confidence_intervals", {})
        headline["confidence_intervals"].update(
            {f"dense_{key}": value for key, value in spread.items()
             if key in ("accuracy", "roc_auc")})
        return headline
