"""DeepSupervisionModel: trains an HDS U-Net's exits with the hybrid deep-supervision loss in `fit`.

It wraps a model built by `build_hds_unet` (any model whose dict outputs include
"seg_logits_<k>" and / or "mil_logits_<k>" exits works), computes
`mammo_keras.losses.HybridDeepSupervisionLoss` in Keras' `compute_loss` hook and keeps the
exit weights as non-trainable variables, which `set_epoch` moves along their per-epoch decay
(the trainer calls it before every epoch, so a resumed run has the weights an uninterrupted
one had). The wrapped U-Net is the model to save, export and predict with afterwards.

`fit` / `evaluate` report `loss` (the weighted total), `segmentation_loss` and
`classification_loss` (the weighted sums), `final_exit_loss` (the final exit's losses with
undecayed weights: comparable across epochs, the default monitor), `dice` (mean Dice at 0.5
over the images with a lesion) and `accuracy` (of the image label at 0.5).
"""

from __future__ import annotations

import keras
from keras import ops

from mammo_keras.losses.deep_supervision import HybridDeepSupervisionLoss
from mammo_keras.losses.mil import sparse_mil_loss
from mammo_keras.losses.segmentation import PIXEL_LOSSES
from mammo_keras.models.hds_unet import exit_names
from mammo_keras.models.own_loss import OwnLossModel
from mammo_keras.models.replicas import replica_share


@keras.saving.register_keras_serializable(package="mammo_keras")
class DeepSupervisionModel(OwnLossModel):
    """Train `unet` on {"label": (N,) lesion present 0 / 1, "mask": (N, H, W, 1)} targets.

    Example:

    >>> import numpy as np
    >>> from mammo_keras.models.hds_unet import build_hds_unet
    >>> unet = build_hds_unet((64, 64, 1), widths=(4, 8, 8), mil_stride=32)
    >>> trainer = DeepSupervisionModel(unet, HybridDeepSupervisionLoss(epochs=2))
    >>> trainer.compile(optimizer="sgd")
    >>> images = np.random.rand(4, 64, 64, 1).astype("float32")
    >>> masks = np.zeros((4, 64, 64, 1), "float32"); masks[:2, 20:30, 20:30] = 1
    >>> targets = {"label": np.array([1, 1, 0, 0]), "mask": masks}
    >>> history = trainer.fit(images, targets, epochs=1, verbose=0)
    >>> sorted(history.history)[:3]
    ['accuracy', 'classification_loss', 'dice']
    """

    loss_name = "HybridDeepSupervisionLoss"

    def __init__(self, unet: keras.Model, supervision: HybridDeepSupervisionLoss | None = None,
                 **kwargs):
        kwargs.setdefault("name", f"{unet.name}_hds")
        super().__init__(**kwargs)
        self.unet = unet
        self.supervision = supervision or HybridDeepSupervisionLoss()
        self.seg_exits = exit_names(unet, "seg")
        self.mil_exits = exit_names(unet, "mil")
        if not self.seg_exits and not self.mil_exits:
            raise ValueError(f"model {unet.name!r} has no seg_logits_<k> or mil_logits_<k> "
                             "outputs; build it with mammo_keras.models.build_hds_unet")
        self.seg_weights = self.add_weight(shape=(max(len(self.seg_exits), 1),),
                                           initializer="ones", trainable=False,
                                           dtype="float32", name="seg_exit_weights")
        self.cls_weights = self.add_weight(shape=(max(len(self.mil_exits), 1),),
                                           initializer="ones", trainable=False,
                                           dtype="float32", name="cls_exit_weights")
        self.set_epoch(0)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "segmentation_loss", "classification_loss", "final_exit_loss", "dice", "accuracy")}
        self.built = True

    def set_epoch(self, epoch: int) -> None:
        """Set the exit weights to those of the start of epoch `epoch` (0-based)."""
        if self.seg_exits:
            self.seg_weights.assign(self.supervision.seg_exit_weights(len(self.seg_exits), epoch))
        if self.mil_exits:
            self.cls_weights.assign(self.supervision.cls_exit_weights(len(self.mil_exits), epoch))

    def call(self, inputs, training=None):
        return self.unet(inputs, training=training)


    @property
    def metrics(self):
        return [*super().metrics, *self.trackers.values()]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        pixel_loss = PIXEL_LOSSES[self.supervision.pixel_loss]
        labels = ops.reshape(ops.cast(y["label"], "float32"), (-1,))
        segmentation = classification = final = ops.convert_to_tensor(0.0)
        for index, name in enumerate(self.seg_exits):
            value = pixel_loss(y["mask"], y_pred[name])
            segmentation = segmentation + self.seg_weights[index] * value
            if index == len(self.seg_exits) - 1:
                final = final + self.supervision.seg_weight * value
        for index, name in enumerate(self.mil_exits):
            value = sparse_mil_loss(labels, y_pred[name], self.supervision.sparsity)
            classification = classification + self.cls_weights[index] * value
            if index == len(self.mil_exits) - 1:
                final = final + self.supervision.cls_weight * value
        total = self.supervision.seg_weight * segmentation \
            + self.supervision.cls_weight * classification
        for extra in self.losses:
            total = total + ops.cast(extra, "float32")
        self._track(y, y_pred, labels, segmentation, classification, final)
        return replica_share(total)

    def _track(self, y, y_pred, labels, segmentation, classification, final) -> None:
        # weighted by the batch size; Keras may end an epoch with an empty batch
        size = ops.cast(ops.shape(labels)[0], "float32")
        for name, value in (("segmentation_loss", segmentation),
                            ("classification_loss", classification),
                            ("final_exit_loss", final)):
            self.trackers[name].update_state(ops.where(size > 0, value, 0.0), sample_weight=size)
        predicted = ops.cast(ops.cast(y_pred["label"], "float32")[:, 1] > 0.5, "float32")
        self.trackers["accuracy"].update_state(ops.cast(ops.equal(predicted, labels), "float32"))
        if "mask" in y_pred:
            self.trackers["dice"].update_state(*batch_dice(y["mask"], y_pred["mask"]))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {name: tracker.result() for name, tracker in self.trackers.items()} | \
            {"loss": self._loss_tracker.result()}

    def get_config(self) -> dict:
        return {"name": self.name, "unet": keras.saving.serialize_keras_object(self.unet),
                "supervision": self.supervision.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> "DeepSupervisionModel":
        config = dict(config)
        unet = keras.saving.deserialize_keras_object(config.pop("unet"))
        supervision = HybridDeepSupervisionLoss.from_config(config.pop("supervision"))
        return cls(unet, supervision, **config)


def batch_dice(mask, probabilities, threshold: float = 0.5):
    """(Dice of each image (N,), 1 for images with a lesion else 0): the per-image Dice of the
    thresholded prediction, to average over the images with a lesion."""
    target = ops.cast(ops.reshape(mask, (ops.shape(mask)[0], -1)) > 0.5, "float32")
    predicted = ops.cast(ops.reshape(probabilities, (ops.shape(probabilities)[0], -1))
                         > threshold, "float32")
    intersection = ops.sum(target * predicted, axis=1)
    total = ops.sum(target, axis=1) + ops.sum(predicted, axis=1)
    has_lesion = ops.cast(ops.sum(target, axis=1) > 0, "float32")
    return 2.0 * intersection / ops.maximum(total, 1.0), has_lesion
