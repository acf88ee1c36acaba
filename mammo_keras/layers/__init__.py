"""Keras layers of mammo-keras: serialisable, written with `keras.ops` only.

- `GAGM`: global average + global max pooling, fused (Dahes 2025).
- `SEVector`: squeeze-excitation on a pooled feature vector (Dahes 2025).
- `GrayscaleAdapter`: single-channel [0, 1] input -> a backbone's channels and scaling.
- `MostPositiveInstance`, `MaxPixelLogit`, `ForegroundProbability`: image and pixel scores of
  the HDS U-Net (multiple-instance pooling, the max-pixel logit, the lesion channel of 2-class
  logits).
- `ChannelwiseConv2D`: ConvNeXt's grouped 7x7 convolutions on the fast depthwise op.
- `ParametricActivation`: phi_a(x) = (1 - a) phi(x) + a x, the identity at a = 1 (MorphHR's
  function-preserving non-linearity).
"""

from mammo_keras.layers.channelwise_conv import ChannelwiseConv2D, use_channelwise_convolutions
from mammo_keras.layers.gagm import GAGM
from mammo_keras.layers.grayscale_adapter import GrayscaleAdapter
from mammo_keras.layers.instance_pooling import (ForegroundProbability, MaxPixelLogit,
                                                 MostPositiveInstance)
from mammo_keras.layers.parametric_activation import ParametricActivation
from mammo_keras.layers.se_vector import SEVector

__all__ = ["ChannelwiseConv2D", "ForegroundProbability", "GAGM", "GrayscaleAdapter",
           "MaxPixelLogit", "MostPositiveInstance", "ParametricActivation", "SEVector",
           "use_channelwise_convolutions"]
