"""tf.distribute for `train`: the strategy, who writes what, and each worker's share of the data.

`training.distribute` (or `mammo-keras train --distribute`) picks TensorFlow's own engine:

- "none": the default strategy (one device);
- "mirrored": `tf.distribute.MirroredStrategy` over this machine's GPUs (its CPU when it
  has none); one input pipeline, each global batch split across the replicas;
- "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy` over the machines `TF_CONFIG`
  names (each process one worker, every worker running the same command). Each worker reads
  and decodes only its shard of the images (`shard_records`), caches it in its own folder
  and feeds its replicas `batch_size / workers` images a step.

`batch_size` is the global batch in every case. The chief (the "chief" task, else worker 0)
writes the run folder (model, history, reports, phantoms); worker k keeps its cache and
checkpoints under `out/workers/worker-k/`, so a killed cluster restarted with `--resume`
continues from the last epoch every worker finished (`agreed_epoch`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from mammo_keras.errors import UserError
from mammo_keras.models.traversal import all_layers
from mammo_keras.training.config import ConfigError

STRATEGIES = ("none", "mirrored", "multi_worker")
_MULTI_WORKER: list = []  # TensorFlow allows one MultiWorkerMirroredStrategy per process


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process stands in a run: its strategy, worker index and how many workers."""

    strategy: tf.distribute.Strategy
    kind: str = "none"
    worker: int = 0
    workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.worker == 0

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def distributed(self) -> bool:
        return self.kind != "none"

    def folder(self, out: str | Path) -> Path:
        """The folder this worker writes its own files to: `out` for the chief."""
        out = Path(out)
        return out if self.is_chief else out / "workers" / f"worker-{self.worker}"

    def description(self) -> dict:
        """What trained, for done.json: {"strategy", "workers", "replicas"}."""
        return {"strategy": self.kind, "workers": self.workers, "replicas": self.replicas}

    def input_batch(self, batch: int) -> int:
        """The batch size of the dataset this worker builds for a global batch `batch`: all
        of it on one worker (a mirrored strategy splits it across the replicas), else each
        replica's share (every worker feeds its own replicas); it must divide evenly."""
        if self.kind != "multi_worker":
            return batch
        if batch % self.replicas:
            raise ConfigError(f"training.batch_size is the global batch: {batch} images a step "
                              f"must divide evenly among the {self.replicas} replicas")
        return batch // self.replicas

    @contextlib.contextmanager
    def chief_first(self):
        """The block runs on the chief first and on the other workers once it has finished
        there (for files the chief writes and the others read)."""
        if not self.is_chief:
            self.barrier()
        yield
        if self.is_chief:
            self.barrier()

    @contextlib.contextmanager
    def peers_explained(self):
        """A worker that stops (killed, preempted) makes the others' collectives fail with a
        long TensorFlow error: turned here into one line that says what to do."""
        if self.kind != "multi_worker":
            yield
            return
        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError) as error:
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            raise UserError(f"worker {self.worker}: another worker of the cluster stopped "
                            f"({first[:200]}); every finished epoch is kept: start every worker "
                            "again with --resume") from None

    def barrier(self) -> None:
        """Return once every worker has reached this point (a no-op on one worker)."""
        agreed_minimum(self, 0)


def _task_of_tf_config() -> tuple[int, int]:
    """(worker index, worker count) of `TF_CONFIG`; the chief, when named, is index 0."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError("training.distribute multi_worker needs TF_CONFIG (the cluster and this "
                          "task); see docs/distributed.md")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"TF_CONFIG is not a cluster and task description ({error})") from None
    if kind not in ("chief", "worker") or not chiefs + workers:
        raise ConfigError(f"TF_CONFIG: task type {kind!r} is not a chief or worker of the cluster")
    return (index if kind == "chief" else len(chiefs) + index), len(chiefs) + len(workers)


def make_cluster(kind: str) -> Cluster:
    """The strategy `training.distribute` names, and this process's place in it."""
    if kind not in STRATEGIES:
        raise ConfigError(f"training.distribute must be one of {list(STRATEGIES)}, got {kind!r}")
    if kind == "none":
        return Cluster(tf.distribute.get_strategy())
    if kind == "mirrored":
        return Cluster(tf.distribute.MirroredStrategy(), kind)
    worker, workers = _task_of_tf_config()
    if not _MULTI_WORKER:
        _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return Cluster(_MULTI_WORKER[0], kind, worker, workers)


def shard_records(records: Sequence, labels: Sequence[int], worker: int, workers: int) -> list:
    """Worker `worker`'s share of `records`: every `workers`-th record of each class in turn,
    so every worker sees each class in the same proportion (shares differ by at most one)."""
    order = np.argsort(np.asarray(labels), kind="stable")
    return [records[int(index)] for index in order[worker::workers]]


def _per_worker(cluster: Cluster, values: Sequence[int]) -> np.ndarray:
    """(workers, len(values)): each worker's `values`, gathered to every worker."""
    strategy, row = cluster.strategy, np.asarray(values, np.int64)[None]
    local = strategy.run(lambda: tf.constant(row))
    gathered = strategy.gather(local, axis=0).numpy()  # one row per replica
    return gathered[::len(strategy.extended.worker_devices)]


def agreed_minimum(cluster: Cluster, value: int) -> int:
    """The smallest `value` over the workers (each passes its own); `value` on one worker."""
    if cluster.kind != "multi_worker" or cluster.workers == 1:
        return value
    return int(_per_worker(cluster, [value]).min())


def summed_over_workers(cluster: Cluster, counts: Sequence[int]) -> np.ndarray:
    """The element-wise sum of every worker's `counts` (its own on one worker)."""
    if cluster.kind != "multi_worker" or cluster.workers == 1:
        return np.asarray(counts, np.int64)
    return _per_worker(cluster, counts).sum(axis=0)


def distributed_dataset(cluster: Cluster, make_dataset):
    """What `fit` takes from this worker: `make_dataset()` (a tf.data dataset of this worker's
    batches) as it is on one worker, else wrapped so that the strategy does not shard it again
    (each worker already reads only its own shard)."""
    if cluster.kind != "multi_worker":
        return make_dataset()

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return make_dataset()

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return cluster.strategy.distribute_datasets_from_function(per_worker, options)


@contextlib.contextmanager
def synchronized_batch_norm(model: keras.Model, cluster: Cluster):
    """BatchNormalization computes its statistics over the global batch while the block runs
    (with more than one replica), as one device would; restored after, so a saved model's
    config stays loadable on every backend."""
    layers = [layer for layer in all_layers(model)
              if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized] \
        if cluster.replicas > 1 else []
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = False
