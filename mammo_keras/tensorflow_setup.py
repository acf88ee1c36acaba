"""`prepare_tensorflow()`: the process settings TensorFlow reads once, when it is imported.

Importing mammo_keras changes nothing in the process; the command line calls this first, and a
library user who wants the same kernels calls it before importing TensorFlow (or sets the
variables themselves: a user's own setting always wins).

- `TF_ENABLE_ONEDNN_OPTS=1`: TensorFlow's oneDNN CPU kernels (fused matmul / convolution /
  layer norm), off by default in the TF 2.21 wheel; with them ConvNeXt-Tiny trains 1.23-1.46x
  faster on a 2-core CPU (two runs, `benchmarks/results/convnext_routes.md`).
- `TF_CPP_MIN_LOG_LEVEL=1`: TensorFlow's C++ INFO lines hidden (warnings and errors stay).
"""

from __future__ import annotations

import os

DEFAULTS = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}


def prepare_tensorflow() -> dict[str, str | None]:
    """Set `DEFAULTS` where the user set nothing; returns the user's own values beforehand
    ({name: value or None}). Takes effect only before TensorFlow is imported."""
    before = {name: os.environ.get(name) for name in DEFAULTS}
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    return before
