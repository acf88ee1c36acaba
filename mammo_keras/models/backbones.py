"""The feature extractors a classifier can be built on, and how their weights load.

Each backbone is built on the classifier's own input tensor, so its layers sit
directly in the classifier's functional graph (no nested model): Grad-CAM and
export see every layer by name, and the weights stay those of the reference
architecture (`keras.applications` for ConvNeXt-Tiny, ConvNeXt-Base and InceptionV3).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Callable

import keras

from mammo_keras.errors import UserError
from mammo_keras.models.baseline_cnn import MIN_INPUT_SIZE as BASELINE_MIN_SIZE
from mammo_keras.models.baseline_cnn import BaselineCNN


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes:
        name: the registry key, also the prefix of the backbone's layer names.
        channels: input channels the backbone takes (the gray channel is repeated).
        scaling: the `GrayscaleAdapter` scaling its weights were trained with.
        min_size: smallest input height / width it accepts, in pixels.
        has_imagenet: whether `weights="imagenet"` exists for it.
        build: (input_tensor, weights or None) -> functional model to the last feature map.
        pyramid: layer names of pyramid levels the graph scan of `feature_pyramid` cannot
            find (InceptionV3's blocks end in concatenations of branches that run at the
            next block's stride).
    """

    name: str
    channels: int
    scaling: str
    min_size: int
    has_imagenet: bool
    build: Callable[..., keras.Model]
    pyramid: dict = dataclasses.field(default_factory=dict)


def _convnext(application: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """A ConvNeXt of `keras.applications` without its top and its own preprocessing
    (`GrayscaleAdapter` scales the input)."""

    def build(input_tensor, weights):
        return application(include_top=False, include_preprocessing=False, weights=weights,
                           input_tensor=input_tensor, input_shape=tuple(input_tensor.shape[1:]))

    return build


def _inception_v3(input_tensor, weights):
    return keras.applications.InceptionV3(
        include_top=False, weights=weights,
        input_tensor=input_tensor, input_shape=tuple(input_tensor.shape[1:]))


def _baseline_cnn(input_tensor, weights):
    if weights == "imagenet":
        raise UserError("baseline_cnn has no ImageNet weights; use weights=None or a local file.")
    return BaselineCNN(input_tensor)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec for spec in (
        BackboneSpec("baseline_cnn", channels=1, scaling="unit",
                     min_size=BASELINE_MIN_SIZE, has_imagenet=False, build=_baseline_cnn),
        BackboneSpec("convnext_tiny", channels=3, scaling="imagenet",
                     min_size=32, has_imagenet=True,
                     build=_convnext(keras.applications.ConvNeXtTiny)),
        # Molina-Roman 2025's fine-tuned model: 87.6 M parameters without the top
        BackboneSpec("convnext_base", channels=3, scaling="imagenet",
                     min_size=32, has_imagenet=True,
                     build=_convnext(keras.applications.ConvNeXtBase)),
        BackboneSpec("inception_v3", channels=3, scaling="symmetric",
                     min_size=75, has_imagenet=True, build=_inception_v3,
                     pyramid={"P3": "mixed2", "P4": "mixed7", "P5": "mixed10"}),
    )
}


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone; `ValueError` naming the valid ones otherwise."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise UserError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.") from None


def build_backbone(name: str, input_tensor, weights: str | Path | None = None) -> keras.Model:
    """Build backbone `name` on `input_tensor` (already adapted to its channels and scaling).

    Args:
        name: a key of `BACKBONES`.
        input_tensor: Keras tensor (N, H, W, spec.channels).
        weights: None (random), "imagenet" (downloaded by `keras.applications`;
            needs internet), or the path of a weights file for this backbone
            without its top, e.g. `convnext_base_notop.h5` or a `.weights.h5`
            saved from the backbone.

    Returns:
        A functional model from the source input to the last feature map. (The
        classifier turns ConvNeXt's depthwise-shaped grouped convolutions into
        `ChannelwiseConv2D` once the whole model is built.)

    Raises:
        ValueError: unknown backbone, "imagenet" for a backbone without it, or a
            weights file that does not fit the architecture.
        FileNotFoundError: `weights` names a file that does not exist.
    """
    spec = get_backbone_spec(name)
    if weights is None or weights == "imagenet":
        backbone = spec.build(input_tensor, weights)
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights file for backbone {name!r} not found.")
        backbone = spec.build(input_tensor, None)
        load_weights_file(backbone, path)
    return backbone


def load_weights_file(model: keras.Model, path: Path) -> None:
    """Load `path` into `model`, turning Keras' long mismatch reports into one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.load_weights(str(path))
        except Exception as error:  # Keras raises ValueError, h5py OSError/KeyError
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{path}: weights do not fit backbone {model.name!r} "
                             f"({first_line})") from error


PYRAMID_LEVELS = (1, 2, 3, 4, 5)


def feature_pyramid(model: keras.Model, levels: tuple[int, ...] = PYRAMID_LEVELS) -> dict:
    """The backbone's feature maps by stride, named like keras-hub's `pyramid_outputs`.

    "P{l}" is the last feature map at stride 2^l (P2 = stride 4 ... P5 = stride 32), found
    from the graph: a layer's stride is round(log2(input height / its height)), so
    InceptionV3's unpadded convolutions (299 -> 147 -> 73 ...) count at their nominal
    stride; a backbone's `BackboneSpec.pyramid` names the levels a scan would get wrong.
    Works on a classifier of `build_classifier` (the head's vector is not a map) and on
    any functional image model with a fixed input size.

    Args:
        model: a functional model with one (N, H, W, C) input, H fixed.
        levels: which P-levels to return.

    Returns:
        {"P1": tensor (N, H/2, W/2, C1), ..., "P5": (N, H/32, W/32, C5)}: Keras tensors of
        `model`'s graph, for `keras.Model(model.input, pyramid)` (U-Net skips, multi-scale
        heads); a level the backbone does not reach is missing.
    """
    height = model.inputs[0].shape[1]
    if height is None:
        raise UserError(f"model {model.name!r} has a variable input size; build it with a "
                         "fixed one to find its pyramid")
    found, named = {}, {}
    builder = getattr(getattr(model, "description", None), "builder", None) or {}
    backbone = builder.get("arguments", {}).get("backbone")
    if backbone in BACKBONES:
        named = {key: model.get_layer(name).output
                 for key, name in BACKBONES[backbone].pyramid.items()}
    # operations, not only layers: a ConvNeXt block ends in a keras.ops addition
    for layer in model.operations:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError):
            continue
        shape = getattr(output, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1]:
            continue
        level = round(math.log2(height / shape[1]))
        if level in levels:
            found[f"P{level}"] = output  # later layers at the same stride win: the stage's end
    found.update(named)
    return {f"P{level}": found[f"P{level}"] for level in levels if f"P{level}" in found}
