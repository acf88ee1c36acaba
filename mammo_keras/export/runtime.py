"""`load_predictor`: one callable for a `.keras` file, a SavedModel folder or a `.tflite` file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from mammo_keras.export.metadata import (DEFAULT_PREPROCESSING, PREPROCESSING_KEYS,
                                         run_folder_facts)


@dataclasses.dataclass
class Predictor:
    """A classifier of preprocessed images, whatever its format.

    Calling it maps (N, S, S, 1) float32 in [0, 1] to probabilities (N, K).
    `class_names` and `preprocessing` come from the export metadata or the
    training run folder, when there is one (class_names may be None).
    """

    path: str
    format: str
    image_size: int
    num_classes: int
    run: Callable[[np.ndarray], np.ndarray]
    class_names: list[str] | None = None
    preprocessing: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))

    def __call__(self, images) -> np.ndarray:
        return np.asarray(self.run(np.asarray(images, np.float32)), np.float32)

    @property
    def preprocessing_options(self) -> dict:
        """The keyword arguments of `mammo_keras.data.preprocess` this model was trained with."""
        return {key: self.preprocessing[key] for key in PREPROCESSING_KEYS}

    def preprocess(self, image: np.ndarray, laterality: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """One full mammogram (H, W) in [0, 1] -> (the model's input (S, S, 1), the crop
        geometry [flipped, top, left, height, width]); `laterality` "L" / "R" when known."""
        from mammo_keras.data.preprocessing import preprocess

        processed, geometry = preprocess(image, self.image_size, laterality=laterality,
                                         **self.preprocessing_options)
        return processed.numpy(), geometry.numpy()

    def prepare(self, image: np.ndarray, laterality: str | None = None) -> np.ndarray:
        """One full mammogram (H, W) in [0, 1] -> the model's input (S, S, 1)."""
        return self.preprocess(image, laterality)[0]


def keras_predictor(model: keras.Model, path: str = "<in memory>") -> Predictor:
    """Wrap a Keras classifier; class names and preprocessing from its run folder if any."""
    facts = run_folder_facts(path) if path != "<in memory>" else {}
    return Predictor(path=path, format="keras", image_size=int(model.input_shape[1]),
                     num_classes=int(model.output_shape[-1]),
                     run=lambda images: keras.ops.convert_to_numpy(model(images,
                                                                         training=False)),
                     class_names=facts.get("class_names"),
                     preprocessing={**DEFAULT_PREPROCESSING, **facts.get("preprocessing", {})})


def savedmodel_version(path: Path) -> Path:
    """A version folder holding saved_model.pb: `path` itself, or its highest numeric child."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((child for child in path.iterdir() if child.name.isdigit()
                       and (child / "saved_model.pb").is_file()), key=lambda c: int(c.name))
    if not versions:
        raise ValueError(f"{path}: not a SavedModel (no saved_model.pb here or in a version "
                         "folder)")
    return versions[-1]


def artefact_metadata(path: str | Path) -> dict:
    """The metadata JSON `mammo-keras export` wrote beside an artefact ({} when there is none)."""
    path = Path(path)
    beside = path.with_suffix(".json") if path.suffix else path.with_name(path.name + ".json")
    return json.loads(beside.read_text()) if beside.is_file() else {}


def load_predictor(path: str | Path) -> Predictor:
    """Open a `.keras` file, a SavedModel (version folder or TF Serving base) or a `.tflite`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if path.is_dir():
        import tensorflow as tf

        version = savedmodel_version(path)
        serve = tf.saved_model.load(str(version)).signatures["serve_preprocessed"]
        size = int(serve.structured_input_signature[1]["images"].shape[1])
        meta = artefact_metadata(version)

        def run(images: np.ndarray) -> np.ndarray:
            return serve(images=tf.constant(images))["probabilities"].numpy()

        classes = int(serve.structured_outputs["probabilities"].shape[-1])
        return Predictor(str(path), "savedmodel", size, classes, run, meta.get("class_names"),
                         {**DEFAULT_PREPROCESSING, **meta.get("preprocessing", {})})
    if path.suffix.lower() == ".tflite":
        from mammo_keras.export.tflite import TFLiteRunner

        runner = TFLiteRunner(path)
        meta = artefact_metadata(path)
        return Predictor(str(path), "tflite", runner.image_size, runner.num_classes, runner,
                         meta.get("class_names"),
                         {**DEFAULT_PREPROCESSING, **meta.get("preprocessing", {})})
    if path.suffix.lower() == ".keras":
        return keras_predictor(keras.saving.load_model(path), str(path))
    raise ValueError(f"{path}: not a model (expected a .keras file, a SavedModel folder or a "
                     ".tflite file)")
