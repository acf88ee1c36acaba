"""A benchmark run: the rows asked for, their references measured in the same run, ratios.

References (`plan`): for each model and mode, the naive Keras route
(`keras.applications:<model>`, its own GAP top, default compile and fit step) where one
exists, the PyTorch peer (`pytorch:<model>`, skipped with a reason without torch), and
once per run the dense matmul ceiling (`ceiling:matmul`). `add_ratios` then gives every
row `vs_pytorch`, `vs_keras_applications`, `achieved_gflops` and `pct_of_ceiling`.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Iterable

from mammo_keras.bench.flops import TRAIN_STEP_FACTOR
from mammo_keras.bench.runner import (NAIVE_MODELS, NAIVE_PREFIX, TORCH_PEER_NAMES, TORCH_PREFIX,
                                      run_isolated)

CEILING = "ceiling:matmul"
ROW_KEYS = ("model", "head", "mode", "backend", "image_size", "batch_size", "img_per_s",
            "peak_memory_mb")


def base_model(name: str) -> str:
    """"pytorch:convnext_tiny" -> "convnext_tiny"."""
    return name.split(":", 1)[1] if ":" in name else name


def plan(models: Iterable[str], heads: Iterable[str], modes: Iterable[str],
         image_size: int, batch_size: int, backends: Iterable[str] = ("tensorflow",),
         steps: int = 3, repeats: int = 3, references: bool = True) -> list[dict]:
    """The row specs of a run, references after the rows they serve."""
    common = {"image_size": image_size, "batch_size": batch_size, "steps": steps,
              "repeats": repeats}
    specs, seen = [], set()

    def add(spec: dict) -> None:
        key = (spec["model"], spec["head"], spec["mode"], spec["backend"])
        if key not in seen:
            seen.add(key)
            specs.append({**spec, **common})

    for mode in modes:
        for model in models:
            if mode == "data":
                add({"model": "mammo_keras:data", "head": None, "mode": mode,
                     "backend": "tensorflow"})
                continue
            for backend in backends:
                for head in (["hds"] if model == "hds_unet" else heads):
                    add({"model": model, "head": head, "mode": mode, "backend": backend})
            if references and model in NAIVE_MODELS:  # as a user gets it: TF's defaults
                add({"model": NAIVE_PREFIX + model, "head": "gap", "mode": mode,
                     "backend": "tensorflow", "env": {"TF_ENABLE_ONEDNN_OPTS": "0"}})
            if references and model in TORCH_PEER_NAMES:
                add({"model": TORCH_PREFIX + model,
                     "head": "hds" if model == "hds_unet" else "gap", "mode": mode,
                     "backend": "pytorch"})
    if references:
        specs.append(ceiling_spec(repeats))
    return specs


def ceiling_spec(repeats: int = 3) -> dict:
    """The row of the dense matmul ceiling: (2048 x 2048) float32 products in TensorFlow."""
    return {"model": CEILING, "head": None, "mode": "matmul", "backend": "tensorflow",
            "image_size": 2048, "batch_size": None, "steps": 3, "repeats": repeats}


def skip_reason(spec: dict) -> str | None:
    """Why a row cannot run here (None when it can)."""
    needs_torch = spec["model"].startswith(TORCH_PREFIX) or spec.get("backend") == "torch"
    if needs_torch and importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install 'mammo-keras[torch]')"
    if spec.get("backend") == "jax" and importlib.util.find_spec("jax") is None:
        return "jax is not installed"
    return None


def run(specs: list[dict], progress: Callable[[int, int, dict], None] | None = None
        ) -> list[dict]:
    """Measure every spec in its own process; skipped rows carry "skipped": reason."""
    rows = []
    for number, spec in enumerate(specs, start=1):
        reason = skip_reason(spec)
        row = {**spec, "img_per_s": None, "peak_memory_mb": None, "skipped": reason} \
            if reason else run_isolated(spec)
        rows.append(row)
        if progress is not None:
            progress(number, len(specs), row)
    return add_ratios(rows)


def print_progress(number: int, total: int, row: dict) -> None:
    """One line per finished row: "[n/N] what: images/s and peak memory (or why not)"."""
    label = row.get("route") or " ".join(str(part) for part in (
        row["model"], row.get("head") or "", row["mode"], row["backend"], row["image_size"]))
    figure = row.get("skipped") or row.get("error") or (
        f"{row['gflops']:.1f} GFLOP/s" if row["mode"] == "matmul"
        else f"{row['img_per_s']:.2f} img/s, peak {row['peak_memory_mb']:.0f} MB")
    print(f"[{number}/{total}] {label}: {figure}", flush=True)


def add_ratios(rows: list[dict]) -> list[dict]:
    """Ratios to the references of the same model, mode, size and batch; GFLOP/s and % of the
    matmul ceiling. Rows keep their figures; ratios are None where a reference is missing."""
    ceiling = next((row.get("gflops") for row in rows if row["model"] == CEILING), None)

    def reference(row: dict, prefix: str) -> float | None:
        for other in rows:
            if (other["model"] == prefix + base_model(row["model"])
                    and other["mode"] == row["mode"]
                    and other["image_size"] == row["image_size"]
                    and other["batch_size"] == row["batch_size"]):
                return other.get("img_per_s")
        return None

    for row in rows:
        rate = row.get("img_per_s")
        if not rate or row["model"] == CEILING:
            continue
        for key, prefix in (("vs_pytorch", TORCH_PREFIX),
                            ("vs_keras_applications", NAIVE_PREFIX)):
            other = reference(row, prefix)
            row[key] = rate / other if other else None
        flops = row.get("forward_gflops")
        if flops:
            factor = TRAIN_STEP_FACTOR if row["mode"] == "train" else 1
            row["achieved_gflops"] = flops * factor * rate
            row["pct_of_ceiling"] = 100 * row["achieved_gflops"] / ceiling if ceiling else None
    return rows


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table, ratios first."""
    lines = ["| model | head | mode | backend | size | batch | img/s | vs PyTorch | "
             "vs keras.applications | GFLOP/s | % of matmul | peak MB | note |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if row["model"] == CEILING:
            note = f"{_cell(row.get('gflops'), 1)} GFLOP/s ({row['image_size']}^2 float32)"
        else:
            note = row.get("skipped") or row.get("error") or ""
        lines.append(
            f"| {row['model']} | {row.get('head') or '-'} | {row['mode']} | {row['backend']} | "
            f"{row['image_size']} | {_cell(row.get('batch_size'))} | "
            f"{_cell(row.get('img_per_s'))} | {_cell(row.get('vs_pytorch'))} | "
            f"{_cell(row.get('vs_keras_applications'))} | {_cell(row.get('achieved_gflops'), 1)} | "
            f"{_cell(row.get('pct_of_ceiling'), 1)} | {_cell(row.get('peak_memory_mb'), 0)} | "
            f"{note} |")
    return "\n".join(lines) + "\n"
