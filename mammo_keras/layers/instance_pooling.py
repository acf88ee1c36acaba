"""Image-level logits from dense maps: multiple-instance pooling and max-pixel pooling (HDS).

- `MostPositiveInstance`: (N, h, w, 2) instance logits -> (N, 2) logits of the instance whose
  background logit is smallest (the authors' `map2label`, Zhang 2018).
- `MaxPixelLogit`: (N, H, W, 2) pixel logits -> (N, 2) = [0, max over pixels of (lesion -
  background logit)]; its softmax is [1 - p, p] with p the largest pixel probability of the
  lesion class, the image score of a segmentation-only model.
- `ForegroundProbability`: (N, H, W, 2) pixel logits -> (N, H, W, 1) lesion probability.

A `keras.layers.Softmax` after the first two gives the image probabilities, so the models'
logits are found from the graph (`mammo_keras.models.logits_model`) for Grad-CAM.
"""

from __future__ import annotations

import keras
from keras import ops


def most_positive_instance(instance_logits):
    """(N, h, w, C) instance logits -> (N, C) logits of each image's instance with the smallest
    background (channel 0) logit. The choice is not differentiated (an argmin): gradients
    flow into the chosen instance only, as in the authors' code."""
    logits = ops.reshape(instance_logits, (ops.shape(instance_logits)[0], -1,
                                           ops.shape(instance_logits)[-1]))
    # a mask of the minimum rather than argmin and a gather: the same numbers, and every op
    # exists in TFLite (Keras' argmin is not convertible); exact ties, which real-valued
    # logits do not make, would share the choice
    background = logits[:, :, 0]
    chosen = ops.cast(ops.equal(background, ops.min(background, axis=1, keepdims=True)),
                      logits.dtype)
    chosen = ops.stop_gradient(chosen / ops.sum(chosen, axis=1, keepdims=True))
    return ops.sum(logits * ops.expand_dims(chosen, -1), axis=1)


@keras.saving.register_keras_serializable(package="mammo_keras")
class MostPositiveInstance(keras.layers.Layer):
    """(N, h, w, C) instance logits -> (N, C) float32 logits of the most positive instance
    (`most_positive_instance`)."""

    def call(self, instance_logits):
        return most_positive_instance(ops.cast(instance_logits, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="mammo_keras")
class MaxPixelLogit(keras.layers.Layer):
    """(N, H, W, 2) [background, lesion] pixel logits -> (N, 2) float32 [0, z], z the largest
    lesion-minus-background logit of the image: softmax gives [1 - p, p], p the largest
    pixel probability of the lesion class."""

    def call(self, logits):
        logits = ops.cast(logits, "float32")
        peak = ops.max(logits[..., 1] - logits[..., 0], axis=(1, 2))
        return ops.stack([ops.zeros_like(peak), peak], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)


@keras.saving.register_keras_serializable(package="mammo_keras")
class ForegroundProbability(keras.layers.Layer):
    """(N, H, W, 2) [background, lesion] logits -> (N, H, W, 1) softmax probability of the
    lesion class, float32 in [0, 1] (sigmoid of the logit difference: the same number)."""

    def call(self, logits):
        logits = ops.cast(logits, "float32")
        return ops.sigmoid(logits[..., 1:] - logits[..., :1])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)
