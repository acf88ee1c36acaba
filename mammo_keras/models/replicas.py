"""Loss arithmetic across tf.distribute replicas, for models that compute their own loss.

Under a `tf.distribute` strategy each replica computes the loss of its share of the global
batch and the optimizer sums the replicas' gradients. A model whose `compute_loss` returns
its own mean must therefore return `replica_share(mean)` (Keras scales its own losses the
same way), and state computed from the batch (the Feature Smoothing centres) must come from
`replica_sum`-reduced sums and counts, so that every replica holds the values one device
would compute from the whole global batch.

Outside a strategy, with one replica, or on a backend other than TensorFlow, both are the
identity. Values are float tensors of any shape.
"""

from __future__ import annotations

import keras


def _replica_context():
    """TensorFlow's replica context when several replicas train in sync, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def replica_count() -> int:
    """How many replicas train in sync (1 outside a strategy)."""
    context = _replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def replica_share(value):
    """`value` / replicas: a replica's part of a loss that is a mean over its own batch, so
    that the summed gradients are those of the mean over the global batch (exact when the
    replicas' batches are equal in size, as Keras assumes for its own losses)."""
    count = replica_count()
    return value if count == 1 else value * (1.0 / count)


def replica_sum(value):
    """The sum of `value` over every replica (an all-reduce), the same on each."""
    context = _replica_context()
    if context is None:
        return value
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
