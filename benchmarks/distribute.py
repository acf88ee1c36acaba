"""Scale-out overhead: training images/s with one process vs two workers on this machine, and
the time one gradient all-reduce takes between the workers.

Both arms run the trainer (`mammo_keras.training.train`) on the same phantoms and config
(baseline CNN with GAGM + SEVector, 128 px, global batch 16, FSL on): "one process" with
`training.distribute: none`, "two workers" as two processes on 127.0.0.1 with `TF_CONFIG` and
`multi_worker` (8 images a step each). Images/s comes from the training batches of every epoch
after the first (the first traces the step and fills the caches). The all-reduce time is the
median of 20 SUM all-reduces, between the two workers, of a float32 vector as long as the
model's trainable parameters: the traffic each step adds.

The honest reading: this machine has 2 cores, which one process already uses, so two workers
split the same cores and cannot be faster; what the ratio shows is the price of distribution
(two interpreters, collectives over loopback, half-size batches per replica). On N machines
or GPUs the compute splits N ways and the all-reduce is the part that stays.

    python benchmarks/distribute.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mammo_keras.devtools.local_ports import free_ports

GLOBAL_BATCH = 16
IMAGE_SIZE = 128
EPOCHS = 4
REDUCES = 20


def run_config(distribute: str) -> dict:
    return {"name": f"distribute-{distribute}",
            "data": {"synthetic": {"count": 128, "size": 512}, "image_size": IMAGE_SIZE},
            "training": {"epochs": EPOCHS, "batch_size": GLOBAL_BATCH, "tensorboard": False,
                         "fsl_lambda": 0.05, "distribute": distribute, "augment": False},
            "evaluation": {"resamples": 0}}


def batch_timer():
    """A Keras callback that records (epoch, seconds) of every training batch in `.batches`."""
    import keras

    class BatchTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch, self.started, self.batches = 0, 0.0, []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append((self.epoch, time.perf_counter() - self.started))

    return BatchTimer()


def all_reduce_seconds(strategy, size: int) -> float:
    """Median seconds of one SUM all-reduce of `size` float32 values across the replicas."""
    import tensorflow as tf

    vector = tf.ones([size], tf.float32)

    @tf.function
    def reduce_once():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, vector))

    for _ in range(3):
        reduce_once()
    seconds = []
    for _ in range(REDUCES):
        started = time.perf_counter()
        result = reduce_once()
        float(strategy.experimental_local_results(result)[0][0])  # wait for the values
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def role_main(args) -> None:
    """One training process: trains, times its batches, writes a JSON line to --report."""
    from mammo_keras.models import build_classifier
    from mammo_keras.training import train
    from mammo_keras.training.distribute import make_cluster

    distribute = "none" if args.role == "single" else "multi_worker"
    timer = batch_timer()
    train(run_config(distribute), args.run, data_dir=args.data, verbose=0, callbacks=[timer])
    steady = [seconds for epoch, seconds in timer.batches if epoch >= 1]
    report = {"role": args.role, "index": args.index, "steps": len(steady),
              "median_step_s": statistics.median(steady),
              "images_per_s": GLOBAL_BATCH * len(steady) / sum(steady)}
    if args.role == "worker":
        model = build_classifier("baseline_cnn", num_classes=3,
                                 input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1))
        parameters = sum(math.prod(weight.shape) for weight in model.trainable_weights)
        report["parameters"] = parameters
        report["all_reduce_s"] = all_reduce_seconds(make_cluster("multi_worker").strategy,
                                                    parameters)
    Path(args.report).write_text(json.dumps(report))


def launch(role: str, index: int, work: Path, ports: list[int] | None) -> subprocess.Popen:
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if ports:
        environment["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}})
    run = work / ("single" if role == "single" else "pair")
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--index", str(index), "--run", str(run),
         "--data", str(work / "data"), "--report", str(work / f"{role}-{index}.json")],
        env=environment, stdout=open(work / f"{role}-{index}.log", "w"),
        stderr=subprocess.STDOUT)


def measure(work: Path) -> dict:
    single = launch("single", 0, work, None)
    if single.wait() != 0:
        raise SystemExit((work / "single-0.log").read_text()[-3000:])
    ports = free_ports(2)
    workers = [launch("worker", index, work, ports) for index in range(2)]
    for index, process in enumerate(workers):
        if process.wait() != 0:
            raise SystemExit((work / f"worker-{index}.log").read_text()[-3000:])
    one = json.loads((work / "single-0.json").read_text())
    pair = [json.loads((work / f"worker-{index}.json").read_text()) for index in range(2)]
    return {"one_process": one, "two_workers": pair[0], "worker_1": pair[1]}


def write(result: dict, out: Path) -> None:
    from mammo_keras.provenance import provenance

    one, two = result["one_process"], result["two_workers"]
    ratio = two["images_per_s"] / one["images_per_s"]
    step_share = two["all_reduce_s"] / two["median_step_s"]
    record = {**result, "ratio_two_to_one": ratio, "all_reduce_share_of_step": step_share,
              "config": run_config("multi_worker"), "provenance": provenance(),
              "machine": provenance()["hardware"],
              "command": "python benchmarks/distribute.py --out benchmarks/results"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "distribute.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Scale-out on tf.distribute: one process vs two workers (this machine)", "",
        f"`{record['command']}` at commit {record['provenance']['commit']}, "
        f"{record['machine']}; baseline CNN (GAGM + SEVector, FSL), {IMAGE_SIZE} px, global "
        f"batch {GLOBAL_BATCH}, {EPOCHS} epochs of 128 phantoms; times from the training "
        "batches after the first epoch.", "",
        "| arm | images/s | median step (s) | steps timed |", "|---|---|---|---|",
        f"| one process (distribute: none) | {one['images_per_s']:.1f} | "
        f"{one['median_step_s']:.3f} | {one['steps']} |",
        f"| two workers (multi_worker, 127.0.0.1) | {two['images_per_s']:.1f} | "
        f"{two['median_step_s']:.3f} | {two['steps']} |", "",
        f"Two workers / one process: **{ratio:.2f}x** the images/s.", "",
        f"One all-reduce of the gradients ({two['parameters']:,} float32 values, "
        f"{two['parameters'] * 4 / 2**20:.1f} MiB) between the two workers: "
        f"**{two['all_reduce_s'] * 1000:.1f} ms** (median of {REDUCES}), "
        f"{step_share:.0%} of a two-worker step.", "",
        "Reading: the two workers share the 2 cores one process already uses, so no speed-up "
        "can show here; the ratio is the overhead of distribution (two interpreters, "
        "collectives over loopback, 8-image batches per replica). With one worker per "
        "machine or GPU the compute splits and the all-reduce is the cost that remains.", ""]
    (out / "distribute.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--role", choices=("single", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="distribute-bench-") as work:
        write(measure(Path(work)), Path(args.out))


if __name__ == "__main__":
    main()
