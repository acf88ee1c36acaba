"""ChannelwiseConv2D: a grouped convolution with one input channel per group, computed by the
depthwise-convolution op.

`keras.applications` builds ConvNeXt's 7x7 "depthwise" convolutions as `Conv2D(groups=C)`.
TensorFlow has no CPU kernel for the gradient of a grouped convolution, so Keras' TF backend
compiles every such layer with XLA, whose CPU grouped convolution is slow: with this layer
ConvNeXt-Tiny trains 3.1x faster on a 2-core AVX2 CPU (4.5x with oneDNN;
benchmarks/results/convnext_routes.md). The same kernel, reshaped from (kh, kw, 1, C) to
(kh, kw, C, 1), is exactly a depthwise kernel, so this layer keeps Conv2D's weights, names
and config and only changes the op.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mammo_keras")
class ChannelwiseConv2D(keras.layers.Conv2D):
    """`Conv2D` whose grouped, one-channel-per-group case runs as a depthwise convolution.

    Weights, config and output are those of `keras.layers.Conv2D` (the output within float32
    round-off); other configurations fall back to `Conv2D`.

    Input shape: (N, H, W, C) (channels_last) or (N, C, H, W). Output: as `Conv2D`.

    Example:

    >>> import numpy as np
    >>> layer = ChannelwiseConv2D(8, 7, padding="same", groups=8)
    >>> x = np.random.rand(2, 16, 16, 8).astype("float32")
    >>> reference = keras.layers.Conv2D(8, 7, padding="same", groups=8)
    >>> _ = reference(x)
    >>> layer.build(x.shape)
    >>> layer.set_weights(reference.get_weights())
    >>> bool(np.allclose(layer(x), reference(x), atol=1e-5))
    True
    """

    def convolution_op(self, inputs, kernel):
        if not is_channelwise(self):
            return super().convolution_op(inputs, kernel)
        depthwise_kernel = ops.reshape(kernel, (*kernel.shape[:2], self.filters, 1))
        return ops.depthwise_conv(inputs, depthwise_kernel, strides=self.strides,
                                  padding=self.padding, data_format=self.data_format,
                                  dilation_rate=self.dilation_rate)


def is_channelwise(layer: keras.layers.Conv2D) -> bool:
    """One input channel and one filter per group: a depthwise convolution in Conv2D's form."""
    return layer.groups > 1 and layer.groups == layer.filters and layer.kernel.shape[-2] == 1


def use_channelwise_convolutions(model: keras.Model) -> keras.Model:
    """`model` with every depthwise-shaped grouped `Conv2D` as a `ChannelwiseConv2D`.

    `keras.applications` has no hook for choosing the convolution class, so the model is
    cloned (`keras.models.clone_model` with a `clone_function`): the grouped convolutions
    become `ChannelwiseConv2D` layers, every other layer a copy of itself, all with the
    same names and weights (layers are not shared: a shared layer has no single `.output`,
    which Grad-CAM and the pyramid read). A saved model records the new class, so
    reloading keeps the fast op. Returns `model` itself when it has no such layer.
    """
    if not any(type(layer) is keras.layers.Conv2D and is_channelwise(layer)
               for layer in model.layers):
        return model
    copies = []

    def convert(layer: keras.layers.Layer) -> keras.layers.Layer:
        kind = ChannelwiseConv2D if type(layer) is keras.layers.Conv2D and \
            is_channelwise(layer) else type(layer)
        copies.append((layer, kind.from_config(layer.get_config())))
        return copies[-1][1]

    clone = keras.models.clone_model(model, clone_function=convert)
    if hasattr(model, "description"):  # a described model keeps its description
        clone.description = dataclasses.replace(model.description)
    for original, copy in copies:
        if isinstance(original, keras.layers.Layer) and original.weights:
            copy.set_weights(original.get_weights())
    return clone
