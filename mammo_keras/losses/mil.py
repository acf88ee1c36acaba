"""The sparse multiple-instance loss of HDS (Zhang 2018; the authors' `SparseMILLoss`).

    L = CE(softmax(z_{i*}), y) + s * (1 / N) sum_images sum_instances p_lesion

where z (N, h, w, 2) are instance logits [background, lesion], i* the instance of each image
with the smallest background logit (its most positive instance; the choice is not
differentiated), y the image label (0 no lesion, 1 lesion) and s the sparsity factor
(1e-6 in the authors' code), which pushes towards few positive instances.
"""

from __future__ import annotations

from keras import ops

from mammo_keras.layers.instance_pooling import most_positive_instance

SPARSITY = 1e-6


def sparse_mil_loss(labels, instance_logits, sparsity: float = SPARSITY):
    """The sparse MIL loss (scalar float32) of labels (N,) or (N, 1) in {0, 1} and instance
    logits (N, h, w, 2)."""
    logits = ops.cast(instance_logits, "float32")
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    chosen = most_positive_instance(logits)
    cross_entropy = -ops.mean(ops.sum(ops.one_hot(labels, 2) * ops.log_softmax(chosen, axis=-1),
                                      axis=-1))
    lesion = ops.softmax(logits, axis=-1)[..., 1]
    images = ops.cast(ops.shape(logits)[0], "float32")
    return cross_entropy + sparsity * ops.sum(lesion) / ops.maximum(images, 1.0)
