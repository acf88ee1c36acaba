"""GrayscaleAdapter: single-channel mammograms in [0, 1] -> what a backbone expects.

Every mammo-keras model takes raw grayscale intensities in [0, 1]. Backbones
pretrained on ImageNet want three channels and their own input scaling; this
layer does both inside the model, so training, prediction and exported models
share one definition and no caller has to remember a `preprocess_input`.
"""

from __future__ import annotations

import keras
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALINGS = ("unit", "imagenet", "symmetric")


@keras.saving.register_keras_serializable(package="mammo_keras")
class GrayscaleAdapter(keras.layers.Layer):
    """Replicate a grayscale channel and apply a backbone's input scaling.

    Args:
        channels: number of output channels, 1 or 3 (the gray channel repeated).
        scaling: how [0, 1] intensities are mapped:
            - "unit": unchanged (the baseline CNN);
            - "imagenet": (x - mean) / std per channel with the ImageNet
              statistics, identical to ConvNeXt's built-in `PreStem` applied
              to x * 255;
            - "symmetric": 2 x - 1 in [-1, 1], identical to
              `keras.applications.inception_v3.preprocess_input(x * 255)`.

    Input shape: (N, H, W, 1), float in [0, 1]. Output shape: (N, H, W, channels).
    The layer has no weights.
    """

    def __init__(self, channels: int = 3, scaling: str = "imagenet", **kwargs):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"GrayscaleAdapter channels must be 1 or 3; got {channels!r}.")
        if scaling not in SCALINGS:
            raise ValueError(f"GrayscaleAdapter scaling must be one of {SCALINGS}; got {scaling!r}.")
        if scaling == "imagenet" and channels != 3:
            raise ValueError("GrayscaleAdapter scaling 'imagenet' needs channels=3.")
        self.channels = channels
        self.scaling = scaling
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: 1})

    def call(self, inputs):
        x = ops.repeat(inputs, self.channels, axis=-1) if self.channels > 1 else inputs
        if self.scaling == "imagenet":
            mean = ops.convert_to_tensor(IMAGENET_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(IMAGENET_STD, dtype=x.dtype)
            return (x - mean) / std
        if self.scaling == "symmetric":
            return x * 2.0 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"channels": self.channels, "scaling": self.scaling})
        return config
