"""The feature extractors a classifier can be built on, and how their weights load.

Each backbone is built on the classifier's own input tensor, so its layers sit
directly in the classifier's functional graph (no nested model): Grad-CAM and
export see every layer by name, and the weights stay those of the reference
architecture (`keras.applications` for ConvNeXt-Tiny and InceptionV3).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable

import keras

from mammo_keras.models.baseline_cnn import MIN_INPUT_SIZE as BASELINE_MIN_SIZE
from mammo_keras.models.baseline_cnn import BaselineCNN
from mammo_keras.layers.channelwise_conv import use_channelwise_convolutions


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
    """

    name: str
    channels: int
    scaling: str
    min_size: int
    has_imagenet: bool
    build: Callable[..., keras.Model]


def _convnext_tiny(input_tensor, weights):
    return keras.applications.ConvNeXtTiny(
        include_top=False, include_preprocessing=False, weights=weights,
        input_tensor=input_tensor, input_shape=tuple(input_tensor.shape[1:]))


def _inception_v3(input_tensor, weights):
    return keras.applications.InceptionV3(
        include_top=False, weights=weights,
        input_tensor=input_tensor, input_shape=tuple(input_tensor.shape[1:]))


def _baseline_cnn(input_tensor, weights):
    if weights == "imagenet":
        raise ValueError("baseline_cnn has no ImageNet weights; use weights=None or a local file.")
    return BaselineCNN(input_tensor)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec for spec in (
        BackboneSpec("baseline_cnn", channels=1, scaling="unit",
                     min_size=BASELINE_MIN_SIZE, has_imagenet=False, build=_baseline_cnn),
        BackboneSpec("convnext_tiny", channels=3, scaling="imagenet",
                     min_size=32, has_imagenet=True, build=_convnext_tiny),
        BackboneSpec("inception_v3", channels=3, scaling="symmetric",
                     min_size=75, has_imagenet=True, build=_inception_v3),
    )
}


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone; `ValueError` naming the valid ones otherwise."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.") from None


def build_backbone(name: str, input_tensor, weights: str | Path | None = None) -> keras.Model:
    """Build backbone `name` on `input_tensor` (already adapted to its channels and scaling).

    Args:
        name: a key of `BACKBONES`.
        input_tensor: Keras tensor (N, H, W, spec.channels).
        weights: None (random), "imagenet" (downloaded by `keras.applications`;
            needs internet), or the path of a weights file for this backbone
            without its top, e.g. `convnext_tiny_notop.h5` or a `.weights.h5`
            saved from the backbone.

    Returns:
        A functional model from the source input to the last feature map; its
        depthwise-shaped grouped convolutions (ConvNeXt) are `ChannelwiseConv2D`.

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
    # After the weights: a .weights.h5 file addresses layers by class. Same layers and
    # weights on the fast depthwise op (ConvNeXt trains 3-4.5x faster on a CPU).
    use_channelwise_convolutions(backbone)
    return backbone


def load_weights_file(model: keras.Model, path: Path) -> None:
    """Load `path` into `model`, turning Keras' long mismatch reports into one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.load_weights(str(path))
        except Exception as error:  # Keras raises ValueError, h5py OSError/KeyError
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{path}: weights do not fit backbone {model.name!r} "
                             f"({first_line})") from error
