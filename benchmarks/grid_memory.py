"""Resident memory of a `mammo-keras run` grid process, cell after cell.

Runs one small grid (baseline CNN with the GAGM + SEVector head on synthetic phantoms, one
cell per training seed) in a fresh process and records the process's resident memory (VmRSS)
after every cell: once as `run_experiment` runs it (`train` frees the gradient closures its fit
registered: `released_gradient_closures`), and once with that release replaced by a no-op
(the reference, measured in the same run: how the grid ran before). Memory that is flat in the number of cells is the target; the figure
reported is the growth per cell from the second cell to the last (the first cell pays the
one-off cost of importing and tracing).

    python benchmarks/grid_memory.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CELLS = 8
GRID = {
    "name": "grid_memory",
    "data": {"dataset": "synthetic", "synthetic": {"count": 120, "size": 256, "seed": 0},
             "image_size": 96, "split": [0.6, 0.2, 0.2]},
    "model": {"backbone": "baseline_cnn", "head": "gagm_se"},
    "training": {"epochs": 1, "batch_size": 16},
    "evaluation": {"subset": "test"},
    "grid": {"training.seed": list(range(CELLS))},
}


def resident_mib() -> float:
    """This process's resident set size in MiB (VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


def child(out: str, mode: str) -> None:
    """Run the grid into `out`; print the RSS after each cell as JSON."""
    import contextlib

    from mammo_keras.training import experiment, trainer

    if mode == "kept":
        trainer.released_gradient_closures = contextlib.nullcontext
    after = []

    def log(message: str) -> None:
        # run_experiment logs "[i/N] name: training" before each cell: cell i-1 has ended.
        if message.startswith("[") and message.endswith(": training") and \
                not message.startswith("[1/"):
            after.append(round(resident_mib(), 1))

    result = experiment.run_experiment(GRID, out, verbose=0, log=log)
    if result["failed"]:
        raise RuntimeError(f"cells failed, nothing to measure: {result['failed']}")
    after.append(round(resident_mib(), 1))
    print(json.dumps({"mode": mode, "rss_after_cell_mib": after}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from mammo_keras.provenance import provenance

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("released", "kept"):
            result = subprocess.run([sys.executable, __file__, "--child",
                                     str(Path(folder) / mode), mode],
                                    capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    summary = {}
    for row in rows:
        rss = row["rss_after_cell_mib"]
        summary[row["mode"]] = {"after_first_cell_mib": rss[0], "after_last_cell_mib": rss[-1],
                                "growth_per_cell_mib": round((rss[-1] - rss[1]) / (len(rss) - 2),
                                                             1)}
    record = {**provenance(), "cells": CELLS, "grid": GRID, "rows": rows, "summary": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grid_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Memory of a grid process, cell after cell", "",
             f"{CELLS} cells of `{GRID['model']['backbone']}` + `{GRID['model']['head']}` at "
             f"{GRID['data']['image_size']} px on synthetic phantoms, one process each; VmRSS "
             "after every cell. `released`: `run_experiment` as shipped (`train` frees the "
             "gradient closures its fit registered); `kept`: that release replaced by a no-op "
             "(how the grid ran before), measured in the same run.", "",
             "| mode | after cell 1 (MiB) | after last cell (MiB) | growth per cell (MiB) |",
             "|---|---|---|---|"]
    for mode, entry in summary.items():
        lines.append(f"| {mode} | {entry['after_first_cell_mib']} | "
                     f"{entry['after_last_cell_mib']} | {entry['growth_per_cell_mib']} |")
    lines += ["", "Per cell (MiB): " + "; ".join(
        f"{row['mode']}: {', '.join(str(v) for v in row['rss_after_cell_mib'])}" for row in rows),
        "", f"Command: `python benchmarks/grid_memory.py --out {args.out}`; commit "
        f"{record['commit']}; {record['hardware']}."]
    (args.out / "grid_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
