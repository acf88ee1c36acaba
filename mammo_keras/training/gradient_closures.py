"""Free the train graph a finished `Model.fit` leaves pinned in TensorFlow's gradient registry.

`Model.fit` on TensorFlow traces a train function whose optimizer step all-reduces the
gradients (`tf.distribute` replica context, even with one device). In graph mode that
all-reduce is a `tf.custom_gradient`, which registers its gradient closure in TensorFlow's
global gradient registry under a fresh `CustomGradient-N` name and never removes it
(tensorflow/tensorflow#97697, #80895). The closure holds the traced graph, and the graph holds
every variable of the model and its optimizer: without this, every run trained in one process
stays in memory (hundreds of MB for ConvNeXt-Tiny), and `keras.backend.clear_session()`
cannot free it.

`released_gradient_closures()` wraps one run: on exit it unregisters the gradient closures the
run registered, and only those (graphs traced before it keep theirs). Use it only around work
whose traced functions are not differentiated again afterwards, as `train` does. Measured in
`benchmarks/grid_memory.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def _registry_or_none() -> dict | None:
    """TensorFlow's global {op type: gradient function} registry, or None where there is none
    to clean (another backend, or a TensorFlow whose private registry has moved)."""
    if keras.backend.backend() != "tensorflow":
        return None
    from mammo_keras.compat import gradient_registry

    return gradient_registry()


@contextlib.contextmanager
def released_gradient_closures() -> Iterator[None]:
    """Run the body, then unregister the custom-gradient closures it registered."""
    registry = _registry_or_none()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [name for name in registry
                         if name.startswith(CUSTOM_GRADIENT_PREFIX) and name not in before]:
                del registry[name]
