"""What travels with an exported model: its description, input, parity and versions (metadata JSON).

The same JSON is stored inside every artefact (the SavedModel's
`assets/mammo_keras.json`, the TFLite file's `mammo_keras` metadata buffer) and
beside it (`<artefact>.json`), so an artefact copied alone keeps its class names
and preprocessing. `description_from_metadata` turns it back into the
`ModelDescription` the `.keras` file carried.
"""

from __future__ import annotations

import keras

from mammo_keras import __version__
from mammo_keras.models.description import ModelDescription

# The name of the metadata inside artefacts: a SavedModel asset file, a TFLite metadata entry.
METADATA_NAME = "mammo_keras"


def build_metadata(model: keras.Model, description: ModelDescription, artefact: str, fmt: str,
                   quantize: str = "none", parity: dict | None = None) -> dict:
    """The metadata JSON of one exported artefact of `model`, described by `description`
    (filled in from the model's shapes: `description_of(model)`)."""
    size = int(description.image_size)
    arguments = (description.builder or {}).get("arguments", {})
    provenance = description.provenance or {}
    metrics = None
    if provenance.get("metrics"):
        metrics = {"evaluated_on": provenance.get("evaluated_on"), **provenance["metrics"],
                   "confidence_intervals": provenance.get("confidence_intervals", {})}
    training_data = {key: provenance[key] for key in ("dataset", "root", "images", "commit")
                     if provenance.get(key) is not None}
    if training_data:
        training_data["image_size"] = size
    return {
        "artefact": artefact,
        "format": fmt,
        "quantization": quantize,
        "task": description.task,
        "class_names": list(description.class_names),
        "label_output": description.label_output,
        "outputs": description.outputs,
        "input": {"size": [size, size, 1], "dtype": "float32", "range": [0.0, 1.0],
                  "layout": "NHWC grayscale, after preprocessing"},
        "preprocessing": {**description.preprocessing,
                          "function": "mammo_keras.data.preprocess"},
        "builder": description.builder,
        "backbone": arguments.get("backbone"),
        "head": arguments.get("head"),
        "model_name": model.name,
        "training_data": training_data or None,
        "metrics": metrics,
        "provenance": provenance,
        "parity": parity,
        "mammo_keras": __version__,
        "keras": keras.__version__,
    }


def description_from_metadata(meta: dict) -> ModelDescription:
    """The `ModelDescription` an artefact's metadata records (fields it lacks stay unset).

    Metadata written before descriptions existed (mammo-keras 0.x) has no
    "provenance"; its "training_data" and "metrics" are read instead.
    """
    size = (meta.get("input") or {}).get("size")
    preprocessing = {key: value for key, value in (meta.get("preprocessing") or {}).items()
                     if key != "function"}
    provenance = meta.get("provenance")
    if provenance is None:
        provenance = dict(meta.get("training_data") or {})
        metrics = dict(meta.get("metrics") or {})
        if metrics:
            provenance.update(evaluated_on=metrics.pop("evaluated_on", None),
                              confidence_intervals=metrics.pop("confidence_intervals", {}),
                              metrics=metrics)
        provenance.pop("image_size", None)
    return ModelDescription(task=meta.get("task"), class_names=meta.get("class_names"),
                            image_size=int(size[0]) if size else None,
                            preprocessing=preprocessing, label_output=meta.get("label_output"),
                            outputs=meta.get("outputs"), builder=meta.get("builder"), provenance=provenance)
