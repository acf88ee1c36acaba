"""Checkpoint converters: published weights -> mammo-keras `.keras` models, tested offline.

- `open_clip_to_keras(directory)`: an open_clip BiomedCLIP-style folder
  (`open_clip_config.json`, `open_clip_pytorch_model.bin` or `open_clip_model.safetensors`,
  the tokenizer's `vocab.txt`) -> a `build_clip` model with its tokenizer
  (`mammo-keras convert open_clip DIR --out model.keras`).
"""

from mammo_keras.lazy import lazy_exports

_EXPORTS = {"open_clip_to_keras": "mammo_keras.convert.open_clip",
            "read_open_clip_folder": "mammo_keras.convert.open_clip"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
