"""The HDS residual U-Net in plain PyTorch: the benchmark's peer of `build_hds_unet`, and the
reference that shows the Keras model is the authors' network.

`HDSUNetTorch` follows the authors' `UResNet_HDS` (angrypudding/hybrid-ds, model.py and
factory.py) layer for layer, with two differences that make it the same function as the
Keras model: bilinear up-sampling with half-pixel centres (`align_corners=False`; the
authors' `UpsamplingBilinear2d` aligns corners) and one up-sampling by 2^k in each
segmentation exit where the authors chain k up-samplings by 2. Its modules are keyed by the
Keras layer names (`layers["encoder1_block1_1_conv"]`), so `load_keras_weights` copies a
Keras model's weights by name. `hds_loss_torch` is the authors' loss (per-exit pixel
cross-entropy and sparse MIL, weighted), for the benchmark's training step.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mammo_keras.models.hds_unet import (BLOCKS_PER_STAGE, BN_EPSILON, BN_MOMENTUM, MIL_STRIDE,
                                         STAGE_DROPOUT, STAGE_WIDTHS)

_TAIL = 2


class HDSUNetTorch(nn.Module):
    """(N, 1, H, W) images -> {"seg_logits_k": (N, 2, H, W), "mil_logits_k": (N, 2, h, w)},
    the HDS exits (all six of each: the "hds" ablation)."""

    def __init__(self, input_shape: Sequence[int] = (512, 384), widths=STAGE_WIDTHS,
                 blocks: int = BLOCKS_PER_STAGE, dropout=STAGE_DROPOUT,
                 mil_stride: int = MIL_STRIDE):
        super().__init__()
        self.widths, self.blocks, self.rates = tuple(widths), blocks, tuple(dropout)
        self.halvings = round(math.log2(mil_stride))
        self.layers = nn.ModuleDict()
        self._building = True
        with torch.no_grad():  # a dry run creates every module with its channel counts
            self.forward(torch.zeros(1, 1, *input_shape[:2]))
        self._building = False

    def _module(self, name: str, make):
        if name not in self.layers:
            if not self._building:
                raise KeyError(name)
            self.layers[name] = make()
        return self.layers[name]

    def _conv(self, x, filters: int, name: str, kernel: int = 1, bias: bool = False):
        conv = self._module(name, lambda: nn.Conv2d(x.shape[1], filters, kernel,
                                                    padding=kernel // 2, bias=bias))
        return conv(x)

    def _bn_relu(self, x, name: str):
        bn = self._module(f"{name}_bn", lambda: nn.BatchNorm2d(
            x.shape[1], eps=BN_EPSILON, momentum=1 - BN_MOMENTUM))
        return F.relu(bn(x))

    def _bn_relu_conv(self, x, filters: int, name: str, bias: bool = False):
        return self._conv(self._bn_relu(x, name), filters, f"{name}_conv", bias=bias)

    def _residual(self, x, filters: int, dropout: float, name: str):
        y = self._conv(self._bn_relu(x, f"{name}_1"), filters, f"{name}_1_conv", 3)
        y = self._bn_relu(y, f"{name}_2")
        if dropout:
            y = F.dropout2d(y, dropout, self.training)
        y = self._conv(y, filters, f"{name}_2_conv", 3)
        shortcut = x if x.shape[1] == filters else self._conv(x, filters, f"{name}_projection")
        return y + shortcut

    def _down(self, x, filters: int, name: str):
        if x.shape[1] != filters:
            x = self._bn_relu_conv(x, filters, name)
        return F.max_pool2d(x, 2)

    def _up(self, x, filters: int, name: str):
        if x.shape[1] != filters:
            x = self._bn_relu_conv(x, filters, name)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x):
        widths, depth, rates = self.widths, len(self.widths) // 2, self.rates
        x = self._conv(x, widths[0], "stem_conv", 3)
        skips, trunk = [], []
        for level in range(depth):
            for block in range(self.blocks):
                x = self._residual(x, widths[level], rates[level],
                                   f"encoder{level + 1}_block{block + 1}")
            skips.append(x)
            x = self._down(x, widths[level + 1], f"encoder{level + 1}_down")
        for block in range(self.blocks):
            x = self._residual(x, widths[depth], rates[depth], f"bottleneck_block{block + 1}")
        trunk.append(x)
        for level in range(depth):
            stage, name = depth + level + 1, f"decoder{level + 1}"
            x = self._up(x, widths[stage], f"{name}_up")
            skip = skips[-level - 1]
            if skip.shape[1] > x.shape[1]:
                skip = self._bn_relu_conv(skip, x.shape[1], f"{name}_fuse_skip")
            x = self._bn_relu_conv(torch.cat([x, skip], 1), widths[stage], f"{name}_fuse")
            for block in range(self.blocks):
                x = self._residual(x, widths[stage], rates[stage], f"{name}_block{block + 1}")
            trunk.append(x)
        outputs = {}
        for k, features in enumerate(trunk):
            rate = rates[depth + k]
            seg = self._residual(features, features.shape[1], rate, f"seg_logits_{k}_block")
            seg = self._bn_relu_conv(seg, 2, f"seg_logits_{k}_classes", bias=True)
            if depth - k:
                seg = F.interpolate(seg, scale_factor=2 ** (depth - k), mode="bilinear",
                                    align_corners=False)
            outputs[f"seg_logits_{k}"] = seg
            mil, order, name = features, self.halvings - depth + k, f"mil_logits_{k}"
            width = features.shape[1]
            for step in range(_TAIL):
                filters = min(width * 2 ** (step + 1), widths[depth])
                if step < order:
                    mil = self._down(mil, filters, f"{name}_down{step + 1}")
                mil = self._residual(mil, filters, rate, f"{name}_block{step + 1}")
            if order > _TAIL:
                mil = F.avg_pool2d(mil, 2 ** (order - _TAIL))
            outputs[name] = self._bn_relu_conv(mil, 2, f"{name}_classes", bias=True)
        return outputs


def load_keras_weights(peer: HDSUNetTorch, model) -> HDSUNetTorch:
    """Copy a Keras `build_hds_unet(..., exits="hds")` model's weights into `peer` by layer name
    (Keras kernels (kh, kw, in, out) -> PyTorch (out, in, kh, kw); BatchNorm gamma, beta,
    moving mean and variance)."""
    with torch.no_grad():
        for name, module in peer.layers.items():
            values = model.get_layer(name).get_weights()
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.from_numpy(values[0].transpose(3, 2, 0, 1).copy()))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(values[1]))
            else:
                for target, value in zip((module.weight, module.bias, module.running_mean,
                                          module.running_var), values):
                    target.copy_(torch.from_numpy(value))
    return peer


def hds_loss_torch(outputs: dict, masks: torch.Tensor, labels: torch.Tensor,
                   weights=(3.5, 3.0, 2.5, 2.0, 1.5, 1.0), cls_weight: float = 0.03,
                   sparsity: float = 1e-6) -> torch.Tensor:
    """The authors' training loss: sum_k w_k CE(seg_k, mask) + cls_weight * sum_k w_k MIL_k
    (masks (N, H, W) int64, labels (N,) int64)."""
    segmentation = classification = 0.0
    for k, weight in enumerate(weights):
        segmentation = segmentation + weight * F.cross_entropy(outputs[f"seg_logits_{k}"], masks)
        logits = outputs[f"mil_logits_{k}"].flatten(2)  # N, 2, P
        chosen = logits[:, 0, :].argmin(dim=1).detach()
        picked = logits[torch.arange(len(chosen)), :, chosen]
        penalty = F.softmax(logits, dim=1)[:, 1:].sum() / logits.shape[0]
        classification = classification + weight * (F.cross_entropy(picked, labels)
                                                    + sparsity * penalty)
    return segmentation + cls_weight * classification
