"""Decode + preprocess throughput: tf.data pipeline vs a plain Python loop vs the training step.

Measures, in one run and on the same files:
  - MIAS PGM films (1024 x 1024, 8-bit, read from all-mias.tar.gz in place), if present;
  - large 16-bit DICOM mammograms (4000 x 3120, 12 bits stored), written once from phantoms;
each through `load_dataset` (parallel decode, TF preprocessing, no cache) and through a
plain loop calling the same `read_image` + `preprocess`; and the training step of the
baseline CNN (gagm_se head) at the same size and batch, to show whether input can keep up.
Headline numbers are ratios; medians of `--repeats` runs.

    python benchmarks/data_pipeline.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mammo_keras.data import load_records, preprocess, read_image
from mammo_keras.data.dicom_writer import write_dicom
from mammo_keras.data.pipeline import load_dataset
from mammo_keras.data.records import Record
from mammo_keras.data.synthetic import PhantomSpec, generate_phantom
from mammo_keras.models import build_classifier

MIAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mias" / "all-mias.tar.gz"


def median_rate(run, count: int, repeats: int) -> float:
    """Images per second, median over `repeats` timed runs (after one warm-up run)."""
    run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def pipeline_rate(records, size: int, batch: int, repeats: int) -> float:
    dataset = load_dataset(records, image_size=size, batch_size=batch, cache=False)
    return median_rate(lambda: [None for _ in dataset], len(records), repeats)


def loop_rate(records, size: int, repeats: int) -> float:
    traced = tf.function(lambda image: preprocess(image, size),
                         input_signature=[tf.TensorSpec([None, None], tf.float32)])

    def run():
        for record in records:
            traced(read_image(record.path)[0])
    return median_rate(run, len(records), repeats)


def training_rate(size: int, batch: int, repeats: int) -> float:
    model = build_classifier("baseline_cnn", "gagm_se", num_classes=3, input_shape=(size, size, 1))
    model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    steps = 4
    images = np.random.default_rng(0).uniform(size=(batch * steps, size, size, 1)).astype("float32")
    labels = np.arange(batch * steps) % 3
    return median_rate(lambda: model.fit(images, labels, batch_size=batch, epochs=1, verbose=0),
                       batch * steps, repeats)


def large_dicoms(folder: Path, count: int) -> list[Record]:
    records = []
    for index in range(count):
        path = folder / f"large_{index}.dcm"
        if not path.exists():
            image, _, _ = generate_phantom(PhantomSpec(seed=index, size=4000,
                                                       finding="malignant_mass"))
            write_dicom(path, image, bits_stored=12, laterality="L", view="CC")
        records.append(Record(path=str(path), label="malignant", density=None, patient_id=None,
                              laterality=None, view=None, source="benchmark"))
    return records


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "unknown"
    return {"command": " ".join([Path(sys.executable).name] + sys.argv), "commit": commit,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "date": time.strftime("%Y-%m-%d")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dicoms", type=int, default=16, help="large DICOM files to time")
    parser.add_argument("--out", default="benchmarks/results", help="folder for JSON + Markdown")
    args = parser.parse_args()
    rows = []
    train = training_rate(args.size, args.batch, args.repeats)
    print(f"training step (baseline_cnn gagm_se): {train:.1f} img/s", flush=True)
    sources = []
    if MIAS.exists():
        sources.append(("MIAS PGM 1024x1024 8-bit (in the archive)",
                        list(load_records("mias", root=MIAS))))
    else:
        print(f"MIAS skipped: {MIAS} not found")
    cache = Path(tempfile.gettempdir()) / "mammo_keras_benchmark_dicoms"
    cache.mkdir(exist_ok=True)
    sources.append(("DICOM 4000x3120 16-bit (12 stored)", large_dicoms(cache, args.dicoms)))
    for name, records in sources:
        piped = pipeline_rate(records, args.size, args.batch, args.repeats)
        looped = loop_rate(records, args.size, args.repeats)
        rows.append({"input": name, "images": len(records), "tf_data_img_per_s": round(piped, 1),
                     "python_loop_img_per_s": round(looped, 1),
                     "tf_data_over_loop": round(piped / looped, 2),
                     "training_img_per_s": round(train, 1),
                     "tf_data_over_training": round(piped / train, 2)})
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment(), "image_size": args.size, "batch_size": args.batch,
              "repeats": args.repeats, "rows": rows}
    (out / "data_pipeline.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Decode + preprocess throughput ({args.size} px, batch {args.batch}, median of "
             f"{args.repeats})", "",
             "| input | images | tf.data img/s | Python loop img/s | tf.data / loop | "
             "training img/s | tf.data / training |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['input']} | {r['images']} | {r['tf_data_img_per_s']} | "
              f"{r['python_loop_img_per_s']} | {r['tf_data_over_loop']} | "
              f"{r['training_img_per_s']} | {r['tf_data_over_training']} |" for r in rows]
    env = report["environment"]
    lines += ["", f"`{env['command']}` at commit {env['commit']}, {env['cores']} cores "
                  f"({env['cpu']}), TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
                  f"{env['date']}.", ""]
    (out / "data_pipeline.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
