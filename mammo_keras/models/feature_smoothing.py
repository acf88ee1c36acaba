"""FeatureSmoothingModel: trains a classifier with the Feature Smoothing Loss through `model.fit`.

It wraps a classifier built by `build_classifier` (any model with a layer named
"embedding" and a softmax output works), computes the loss of
`mammo_keras.losses.FeatureSmoothingLoss` in Keras' `compute_loss` hook and keeps
the class centres as non-trainable variables of the wrapper. It works with the
stock `fit` / `evaluate` of every Keras backend; the wrapped classifier is the
model to save, export and predict with afterwards.
"""

from __future__ import annotations

import keras
from keras import ops

from mammo_keras.losses import FeatureSmoothingLoss
from mammo_keras.models.classifier import EMBEDDING_LAYER
from mammo_keras.models.own_loss import OwnLossModel
from mammo_keras.models.replicas import replica_share, replica_sum


@keras.saving.register_keras_serializable(package="mammo_keras")
class FeatureSmoothingModel(OwnLossModel):
    """Train `classifier` with cross-entropy + lambda * ||f - c_y||^2.

    Args:
        classifier: a `keras.Model` with a softmax output (N, K) and a layer
            named "embedding" with output (N, D).
        smoothing_loss: the loss configuration; default `FeatureSmoothingLoss()`.
            With `lam=0` this trains with plain (label-smoothed) cross-entropy
            and still reports the smoothing term as a metric.

    Labels `y` may be integer class ids (N,) / (N, 1) or one-hot / soft (N, K).
    Calling the model returns {"probabilities": (N, K), "embedding": (N, D)}.
    `fit` and `evaluate` report `loss`, `cross_entropy`, `feature_smoothing`
    (the unweighted mean squared distance to the class centre) and the compiled
    metrics, which see the probabilities.

    Example:

    >>> import numpy as np
    >>> from mammo_keras.models import build_classifier
    >>> classifier = build_classifier("baseline_cnn", head="gagm_se", num_classes=3,
    ...                               input_shape=(64, 64, 1))
    >>> trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=0.05))
    >>> trainer.compile(optimizer=keras.optimizers.AdamW(1e-3), metrics=["accuracy"])
    >>> images = np.random.rand(8, 64, 64, 1).astype("float32")
    >>> history = trainer.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'cross_entropy', 'feature_smoothing', 'loss']
    >>> # classifier.save("classifier.keras") keeps the trained classifier
    """

    loss_name = "FeatureSmoothingLoss"

    def __init__(self, classifier: keras.Model, smoothing_loss: FeatureSmoothingLoss | None = None,
                 **kwargs):
        kwargs.setdefault("name", f"{classifier.name}_fsl")
        super().__init__(**kwargs)
        try:
            embedding = classifier.get_layer(EMBEDDING_LAYER).output
        except ValueError:
            raise ValueError(f"Model {classifier.name!r} has no layer named {EMBEDDING_LAYER!r}; "
                             "build it with mammo_keras.models.build_classifier.") from None
        if len(classifier.outputs) != 1 or len(classifier.outputs[0].shape) != 2:
            raise ValueError(f"Model {classifier.name!r} must have one (N, num_classes) output.")
        self.classifier = classifier
        self.smoothing_loss = smoothing_loss or FeatureSmoothingLoss()
        self.num_classes = int(classifier.outputs[0].shape[-1])
        self._heads = keras.Model(
            classifier.inputs, {"probabilities": classifier.outputs[0], "embedding": embedding},
            name=f"{classifier.name}_with_embedding")
        # Every replica computes the same centres (from sums reduced across replicas), so a
        # mirrored copy takes the first replica's value instead of refusing the assignment.
        self.class_centres = self.add_weight(
            shape=(self.num_classes, int(embedding.shape[-1])), initializer="zeros",
            trainable=False, dtype="float32", name="class_centres",
            aggregation="only_first_replica")
        self.centre_seen = self.add_weight(
            shape=(self.num_classes,), initializer="zeros", trainable=False, dtype="float32",
            name="centre_seen", aggregation="only_first_replica")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.smoothing_tracker = keras.metrics.Mean(name="feature_smoothing")
        self.built = True

    def call(self, inputs, training=None):
        return self._heads(inputs, training=training)


    def one_hot(self, y):
        """Labels as float32 (N, K): integer ids are one-hot encoded, (N, K) labels kept."""
        if len(y.shape) == 2 and y.shape[-1] == self.num_classes:
            return ops.cast(y, "float32")
        return ops.one_hot(ops.reshape(ops.cast(y, "int32"), (-1,)), self.num_classes)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # float32 at least (mixed precision keeps the loss in float32), float64 under float64
        dtype = "float64" if y_pred["probabilities"].dtype == "float64" else "float32"
        onehot = ops.cast(self.one_hot(y), dtype)
        probabilities = ops.cast(y_pred["probabilities"], dtype)
        embedding = ops.cast(y_pred["embedding"], dtype)
        centres = ops.cast(self.class_centres, dtype)
        if training or self.smoothing_loss.centres == "batch":
            centres, seen = self.smoothing_loss.updated_centres(
                onehot, embedding, centres, ops.cast(self.centre_seen, dtype), reduce=replica_sum)
            if training:
                self.class_centres.assign(ops.cast(centres, "float32"))
                self.centre_seen.assign(ops.cast(seen, "float32"))
        cross_entropy = self.smoothing_loss.cross_entropy(onehot, probabilities, sample_weight)
        smoothing = self.smoothing_loss.smoothing_term(onehot, embedding, centres)
        # Weighted by batch size like Keras' loss; Keras may end an epoch of a dataset of
        # unknown length with an empty batch, which must not count.
        size = ops.cast(ops.shape(onehot)[0], dtype)
        for tracker, value in ((self.cross_entropy_tracker, cross_entropy),
                               (self.smoothing_tracker, smoothing)):
            tracker.update_state(ops.where(size > 0, value, 0.0), sample_weight=size)
        total = cross_entropy + self.smoothing_loss.lam * smoothing
        for extra in self.losses:  # weight regularisers of the classifier
            total = total + ops.cast(extra, dtype)
        return replica_share(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["probabilities"], sample_weight)

    def get_config(self) -> dict:
        return {"name": self.name,
                "classifier": keras.saving.serialize_keras_object(self.classifier),
                "smoothing_loss": self.smoothing_loss.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> "FeatureSmoothingModel":
        config = dict(config)
        classifier = keras.saving.deserialize_keras_object(config.pop("classifier"))
        smoothing_loss = FeatureSmoothingLoss.from_config(config.pop("smoothing_loss"))
        return cls(classifier, smoothing_loss, **config)
