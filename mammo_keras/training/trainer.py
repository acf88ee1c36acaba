"""`train`: one resolved config -> a trained classifier, checkpoints, logs and an evaluation report.

The run folder, once finished:

    config.yaml      the resolved config          splits.csv    patient-grouped subsets
    model.keras      the classifier of the best epoch (the best checkpoint, written
                     atomically whenever the monitored value improves)
    history.csv      one row per epoch            training.png  loss / accuracy curves
    tensorboard/     TensorBoard logs              metrics.json, report.md, *.png: evaluation
    done.json        summary with command, commit and hardware (written last)

While it runs, `checkpoints/` holds the last epoch's trainer (weights, optimizer,
FSL centres) and `state.json`; `train(..., resume=True)` continues from there and,
with `training.deterministic`, gives the same weights as an uninterrupted run:
each epoch's shuffling, augmentation and dropout are seeded by (seed, epoch), not
by how many epochs this process has run. The checkpoints and the image cache are
deleted when the run finishes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from mammo_keras.atomic import save_model_atomically, write_json_atomically
from mammo_keras.data import DataReport, load_dataset, write_split_manifest
from mammo_keras.data.image_store import ImageStore
from mammo_keras.data.seen import seen_keys, view_counts
from mammo_keras.models.traversal import all_layers
from mammo_keras.tasks import get_task
from mammo_keras.training.checkpoints import Checkpointer, TrainingState
from mammo_keras.training.config import (ConfigError, config_hash, resolve_config,
                                         training_stages, write_config)
from mammo_keras.training.data_setup import (dataset_records, resumed_subsets,
                                               split_subsets)
from mammo_keras.training.distribute import (Cluster, agreed_minimum, distributed_dataset,
                                             make_cluster, shard_records, summed_over_workers,
                                             synchronized_batch_norm)
from mammo_keras.training.gradient_closures import released_gradient_closures
from mammo_keras.training.keras_distribute_fixes import keras_distribute_fixes
from mammo_keras.training.optimization import plateau_step
from mammo_keras.training.selection import SelectionPolicy
from mammo_keras.training.stages import StageManager
from mammo_keras.provenance import commit_at_start
from mammo_keras.training.run_end import describe_for_run, finish_run, read_done
from mammo_keras.training.run_folder import owned_run_folder

EPOCH_SEED_STRIDE = 7919  # epoch e of a run with seed s draws its randomness from s + 7919 e


class EpochProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs of the whole run ("Epoch 7/12")."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.epochs = self.total_epochs


def reseed_layers(model: keras.Model, seed: int, epoch: int) -> None:
    """Set every layer's random state (dropout) to a function of (seed, epoch, layer position).

    Keras' Dropout takes only an integer seed, and no public call reseeds a built layer,
    so this finds each layer's `keras.random.SeedGenerator` among its attributes and
    assigns its public `state`.
    """
    position = 0
    for layer in all_layers(model):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                state = np.array([seed * 1009 + position, epoch << 20])
                value.state.assign(state.astype(keras.backend.standardize_dtype(
                    value.state.dtype)))
                position += 1


@contextlib.contextmanager
def _precision(choice: str):
    """Set the global dtype policy for the run: mixed_float16 on a GPU when "auto"."""
    previous = keras.config.dtype_policy()
    if choice == "auto":
        choice = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.config.set_dtype_policy(choice)
    try:
        yield choice
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def _determinism(enabled: bool):
    """TensorFlow's deterministic op mode for the run (it is process-wide, so undone after)."""
    from mammo_keras.compat import disable_op_determinism, op_determinism_enabled

    switch = enabled and not op_determinism_enabled()
    if switch:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if switch:
            disable_op_determinism()


def _fill_cache(records, path: Path, size: int, batch_size: int, report: DataReport,
                options: dict) -> np.ndarray:
    """Decode and preprocess `records` once into an image store at `path` (kept while it holds
    these records); the class index of each image it holds (for class weights and step
    counts), read from the store's index, not from its images. The images' original sizes
    go to `path.shapes.json` (`cached_shapes`) when the store is first filled."""
    load_dataset(records, image_size=size, batch_size=batch_size, cache=str(path),
                 report=report, **options)  # fills the store unless it holds them already
    if not _shapes_file(path).exists():
        write_json_atomically(_shapes_file(path), report.shape_summary(records))
    return np.asarray(ImageStore(path).reader().targets, np.int64)


def _shapes_file(cache: Path) -> Path:
    return cache.with_name(cache.name + ".shapes.json")


def cached_shapes(cache: Path) -> dict | None:
    """The original image sizes of a cache `_fill_cache` wrote (`DataReport.shape_summary`)."""
    try:
        return json.loads(_shapes_file(cache).read_text())
    except (OSError, ValueError):
        return None


def train(config: dict, out: str | Path, *, resume: bool = False,
          data_dir: str | Path | None = None, verbose: int | str = "auto",
          callbacks: Sequence[keras.callbacks.Callback] = (),
          progress: Callable[[int, int], None] | None = None) -> dict:
    """Train the classifier `config` describes and evaluate it; returns the done.json summary.

    Args:
        config: a config dict (resolved against the defaults here).
        out: the run folder (see the module docstring for what it holds).
        resume: continue an interrupted run in `out`. Without it, an unfinished
            run in `out` is an error; a finished run of the same config is
            returned as it is.
        data_dir: where generated phantoms go (default `out/data`).
        verbose: Keras' fit verbosity; "auto": a progress bar on a terminal,
            one line per epoch otherwise.
        callbacks: extra Keras callbacks for `fit`.
        progress: called as progress(done, total) while phantoms are written.
    """
    config = resolve_config(config)
    commit_at_start()  # the code this run starts with, whatever is committed while it runs
    training = config["training"]
    cluster = make_cluster(training["distribute"])
    out = Path(out)
    digest = config_hash(config)
    with owned_run_folder(cluster.folder(out), "run", digest):
        done = read_done(out)
        if done is not None:
            if done["config_hash"] != digest:
                raise ConfigError(f"{out} holds a finished run of another config; choose "
                                  "another output folder")
            return done
        checkpoints = cluster.folder(out) / "checkpoints"
        state = TrainingState.read(checkpoints)
        if state is not None and not resume:
            raise ConfigError(f"{out} holds an unfinished run (epoch {state.epoch} of "
                              f"{config['training']['epochs']}); pass --resume to continue it "
                              "or choose another output folder")
        if state is not None and state.config_hash != digest:
            raise ConfigError(f"{out}: the config differs from the one of its checkpoint; "
                              "resume with the same config or choose another output folder")
        if cluster.kind == "multi_worker":  # resume from the last epoch every worker finished
            with cluster.peers_explained():
                agreed = agreed_minimum(cluster, state.epoch if state else 0)
            state = TrainingState.read(checkpoints, agreed) if agreed else None
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        keras.utils.set_random_seed(training["seed"])
        with _precision(training["precision"]), _determinism(training["deterministic"]), \
                cluster.peers_explained(), released_gradient_closures():
            return _run(config, out, state or TrainingState(config_hash=digest), data_dir,
                        verbose, list(callbacks), progress, cluster)


def _stage_of(stages: list[dict], epoch: int) -> int:
    """The index of the stage that trains epoch `epoch` (0-based, counted over all stages)."""
    end = 0
    for index, stage in enumerate(stages):
        end += stage["epochs"]
        if epoch < end:
            return index
    return len(stages) - 1


def _epoch_data(subsets: dict, cache: Path, size: int, batch: int, report: DataReport,
                options: dict, cluster: Cluster, task, names: tuple) -> dict:
    """This worker's training and validation records at input size `size`, decoded into its
    cache, with the class counts and image totals of every worker together."""
    def share(records):
        field = task.target_spec(names)
        keys = [str(field.value(record)) for record in records]
        return shard_records(records, keys, cluster.worker, cluster.workers) \
            if cluster.kind == "multi_worker" else list(records)

    train, val = share(subsets["train"]), share(subsets["val"])
    input_batch = cluster.input_batch(batch)
    train_cache, val_cache = cache / f"train-{size}", cache / f"val-{size}"
    targets = _fill_cache(train, train_cache, size, input_batch, report, options)
    val_targets = _fill_cache(val, val_cache, size, input_batch, report, options)
    counts = summed_over_workers(cluster, [*np.bincount(targets, minlength=len(names)),
                                           len(val_targets)])
    return {"train": train, "val": val, "train_cache": train_cache, "val_cache": val_cache,
            "input_batch": input_batch, "class_counts": counts[:-1], "val_total": int(counts[-1])}


def _train_epochs(config: dict, out: Path, state: TrainingState, verbose, callbacks: list,
                  cluster: Cluster, task, subsets: dict, names: tuple, options: dict,
                  stages: list[dict], report: DataReport) -> None:
    """Train every epoch `state` has not finished: the data of each stage built once
    (`_epoch_data`), its model from the `StageManager`, the best epoch kept by the task's
    `SelectionPolicy`, every epoch committed by the `Checkpointer`."""
    data, training = config["data"], config["training"]
    seed, accumulation = training["seed"], training["gradient_accumulation"]
    batch = training["batch_size"] // accumulation  # images per forward pass, all replicas
    cache = cluster.folder(out) / "cache"
    cache.mkdir(exist_ok=True)
    checkpointer = Checkpointer(out, cluster.folder(out), cluster, training["tensorboard"])
    selection = SelectionPolicy(training["monitor"], task.metric_direction(training["monitor"]),
                                training["patience"])
    stager = StageManager(task, training, stages, names)
    trainer = checkpointer.resume(state)
    trainer_stage = _stage_of(stages, max(state.epoch - 1, 0)) if trainer is not None else None
    callbacks = [EpochProgressBar(sum(stage["epochs"] for stage in stages))] + callbacks
    sampling = training["class_balance"] == "sampling"
    crop = {"train_crop": data["train_crop"],
            "crop_positive_rate": data["crop_positive_rate"]} if data["train_crop"] else {}
    ends = list(itertools.accumulate(stage["epochs"] for stage in stages))
    seen = seen_keys([*subsets["train"], *subsets["val"]])  # kept in the model it saves
    views = view_counts(subsets["train"])
    part, part_stage = None, None
    while state.epoch < ends[-1]:
        epoch = state.epoch
        index = _stage_of(stages, epoch)
        size = stages[index]["image_size"]
        if part_stage != index:  # each stage's data once: its size, its cache, its counts
            part = _epoch_data(subsets, cache, size, batch, report, options, cluster, task, names)
            part_stage = index
        updates_per_epoch = math.ceil(int(part["class_counts"].sum()) / training["batch_size"])
        if trainer_stage != index:
            trainer = stager.enter(index, trainer, part["class_counts"], updates_per_epoch,
                                   state)
            trainer_stage = index
        reseed_layers(trainer, seed, epoch)
        task.start_epoch(trainer, epoch)
        train_data = distributed_dataset(cluster, lambda: load_dataset(
            part["train"], image_size=size, batch_size=part["input_batch"], training=True,
            balanced=sampling, augment=training["augment"], cache=str(part["train_cache"]),
            seed=seed + EPOCH_SEED_STRIDE * epoch, deterministic=training["deterministic"],
            **options, **crop).repeat())
        val = distributed_dataset(cluster, lambda: load_dataset(
            part["val"], image_size=size, batch_size=part["input_batch"],
            cache=str(part["val_cache"]), **options).repeat())
        started = time.monotonic()
        with synchronized_batch_norm(trainer, cluster):
            history = trainer.fit(train_data, validation_data=val,
                                  initial_epoch=epoch, epochs=epoch + 1,
                                  steps_per_epoch=updates_per_epoch * accumulation,
                                  validation_steps=math.ceil(part["val_total"] / batch),
                                  shuffle=False, callbacks=callbacks, verbose=verbose).history
        seconds = time.monotonic() - started
        logs = {key: float(values[-1]) for key, values in history.items()}
        value = selection.value(logs)  # reduced over the replicas: every worker decides alike
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(trainer.optimizer.learning_rate))
        row = {"epoch": epoch + 1, **({"stage": index + 1, "image_size": size}
                                      if len(stages) > 1 else {}), **logs}
        state.history.append({**row, "seconds": round(seconds, 2)})
        state.train_seconds += seconds
        state.epoch = epoch + 1
        if selection.observe(state, value, epoch + 1):
            checkpointer.save_best(describe_for_run(
                task.trained_model(trainer), task, names, options, size,
                cached_shapes(part["train_cache"]), seen=seen, views=views))
        if training["schedule"] == "plateau":
            plateau_step(state, trainer.optimizer, training, improved=state.best_epoch == epoch + 1)
        if selection.stage_is_over(state):
            state.stopped_early = True  # the stage ends here; a later stage still runs
            state.epoch = ends[index]
        checkpointer.commit(state, trainer)


def _run(config: dict, out: Path, state: TrainingState, data_dir, verbose, callbacks: list,
         progress, cluster: Cluster) -> dict:
    data, training = config["data"], config["training"]
    task = get_task(config)
    with cluster.chief_first():  # the chief writes phantoms; the others then read them
        records = task.prepare_records(dataset_records(data, data_dir or out / "data",
                                                       progress))
    manifest = out / "splits.csv"
    if state.epoch and manifest.is_file():  # a resume: the split of the run's first epoch
        subsets, added = resumed_subsets(manifest, records)
    else:
        subsets, added = split_subsets(records, data, task.stratify_field), []
        if cluster.is_chief:
            write_split_manifest(manifest, subsets)
    if cluster.is_chief:
        write_config(out / "config.yaml", config)
    names = task.class_names(subsets["train"])
    options = task.dataset_options(names)
    stages = training_stages(config)
    report = DataReport(skipped=[*records.skipped, *added])  # rows / files the scan left out
    if sum(stage["epochs"] for stage in stages) == 0:  # evaluation only (a zero-shot model)
        size = stages[-1]["image_size"]
        model = describe_for_run(task.build_model(names, size), task, names, options, size)
        save_model_atomically(model, out / "model.keras")
        return finish_run(config, out, state, subsets, names, task, report)
    if training["scenario"] != "fine_tune":  # a frozen encoder and a linear head
        from mammo_keras.training.probe import run_probe

        return run_probe(config, out, state, task, subsets, names, options, report,
                         Path(data_dir or out / "data") / "embeddings")
    with cluster.strategy.scope(), \
            keras_distribute_fixes() if cluster.distributed else contextlib.nullcontext():
        _train_epochs(config, out, state, verbose, callbacks, cluster, task, subsets, names,
                      options, stages, report)
    if not cluster.is_chief:  # the chief evaluates and writes the run's files
        shutil.rmtree(cluster.folder(out) / "cache", ignore_errors=True)
        return {"worker": cluster.worker, "workers": cluster.workers,
                "epochs_run": len(state.history), "config_hash": state.config_hash}
    return finish_run(config, out, state, subsets, names, task, report,
                      distribute=cluster.description())
