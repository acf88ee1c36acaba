"""Two workarounds for Keras 3's TensorFlow trainer under tf.distribute, active only inside
`keras_distribute_fixes()` (the trainer enters it when a strategy trains).

1. keras-team/keras issue 20585: under MultiWorkerMirroredStrategy, `reduce_per_replica`
   averages every value a train step returns with `strategy.reduce("MEAN", value, axis=0)`,
   which fails on the scalar metric values ("Invalid reduction dimension 0 for input with 0
   dimensions"). The override averages a scalar over the replicas (axis None: what Keras
   does on one worker). It runs only when Keras' own reduction raises that error, so it
   falls away, unused, once Keras is fixed.
2. `fit` under any strategy draws a batch from the training data to build the model
   (`_maybe_symbolic_build`) and then starts the data over. Under MultiWorkerMirroredStrategy
   the draw fails (an eager reduce of a PerReplica batch); under any strategy, a dataset that
   reshuffles on each pass then trains on its second order, not on the first that a
   one-device run sees. The override builds from a batch of zeros shaped like the dataset's
   elements: nothing is drawn.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from mammo_keras.compat import keras_tensorflow_trainer

tensorflow_trainer = keras_tensorflow_trainer()

KERAS_ISSUE = "https://github.com/keras-team/keras/issues/20585"
_SCALAR_REDUCTION_ERROR = "Invalid reduction dimension"


def reduce_per_replica(values, strategy, reduction):
    """Keras' `reduce_per_replica`, with scalars averaged over replicas where Keras' own
    multi-worker mean fails on them (keras-team/keras issue 20585)."""
    original = _ORIGINALS["reduce_per_replica"]
    try:
        return original(values, strategy, reduction)
    except ValueError as error:
        if _SCALAR_REDUCTION_ERROR not in str(error):
            raise

    def reduce_one(value):
        if getattr(value, "shape", None) is not None and value.shape.rank == 0:
            return strategy.reduce("MEAN", value, axis=None)
        return original(value, strategy, reduction)

    return tf.nest.map_structure(reduce_one, values)


def _zeros_like_spec(spec):
    """A batch of one example of zeros for a (nested) `tf.TypeSpec` of batches."""
    def zeros(leaf):
        if hasattr(leaf, "_value_specs"):  # a PerReplicaSpec: one local replica's part
            leaf = leaf._value_specs[0]
        shape = [1 if size is None else size for size in leaf.shape]
        return tf.zeros(shape, leaf.dtype)

    return tf.nest.map_structure(zeros, spec)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Keras' `_maybe_symbolic_build`, building from zeros shaped like the data (see 2.)."""
    if iterator is not None and self._distribute_strategy is not None:
        dataset = iterator._distributed_dataset  # the dataset fit iterates, distributed
        data_batch, iterator = _zeros_like_spec(dataset.element_spec), None
    return _ORIGINALS["_maybe_symbolic_build"](self, iterator=iterator, data_batch=data_batch)


_ORIGINALS = {"reduce_per_replica": tensorflow_trainer.reduce_per_replica,
              "_maybe_symbolic_build": tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build}


@contextlib.contextmanager
def keras_distribute_fixes():
    """Apply both workarounds for the duration of the block (not re-entrant)."""
    tensorflow_trainer.reduce_per_replica = reduce_per_replica
    tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    try:
        yield
    finally:
        tensorflow_trainer.reduce_per_replica = _ORIGINALS["reduce_per_replica"]
        tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build = \
            _ORIGINALS["_maybe_symbolic_build"]
