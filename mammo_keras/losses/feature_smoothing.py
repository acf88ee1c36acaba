"""Feature Smoothing Loss (FSL): cross-entropy plus a pull of each embedding to its class centre.

    L = CE_ls,w(y, p) + lambda * mean_i ||f_i - c_{y_i}||^2

Dahes 2025 (after Xia 2025) adds the second term to reduce intra-class variance of
the head's feature vector `f` (the output of the layer named `embedding`). Class
centres `c` are an exponential moving average of per-class batch means (mode
"ema") or the current batch's class means (mode "batch"). The papers do not give
the momentum, lambda or how the centres are kept: momentum 0.9, lambda 0.05 and
label smoothing 0.1 are our choices.

This module holds the mathematics only, in `keras.ops`, on explicit tensors.
`mammo_keras.models.FeatureSmoothingModel` plugs it into `model.fit` and keeps
the centres as non-trainable model state.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

CENTRE_MODES = ("ema", "batch")
_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="mammo_keras")
class FeatureSmoothingLoss:
    """Label-smoothed, optionally class-weighted cross-entropy + lambda * feature smoothing.

    Args:
        lam: lambda, the weight of the smoothing term (>= 0; 0 gives plain
            cross-entropy). Default 0.05 (our choice; the paper's range is 0.01-0.1).
        momentum: EMA momentum of the class centres in [0, 1):
            c <- momentum * c + (1 - momentum) * batch_mean. Default 0.9 (our choice).
        centres: "ema" (centres persist across steps) or "batch" (the current
            batch's class means; the term is then the within-batch class variance).
        label_smoothing: in [0, 1); targets become (1 - s) * onehot + s / K.
        class_weights: optional K weights multiplying each sample's cross-entropy
            by the weight of its class (e.g. inverse class frequency).

    All tensors are batch-first: labels (N, K) one-hot or soft, probabilities
    (N, K) summing to 1, embeddings (N, D), centres (K, D).

    Example, training with `model.fit`:

    >>> from mammo_keras.models import build_classifier, FeatureSmoothingModel
    >>> classifier = build_classifier("baseline_cnn", num_classes=3, input_shape=(64, 64, 1))
    >>> trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=0.05))
    >>> trainer.compile(optimizer="adamw", metrics=["accuracy"])
    >>> # trainer.fit(images, integer_labels, epochs=10); classifier.save("model.keras")
    """

    def __init__(self, lam: float = 0.05, momentum: float = 0.9, centres: str = "ema",
                 label_smoothing: float = 0.1, class_weights: Sequence[float] | None = None):
        if lam < 0:
            raise ValueError(f"FeatureSmoothingLoss lam must be >= 0; got {lam!r}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"FeatureSmoothingLoss momentum must be in [0, 1); got {momentum!r}.")
        if centres not in CENTRE_MODES:
            raise ValueError(f"FeatureSmoothingLoss centres must be one of {CENTRE_MODES}; "
                             f"got {centres!r}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError("FeatureSmoothingLoss label_smoothing must be in [0, 1); "
                             f"got {label_smoothing!r}.")
        self.lam = float(lam)
        self.momentum = float(momentum)
        self.centres = centres
        self.label_smoothing = float(label_smoothing)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def cross_entropy(self, onehot, probabilities, sample_weight=None):
        """Mean over the batch of the label-smoothed, class- and sample-weighted cross-entropy.

        Returns a scalar: sum_i w_i * CE_i / N, the "sum over batch size"
        reduction of Keras losses.
        """
        num_classes = ops.shape(onehot)[-1]
        targets = onehot * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        log_p = ops.log(ops.clip(probabilities, _EPSILON, 1.0))
        per_sample = -ops.sum(targets * log_p, axis=-1)
        if self.class_weights is not None:
            if len(self.class_weights) != onehot.shape[-1]:
                raise ValueError(f"FeatureSmoothingLoss has {len(self.class_weights)} class weights "
                                 f"for {onehot.shape[-1]} classes.")
            weights = ops.convert_to_tensor(self.class_weights, dtype=per_sample.dtype)
            per_sample = per_sample * ops.sum(onehot * weights, axis=-1)
        if sample_weight is not None:
            per_sample = per_sample * ops.reshape(ops.cast(sample_weight, per_sample.dtype), (-1,))
        return ops.mean(per_sample)

    @staticmethod
    def class_sums(onehot, embedding):
        """Per-class sums of the batch: (sums (K, D), counts (K,)), without gradient."""
        onehot, embedding = ops.stop_gradient(onehot), ops.stop_gradient(embedding)
        return ops.matmul(ops.transpose(onehot), embedding), ops.sum(onehot, axis=0)

    def updated_centres(self, onehot, embedding, centres, seen, reduce=None):
        """The centres after one batch, without gradient.

        Args:
            onehot: (N, K) labels. embedding: (N, D). centres: (K, D) current centres.
            seen: (K,) 1.0 for classes that already have a centre, else 0.0.
            reduce: applied to the batch's class sums (K, D) and counts (K,) before the
                means are taken: `mammo_keras.models.replicas.replica_sum` under
                tf.distribute, so every replica moves the centres by the means of the
                global batch; None: this batch alone.

        Returns:
            (new_centres (K, D), new_seen (K,)). "ema": a class in the batch moves
            by (1 - momentum) towards its batch mean, or takes the batch mean the
            first time it is seen; absent classes keep their centre. "batch": the
            batch means, old centres for absent classes.
        """
        sums, counts = self.class_sums(onehot, embedding)
        if reduce is not None:
            sums, counts = reduce(sums), reduce(counts)
        means = sums / ops.expand_dims(ops.maximum(counts, _EPSILON), -1)
        present = ops.expand_dims(ops.cast(counts > 0, centres.dtype), -1)
        if self.centres == "ema":
            known = ops.expand_dims(seen, -1)
            target = known * (self.momentum * centres + (1.0 - self.momentum) * means) \
                + (1.0 - known) * means
        else:
            target = means
        new_centres = present * target + (1.0 - present) * centres
        new_seen = ops.maximum(seen, ops.squeeze(present, -1))
        return new_centres, new_seen

    @staticmethod
    def smoothing_term(onehot, embedding, centres):
        """mean_i ||f_i - c_{y_i}||^2 with the centres held constant (gradient flows to f only)."""
        assigned = ops.matmul(onehot, ops.stop_gradient(centres))
        return ops.mean(ops.sum(ops.square(embedding - assigned), axis=-1))

    def __call__(self, onehot, probabilities, embedding, centres, sample_weight=None):
        """Total loss CE + lambda * smoothing for given centres (a scalar)."""
        total = self.cross_entropy(onehot, probabilities, sample_weight)
        if self.lam > 0:
            total = total + self.lam * self.smoothing_term(onehot, embedding, centres)
        return total

    def get_config(self) -> dict:
        return {"lam": self.lam, "momentum": self.momentum, "centres": self.centres,
                "label_smoothing": self.label_smoothing, "class_weights": self.class_weights}

    @classmethod
    def from_config(cls, config: dict) -> "FeatureSmoothingLoss":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"FeatureSmoothingLoss({args})"
