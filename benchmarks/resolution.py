"""Training memory and speed against input resolution, for each backbone (MorphHR's question:
what does high resolution cost, and how far can one go in 24 GB).

Each row is one training step (forward, loss, gradients, AdamW) of an untrained classifier
on random images, measured in a fresh process (`mammo_keras.bench.runner.run_isolated`):
peak resident memory and images/s. Variants, all at batch 1 (and batch 4 at 512 px):

- float32: the reference, measured in the same run;
- remat: the stretches between the backbone's pyramid levels recomputed in the backward
  pass (`mammo_keras.bench.remat`: `tf.recompute_grad` per stage); Keras' own per-layer
  `keras.RematScope(mode="full")` is tried once per backbone ("keras_remat_scope"): on the
  TensorFlow backend it fails on layers called with `training=`, which the table records;
- mixed_bfloat16: Keras' mixed-precision policy with bfloat16, the half precision this CPU
  has instructions for (AVX512_BF16); on a GPU the policy is mixed_float16;
- to_resolution_4x: MorphHR's way in: the network built for a 4x smaller side behind
  `mammo_keras.morph.to_resolution`'s front (high-resolution layers, then a stride-4
  downsampling the backbone runs after), at the row's side.

A row whose memory, extrapolated linearly in pixels from the smaller rows of its series,
would pass `--limit-gb` is not run but reported as such (this machine has 24 GB and nothing
may swap). The largest side that trains in 24 GB is extrapolated the same way and marked so.

    python benchmarks/resolution.py --out benchmarks/results

Rows already in the JSON file are kept (the run resumes); `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

from mammo_keras.bench.runner import run_isolated
from mammo_keras.provenance import provenance

BACKBONES = ("baseline_cnn", "convnext_tiny", "inception_v3")
SIZES = (256, 512, 1024, 2048)
VARIANTS = {"float32": {}, "remat": {"remat": "segments"}, "mixed_bfloat16":
            {"precision": "mixed_bfloat16"}, "to_resolution_4x": {"morph_factor": 4}}
# Keras' own per-layer rematerialisation, tried once per backbone at the smallest side
KERAS_REMAT_SCOPE = {"remat": "full"}
BATCH_FOUR_SIZE = 512
MACHINE_GB = 24.0
MIN_SIDE = {"baseline_cnn": 32, "convnext_tiny": 32, "inception_v3": 75}


def plan() -> list[dict]:
    rows = []
    for backbone in BACKBONES:
        rows.append(_spec(backbone, "keras_remat_scope", KERAS_REMAT_SCOPE, SIZES[0], 1))
        for variant, options in VARIANTS.items():
            for size in SIZES:
                if variant == "to_resolution_4x" and size // 4 < MIN_SIDE[backbone]:
                    continue
                rows.append(_spec(backbone, variant, options, size, 1))
            if variant in ("float32", "remat"):
                rows.append(_spec(backbone, variant, options, BATCH_FOUR_SIZE, 4))
    return rows


def _spec(backbone: str, variant: str, options: dict, size: int, batch: int) -> dict:
    steps = 2 if size <= 512 else 1
    return {"model": backbone, "head": "gap", "mode": "train", "image_size": size,
            "batch_size": batch, "steps": steps, "repeats": 2 if size <= 1024 else 1,
            "variant": variant, **options}


def _key(row: dict) -> tuple:
    return row["model"], row["variant"], row["image_size"], row["batch_size"]


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) of memory (GB) against pixels, least squares; None below 2 points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return mean_y - slope * mean_x, slope


def _series(rows: list[dict], model: str, variant: str, batch: int) -> list[tuple]:
    return [(row["image_size"] ** 2, row["peak_memory_mb"] / 1024) for row in rows
            if (row["model"], row["variant"], row["batch_size"]) == (model, variant, batch)
            and row.get("peak_memory_mb")]


def memory_fit(rows: list[dict], model: str, variant: str, batch: int
               ) -> tuple[float, float] | None:
    """(GB at 0 px, GB per pixel) of a series: fitted on its own rows where it has two, else
    from batch 1's fit with the per-pixel term scaled by the batch and its one row, if any,
    setting the constant."""
    points = _series(rows, model, variant, batch)
    fit = linear_fit(points)
    if fit is not None or batch == 1:
        return fit
    single = linear_fit(_series(rows, model, variant, 1))
    if single is None:
        return None
    slope = single[1] * batch
    intercept = points[0][1] - slope * points[0][0] if points else single[0]
    return intercept, slope


def largest_side(rows: list[dict], model: str, variant: str, batch: int,
                 budget_gb: float = MACHINE_GB) -> dict:
    """The largest square side whose training step fits `budget_gb`: measured, or extrapolated
    from the measured rows of the series (marked)."""
    points = _series(rows, model, variant, batch)
    measured = [round(math.sqrt(x)) for x, y in points if y <= budget_gb]
    fit = memory_fit(rows, model, variant, batch)
    if fit is None or fit[1] <= 0:
        return {"measured": max(measured, default=None), "extrapolated": None}
    side = math.sqrt(max(budget_gb - fit[0], 0) / fit[1])
    return {"measured": max(measured, default=None), "extrapolated": int(side // 32 * 32)}


def run(out: Path, limit_gb: float, fresh: bool) -> list[dict]:
    path = out / "resolution.json"
    rows = [] if fresh or not path.exists() else json.loads(path.read_text())["rows"]
    done = {_key(row) for row in rows}
    for spec in plan():
        if _key(spec) in done:
            continue
        fit = memory_fit(rows, spec["model"], spec["variant"], spec["batch_size"])
        predicted = fit[0] + fit[1] * spec["image_size"] ** 2 if fit else None
        if predicted is not None and predicted > limit_gb:
            row = {**spec, "skipped": f"predicted {predicted:.1f} GB > {limit_gb} GB"}
        else:
            row = run_isolated(spec, timeout=1800)
        rows.append(row)
        _write(out, rows)
        print(json.dumps({key: row.get(key) for key in ("model", "variant", "image_size",
                                                         "batch_size", "img_per_s",
                                                         "peak_memory_mb", "error",
                                                         "skipped")}), flush=True)
    return rows


def _write(out: Path, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {**provenance(), "machine": platform.processor() or platform.machine(),
              "command": "python benchmarks/resolution.py --out benchmarks/results",
              "rows": rows}
    (out / "resolution.json").write_text(json.dumps(record, indent=1))
    (out / "resolution.md").write_text(markdown(rows))


def markdown(rows: list[dict]) -> str:
    reference = {(r["model"], r["image_size"], r["batch_size"]): r for r in rows
                 if r["variant"] == "float32" and r.get("peak_memory_mb")}
    lines = ["# Training memory and speed against resolution", "",
             "One AdamW training step of an untrained classifier (GAP head) on random images, "
             "each row in a fresh process; peak resident memory of the process (TensorFlow "
             "and the model included) and images/s. Ratios are against float32 at the same "
             "size and batch, measured in the same run. Made by `python "
             "benchmarks/resolution.py`; machine and commit in resolution.json.", "",
             "| backbone | variant | side px | batch | img/s | peak GB | memory vs float32 | "
             "speed vs float32 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = reference.get((row["model"], row["image_size"], row["batch_size"]))
        if row.get("peak_memory_mb"):
            memory = row["peak_memory_mb"] / 1024
            ratio_memory = f"{row['peak_memory_mb'] / base['peak_memory_mb']:.2f}" if base \
                else ""
            ratio_speed = f"{row['img_per_s'] / base['img_per_s']:.2f}" if base else ""
            lines.append(f"| {row['model']} | {row['variant']} | {row['image_size']} | "
                         f"{row['batch_size']} | {row['img_per_s']:.3g} | {memory:.2f} | "
                         f"{ratio_memory} | {ratio_speed} |")
        else:
            reason = row.get("skipped") or row.get("error", "")
            lines.append(f"| {row['model']} | {row['variant']} | {row['image_size']} | "
                         f"{row['batch_size']} | - | - | {reason} | |")
    lines += ["", "## The largest side that trains in 24 GB", "",
              "Measured: the largest side run within 24 GB; extrapolated: memory fitted "
              "linearly in pixels over the measured sides of the series (batch 4: batch 1's "
              "per-pixel cost x 4 through its one measured row), an estimate, not a "
              "measurement.", "",
              "| backbone | variant | batch | largest measured | extrapolated |",
              "|---|---|---:|---:|---:|"]
    for model in BACKBONES:
        for variant in VARIANTS:
            for batch in (1, 4):
                if not _series(rows, model, variant, batch):
                    continue
                side = largest_side(rows, model, variant, batch)
                lines.append(f"| {model} | {variant} | {batch} | {side['measured']} | "
                             f"{side['extrapolated']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--limit-gb", type=float, default=18.0,
                        help="do not run a row predicted to need more (default 18)")
    parser.add_argument("--fresh", action="store_true", help="ignore rows already measured")
    args = parser.parse_args()
    run(args.out, args.limit_gb, args.fresh)


if __name__ == "__main__":
    main()
