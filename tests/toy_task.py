"""A toy two-output task (lesion mask + class), defined outside the package the way a user's
study would be: a builder and a `Task` subclass named in a YAML config, nothing registered."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras

from mammo_keras.evaluation import evaluate_model
from mammo_keras.tasks import Task


def build(num_classes: int, input_shape: tuple, width: int = 8) -> keras.Model:
    """image (S, S, 1) -> {"label": (N, K) softmax, "mask": (N, S, S, 1) sigmoid}."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    mask = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="class_logits")(pooled)
    label = keras.layers.Softmax(name="label")(logits)
    return keras.Model(inputs, {"label": label, "mask": mask})


class ToyMaskTask(Task):
    """Malignancy class and lesion mask from one record, one loss each."""

    name = "toy_mask"
    target_names = ("label", "mask")

    def losses(self, class_weights):
        return {"label": keras.losses.SparseCategoricalCrossentropy(),
                "mask": keras.losses.BinaryCrossentropy()}

    def metrics(self):
        return {"label": ["accuracy"]}

    def evaluate(self, model: keras.Model, records: Sequence, out: Path,
                 class_names: Sequence[str], batch_size: int, resamples: int) -> dict:
        return evaluate_model(model, records, out, batch_size=batch_size,
                              resamples=resamples, **self.dataset_options(class_names))
