"""mammo-keras: Keras 3 / TensorFlow reference implementations of mammography deep-learning papers.

`import mammo_keras` is light: its subpackages (`data`, `models`, `layers`, `losses`, ...)
are imported when first used, so the command line answers `--help` without loading
TensorFlow. A `.keras` file that holds mammo-keras layers loads with
`mammo_keras.load_model(path)` (or `keras.saving.load_model` after importing
`mammo_keras.models`, which registers them).
"""

import os

from mammo_keras.lazy import lazy_exports

__version__ = "0.1.0"

# Hide TensorFlow's C++ INFO lines (warnings and errors stay); a user's own setting wins, and
# then the command line shows TensorFlow's start-up lines too (mammo_keras.quiet_tensorflow).
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# TensorFlow's oneDNN CPU kernels (fused matmul / convolution / layer norm): off by default in
# the TF 2.21 wheel; with them ConvNeXt-Tiny trains 1.23-1.46x faster on a 2-core CPU (two runs)
# (benchmarks/results/convnext_routes.md). Takes effect only when mammo_keras is imported
# before TensorFlow; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_SUBPACKAGES = ("bench", "dashboard", "data", "evaluation", "explain", "export", "layers",
                "losses", "models", "tasks", "training")
__all__ = ["__version__", "load_model", *_SUBPACKAGES]
__getattr__, __dir__ = lazy_exports(__name__, {
    "load_model": "mammo_keras.models.loading",
    **{name: f"mammo_keras.{name}" for name in _SUBPACKAGES}})
