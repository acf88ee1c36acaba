"""ParametricActivation: Network Morphism's P-activation, phi_a(x) = (1 - a) phi(x) + a x.

Inserted at a = 1 it is the identity, so a new non-linear layer can enter a trained network
without changing the function it computes (Wei et al., ICML 2016); `a` is trainable, so
training moves it towards the activation `phi` where that helps.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mammo_keras")
class ParametricActivation(keras.layers.Layer):
    """phi_a(x) = (1 - a) * phi(x) + a * x with one trainable scalar `a`.

    Args:
        activation: phi, any Keras activation name or callable ("relu", "gelu", ...).
        initial_alpha: `a` at construction; 1.0 (default) makes the layer the identity.

    Input: any shape; output: the same shape and dtype.

    Example:

    >>> import numpy as np
    >>> layer = ParametricActivation("relu")
    >>> x = np.array([[-2.0, 0.5]], "float32")
    >>> np.asarray(layer(x)).tolist()   # a = 1: the identity
    [[-2.0, 0.5]]
    >>> _ = layer.alpha.assign(0.0)
    >>> np.asarray(layer(x)).tolist()   # a = 0: the activation itself
    [[0.0, 0.5]]
    """

    def __init__(self, activation="relu", initial_alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.initial_alpha = float(initial_alpha)

    def build(self, input_shape) -> None:
        self.alpha = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_alpha),
            trainable=True, name="alpha")

    def call(self, inputs):
        alpha = ops.cast(self.alpha, inputs.dtype)
        return (1.0 - alpha) * self.activation(inputs) + alpha * inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(),
                "activation": keras.activations.serialize(self.activation),
                "initial_alpha": self.initial_alpha}
