"""What a random per-image split adds on a pre-augmented patch set: the same cells trained on
a patient-grouped and on a random split, side by side, with what leaks across the random one.

    python experiments/pooled_folds.py runs/dahes_patches --metrics roc_auc_macro,... \
        --compare image-baseline_cnn-gap:patient-baseline_cnn-gap ... --out results/x/pooled
    python experiments/patch_leakage.py runs/dahes_patches --pooled results/x/pooled.json \
        --out results/x/leakage

For each arm (`patient`, `image`) and fold, from the split manifest the grid wrote
(`cells/<arm>-fold<k>-*/splits.csv`, the same for every cell of a fold):
- test patches with a copy of the same lesion / normal field (manifest `group`) in training;
- test patches with any patch of the same woman in training;
- the audit's near-duplicate pairs between training and test (`mammo_keras.data.audit`,
  perceptual hash under the 8 flips / right-angle rotations, threshold 12 of 256 bits),
  how many of them are true copies, and how many test patches it flags.
and, per cell and arm, the training accuracy of the last epoch over the folds (a model far
from fitting its training set cannot profit from a copy of a test patch in it).
Writes <out>.json, <out>.md and <out>.png (the pooled ROC-AUC of every cell under both splits,
with the 95 % patient-bootstrap intervals from `--pooled`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from mammo_keras.yaml_files import read_yaml
from result_files import with_interval, write_result

ARMS = ("patient", "image")
FIGURES = ("roc_auc_macro", "balanced_accuracy", "macro_f1", "recall_malignant")


def _split_of(cell: Path) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    with open(cell / "splits.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            members.setdefault(row["split"], []).append(row["path"])
    return members


def fold_overlap(cell: Path, records_by_path: dict, threshold: int) -> dict:
    """The leaks between the training and test sets of one cell's split."""
    from mammo_keras.data.audit import cross_split_duplicates

    members = _split_of(cell)
    train = [records_by_path[path] for path in members["train"]]
    test = [records_by_path[path] for path in members["test"]]
    groups = {record.extra["group"] for record in train}
    patients = {record.patient_id for record in train}
    audit = cross_split_duplicates({"train": train, "test": test}, threshold)
    group_of = {record.path: record.extra["group"] for record in train + test}
    true_copies = sum(group_of[a] == group_of[b] for a, _, b, _, _ in audit["pairs"])
    flagged = {a if split_a == "test" else b for a, split_a, b, _, _ in audit["pairs"]}
    return {"train": len(train), "test": len(test),
            "test_with_a_copy_in_train": sum(r.extra["group"] in groups for r in test),
            "test_with_the_woman_in_train": sum(r.patient_id in patients for r in test),
            "audit_pairs": len(audit["pairs"]), "audit_pairs_true_copies": true_copies,
            "audit_flagged_test": len(flagged)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the grid's output folder (cells named <arm>-fold<k>-...)")
    parser.add_argument("--pooled", required=True, help="pooled_folds.py's JSON of the run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threshold", type=int, default=12)
    args = parser.parse_args(argv)
    from mammo_keras.data import load_records
    from mammo_keras.provenance import provenance

    run, pooled_path, out = (Path(p).resolve() for p in (args.run, args.pooled, args.out))
    os.chdir(Path(__file__).resolve().parents[1])  # the grid ran here: its paths are relative
    cells = sorted((run / "cells").glob("*-fold*"))
    if not cells:
        raise SystemExit(f"{run}: no cells")
    root = read_yaml(cells[0] / "config.yaml")["data"]["root"]
    records_by_path = {record.path: record for record in load_records(root)}
    overlap = {}
    for arm in ARMS:
        for fold in range(10):
            found = sorted(c for c in cells if c.name.startswith(f"{arm}-fold{fold}-")
                           and (c / "splits.csv").is_file())
            if found:
                overlap[f"{arm}-fold{fold}"] = fold_overlap(found[0], records_by_path,
                                                            args.threshold)
    pooled = json.loads(pooled_path.read_text())
    result = {"run": str(run), "patches": root, "threshold": args.threshold,
              "overlap": overlap, "cells": _cells(pooled), "training_fit": training_fit(cells),
              "provenance": provenance()}
    write_result(out, result, render(result))
    plot(result, out.with_suffix(".png"))
    return 0


def training_fit(cells: list[Path]) -> dict:
    """{backbone-head: {arm: [last-epoch training accuracy of each finished fold]}}."""
    fit: dict[str, dict[str, list[float]]] = {}
    for cell in cells:
        history = cell / "history.csv"
        if not (cell / "done.json").is_file() or not history.is_file():
            continue
        arm, _, rest = cell.name.partition("-")
        name = rest.partition("-")[2]  # drop "fold<k>"
        with open(history, newline="") as handle:
            last = list(csv.DictReader(handle))[-1]
        fit.setdefault(name, {}).setdefault(arm, []).append(float(last["accuracy"]))
    return fit


def _cells(pooled: dict) -> dict:
    """{backbone-head: {arm: {figure: [value, interval]}, "difference": {...}}}."""
    cells: dict[str, dict] = {}
    for variant, entry in pooled["variants"].items():
        arm, _, name = variant.partition("-")
        if arm in ARMS:
            cells.setdefault(name, {})[arm] = {key: entry[key] for key in FIGURES if key in entry}
    for pair, entry in pooled.get("differences", {}).items():
        first, second = pair.split(":")
        if first.startswith("image-") and second == "patient-" + first[len("image-"):]:
            cell = cells.setdefault(first[len("image-"):], {})
            # both arms on the same images: those the random split's finished folds tested
            cell["image"] = {key: entry["a"][key] for key in FIGURES if key in entry["a"]}
            cell["patient"] = {key: entry["b"][key] for key in FIGURES if key in entry["b"]}
            cell["difference"] = {key: entry[key] for key in FIGURES if key in entry}
    return cells


def render(result: dict) -> str:
    lines = [f"# Random per-image split against patient-grouped split: {result['patches']}", "",
             "## What crosses from training to test, fold by fold", "",
             "| arm-fold | train | test | test with a copy of its lesion in train | "
             "test with its woman in train | audit pairs (true copies) | test flagged by the "
             "audit |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, entry in result["overlap"].items():
        lines.append(f"| {name} | {entry['train']} | {entry['test']} | "
                     f"{entry['test_with_a_copy_in_train']} | "
                     f"{entry['test_with_the_woman_in_train']} | {entry['audit_pairs']} "
                     f"({entry['audit_pairs_true_copies']}) | {entry['audit_flagged_test']} |")
    lines += ["", f"Audit: perceptual hash under flips and right-angle rotations, threshold "
              f"{result['threshold']} of 256 bits (`mammo-keras data audit`).", "",
              "## Per cell, both splits on the same test images (95 % patient-bootstrap "
              "intervals)", "",
              "The images the random split's finished folds held out, each predicted by the "
              "random-split model and by the patient-split model whose test fold held it.", "",
              "| cell | figure | patient split | random split | random - patient |",
              "|---|---|---:|---:|---:|"]
    for name, entry in result["cells"].items():
        for key in FIGURES:
            values = [entry.get(arm, {}).get(key) for arm in ARMS]
            difference = entry.get("difference", {}).get(key)
            if all(v is None for v in values):
                continue
            lines.append(f"| {name} | {key} | "
                         + " | ".join(with_interval(v) if v else "n/a" for v in values)
                         + f" | {with_interval(difference, ' to ') if difference else 'n/a'} |")
    lines += ["", "## How far each model fits its training set", "",
              "Training accuracy of the last epoch (class-weighted batches, the augmentation "
              "being the pre-augmented copies), mean and range over the finished folds.", "",
              "| cell | patient split | random split |", "|---|---:|---:|"]
    for name, arms in result["training_fit"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f}, {len(v)} folds)"
            if (v := arms.get(arm)) else "n/a" for arm in ARMS) + " |")
    origin = result["provenance"]
    lines += ["", f"Written by `{origin['command']}` at commit {origin['commit']}; "
              f"{origin['hardware']}.", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, entry in result["cells"].items()
             if all("roc_auc_macro" in entry.get(arm, {}) for arm in ARMS)]
    if not names:
        return
    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    width = 0.38
    for offset, arm, colour in ((-width / 2, "patient", "#4c72b0"),
                                (width / 2, "image", "#dd8452")):
        values = [result["cells"][n][arm]["roc_auc_macro"] for n in names]
        centres = [v[0] for v in values]
        errors = [[c - (v[1] or [c, c])[0] for c, v in zip(centres, values)],
                  [(v[1] or [c, c])[1] - c for c, v in zip(centres, values)]]
        axis.bar([i + offset for i in range(len(names))], centres, width, yerr=errors,
                 capsize=3, color=colour,
                 label={"patient": "patient-grouped split", "image": "random per-image split"}[arm])
    axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xticks(range(len(names)), [n.replace("-", "\n") for n in names], fontsize=8)
    axis.set_ylabel("ROC-AUC (macro), the same test images")
    axis.set_ylim(0.4, 1.0)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title("MIAS patches, pre-augmented: what a random split adds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
