"""The PyTorch peers of the benchmark: the architectures a user would otherwise train in plain
PyTorch on the CPU (needs the `torch` extra; torchvision is not required).

`convnext_tiny` is ConvNeXt-Tiny as in Liu et al. 2022 and `keras.applications.ConvNeXtTiny`
(same layers, order and epsilons); `load_keras_convnext` copies a Keras ConvNeXt-Tiny's
weights into it, which the tests use to show that both compute the same function.
`hds_unet` is the HDS residual U-Net (`mammo_keras.bench.torch_hds`, likewise shown to be
the Keras model's function).
"""

from __future__ import annotations

import torch
from torch import nn

CONVNEXT_TINY_DEPTHS = (3, 3, 9, 3)
CONVNEXT_TINY_WIDTHS = (96, 192, 384, 768)


class ChannelsLastNorm(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> LayerNorm -> Linear 4C -> GELU -> Linear C -> layer scale, + x."""

    def __init__(self, width: int):
        super().__init__()
        self.depthwise = nn.Conv2d(width, width, 7, padding=3, groups=width)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.expand = nn.Linear(width, 4 * width)
        self.project = nn.Linear(4 * width, width)
        self.gamma = nn.Parameter(torch.full((width,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).permute(0, 2, 3, 1)
        y = self.project(nn.functional.gelu(self.expand(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt on (N, channels, H, W) images -> (N, classes) logits."""

    def __init__(self, depths=CONVNEXT_TINY_DEPTHS, widths=CONVNEXT_TINY_WIDTHS,
                 channels: int = 3, classes: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 4, stride=4),
                                  ChannelsLastNorm(widths[0], eps=1e-6))
        self.downsampling = nn.ModuleList(
            nn.Sequential(ChannelsLastNorm(widths[i], eps=1e-6),
                          nn.Conv2d(widths[i], widths[i + 1], 2, stride=2))
            for i in range(len(widths) - 1))
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(width) for _ in range(depth)))
                                    for depth, width in zip(depths, widths))
        self.head_norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            if index:
                x = self.downsampling[index - 1](x)
            x = stage(x)
        return self.head(self.head_norm(x.mean(dim=(2, 3))))


def convnext_tiny(channels: int = 3, classes: int = 3) -> ConvNeXt:
    return ConvNeXt(channels=channels, classes=classes)


def baseline_cnn(channels: int = 1, classes: int = 3) -> nn.Module:
    """The baseline CNN of mammo_keras.models (stages of 3x3 conv-BN-ReLU blocks and 2x2 max
    pooling, widths 32-64-128-256-256) with a global-average-pooling head."""
    from mammo_keras.models.baseline_cnn import BN_MOMENTUM, CONVS_PER_STAGE, STAGE_WIDTHS

    layers: list[nn.Module] = []
    previous = channels
    for filters in STAGE_WIDTHS:
        for _ in range(CONVS_PER_STAGE):
            layers += [nn.Conv2d(previous, filters, 3, padding=1, bias=False),
                       nn.BatchNorm2d(filters, eps=1.001e-5, momentum=1 - BN_MOMENTUM),
                       nn.ReLU()]
            previous = filters
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(previous, classes))


def hds_unet(channels: int = 1, classes: int = 2, input_shape=(512, 384)) -> nn.Module:
    """The HDS residual U-Net of `mammo_keras.bench.torch_hds` (one channel, two classes)."""
    from mammo_keras.bench.torch_hds import HDSUNetTorch

    if channels != 1 or classes != 2:
        raise ValueError("the HDS U-Net reads one channel and gives two classes")
    return HDSUNetTorch(input_shape)


PEERS = {"convnext_tiny": convnext_tiny, "baseline_cnn": baseline_cnn, "hds_unet": hds_unet}


def _copy(parameter: torch.Tensor, value) -> None:
    with torch.no_grad():
        parameter.copy_(torch.as_tensor(value, dtype=parameter.dtype))


def load_keras_convnext(peer: ConvNeXt, model, prefix: str = "convnext_tiny") -> ConvNeXt:
    """Copy the weights of a `keras.applications.ConvNeXtTiny` (include_top=True) into `peer`.

    Keras kernels are (kh, kw, in / groups, out), PyTorch's (out, in / groups, kh, kw); the
    Keras depthwise convolution is a Conv2D with groups = channels.
    """

    def conv(target: nn.Conv2d, layer) -> None:
        kernel, bias = layer.get_weights()
        _copy(target.weight, kernel.transpose(3, 2, 0, 1))
        _copy(target.bias, bias)

    def norm(target: nn.LayerNorm, layer) -> None:
        gamma, beta = layer.get_weights()
        _copy(target.weight, gamma)
        _copy(target.bias, beta)

    def dense(target: nn.Linear, layer) -> None:
        kernel, bias = layer.get_weights()
        _copy(target.weight, kernel.T)
        _copy(target.bias, bias)

    stem = model.get_layer(f"{prefix}_stem")
    conv(peer.stem[0], stem.layers[0])
    norm(peer.stem[1], stem.layers[1])
    for index in range(len(peer.downsampling)):
        block = model.get_layer(f"{prefix}_downsampling_block_{index}")
        norm(peer.downsampling[index][0], block.layers[0])
        conv(peer.downsampling[index][1], block.layers[1])
    for s, stage in enumerate(peer.stages):
        for b, block in enumerate(stage):
            name = f"{prefix}_stage_{s}_block_{b}"
            conv(block.depthwise, model.get_layer(f"{name}_depthwise_conv"))
            norm(block.norm, model.get_layer(f"{name}_layernorm"))
            dense(block.expand, model.get_layer(f"{name}_pointwise_conv_1"))
            dense(block.project, model.get_layer(f"{name}_pointwise_conv_2"))
            _copy(block.gamma, model.get_layer(f"{name}_layer_scale").get_weights()[0])
    norm(peer.head_norm, model.get_layer(f"{prefix}_head_layernorm"))
    dense(peer.head, model.get_layer(f"{prefix}_head_dense"))
    return peer
