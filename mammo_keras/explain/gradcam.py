"""Grad-CAM and Grad-CAM++ for mammo-keras classifiers (TensorFlow backend).

Both weight the channels of a feature map A (N, h, w, C) by the gradient of the
class score S_c, the logit before the model's softmax (`mammo_keras.models.logits_model`
finds it from the graph, so a zero-shot model or a U-Net's label head is explained the
same way as a classifier):

- Grad-CAM (Selvaraju 2017): w_k = mean_ij dS_c/dA_ijk; map = relu(sum_k w_k A_k).
- Grad-CAM++ (Chattopadhyay 2018), closed form for the exponential of the score:
  alpha_ijk = g^2 / (2 g^2 + sum_ab A_abk g^3) with g = dS_c/dA_ijk;
  w_k = sum_ij alpha_ijk relu(g_ijk); map = relu(sum_k w_k A_k).

Maps are scaled to [0, 1] per image (all zero when nothing is positive). The
feature map is by default the backbone's last one (the input of the pooling head); for a
CLIP image tower (a ViT) it is the grid of patch tokens entering its last block.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mammo_keras.errors import UserError
from mammo_keras.explain import METHODS
from mammo_keras.models.description import description_of, label_tensor
from mammo_keras.models.logits import logits_model



def find_target_layer(model: keras.Model) -> str:
    """The name of the last layer with a 4-D (N, h, w, C) output on the way to the class
    output: the backbone's last map (not, in a two-output model, the mask head's)."""
    label = label_tensor(model, description_of(model).label_output)
    on_path = keras.Model(model.inputs, label).layers  # only the layers the label depends on
    for layer in reversed(on_path):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = getattr(layer.output, "shape", None)
        # a map no weight has computed yet (a preprocessing layer's output) explains nothing
        if shape is not None and len(shape) == 4 and \
                keras.Model(model.inputs, layer.output).count_params() > 0:
            return layer.name
    raise UserError(f"model {model.name!r} has no layer with a 4-D feature map for Grad-CAM")


def _probe(model: keras.Model, layer: str):
    try:
        features = model.get_layer(layer).output
    except ValueError as error:
        raise UserError(f"Grad-CAM of {model.name!r}: {error}") from None
    try:
        return logits_model(model, [features], description_of(model).label_output)
    except ValueError as error:
        raise UserError(f"Grad-CAM of {model.name!r}: {error}") from None


def grad_cam(model: keras.Model, images, class_index=None, layer: str | None = None,
             method: str = "gradcam") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class activation maps of `images` (N, S, S, 1) float32 in [0, 1].

    Args:
        model: a classifier whose class output comes from a softmax (every model
            mammo-keras builds, and those saved before logits layers existed).
        class_index: the class to explain, an int or (N,) ints; default the predicted one.
        layer: the feature-map layer; default `find_target_layer(model)`.
        method: "gradcam" or "gradcam++".

    Returns:
        (maps (N, h, w) float32 in [0, 1], class_index (N,) int, probabilities (N, K)).
    """
    if method not in METHODS:
        raise UserError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    from mammo_keras.models.zero_shot import token_grad_cam_probe

    probe = (None if layer else token_grad_cam_probe(model)) or \
        _probe(model, layer or find_target_layer(model))
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features, logits = probe(images, training=False)
        features = tf.cast(features, tf.float32)
        probabilities = tf.nn.softmax(logits)
        if class_index is None:
            chosen = tf.argmax(logits, axis=-1, output_type=tf.int32)
        else:
            chosen = tf.broadcast_to(tf.cast(class_index, tf.int32), tf.shape(logits)[:1])
        score = tf.gather(logits, chosen, batch_dims=1)
    gradients = tape.gradient(score, features)
    if len(features.shape) == 3:  # ViT tokens (N, 1 + g * g, D): the patch grid, class token out
        grid = int(round((features.shape[1] - 1) ** 0.5))
        features, gradients = (tf.reshape(t[:, 1:], (-1, grid, grid, t.shape[-1]))
                               for t in (features, gradients))
    if method == "gradcam":
        weights = tf.reduce_mean(gradients, axis=(1, 2))
    else:
        squared, cubed = gradients ** 2, gradients ** 3
        total = tf.reduce_sum(features, axis=(1, 2), keepdims=True)
        denominator = 2.0 * squared + total * cubed
        alpha = squared / tf.where(tf.abs(denominator) > 0, denominator, 1.0)
        weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2))
    maps = tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights))
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    maps = tf.where(peak > 0, maps / tf.where(peak > 0, peak, 1.0), 0.0)
    return maps.numpy(), chosen.numpy(), probabilities.numpy()


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), bilinear, clipped to [0, 1]."""
    resized = tf.image.resize(tf.convert_to_tensor(maps, tf.float32)[..., None], (size, size),
                              method="bilinear")[..., 0]
    return np.clip(resized.numpy(), 0.0, 1.0)
