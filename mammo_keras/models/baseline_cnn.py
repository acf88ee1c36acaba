"""The baseline CNN of the Dahes 2025 comparison.

The paper names "a baseline CNN" without its architecture; this one is our
choice: a plain VGG-style network, five stages of two 3x3 Conv-BN-ReLU blocks
followed by 2x2 max pooling, widths 32-64-128-256-256. Stride 32 like the large
backbones, a 256-channel last feature map, about 2.36 M parameters; it reads the
single gray channel directly. BatchNormalization momentum is 0.9, not Keras' 0.99:
small medical data sets train for a few hundred steps, and with 0.99 the moving
statistics lag so far behind that inference collapsed to one class in our phantom
runs (experiments/results/phantom_difficulty_*).
"""

from __future__ import annotations

import keras

STAGE_WIDTHS = (32, 64, 128, 256, 256)
BN_MOMENTUM = 0.9
CONVS_PER_STAGE = 2
MIN_INPUT_SIZE = 2 ** len(STAGE_WIDTHS)


def _conv_block(x, filters: int, name: str):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1.001e-5,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def BaselineCNN(input_tensor, stage_widths: tuple[int, ...] = STAGE_WIDTHS,
                name: str = "baseline_cnn") -> keras.Model:
    """Build the baseline CNN on `input_tensor` and return it as a functional model.

    Args:
        input_tensor: a Keras tensor (N, H, W, C); H and W at least 2 ** len(stage_widths).
        stage_widths: output channels of each stage; each stage halves H and W.
        name: prefix of every layer name and the model's name.

    Returns:
        A `keras.Model` from the source input of `input_tensor` to the last
        feature map (N, H / 32, W / 32, stage_widths[-1]) with the default widths.
    """
    x = input_tensor
    for stage, filters in enumerate(stage_widths, start=1):
        for block in range(1, CONVS_PER_STAGE + 1):
            x = _conv_block(x, filters, name=f"{name}_stage{stage}_block{block}")
        x = keras.layers.MaxPooling2D(2, name=f"{name}_stage{stage}_pool")(x)
    inputs = keras.utils.get_source_inputs(input_tensor)
    return keras.Model(inputs, x, name=name)
