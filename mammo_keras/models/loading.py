"""`load_model`: a `.keras` file written by mammo-keras (or using its layers), loaded back.

Keras finds a custom class of a `.keras` file only once the module defining it has been
imported (`keras.saving.register_keras_serializable`); `import mammo_keras` alone stays
light (no TensorFlow), so this imports every module whose objects a saved model may hold
before loading.
"""

from __future__ import annotations

from pathlib import Path

import keras

from mammo_keras.errors import UserError


def register_serializables() -> None:
    """Import the modules that register mammo-keras' layers, losses and models with Keras."""
    import mammo_keras.layers  # noqa: F401
    import mammo_keras.losses  # noqa: F401
    import mammo_keras.models.description  # noqa: F401
    import mammo_keras.models.feature_smoothing  # noqa: F401


def load_model(path: str | Path) -> keras.Model:
    """The model saved in the `.keras` file at `path`.

    Raises:
        UserError: one line naming the file when it is missing or not a loadable Keras
            archive.
    """
    if not Path(path).is_file():
        raise UserError(f"{path}: model file not found")
    register_serializables()
    try:
        return keras.saving.load_model(path)
    except (OSError, TypeError, ValueError) as error:  # not a .keras archive, or a foreign one
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path}: cannot be loaded as a Keras model ({first})") from None
