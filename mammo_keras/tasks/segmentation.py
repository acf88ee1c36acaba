"""Lesion segmentation + lesion-present classification with hybrid deep supervision (HDS).

The task of Zhang, Zhang & Chung 2018: one residual U-Net (`build_hds_unet`, builder
"hds_unet") segments masses and says whether the film holds one. Records become lesion
records (`mammo_keras.data.lesions`: label "mass" / "no_mass", the mass outlines as mask;
films whose mass has no outline are reported and left out). The U-Net trains inside
`DeepSupervisionModel` with `HybridDeepSupervisionLoss`, whose settings are the config's
`task_options`:

    task_options:
      lesions: masses        # masses | all (every annotated lesion)
      pixel_loss: ce         # ce (the authors') | dice_ce (MONAI's DiceCELoss)
      seg_weight: 1.0        # the authors' segcls_weight (1.0, 0.03)
      cls_weight: 0.03
      seg_final: 0.005       # auxiliary exit weights decay to this share by the last epoch
      cls_final: 0.05
      sparsity: 1.0e-6       # the MIL loss's sparsity factor

With `data.train_crop: [h, w]` it trains on crops of the preprocessed film, centred on a mass
pixel with probability `data.crop_positive_rate` (the authors' "balanced" 512 x 384 crops, rate
0.5), through the same U-Net with an input of any size; validation, evaluation and the saved
model see whole films.

Evaluation: `mammo_keras.evaluation.lesion_report` (Dice / IoU over lesion films and over all
films, lesion-present accuracy and AUC, malignancy AUC where the data gives pathology, FROC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras

from mammo_keras.data.lesions import LESION_CLASSES, lesion_records
from mammo_keras.models.outputs import CLASS_PROBABILITIES, MASK
from mammo_keras.tasks.base import Task, register_task


@register_task
class LesionSegmentationTask(Task):
    """Mass mask + mass present from one U-Net (HDS and its ablations, `model.exits`)."""

    name = "lesion_segmentation"
    target_names = ("label", "mask")
    monitor = "val_final_exit_loss"  # the final exit's undecayed loss: comparable over epochs
    default_classes = LESION_CLASSES
    report_columns = (("dice_lesion", "Dice (mass films)"), ("dice_all", "Dice (all)"),
                      ("iou_lesion", "IoU (mass films)"),
                      ("false_positive_image_rate", "normals with FP pixels"),
                      ("lesion_accuracy", "mass present: acc."),
                      ("lesion_roc_auc", "mass present: AUC"),
                      ("detection_at_1_fp", "detection @1 FP/img"),
                      ("malignancy_roc_auc", "malignancy AUC"))
    plot_metrics = ("dice_lesion", "lesion_roc_auc", "detection_at_1_fp")
    OPTIONS = {"lesions": "masses", "pixel_loss": "ce", "seg_weight": 1.0, "cls_weight": 0.03,
               "seg_final": 5e-3, "cls_final": 5e-2, "sparsity": 1e-6}

    @property
    def output_kinds(self) -> dict[str, str]:
        if self.config["model"].get("exits", "hds") == "cls":
            return {"label": CLASS_PROBABILITIES}
        return {"label": CLASS_PROBABILITIES, "mask": MASK}

    @classmethod
    def check_stages(cls, stages: list[dict]) -> str | None:
        for index, stage in enumerate(stages):
            if any(step["operation"] == "to_resolution" for step in stage.get("morph") or ()):
                return (f"stages[{index}].morph: to_resolution keeps a U-Net's mask at the size "
                        "its backbone runs at, so a lesion_segmentation stage cannot train on "
                        "the larger masks; morph the classifier tasks only")
        return None

    def prepare_records(self, records):
        return lesion_records(records, self.options["lesions"])

    def class_names(self, records: Sequence) -> tuple[str, ...]:
        return LESION_CLASSES

    def training_model(self, model: keras.Model, class_weights: list[float] | None
                       ) -> keras.Model:
        from mammo_keras.losses import HybridDeepSupervisionLoss
        from mammo_keras.models import DeepSupervisionModel
        epochs = self.total_epochs
        settings = {key: self.options[key] for key in
                    ("pixel_loss", "seg_weight", "cls_weight", "seg_final", "cls_final",
                     "sparsity")}
        self._served = model
        if self.config["data"]["train_crop"]:  # crops to train, whole films to validate
            model = self._any_size(model)
        return DeepSupervisionModel(model, HybridDeepSupervisionLoss(**settings, epochs=epochs))

    def _any_size(self, model: keras.Model) -> keras.Model:
        """The same U-Net with input (None, None, 1) and `model`'s weights."""
        from mammo_keras.models.builders import get_builder

        arguments = dict(model.description.builder["arguments"], input_shape=(None, None, 1))
        flexible = get_builder(model.description.builder["name"])(**arguments)
        flexible.set_weights(model.get_weights())
        return flexible

    def losses(self, class_weights: list[float] | None):
        return None  # DeepSupervisionModel computes its own loss

    def start_epoch(self, training_model: keras.Model, epoch: int) -> None:
        training_model.set_epoch(epoch)

    def trained_model(self, training_model: keras.Model) -> keras.Model:
        if not self.config["data"]["train_crop"]:
            return training_model.unet
        served = getattr(self, "_served", None)
        if served is None:  # resumed from a checkpoint: the film-sized model is built anew
            served = self.build_model(LESION_CLASSES, self.config["data"]["image_size"])
            self._served = served
        served.set_weights(training_model.unet.get_weights())
        return served

    def evaluate(self, model: keras.Model, records: Sequence, out: Path,
                 class_names: Sequence[str], batch_size: int, resamples: int) -> dict:
        from mammo_keras.evaluation.lesion_report import evaluate_lesion_model

        options = {key: value for key, value in self.dataset_options(class_names).items()
                   if key != "target"}
        return evaluate_lesion_model(model, records, out, class_names, batch_size=batch_size,
                                     resamples=resamples, **options)

    def summary(self, metrics: dict) -> dict:
        from mammo_keras.evaluation.lesion_report import lesion_headline

        return lesion_headline(metrics)
