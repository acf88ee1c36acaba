"""Pixel losses of 2-class segmentation logits, in `keras.ops`.

- `pixel_cross_entropy(mask, logits)`: softmax cross-entropy averaged over pixels and images
  (PyTorch's `nn.CrossEntropyLoss()` on (N, 2, H, W) logits, as the HDS authors train).
- `dice_loss(mask, logits)`, `dice_ce_loss(mask, logits)`: MONAI's `DiceLoss` /
  `DiceCELoss` with `softmax=True, to_onehot_y=True` and its defaults (background included,
  smooth_nr = smooth_dr = 1e-5, not squared, per image and class, then the mean); DiceCE is
  their sum with weights 1 and 1.

Shapes: mask (N, H, W, 1) in {0, 1}; logits (N, H, W, 2) [background, lesion]; results
are scalars (float32).
"""

from __future__ import annotations

from keras import ops

SMOOTH = 1e-5  # MONAI's smooth_nr and smooth_dr


def _one_hot(mask):
    lesion = ops.cast(ops.reshape(mask, ops.shape(mask)[:3]) > 0.5, "float32")
    return ops.stack([1.0 - lesion, lesion], axis=-1)


def pixel_cross_entropy(mask, logits):
    """Mean softmax cross-entropy of every pixel of every image."""
    logits = ops.cast(logits, "float32")
    log_probabilities = ops.log_softmax(logits, axis=-1)
    return -ops.mean(ops.sum(_one_hot(mask) * log_probabilities, axis=-1))


def dice_loss(mask, logits):
    """1 - Dice of the softmax probabilities, per image and class, averaged (MONAI's
    `DiceLoss(softmax=True, to_onehot_y=True)`)."""
    target = _one_hot(mask)
    probabilities = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    intersection = ops.sum(target * probabilities, axis=(1, 2))
    denominator = ops.sum(target, axis=(1, 2)) + ops.sum(probabilities, axis=(1, 2))
    dice = (2.0 * intersection + SMOOTH) / (denominator + SMOOTH)
    return ops.mean(1.0 - dice)


def dice_ce_loss(mask, logits):
    """Dice loss + pixel cross-entropy (MONAI's `DiceCELoss`, lambda_dice = lambda_ce = 1)."""
    return dice_loss(mask, logits) + pixel_cross_entropy(mask, logits)


PIXEL_LOSSES = {"ce": pixel_cross_entropy, "dice_ce": dice_ce_loss}
