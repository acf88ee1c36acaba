"""`load_model`: a `.keras` file written by mammo-keras (or using its layers), loaded back.

Keras finds a custom class of a `.keras` file only once the module defining it has been
imported (`keras.saving.register_keras_serializable`); `import mammo_keras` alone stays
light (no TensorFlow), so this imports every module whose objects a saved model may hold
before loading.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from mammo_keras.errors import UserError
from mammo_keras.models.output_checks import check_weights
from mammo_keras.trust import code_is_trusted


def register_serializables() -> None:
    """Import the modules that register mammo-keras' layers, losses and models with Keras."""
    import mammo_keras.layers  # noqa: F401
    import mammo_keras.losses  # noqa: F401
    import mammo_keras.models.description  # noqa: F401
    import mammo_keras.models.feature_smoothing  # noqa: F401
    import mammo_keras.models.clip  # noqa: F401
    import mammo_keras.models.zero_shot  # noqa: F401
    try:  # a CLIP model's towers are keras-hub layers, registered by importing it
        import keras_hub  # noqa: F401
    except ImportError:
        pass


def load_model(path: str | Path) -> keras.Model:
    """The model saved in the `.keras` file at `path`.

    Raises:
        UserError: one line naming the file when it is missing, a folder (a SavedModel),
            not a loadable Keras archive, or holds Python code (a Lambda layer) while
            code is not trusted (`mammo_keras.trust`), or holds a weight that is not finite
            (`output_checks.check_weights`).
    """
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder (a SavedModel?), not a .keras model file; this "
                        "command needs the .keras file (`predict` also reads SavedModels)")
    if not Path(path).is_file():
        raise UserError(f"{path}: model file not found")
    code = _code_inside(path)
    if code and not code_is_trusted():
        raise UserError(f"{path}: holds Python code ({code}), which loading would run; "
                        "refused: rebuild the model without Lambda layers, or add "
                        "--trust-code if you trust the file")
    register_serializables()
    try:
        model = keras.saving.load_model(path, safe_mode=not code)
    except (OSError, TypeError, ValueError) as error:  # not a .keras archive, or a foreign one
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path}: cannot be loaded as a Keras model ({first})") from None
    check_weights(model, str(path))
    return model


def _code_inside(path: str | Path) -> str | None:
    """The first Lambda layer of the `.keras` archive at `path` ("Lambda layer 'name'"), or
    None. Keras' safe mode refuses them too, but inside a nested model only as "could not
    be deserialized properly", which does not tell the user why."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RecursionError):
        return None  # not a .keras archive: Keras' own error says so
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda":
                name = (item.get("config") or {}).get("name") if isinstance(
                    item.get("config"), dict) else None
                return f"Lambda layer {name!r}"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def build_from_file(path: str, num_classes: int = 3, input_shape: tuple = (224, 224, 1),
                    task: str | None = None) -> keras.Model:
    """The `model: {builder: saved, path: ...}` of a config: a saved mammo-keras model to train
    on (fine-tune) or to probe, with a new classification layer when it was made for another
    task or another number of classes.

    Args:
        path: a `.keras` file, e.g. a run's model.keras.
        num_classes: the task's classes.
        input_shape: the config's (S, S, 1); must be the saved model's input.
        task: the config's task; a model saved for another one (say malignancy, to be
            fine-tuned for density) gets its "embedding" layer feeding a new Dense "logits"
            -> Softmax "predictions", as does one with another class count.

    Returns:
        A functional model (N, S, S, 1) in [0, 1] -> (N, num_classes) probabilities.
    """
    model = load_model(path)
    saved = tuple(model.input.shape[1:])
    if saved[:2] != tuple(input_shape)[:2] and None not in saved[:2]:
        raise UserError(f"{path}: the model takes {saved[0]} x {saved[1]} px input; set "
                        f"data.image_size: {saved[0]}")
    from mammo_keras.models.description import description_of

    saved_task = description_of(model, fill=False).task
    if model.output.shape[-1] == num_classes and (task is None or saved_task in (None, task)):
        return keras.Model(model.input, model.output, name=model.name)
    try:
        features = model.get_layer("embedding").output
    except ValueError:
        raise UserError(f"{path}: made for {saved_task or 'another task'} with "
                        f"{model.output.shape[-1]} classes, where the task is {task} with "
                        f"{num_classes}, and has no 'embedding' layer to put a new "
                        "classification layer on") from None
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(features)
    probabilities = keras.layers.Softmax(name="predictions")(logits)
    return keras.Model(model.input, probabilities, name=model.name)
