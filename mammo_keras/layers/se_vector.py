"""SEVector: squeeze-and-excitation applied to a feature vector.

s = sigmoid(W2 relu(W1 v + b1) + b2), output v * s (Dahes 2025, after Xia 2025).
The papers do not state the reduction ratio; r = 16, the usual SE default, is
our choice.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mammo_keras")
class SEVector(keras.layers.Layer):
    """Squeeze-excitation gate on a vector: Dense(d/r, relu) -> Dense(d, sigmoid) -> multiply.

    Args:
        reduction: the ratio r; the bottleneck has max(1, d // r) units.
            Default 16 (our choice, the standard SE value).

    Input shape: (N, d). Output shape: (N, d), the input re-weighted per
    feature by a gate in (0, 1).

    Example:

    >>> import numpy as np
    >>> tuple(SEVector(reduction=16)(np.ones((4, 1536), "float32")).shape)
    (4, 1536)
    """

    def __init__(self, reduction: int = 16, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"SEVector reduction must be a positive integer; got {reduction!r}.")
        self.reduction = int(reduction)
        self.input_spec = keras.layers.InputSpec(ndim=2)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError("SEVector needs a known feature dimension; got input shape "
                             f"{tuple(input_shape)}.")
        self.squeeze = keras.layers.Dense(
            max(1, features // self.reduction), activation="relu",
            dtype=self.dtype_policy, name="squeeze")
        self.excite = keras.layers.Dense(
            features, activation="sigmoid", dtype=self.dtype_policy, name="excite")
        self.squeeze.build(input_shape)
        self.excite.build(self.squeeze.compute_output_shape(input_shape))

    def call(self, inputs):
        gate = self.excite(self.squeeze(inputs))
        return ops.multiply(inputs, gate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config["reduction"] = self.reduction
        return config
