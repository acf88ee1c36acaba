"""The residual U-Net of hybrid deep supervision (HDS, Zhang, Zhang & Chung 2018).

Structure from the authors' PyTorch code (angrypudding/hybrid-ds, `uresnet_16x11x2` with
bilinear up-sampling, as their `train.py` builds it):

    image (H, W, 1) -> 3x3 conv to 16 (no bias)
    5 encoder stages  (16, 32, 64, 128, 128), each followed by a 2x2 max-pool
                      (BN-ReLU-1x1 conv first where the width changes)
    1 bottleneck stage (128) at stride 32
    5 decoder stages  (128, 128, 64, 32, 16): bilinear x2 up (BN-ReLU-1x1 conv first where
                      the width changes), concatenation with the encoder skip (the skip
                      reduced by BN-ReLU-1x1 when wider), BN-ReLU-1x1 fusion
    every stage: 2 pre-activation residual blocks BN-ReLU-Conv3x3-BN-ReLU-SpatialDropout-
                 Conv3x3 (+ identity), no conv bias; dropout 0.2 in the outer three stages
                 of each side, 0.5 in the inner five

Six exits read the bottleneck and every decoder stage (exit 0 the deepest, exit 5 at full
resolution). Each has a segmentation head (residual block, BN-ReLU-1x1 conv to 2 classes,
bilinear up-sampling to the input size) and a multiple-instance classification head (two
steps of down-sampling + residual block with widths doubling up to the bottleneck's, an
average pool so that every exit's instance map has stride `mil_stride`, BN-ReLU-1x1 conv to
2 classes: one pair of logits per 128 x 128 instance). The image label is "lesion present".

Ablations (`exits`), the four rows of the paper's ablation:

- "hds": segmentation and MIL classification supervised at all six exits; the image score is
  the final exit's most positive instance (`MostPositiveInstance`).
- "ds": deep supervision of segmentation only (six segmentation exits, no classifier); the
  image score is the largest pixel probability of the final mask (`MaxPixelLogit`).
- "seg": segmentation at the final exit only; image score as for "ds".
- "cls": MIL classification at all six exits, no segmentation head (no mask output).

Outputs (a dict): "label" (N, 2) [no lesion, lesion] probabilities (a Softmax of the
"label_logits" layer, so Grad-CAM finds the logits); "mask" (N, H, W, 1)
lesion probability (not for "cls"); and the training exits "seg_logits_<k>" (N, H, W, 2)
and "mil_logits_<k>" (N, H / mil_stride, W / mil_stride, 2), k = 0 (deepest) .. 5, whichever
the ablation supervises. H and W must be multiples of 32 (and of `mil_stride` for whole
instances).

One deliberate difference from the authors' code: PyTorch's `UpsamplingBilinear2d` aligns
corners, Keras' `UpSampling2D` uses half-pixel centres (the same as PyTorch's
`Upsample(mode="bilinear", align_corners=False)`, which the PyTorch peer in
`mammo_keras.bench.torch_peers` uses so the two compute the same function).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras

from mammo_keras.errors import UserError

from mammo_keras.layers.instance_pooling import (ForegroundProbability, MaxPixelLogit,
                                                 MostPositiveInstance)

STAGE_WIDTHS = (16, 32, 64, 128, 128, 128, 128, 128, 64, 32, 16)
STAGE_DROPOUT = (0.2,) * 3 + (0.5,) * 5 + (0.2,) * 3
BLOCKS_PER_STAGE = 2
MIL_STRIDE = 128
EXITS = ("hds", "ds", "seg", "cls")
BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 in Keras' convention
_MIL_TAIL = 2      # down + residual steps of each classification head


def _bn_relu(x, name: str):
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _bn_relu_conv(x, filters: int, name: str, kernel: int = 1, bias: bool = False):
    """The authors' BNNLAConv: BN -> ReLU -> conv (1x1 unless told)."""
    x = _bn_relu(x, name)
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=bias,
                               name=f"{name}_conv")(x)


def residual_block(x, filters: int, dropout: float, name: str):
    """Pre-activation residual block; a 1x1 projection of the shortcut when widths differ."""
    shortcut = x
    y = _bn_relu(x, f"{name}_1")
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_2")
    if dropout:
        y = keras.layers.SpatialDropout2D(dropout, name=f"{name}_dropout")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    if int(x.shape[-1]) != filters:
        shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_projection")(x)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def _stage(x, filters: int, blocks: int, dropout: float, name: str):
    for block in range(blocks):
        x = residual_block(x, filters, dropout, f"{name}_block{block + 1}")
    return x


def _down(x, filters: int, name: str):
    """The authors' MaxDown2d: 2x2 max-pool, after BN-ReLU-1x1 conv where the width changes."""
    if int(x.shape[-1]) != filters:
        x = _bn_relu_conv(x, filters, name)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _up(x, filters: int, name: str):
    """The authors' BilinearUp2d: bilinear x2, after BN-ReLU-1x1 conv where the width changes."""
    if int(x.shape[-1]) != filters:
        x = _bn_relu_conv(x, filters, name)
    return keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)


def _fuse(x, skip, filters: int, name: str):
    """The authors' CatFusion2d: concatenate (a wider skip reduced first), BN-ReLU-1x1 conv."""
    if int(skip.shape[-1]) > int(x.shape[-1]):
        skip = _bn_relu_conv(skip, int(x.shape[-1]), f"{name}_skip")
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    return _bn_relu_conv(x, filters, name)


def _segmentation_head(x, factor: int, dropout: float, name: str):
    """Residual block, BN-ReLU-1x1 conv to 2 class logits, bilinear up by `factor`."""
    x = residual_block(x, int(x.shape[-1]), dropout, f"{name}_block")
    x = _bn_relu_conv(x, 2, f"{name}_classes", bias=True)
    if factor > 1:
        x = keras.layers.UpSampling2D(factor, interpolation="bilinear",
                                      name=f"{name}_upsample")(x)
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


def _mil_head(x, down_order: int, ceiling: int, dropout: float, name: str):
    """The authors' classification exit: `down_order` halvings reach `mil_stride`; the first
    two are max-pools each followed by a residual block (widths doubling up to `ceiling`),
    any further ones an average pool; then BN-ReLU-1x1 conv to 2 instance logits."""
    width = int(x.shape[-1])
    for step in range(_MIL_TAIL):
        filters = min(width * 2 ** (step + 1), ceiling)
        if step < down_order:
            x = _down(x, filters, f"{name}_down{step + 1}")
        x = residual_block(x, filters, dropout, f"{name}_block{step + 1}")
    if down_order > _MIL_TAIL:
        pool = 2 ** (down_order - _MIL_TAIL)
        x = keras.layers.AveragePooling2D(pool, name=f"{name}_pool")(x)
    x = _bn_relu_conv(x, 2, f"{name}_classes", bias=True)
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


def _dropout_rates(dropout, stages: int) -> tuple[float, ...]:
    if dropout is None:
        return STAGE_DROPOUT
    if isinstance(dropout, (int, float)):
        return (float(dropout),) * stages
    rates = tuple(float(rate) for rate in dropout)
    if len(rates) != stages:
        raise ValueError(f"dropout: one rate per stage ({stages}) expected, got {len(rates)}")
    return rates


def check_hds_arguments(input_shape: Sequence[int | None] = (512, 384, 1),
                        widths: Sequence[int] = STAGE_WIDTHS, blocks: int = BLOCKS_PER_STAGE,
                        dropout: float | Sequence[float] | None = None, exits: str = "hds",
                        mil_stride: int = MIL_STRIDE, num_classes: int = 2,
                        name: str = "hds_unet") -> None:
    """Refuse, in one line naming the argument, what `build_hds_unet` cannot build (it is
    asked before anything is built: a config's model section is checked by value when read)."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if exits not in EXITS:
        raise UserError(f"exits must be one of {list(EXITS)}, got {exits!r}")
    if num_classes != 2:
        raise UserError(f"the HDS U-Net classifies lesion absent / present (2 classes), "
                        f"not {num_classes}; use data.classes with two classes")
    if isinstance(widths, (str, bytes)) or not all(whole(width) and width > 0
                                                   for width in widths):
        raise UserError(f"widths must be a list of positive integers, got {widths!r}")
    if len(widths) % 2 != 1 or len(widths) < 3:
        raise UserError(f"widths: an odd number (2N + 1) of stage widths, got {len(widths)}")
    if not whole(blocks) or blocks < 1:
        raise UserError(f"blocks must be a positive integer, got {blocks!r}")
    depth = len(widths) // 2
    if not whole(mil_stride) or mil_stride < 1 or mil_stride & (mil_stride - 1) or \
            mil_stride < 2 ** depth:
        raise UserError(f"mil_stride must be a power of 2 of at least {2 ** depth}, "
                        f"got {mil_stride!r}")
    sides = [int(side) for side in input_shape[:2] if side is not None]  # None: any size
    if any(side % 2 ** depth for side in sides):
        raise UserError(f"input_shape {tuple(input_shape)}: height and width must be "
                        f"multiples of {2 ** depth} (the U-Net halves them {depth} times)")
    if any(side < mil_stride for side in sides):
        raise UserError(f"input_shape {tuple(input_shape)} is smaller than one {mil_stride} px "
                        "instance of the classification heads; lower mil_stride")
    try:
        rates = _dropout_rates(dropout, len(widths))
    except (TypeError, ValueError) as error:
        raise UserError(f"dropout: {error}") from None
    if not all(0.0 <= rate < 1.0 for rate in rates):
        raise UserError(f"dropout rates must be in [0, 1), got {dropout!r}")


def build_hds_unet(input_shape: Sequence[int] = (512, 384, 1),
                   widths: Sequence[int] = STAGE_WIDTHS,
                   blocks: int = BLOCKS_PER_STAGE,
                   dropout: float | Sequence[float] | None = None,
                   exits: str = "hds",
                   mil_stride: int = MIL_STRIDE,
                   num_classes: int = 2,
                   name: str = "hds_unet") -> keras.Model:
    """The HDS residual U-Net (see the module docstring for structure and outputs).

    Args:
        input_shape: (H, W, 1) with H and W multiples of 2 ** (len(widths) // 2), or None
            for any such size (the network is fully convolutional: train on crops, predict
            whole films); images in [0, 1]. Default 512 x 384, the authors' training crop.
        widths: the 2N + 1 stage widths, encoder, bottleneck, decoder; default the paper's
            (16, 32, 64, 128, 128, 128, 128, 128, 64, 32, 16).
        blocks: residual blocks per stage (2).
        dropout: None: the paper's spatial dropout (0.2 outer, 0.5 inner five stages); a
            number for every stage, or one rate per stage.
        exits: the ablation: "hds", "ds", "seg" or "cls".
        mil_stride: the side in pixels of one instance of the classification heads (128);
            a power of 2 at least 2 ** N.
        num_classes: must be 2 (lesion absent / present): HDS's image label is binary.

    Returns:
        A functional `keras.Model` with dict outputs ("label", "mask", and the training exits).
    """
    check_hds_arguments(input_shape, widths, blocks, dropout, exits, mil_stride, num_classes)
    widths = tuple(widths)
    depth, halvings = len(widths) // 2, round(math.log2(mil_stride))
    rates = _dropout_rates(dropout, len(widths))

    inputs = keras.Input(tuple(input_shape), name="image")
    x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    skips = []
    for level in range(depth):
        x = _stage(x, widths[level], blocks, rates[level], f"encoder{level + 1}")
        skips.append(x)
        x = _down(x, widths[level + 1], f"encoder{level + 1}_down")
    x = _stage(x, widths[depth], blocks, rates[depth], "bottleneck")
    trunk_outputs = [x]
    for level in range(depth):
        stage = depth + level + 1
        x = _up(x, widths[stage], f"decoder{level + 1}_up")
        x = _fuse(x, skips[-level - 1], widths[stage], f"decoder{level + 1}_fuse")
        x = _stage(x, widths[stage], blocks, rates[stage], f"decoder{level + 1}")
        trunk_outputs.append(x)

    outputs = {}
    final = len(trunk_outputs) - 1
    segmented = [] if exits == "cls" else [final] if exits == "seg" else range(final + 1)
    for k in segmented:
        outputs[f"seg_logits_{k}"] = _segmentation_head(
            trunk_outputs[k], 2 ** (depth - k), rates[depth + k], f"seg_logits_{k}")
    if exits in ("hds", "cls"):
        for k, features in enumerate(trunk_outputs):
            outputs[f"mil_logits_{k}"] = _mil_head(features, halvings - depth + k,
                                                   widths[depth], rates[depth + k],
                                                   f"mil_logits_{k}")
    if segmented:
        outputs["mask"] = ForegroundProbability(dtype="float32", name="mask")(
            outputs[f"seg_logits_{final}"])
    if exits in ("hds", "cls"):
        logits = MostPositiveInstance(dtype="float32", name="label_logits")(
            outputs[f"mil_logits_{final}"])
    else:
        logits = MaxPixelLogit(dtype="float32", name="label_logits")(
            outputs[f"seg_logits_{final}"])
    outputs["label"] = keras.layers.Softmax(dtype="float32", name="label")(logits)
    return keras.Model(inputs, outputs, name=name)


def exit_names(model: keras.Model, kind: str) -> list[str]:
    """The training exits of an HDS model of `kind` "seg" or "mil", deepest first."""
    prefix = f"{kind}_logits_"
    names = [name for name in model.output if name.startswith(prefix)]
    return sorted(names, key=lambda name: int(name[len(prefix):]))


build_hds_unet.check_arguments = check_hds_arguments  # configs are checked by value on reading
