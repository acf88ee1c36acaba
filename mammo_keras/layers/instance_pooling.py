"""Image-level scores from dense maps: multiple-instance pooling and max-pixel pooling (HDS).

- `MILPooling`: (N, h, w, 2) instance logits -> (N, 2) image probabilities, taken at the
  instance whose background logit is smallest (the authors' `map2label`, Zhang 2018).
- `ForegroundProbability`: (N, H, W, 2) pixel logits -> (N, H, W, 1) lesion probability.
- `MaxPixelScore`: (N, H, W, 1) foreground probabilities -> (N, 2) = [1 - max, max], the
  image score of a segmentation-only model.
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
class MILPooling(keras.layers.Layer):
    """(N, h, w, C) instance logits -> (N, C): softmax of the most positive instance's logits
    (`most_positive_instance`). Output float32 probabilities that sum to 1."""

    def call(self, instance_logits):
        return ops.softmax(ops.cast(most_positive_instance(instance_logits), "float32"), axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="mammo_keras")
class MaxPixelScore(keras.layers.Layer):
    """(N, H, W, 1) foreground probabilities in [0, 1] -> (N, 2) [no lesion, lesion]
    probabilities, the lesion probability being the image's largest pixel probability."""

    def call(self, probabilities):
        peak = ops.max(ops.cast(probabilities, "float32"), axis=(1, 2, 3))
        return ops.stack([1.0 - peak, peak], axis=-1)

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
