"""Linear probes: a frozen encoder's features computed once, then only a linear head trained.

`training.scenario` chooses how a run learns:

- `fine_tune` (the default): every weight trains on the images (`trainer.train`).
- `linear_probe`: the model's layer `training.probe_layer` (default its "embedding")
  is the encoder's output; its features for the training and validation images are
  computed once (no augmentation), cached, and a Dense softmax head is fitted to them
  with the training section's recipe (AdamW with `learning_rate` and `weight_decay`,
  `label_smoothing`, `schedule`, `patience`, `batch_size`, `epochs`, class balance),
  as Molina-Roman 2025 probed BiomedCLIP.
- `logistic_probe`: scikit-learn's multinomial logistic regression on the standardised
  features of the training and validation images together, its C chosen by
  patient-grouped cross-validation: the fast, solver-exact reference.

Either way the run's `model.keras` is encoder + head, an image -> probabilities model
that evaluate, predict, explain, export and the dashboard take like any other.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from mammo_keras.atomic import write_csv_atomically, write_json_atomically
from mammo_keras.data import DataReport, load_dataset
from mammo_keras.data.seen import seen_keys, view_counts
from mammo_keras.errors import UserError
from mammo_keras.training.checkpoints import TrainingState

SCENARIOS = ("fine_tune", "linear_probe", "logistic_probe")
DEFAULT_PROBE_LAYER = "embedding"
LOGISTIC_C_GRID = np.logspace(-4, 4, 17)  # the C values cross-validation chooses from


def encoder_of(model: keras.Model, layer: str | None) -> keras.Model:
    """The part of `model` from its input to layer `layer`'s output (default "embedding"):
    (N, S, S, 1) images in [0, 1] -> (N, D) features."""
    name = layer or DEFAULT_PROBE_LAYER
    try:
        output = model.get_layer(name).output
    except ValueError:
        raise UserError(f"training.probe_layer: model {model.name!r} has no layer {name!r}; "
                        "name the layer whose output the probe reads") from None
    if len(output.shape) != 2:
        raise UserError(f"training.probe_layer: layer {name!r} gives shape {tuple(output.shape)}"
                        "; a linear probe reads a (batch, features) output")
    return keras.Model(model.input, output, name=f"{model.name}_encoder")


def encoder_fingerprint(encoder: keras.Model) -> str:
    """A digest of the encoder's architecture and weights: equal digests, equal features."""
    digest = hashlib.sha256(encoder.to_json().encode())
    for weights in encoder.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]


def embed(encoder: keras.Model, records: Sequence, image_size: int, batch_size: int,
          report: DataReport, cache: Path | None = None, **options
          ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (N, D) float32, class indices (N,) int64, paths) of the readable `records`,
    in order, without augmentation; read from / written to `cache` (.npz) when given."""
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            return saved["features"], saved["labels"], [str(p) for p in saved["paths"]]
    features, labels = [], []
    for images, targets in load_dataset(records, image_size=image_size, batch_size=batch_size,
                                        report=report, **options):
        features.append(keras.ops.convert_to_numpy(encoder(images, training=False)))
        labels.append(np.asarray(targets).astype(np.int64))
    features = np.concatenate(features).astype(np.float32)
    labels = np.concatenate(labels)
    paths = [record.path for record in report.kept(records)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.stem + ".partial.npz")
        np.savez(partial, features=features, labels=labels, paths=np.asarray(paths))
        partial.replace(cache)  # a cache file is whole or absent
    return features, labels, paths


def probe_model(encoder: keras.Model, kernel: np.ndarray, bias: np.ndarray,
                name: str) -> keras.Model:
    """encoder -> Dense "logits" (kernel (D, K), bias (K,)) -> Softmax "predictions"."""
    logits = keras.layers.Dense(kernel.shape[1], dtype="float32", name="logits")(encoder.output)
    probabilities = keras.layers.Softmax(name="predictions")(logits)
    model = keras.Model(encoder.input, probabilities, name=name)
    model.get_layer("logits").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def fit_linear_head(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                    num_classes: int, training: dict, class_weights: list[float] | None,
                    direction: str = "min") -> tuple[np.ndarray, np.ndarray, list[dict], int]:
    """A Dense softmax head fitted with Keras on (features, labels) arrays.

    `direction`: "min" or "max", which way `training.monitor` improves (the task's
    `metric_direction`). Returns (kernel (D, K), bias (K,), one history row per epoch, the best epoch): the
    weights of the epoch with the best `training.monitor` (early stopping after
    `training.patience` epochs without gain, when above 0).
    """
    from mammo_keras.training.optimization import learning_rate_schedule

    features, labels = train
    head = keras.Sequential([keras.Input((features.shape[1],)),
                             keras.layers.Dense(num_classes, activation="softmax",
                                                dtype="float32", name="logits")])
    steps = int(np.ceil(len(features) / training["batch_size"]))
    plateau = training["schedule"] == "plateau"
    rate = float(training["learning_rate"]) if plateau else learning_rate_schedule(training,
                                                                                     steps)
    head.compile(optimizer=keras.optimizers.AdamW(rate,
                                                  weight_decay=float(training["weight_decay"])),
                 loss=keras.losses.CategoricalCrossentropy(
                     label_smoothing=float(training["label_smoothing"])),
                 metrics=[keras.metrics.CategoricalCrossentropy(name="cross_entropy"),
                          keras.metrics.CategoricalAccuracy(name="accuracy")])
    monitor = training["monitor"]
    callbacks = [keras.callbacks.EarlyStopping(
        monitor, patience=training["patience"] or training["epochs"], mode=direction,
        restore_best_weights=True)]
    if plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor, factor=float(training["plateau_factor"]),
            patience=training["plateau_patience"], mode=direction, min_delta=0.0))
    onehot = np.eye(num_classes, dtype=np.float32)
    history = head.fit(features, onehot[labels], batch_size=training["batch_size"],
                       epochs=training["epochs"], validation_data=(val[0], onehot[val[1]]),
                       class_weight=dict(enumerate(class_weights)) if class_weights else None,
                       shuffle=True, callbacks=callbacks, verbose=0).history
    if monitor not in history:
        raise UserError(f"training.monitor {monitor!r} is not logged by a linear probe; choose "
                        f"one of {sorted(history)}")
    rows = [{"epoch": epoch + 1, **{key: float(values[epoch]) for key, values in history.items()}}
            for epoch in range(len(history["loss"]))]
    values = history[monitor]
    best = int(np.argmin(values) if direction == "min" else np.argmax(values)) + 1
    kernel, bias = head.get_layer("logits").get_weights()
    return kernel, bias, rows, best


def fit_logistic_head(features: np.ndarray, labels: np.ndarray, groups: Sequence,
                      num_classes: int, class_weights: list[float] | None, seed: int,
                      folds: int = 5) -> tuple[np.ndarray, np.ndarray, dict]:
    """Multinomial logistic regression on standardised features, C by patient-grouped
    `folds`-fold cross-validation (log-loss), folded back into one Dense layer.

    Returns (kernel (D, K), bias (K,), {"C": chosen, "cv_folds": used}) such that
    softmax(features @ kernel + bias) is the regression's predict_proba.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import GroupKFold

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    standardised = (features - mean) / scale
    weight = dict(enumerate(class_weights)) if class_weights else None
    folds = min(folds, len(set(groups)))
    if folds >= 2:
        splits = list(GroupKFold(n_splits=folds).split(standardised, labels, groups))
        # scikit-learn >= 1.8 asks for these to be explicit (ridge penalty, C_ as one number)
        explicit = {key: value for key, value in {"l1_ratios": (0.0,),
                                                  "use_legacy_attributes": False}.items()
                    if key in inspect.signature(LogisticRegressionCV).parameters}
        search = LogisticRegressionCV(Cs=LOGISTIC_C_GRID, cv=splits, scoring="neg_log_loss",
                                      class_weight=weight, max_iter=5000, random_state=seed,
                                      **explicit)
        search.fit(standardised, labels)
        chosen = float(np.atleast_1d(search.C_)[0])
    else:
        chosen = 1.0  # too few patients to cross-validate: scikit-learn's default
    regression = LogisticRegression(C=chosen, class_weight=weight, max_iter=5000,
                                    random_state=seed).fit(standardised, labels)
    coefficients = np.zeros((num_classes, features.shape[1]))
    intercepts = np.zeros(num_classes)
    if len(regression.classes_) == 2:  # one row: the logit of the second class against the first
        coefficients[regression.classes_[1]] = regression.coef_[0]
        intercepts[regression.classes_[1]] = regression.intercept_[0]
    else:
        coefficients[regression.classes_] = regression.coef_
        intercepts[regression.classes_] = regression.intercept_
        missing = sorted(set(range(num_classes)) - set(regression.classes_))
        intercepts[missing] = -1e4  # a class absent from training is never predicted
    kernel = (coefficients / scale).T
    bias = intercepts - coefficients @ (mean / scale)
    return kernel, bias, {"C": chosen, "cv_folds": folds if folds >= 2 else 0}


def run_probe(config: dict, out: Path, state: TrainingState, task, subsets: dict,
              names: tuple, options: dict, report: DataReport, cache_dir: Path) -> dict:
    """Train the probe `config["training"]["scenario"]` names and evaluate it like a
    fine-tuned run (same run folder, done.json, report); returns the done.json summary."""
    from mammo_keras.atomic import save_model_atomically
    from mammo_keras.training.config import training_stages
    from mammo_keras.training.optimization import class_weights
    from mammo_keras.training.run_end import describe_for_run, finish_run

    training = config["training"]
    stages = training_stages(config)
    if len(stages) > 1:
        raise UserError("training.stages: a linear probe trains at one input size")
    size = stages[0]["image_size"]
    model = task.build_model(names, size)
    encoder = encoder_of(model, training["probe_layer"])
    digest = encoder_fingerprint(encoder)
    batch = training["batch_size"] // training["gradient_accumulation"]
    started = time.monotonic()
    arrays = {}
    for subset in ("train", "val"):
        # the encoder, the images and how they are prepared name the cache
        key = hashlib.sha256("\n".join([digest, str(size), repr(sorted(options.items())),
                                         *(record.path for record in subsets[subset])])
                             .encode()).hexdigest()[:16]
        cache = cache_dir / f"{subset}-{size}-{key}.npz"
        arrays[subset] = embed(encoder, subsets[subset], size, batch, report, cache, **options)
    weights = class_weights(arrays["train"][1], names) if training["class_balance"] != "none" \
        else None
    if training["scenario"] == "logistic_probe":
        features = np.concatenate([arrays["train"][0], arrays["val"][0]])
        labels = np.concatenate([arrays["train"][1], arrays["val"][1]])
        patients = {record.path: record.patient_id or record.path
                    for subset in ("train", "val") for record in subsets[subset]}
        groups = [patients[path] for subset in ("train", "val") for path in arrays[subset][2]]
        kernel, bias, fitted = fit_logistic_head(features, labels, groups, len(names), weights,
                                                 training["seed"])
    else:
        kernel, bias, rows, best = fit_linear_head(arrays["train"][:2], arrays["val"][:2],
                                                   len(names), training, weights,
                                                   task.metric_direction(training["monitor"]))
        state.history, state.best_epoch = rows, best
        state.best_value = rows[best - 1][training["monitor"]]
        state.stopped_early = len(rows) < training["epochs"]
        fitted = {"epochs": len(rows), "best_epoch": best}
        write_csv_atomically(out / "history.csv", state.history)
    state.epoch = len(state.history)
    state.train_seconds = time.monotonic() - started
    write_json_atomically(out / "probe.json", {
        "scenario": training["scenario"], "layer": training["probe_layer"] or DEFAULT_PROBE_LAYER,
        "features": int(kernel.shape[0]), "encoder_fingerprint": digest,
        "images": {subset: len(arrays[subset][2]) for subset in arrays},
        "seconds": round(state.train_seconds, 2), **fitted})
    probe = probe_model(encoder, kernel, bias, name=f"{model.name}_{training['scenario']}")
    save_model_atomically(describe_for_run(
        probe, task, names, options, size, report.shape_summary(subsets["train"]),
        seen=seen_keys([*subsets["train"], *subsets["val"]]),
        views=view_counts(subsets["train"]),
        builder={"name": "probe", "arguments": {"encoder": model.name,
                                                "layer": training["probe_layer"] or
                                                DEFAULT_PROBE_LAYER,
                                                "scenario": training["scenario"]}}),
        out / "model.keras")
    return finish_run(config, out, state, subsets, names, task, report)
