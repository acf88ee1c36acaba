"""mammo-keras: Keras 3 / TensorFlow reference implementations of mammography deep-learning papers.

Importing the package registers its layers, losses and models with Keras, so a
model saved as `.keras` loads back with `keras.saving.load_model`.
"""

import os

__version__ = "0.1.0"

# Hide TensorFlow's C++ INFO start-up lines (warnings and errors stay); a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# TensorFlow's oneDNN CPU kernels (fused matmul / convolution / layer norm): off by default in
# the TF 2.21 wheel; with them ConvNeXt-Tiny trains 1.23-1.46x faster on a 2-core CPU (two runs)
# (benchmarks/results/convnext_routes.md). Takes effect only when mammo_keras is imported
# before TensorFlow; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mammo_keras import data, layers, losses, models  # noqa: E402  (registers serialisables)

__all__ = ["__version__", "data", "layers", "losses", "models"]
