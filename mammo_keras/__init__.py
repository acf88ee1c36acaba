"""mammo-keras: Keras 3 / TensorFlow reference implementations of mammography deep-learning papers.

`import mammo_keras` is light: its subpackages (`data`, `models`, `layers`, `losses`, ...)
are imported when first used, so the command line answers `--help` without loading
TensorFlow. A `.keras` file that holds mammo-keras layers loads with
`mammo_keras.load_model(path)` (or `keras.saving.load_model` after importing
`mammo_keras.models`, which registers them).

Importing it changes nothing in the process (no environment variable, no subprocess):
`mammo_keras.prepare_tensorflow()`, called before TensorFlow is imported, turns on the oneDNN
kernels the command line uses (`mammo_keras.tensorflow_setup`).
"""

from mammo_keras.lazy import lazy_exports

__version__ = "0.1.0"

_SUBPACKAGES = ("bench", "dashboard", "data", "evaluation", "explain", "export", "layers",
                "losses", "models", "tasks", "training")
__all__ = ["__version__", "load_model", "prepare_tensorflow", *_SUBPACKAGES]
__getattr__, __dir__ = lazy_exports(__name__, {
    "load_model": "mammo_keras.models.loading",
    "prepare_tensorflow": "mammo_keras.tensorflow_setup",
    **{name: f"mammo_keras.{name}" for name in _SUBPACKAGES}})
