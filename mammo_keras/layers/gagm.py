"""GAGM: global average + global max pooling of a feature map, fused.

Dahes 2025 (after Xia 2025) pools the last feature map of the backbone twice,
by its mean and by its maximum, and fuses the two vectors. The papers do not
say how the two are fused; concatenation (the vector has 2C features) is our
choice as default, element-wise sum (C features) is the option.
"""

from __future__ import annotations

import keras
from keras import ops

FUSIONS = ("concat", "sum")


@keras.saving.register_keras_serializable(package="mammo_keras")
class GAGM(keras.layers.Layer):
    """Global average + global max pooling, fused into one vector.

    Args:
        fusion: "concat" (default, our choice: output has 2C features, the
            average-pooled half first) or "sum" (output has C features).
        data_format: "channels_last" (N, H, W, C) or "channels_first"
            (N, C, H, W); defaults to `keras.config.image_data_format()`.

    Input shape: a 4-D feature map of any spatial size (H and W may be None).
    Output shape: (N, 2C) for "concat", (N, C) for "sum".

    Example:

    >>> import numpy as np
    >>> feature_map = np.ones((2, 7, 7, 768), "float32")
    >>> tuple(GAGM()(feature_map).shape)
    (2, 1536)
    >>> tuple(GAGM(fusion="sum")(feature_map).shape)
    (2, 768)
    """

    def __init__(self, fusion: str = "concat", data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"GAGM fusion must be one of {FUSIONS}; got {fusion!r}.")
        self.fusion = fusion
        self.data_format = data_format or keras.config.image_data_format()
        self._spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        self._channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        average = ops.mean(inputs, axis=self._spatial_axes)
        maximum = ops.max(inputs, axis=self._spatial_axes)
        if self.fusion == "sum":
            return average + maximum
        return ops.concatenate([average, maximum], axis=-1)

    def compute_output_shape(self, input_shape):
        channels = input_shape[self._channel_axis]
        if self.fusion == "concat" and channels is not None:
            channels *= 2
        return (input_shape[0], channels)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"fusion": self.fusion, "data_format": self.data_format})
        return config
