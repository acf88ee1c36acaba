"""Every private Keras / TensorFlow / keras-hub name mammo-keras reaches, in one place.

Each accessor says which private name it reads and why no public one serves; each checks the
name is there and, where it is not, refuses in one line naming the installed version and the
versions this was written against (`WRITTEN_FOR`), instead of failing somewhere deep inside.
The modules that patch Keras' trainer (`training/keras_distribute_fixes.py`) and clean
TensorFlow's gradient registry (`training/gradient_closures.py`) get their handles here.
"""

from __future__ import annotations

import importlib
import sys

# The releases these accessors were written against and tested with
WRITTEN_FOR = {"keras": "3.15", "tensorflow": "2.21", "keras_hub": "0.20"}


class PrivateAPIMissing(RuntimeError):
    """A private name mammo-keras relies on is not in the installed library."""


def _missing(library: str, name: str) -> PrivateAPIMissing:
    module = sys.modules.get(library)
    version = getattr(module, "__version__", "unknown") if module else "not imported"
    return PrivateAPIMissing(f"{library} {version} has no {name}, which mammo-keras reaches "
                             f"(written for {library} {WRITTEN_FOR[library]}); install that "
                             "release or report this")


def _attribute(owner, path: str, library: str, name: str):
    value = owner
    for part in path.split("."):
        if not hasattr(value, part):
            raise _missing(library, name)
        value = getattr(value, part)
    return value


# --- Keras -------------------------------------------------------------------------------

def is_functional_graph(model) -> bool:
    """Whether `model` is built from a graph of inputs and outputs (a functional model): Keras
    has no public test; its `_outputs_struct` exists exactly then."""
    return hasattr(model, "_outputs_struct")


def producing_operation(tensor):
    """The layer that produced a symbolic Keras tensor (`tensor._keras_history.operation`:
    the graph walk of the morphs needs it, and Keras exposes no public accessor)."""
    return _attribute(tensor, "_keras_history.operation", "keras", "KerasTensor._keras_history")


def keras_tensorflow_trainer():
    """Keras' TensorFlow trainer module (`keras.src.backend.tensorflow.trainer`), whose
    `reduce_per_replica` and `TensorFlowTrainer._maybe_symbolic_build` the distribute
    workarounds replace for the length of a run (keras-team/keras issue 20585)."""
    try:
        module = importlib.import_module("keras.src.backend.tensorflow.trainer")
    except ImportError:
        raise _missing("keras", "keras.src.backend.tensorflow.trainer") from None
    _attribute(module, "reduce_per_replica", "keras", "trainer.reduce_per_replica")
    _attribute(module, "TensorFlowTrainer._maybe_symbolic_build", "keras",
               "TensorFlowTrainer._maybe_symbolic_build")
    return module


# --- keras-hub ---------------------------------------------------------------------------

TRANSFORMER_ENCODER_PARTS = ("_self_attention_layer", "_self_attention_layer_norm",
                             "_feedforward_intermediate_dense", "_feedforward_output_dense",
                             "_feedforward_layer_norm")


def transformer_encoder_parts(layer) -> dict:
    """The sublayers of a keras-hub `TransformerEncoder` by their private names (the open_clip
    converter writes BERT's weights into each; keras-hub names them only privately)."""
    return {name: _attribute(layer, name, "keras_hub", f"TransformerEncoder.{name}")
            for name in TRANSFORMER_ENCODER_PARTS}


# --- TensorFlow --------------------------------------------------------------------------

def gradient_registry() -> dict | None:
    """TensorFlow's global {op type: gradient function} registry
    (`tensorflow.python.framework.ops._gradient_registry._registry`), where every custom
    gradient registers a closure for the life of the process; None where it has moved."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def op_determinism_enabled() -> bool:
    """Whether TensorFlow's deterministic op mode is on (no public getter)."""
    from tensorflow.python.framework import config

    return bool(_attribute(config, "is_op_determinism_enabled", "tensorflow",
                           "framework.config.is_op_determinism_enabled")())


def disable_op_determinism() -> None:
    """Turn TensorFlow's deterministic op mode off again (no public switch back)."""
    from tensorflow.python.framework import config

    _attribute(config, "disable_op_determinism", "tensorflow",
               "framework.config.disable_op_determinism")()


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs its oneDNN kernels (None: TF not loaded);
    `_pywrap_util_port.IsMklEnabled` is the only place TensorFlow says so."""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.util import _pywrap_util_port

    return bool(_attribute(_pywrap_util_port, "IsMklEnabled", "tensorflow",
                           "_pywrap_util_port.IsMklEnabled")())
