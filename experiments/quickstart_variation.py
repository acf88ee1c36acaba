"""How much the main job's figures move: the same command twice, another kernel path, other seeds.

Runs `mammo-keras run experiments/quickstart.yaml` (deterministic training) as separate
processes, each in its own folder under --runs, and tabulates the held-out figures:

- "repeat 1", "repeat 2": the README's command twice on this machine: the figures must be
  equal (deterministic ops, data order and augmentation);
- "oneDNN off": TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's other CPU kernels: floating-point
  round-off in another order, what another machine (another CPU, TensorFlow build or core
  count) changes; the closest this 2-core machine comes to running elsewhere;
- "seed 1", "seed 2": `--set training.seed=S` (initial weights, data order and augmentation;
  the same phantoms and split): the spread to read any single figure against.

Finished cells are kept (their done.json); a re-run does the missing ones.

    python experiments/quickstart_variation.py --runs runs/variation --out experiments/results
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from mammo_keras.atomic import write_json_atomically, write_text_atomically
from mammo_keras.provenance import provenance

CONFIG = Path(__file__).with_name("quickstart.yaml")
CELLS = {
    "repeat 1": ({}, []),
    "repeat 2": ({}, []),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    "seed 1": ({}, ["--set", "training.seed=1"]),
    "seed 2": ({}, ["--set", "training.seed=2"]),
}
FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")


def run_cell(name: str, folder: Path) -> dict:
    """The cell's done.json figures and wall time, running it first when it is not done."""
    environment, extra = CELLS[name]
    done, timing = folder / "done.json", folder / "wall_seconds.txt"
    if not done.is_file():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mammo_keras.cli", "run", str(CONFIG), "--out",
                        str(folder), *extra], env={**os.environ, **environment}, check=True)
        write_text_atomically(timing, f"{time.perf_counter() - started:.1f}\n")
    summary = json.loads(done.read_text())
    return {"cell": name, "environment": environment, "arguments": extra,
            "wall_seconds": float(timing.read_text()) if timing.is_file() else None,
            "train_seconds": summary["train_seconds"], "best_epoch": summary["best_epoch"],
            "images": summary["images"][summary["evaluated_on"]],
            "metrics": {key: summary["metrics"][key] for key in FIGURES},
            "confidence_intervals": {key: summary["confidence_intervals"].get(key)
                                     for key in FIGURES}}


def weights_digest(folder: Path) -> str:
    """SHA-256 of the trained weights inside the cell's model.keras (its weights member)."""
    with zipfile.ZipFile(folder / "model.keras") as archive:
        return hashlib.sha256(archive.read("model.weights.h5")).hexdigest()


def markdown(record: dict) -> str:
    rows = record["rows"]
    lines = ["# How much the main job's figures move", "",
             f"`{record['command']}`; commit {record['commit']}; {record['hardware']}. Each "
             "cell is `mammo-keras run experiments/quickstart.yaml` in a fresh process "
             f"(deterministic training); figures on the {rows[0]['images']} held-out test "
             "images (95 % patient-bootstrap interval of the first cell in brackets).", "",
             "| cell | " + " | ".join(FIGURES) + " | best epoch | wall s | commit |",
             "|---|" + "---:|" * (len(FIGURES) + 2) + "---|"]
    for row in rows:
        cells = []
        for key in FIGURES:
            value, interval = row["metrics"][key], row["confidence_intervals"][key]
            cells.append(f"{value:.3f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})"
                                           if row is rows[0] and interval else ""))
        lines.append(f"| {row['cell']} | " + " | ".join(cells)
                     + f" | {row['best_epoch']} | {row['wall_seconds'] or float('nan'):.0f} | "
                     f"{row['commit']} |")
    summary = record["summary"]
    lines += ["", f"- Same command twice: the figures are "
              f"{'identical' if summary['repeats_identical'] else 'NOT identical'}, and so are "
              f"the trained weights: {'yes' if summary['repeat_weights_identical'] else 'NO'} "
              "(SHA-256 of the weights in model.keras).",
              f"- Largest change from repeat 1: oneDNN off {summary['onednn_max_change']:.3f}, "
              f"other seeds {summary['seed_max_change']:.3f} (over {', '.join(FIGURES)})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/variation"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = parser.parse_args()
    rows = []
    for name in CELLS:
        rows.append(run_cell(name, args.runs / name.replace(" ", "_")))
        print(json.dumps(rows[-1]), flush=True)
    first = rows[0]["metrics"]

    def change(row: dict) -> float:
        return max(abs(row["metrics"][key] - first[key]) for key in FIGURES)

    folders = [args.runs / name.replace(" ", "_") for name in CELLS]
    for row, folder in zip(rows, folders):
        row["commit"] = json.loads((folder / "done.json").read_text())["commit"]
    summary = {"repeats_identical": rows[0]["metrics"] == rows[1]["metrics"],
               "repeat_weights_identical": weights_digest(folders[0]) == weights_digest(folders[1]),
               "onednn_max_change": change(rows[2]),
               "seed_max_change": max(change(row) for row in rows[3:])}
    record = {**provenance(), "rows": rows, "summary": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out / "quickstart_variation.json", record)
    write_text_atomically(args.out / "quickstart_variation.md", markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
