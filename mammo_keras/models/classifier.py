"""`build_classifier`: the GAGM / SEVector classifier family of Dahes 2025.

    image (N, H, W, 1) in [0, 1]
      -> GrayscaleAdapter (channel replication + the backbone's input scaling)
      -> backbone (baseline_cnn | convnext_tiny | convnext_base | inception_v3)
                                                   -> feature map (N, h, w, C)
      -> head: gap        GlobalAveragePooling2D          -> (N, C)
               gagm       GAGM (avg + max, concat)        -> (N, 2C)
               gagm_se    GAGM -> SEVector                -> (N, 2C)
      -> Identity named "embedding" (the feature vector for FSL, Grad-CAM, analysis)
      -> Dropout -> Dense(num_classes, float32) named "logits" -> Softmax named "predictions"

The model is a `DescribedModel`: it names its builder and arguments, and training
adds its task, class names and preprocessing, so a saved `.keras` file describes itself.
The backbone's feature maps by stride are `feature_pyramid(model)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras

from mammo_keras.errors import UserError
from mammo_keras.layers import GAGM, GrayscaleAdapter, SEVector
from mammo_keras.layers.channelwise_conv import use_channelwise_convolutions
from mammo_keras.catalogue import HEADS
from mammo_keras.models.backbones import build_backbone, get_backbone_spec
from mammo_keras.models.description import DescribedModel, ModelDescription
from mammo_keras.models.traversal import all_layers

EMBEDDING_LAYER = "embedding"
DEFAULT_DROPOUT = 0.3


def _head_dtype() -> str:
    """The logits' and softmax's dtype: float32 under mixed precision (a stable softmax), the
    policy's own where it is wider (float64), so every trained variable shares one dtype."""
    return "float64" if keras.config.dtype_policy().variable_dtype == "float64" else "float32"


def build_classifier(
    backbone: str = "baseline_cnn",
    head: str = "gagm_se",
    num_classes: int = 3,
    input_shape: Sequence[int | None] = (224, 224, 1),
    weights: str | Path | None = None,
    *,
    dropout: float = DEFAULT_DROPOUT,
    se_reduction: int = 16,
    gagm_fusion: str = "concat",
    bn_momentum: float | None = None,
    name: str | None = None,
    task: str | None = "malignancy",
) -> keras.Model:
    """Build a mammogram classifier: grayscale image in [0, 1] -> class probabilities.

    Args:
        backbone: "baseline_cnn", "convnext_tiny", "convnext_base" or "inception_v3".
        head: "gap" (global average pooling), "gagm" (average + max pooling,
            fused) or "gagm_se" (GAGM then SEVector).
        num_classes: number of classes, at least 2.
        input_shape: (height, width, 1); height / width may be None for
            variable-size input. InceptionV3 needs at least 75 px, the ConvNeXts
            and the baseline CNN at least 32 px.
        weights: None (random initialisation), "imagenet" (the ConvNeXts and
            InceptionV3, downloaded by `keras.applications`; needs internet), or
            the path of a local weights file for the backbone without its top
            (e.g. `convnext_tiny_notop.h5`, or a `.weights.h5` saved from a
            backbone built by `build_backbone`). The head starts random.
        dropout: dropout rate before the classifier, in [0, 1). Default 0.3 (our choice).
        se_reduction: SEVector reduction ratio r (default 16, our choice).
        gagm_fusion: "concat" (default, our choice) or "sum".
        bn_momentum: the moving-average momentum of every BatchNormalization layer of the
            backbone, in (0, 1); None keeps the backbone's own (0.99 for InceptionV3, 0.9 for
            the baseline CNN; the ConvNeXts have none). 0.9 suits small data trained from
            scratch: at 0.99 the moving statistics of a ~100-step run stay far from the
            batch statistics, and inference collapses to one class.
        name: model name; default "<backbone>_<head>".
        task: the task its description names ("malignancy": the Dahes classifier,
            whose 3 classes are then normal / benign / malignant; "density", ...; None
            for a model whose classes are only class0..). Training sets it from the
            config's `data.task`.

    Returns:
        A functional `DescribedModel` mapping (N, H, W, 1) float in [0, 1] to
        (N, num_classes) float32 probabilities that sum to 1; the input of its
        final Softmax ("predictions") is the logits layer "logits". The layer named
        "embedding" outputs the head's feature vector: C features for "gap",
        2C for "gagm"/"gagm_se" with concat fusion (C = 256 baseline CNN,
        768 ConvNeXt-Tiny, 1024 ConvNeXt-Base, 2048 InceptionV3).

    Raises:
        ValueError: unknown backbone or head, fewer than 2 classes, an input
            shape that is not (H, W, 1) or too small for the backbone, a dropout
            outside [0, 1), or weights that do not fit.
        FileNotFoundError: `weights` names a missing file.

    Example:

    >>> import numpy as np
    >>> model = build_classifier("baseline_cnn", head="gagm_se", num_classes=3,
    ...                          input_shape=(64, 64, 1))
    >>> probabilities = model.predict(np.random.rand(2, 64, 64, 1), verbose=0)
    >>> probabilities.shape
    (2, 3)
    >>> model.get_layer("embedding").output.shape
    (None, 512)
    """
    spec = get_backbone_spec(backbone)
    if head not in HEADS:
        raise UserError(f"Unknown head {head!r}; choose one of {list(HEADS)}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2; got {num_classes!r}.")
    input_shape = _validated_input_shape(input_shape, spec.name, spec.min_size)
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"dropout must be in [0, 1); got {dropout!r}.")
    if bn_momentum is not None and not 0.0 < bn_momentum < 1.0:
        raise UserError(f"bn_momentum must be in (0, 1) or None; got {bn_momentum!r}.")
    if weights == "imagenet" and not spec.has_imagenet:
        raise UserError(f"Backbone {spec.name!r} has no ImageNet weights; use weights=None or "
                         "the path of a local weights file.")

    inputs = keras.Input(shape=input_shape, name="image")
    adapted = GrayscaleAdapter(spec.channels, spec.scaling, name="grayscale_adapter")(inputs)
    backbone_model = build_backbone(spec.name, adapted, weights)
    if bn_momentum is not None:
        set_batch_norm_momentum(backbone_model, bn_momentum)
    features = backbone_model.output
    embedding = keras.layers.Identity(name=EMBEDDING_LAYER)(
        _pool(features, head, se_reduction, gagm_fusion))
    x = keras.layers.Dropout(dropout, name="dropout")(embedding)
    head_dtype = _head_dtype()
    logits = keras.layers.Dense(num_classes, dtype=head_dtype, name="logits")(x)
    outputs = keras.layers.Softmax(dtype=head_dtype, name="predictions")(logits)
    arguments = {"backbone": spec.name, "head": head, "num_classes": num_classes,
                 "input_shape": list(input_shape), "dropout": dropout,
                 "se_reduction": se_reduction, "gagm_fusion": gagm_fusion,
                 "bn_momentum": bn_momentum}
    description = ModelDescription(
        task=task, image_size=input_shape[0],
        builder={"name": "classifier", "arguments": arguments})
    model = DescribedModel(inputs, outputs, name=name or f"{spec.name}_{head}",
                           description=description)
    return use_channelwise_convolutions(model)


def set_batch_norm_momentum(model: keras.Model, momentum: float) -> int:
    """Set the momentum of every BatchNormalization layer of `model` (before it is
    compiled); returns how many layers changed. Saved configs keep the new value."""
    layers = [layer for layer in all_layers(model)
              if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


def _pool(features, head: str, se_reduction: int, gagm_fusion: str):
    """The head's pooling: feature map (N, h, w, C) -> vector."""
    if head == "gap":
        return keras.layers.GlobalAveragePooling2D(name="gap")(features)
    vector = GAGM(fusion=gagm_fusion, name="gagm")(features)
    if head == "gagm_se":
        vector = SEVector(reduction=se_reduction, name="se_vector")(vector)
    return vector


def _validated_input_shape(input_shape, backbone: str, min_size: int) -> tuple:
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 1:
        raise UserError(f"input_shape must be (height, width, 1) for grayscale mammograms; "
                         f"got {shape!r}.")
    for size in shape[:2]:
        if size is not None and size < min_size:
            raise UserError(f"Input {shape[0]}x{shape[1]} is too small for backbone {backbone!r}, "
                             f"which needs at least {min_size}x{min_size} px.")
    return shape
