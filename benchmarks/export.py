"""Exported formats against the Keras model: file size, single-image latency, batch throughput.

For each backbone (gagm_se head, untrained weights: speed does not depend on them) it
exports a SavedModel and TFLite (float32, dynamic, float16, int8) with
`mammo_keras.export.export_model`, then times, in the same run and on the same
preprocessed images:
  - the Keras model (`model(x, training=False)` in a tf.function, as serving would);
  - the SavedModel's `serve_preprocessed` signature;
  - each .tflite through the TFLite interpreter (2 threads).
Headline numbers are ratios to the Keras model; medians of `--repeats` runs.

    python benchmarks/export.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mammo_keras.export import export_model, load_predictor
from mammo_keras.models import build_classifier
from mammo_keras.provenance import provenance


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up (tracing, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
        else path.stat().st_size


def bench_backbone(backbone: str, size: int, batch: int, repeats: int, work: Path) -> list[dict]:
    keras.utils.set_random_seed(0)
    model = build_classifier(backbone, "gagm_se", 3, (size, size, 1))
    path = work / f"{backbone}.keras"
    model.save(path)
    out = work / backbone
    parity = {}
    for fmt, quantize in (("all", "none"), ("tflite", "dynamic"), ("tflite", "float16"),
                          ("tflite", "int8")):
        result = export_model(path, out, fmt, quantize, samples=16, enforce_parity=False)
        parity.update({Path(artefact).name: meta["parity"] for artefact, meta in result.items()})
    images = np.random.default_rng(0).random((batch, size, size, 1), dtype=np.float32)
    serve = tf.function(lambda x: model(x, training=False))
    candidates = {"keras": (path, lambda x: serve(x).numpy()),
                  "savedmodel": (out / "savedmodel" / "1", load_predictor(out / "savedmodel"))}
    for name in ("model", "model_dynamic", "model_float16", "model_int8"):
        label = "tflite" + name[len("model"):].replace("_", ":")
        candidates[label] = (out / f"{name}.tflite", load_predictor(out / f"{name}.tflite"))
    rows = []
    for label, (artefact, run) in candidates.items():
        latency = median_seconds(lambda: run(images[:1]), repeats)
        batch_time = median_seconds(lambda: run(images), repeats)
        check = parity.get(Path(artefact).name, {})
        rows.append({"model": backbone, "format": label, "image_size": size,
                     "batch_size": batch, "size_mb": folder_size(artefact) / 1e6,
                     "latency_ms": 1000 * latency, "img_per_s": batch / batch_time,
                     "parity_passed": check.get("passed"),
                     "top1_agreement": check.get("top1_agreement")})
    reference = rows[0]
    for row in rows:
        row["latency_vs_keras"] = row["latency_ms"] / reference["latency_ms"]
        row["throughput_vs_keras"] = row["img_per_s"] / reference["img_per_s"]
        row["size_vs_keras"] = row["size_mb"] / reference["size_mb"]
    return rows


def _parity_text(row: dict) -> str:
    if row["parity_passed"] is None:
        return "reference"
    agreement = row["top1_agreement"]
    text = "passed" if row["parity_passed"] else "FAILED"
    return text + (f" (top-1 {agreement:.2f})" if agreement is not None else "")


def markdown(rows: list[dict], origin: dict, args) -> str:
    lines = ["# Export formats vs the Keras model", "",
             f"gagm_se head, {args.image_size} px input, batch {args.batch_size} for throughput, "
             f"median of {args.repeats} runs; ratios are to the Keras model of the same row "
             "group (latency: lower is better; throughput: higher is better). The models are "
             "untrained (speed does not depend on the weights); their near-uniform outputs "
             "make the top-1 parity of quantised models fragile, so parity is recorded here, "
             "not enforced.", "",
             "| model | format | size MB | size / Keras | latency ms (1 image) | latency / Keras "
             "| img/s (batch) | throughput / Keras | parity at export |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['format']} | {row['size_mb']:.1f} | "
                     f"{row['size_vs_keras']:.2f} | {row['latency_ms']:.1f} | "
                     f"{row['latency_vs_keras']:.2f} | {row['img_per_s']:.1f} | "
                     f"{row['throughput_vs_keras']:.2f} | {_parity_text(row)} |")
    lines += ["", f"`{origin['command']}` at commit {origin['commit']}; {origin['hardware']}; "
                  f"{date.today().isoformat()}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="baseline_cnn,convnext_tiny,inception_v3")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for backbone in args.backbones.split(","):
            rows += bench_backbone(backbone, args.image_size, args.batch_size, args.repeats,
                                   Path(work))
            print(json.dumps(rows[-6:], indent=1), flush=True)
    origin = provenance()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps({**origin, "rows": rows}, indent=2) + "\n")
    text = markdown(rows, origin, args)
    (out / "export.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
