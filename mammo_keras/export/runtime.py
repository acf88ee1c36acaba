"""`load_predictor`: one callable for a `.keras` file, a SavedModel folder or a `.tflite` file.

Whatever the format, the predictor's `description` (task, class names, input
size, preprocessing) comes from inside the artefact: the `.keras` file's
`ModelDescription`, the SavedModel's `assets/mammo_keras.json`, the TFLite
file's "mammo_keras" metadata entry. Artefacts written before that existed are
read from what lies beside them: the training run folder of a `.keras` file,
the metadata JSON `mammo-keras export` wrote next to an export.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import keras
import numpy as np

import mammo_keras.tasks  # noqa: F401  (the built-in tasks declare their fixed classes)
from mammo_keras.errors import UserError
from mammo_keras.export.metadata import description_from_metadata
from mammo_keras.models.description import (ModelDescription, default_class_names,
                                            description_of)
from mammo_keras.models.loading import load_model
from mammo_keras.models.output_checks import check_outputs
from mammo_keras.models.outputs import RESERVED, served_model, split_outputs


@dataclasses.dataclass
class Predictor:
    """A classifier of preprocessed images, whatever its format.

    Calling it maps (N, S, S, 1) float32 in [0, 1] to class probabilities (N, K);
    `outputs` gives every served output ({"probabilities": (N, K), <mask name>:
    (N, S, S, 1)}, see `mammo_keras.models.outputs`). `description` says what the model
    is for; its class names are always set (class0.. when the artefact does not name them).
    """

    path: str
    format: str
    image_size: int
    num_classes: int
    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    description: ModelDescription = dataclasses.field(default_factory=ModelDescription)

    def __post_init__(self) -> None:
        self.description = dataclasses.replace(self.description, image_size=self.image_size)
        if self.description.class_names is None:
            self.description.class_names = default_class_names(self.num_classes,
                                                               self.description.task)
        if len(self.description.class_names) != self.num_classes:
            raise UserError(f"{self.path}: {len(self.description.class_names)} class names "
                             f"{list(self.description.class_names)} for a model with "
                             f"{self.num_classes} class outputs")

    def __call__(self, images) -> np.ndarray:
        return self.outputs(images)["probabilities"]

    def outputs(self, images) -> dict[str, np.ndarray]:
        """Every served output of a batch (N, S, S, 1), float32 arrays by name.

        Raises:
            UserError: the outputs are not finite or not probabilities (`check_outputs`):
                the model is refused rather than its answers shown.
        """
        return check_outputs({name: np.asarray(value, np.float32)
                              for name, value in self.run(np.asarray(images, np.float32)).items()},
                             self.path)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.description.class_names

    @property
    def task(self) -> str | None:
        return self.description.task

    @property
    def preprocessing(self) -> dict:
        """The keyword arguments of `mammo_keras.data.preprocess` this model was trained with."""
        return dict(self.description.preprocessing)

    @property
    def preprocessor(self):
        """The model's `MammogramPreprocessor` (forward to its input, inverse to the film)."""
        return self.description.preprocessor()

    def preprocess(self, image: np.ndarray, laterality: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """One full mammogram (H, W) in [0, 1] -> (the model's input (S, S, 1), the crop
        geometry [flipped, top, left, height, width]); `laterality` "L" / "R" when known."""
        processed, geometry = self.preprocessor(image, laterality)
        return processed.numpy(), geometry.numpy()

    def prepare(self, image: np.ndarray, laterality: str | None = None) -> np.ndarray:
        """One full mammogram (H, W) in [0, 1] -> the model's input (S, S, 1)."""
        return self.preprocess(image, laterality)[0]


def keras_predictor(model: keras.Model, path: str | None = None) -> Predictor:
    """Wrap a Keras model; its description from the model (or, for a model saved before
    descriptions existed, from the run folder around `path`)."""
    description = description_of(model, path)
    served = served_model(model, description)

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        probabilities, masks = split_outputs(served(images, training=False))
        return {name: keras.ops.convert_to_numpy(value)
                for name, value in {"probabilities": probabilities, **masks}.items()}

    return Predictor(path=path or "<in memory>", format="keras",
                     image_size=int(description.image_size),
                     num_classes=len(description.class_names), run=run,
                     description=description)


def savedmodel_version(path: Path) -> Path:
    """A version folder holding saved_model.pb: `path` itself, or its highest numeric child."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((child for child in path.iterdir() if child.name.isdigit()
                       and (child / "saved_model.pb").is_file()), key=lambda c: int(c.name))
    if not versions:
        raise UserError(f"{path}: not a SavedModel (no saved_model.pb here or in a version "
                         "folder)")
    return versions[-1]


def metadata_beside(path: str | Path) -> dict:
    """The metadata JSON `mammo-keras export` wrote beside an artefact ({} when there is none).

    Raises:
        UserError: it records a content hash ("artefact_sha256") the artefact does not have.
    """
    from mammo_keras.export.publish import beside_path, check_belongs

    beside = beside_path(path)
    if not beside.is_file():
        return {}
    return check_belongs(path, json.loads(beside.read_text()), str(beside))


def artefact_metadata(path: str | Path) -> dict:
    """The export metadata of a SavedModel version folder or a `.tflite` file: the copy
    inside the artefact, else the JSON beside it, else {}."""
    from mammo_keras.export.publish import beside_path
    from mammo_keras.export.savedmodel import read_savedmodel_metadata
    from mammo_keras.export.tflite import read_tflite_metadata

    path = Path(path)
    inside = read_savedmodel_metadata(path) if path.is_dir() else read_tflite_metadata(path)
    beside = metadata_beside(path)
    if inside is None:
        return beside
    for key in ("class_names", "task", "image_size", "preprocessing"):
        if key in beside and key in inside and beside[key] != inside[key]:
            raise UserError(f"{beside_path(path)}: its {key} {beside[key]!r} disagree with the "
                            f"copy inside {path.name} ({inside[key]!r}); one was edited: "
                            "export the model again")
    return inside


def _check_graph_class_names(serve, size: int, description: ModelDescription,
                             version: Path) -> None:
    """A UserError when the class names the SavedModel's graph returns are not the ones its
    metadata gives: the graph answers with its own, so a reordered metadata file would
    relabel every prediction."""
    import tensorflow as tf

    if description.class_names is None:
        return
    graph = [name.decode() for name in serve(images=tf.zeros((1, size, size, 1)))[
        "class_names"].numpy().tolist()]
    if graph != list(description.class_names):
        raise UserError(f"{version}: the metadata's class names {list(description.class_names)} "
                        f"are not the graph's own {graph}; the metadata was edited: export the "
                        "model again")


def load_predictor(path: str | Path, num_threads: int | None = None) -> Predictor:
    """Open a `.keras` file, a SavedModel (version folder or TF Serving base) or a `.tflite`.

    `num_threads`: CPU threads of a TFLite interpreter (None: every core).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if path.is_dir():
        import tensorflow as tf

        version = savedmodel_version(path)
        description = description_from_metadata(artefact_metadata(version))  # checked first
        serve = tf.saved_model.load(str(version)).signatures["serve_preprocessed"]
        size = int(serve.structured_input_signature[1]["images"].shape[1])

        # every output of the graph but the class names, prediction and crop geometry
        served = [name for name in serve.structured_outputs if name not in RESERVED]

        def run(images: np.ndarray) -> dict[str, np.ndarray]:
            outputs = serve(images=tf.constant(images))
            return {"probabilities": outputs["probabilities"].numpy(),
                    **{name: outputs[name].numpy()[..., None] for name in served}}

        classes = int(serve.structured_outputs["probabilities"].shape[-1])
        _check_graph_class_names(serve, size, description, version)
        return Predictor(str(path), "savedmodel", size, classes, run, description)
    if path.suffix.lower() == ".tflite":
        from mammo_keras.export.tflite import TFLiteRunner

        description = description_from_metadata(artefact_metadata(path))
        runner = TFLiteRunner(path, num_threads)
        return Predictor(str(path), "tflite", runner.image_size, runner.num_classes,
                         runner.outputs, description)
    if path.suffix.lower() == ".keras":
        return keras_predictor(load_model(path), str(path))
    raise UserError(f"{path}: not a model (expected a .keras file, a SavedModel folder or a "
                     ".tflite file)")
