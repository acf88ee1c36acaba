"""Every fold of a cross-validated grid pooled: each image's out-of-fold prediction, the
figures of each variant with patient-bootstrap intervals, and the paired difference between
two variants (the same images, the same patient resamples).

    python experiments/pooled_folds.py runs/molina_roman_phantoms \
        --compare pretrained_fine_tune:pretrained_logistic_probe --out experiments/results/x

Reads `<run>/cells/<cell>/predictions.csv`, the test fold of each cell, whose name holds a
`fold<k>` part among the grid's axes (`fold2-gap`, `gap-fold2`, `patient-fold2-gap`: the
variant is the name without it), and writes <out>.json and <out>.md. `--metrics` chooses the
figures (default: accuracy, macro_f1, weighted_f1, quadratic_kappa; roc_auc_macro,
balanced_accuracy and recall_malignant are the others).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np
from result_files import with_interval, write_result

METRICS = ("accuracy", "macro_f1", "weighted_f1", "quadratic_kappa")
EXTRA_METRICS: tuple = ()  # set by --metrics


def pooled_predictions(run: Path) -> dict[str, dict]:
    """{variant: {"paths", "patients", "truth" (N,) indices, "probabilities" (N, K),
    "classes", "folds"}} over every finished fold of every variant."""
    variants: dict[str, dict] = {}
    for cell in sorted((run / "cells").glob("*fold*")):
        if not (cell / "done.json").is_file():
            continue
        variant = re.sub(r"(^|-)fold\d+(?=-|$)", "", cell.name).lstrip("-")
        with open(cell / "predictions.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        classes = [key[2:] for key in rows[0] if key.startswith("p_")]
        entry = variants.setdefault(variant, {"paths": [], "patients": [], "truth": [],
                                              "probabilities": [], "classes": classes,
                                              "folds": 0})
        entry["folds"] += 1
        for row in rows:
            entry["paths"].append(row["path"])
            entry["patients"].append(row["patient_id"] or row["path"])
            entry["truth"].append(classes.index(row["label"]))
            entry["probabilities"].append([float(row[f"p_{name}"]) for name in classes])
    for entry in variants.values():
        entry["truth"] = np.asarray(entry["truth"])
        entry["probabilities"] = np.asarray(entry["probabilities"])
    return variants


def figures(truth: np.ndarray, probabilities: np.ndarray, classes) -> dict:
    from mammo_keras.evaluation.metrics import _headline, dense_view

    values = _headline(truth, probabilities, METRICS)
    extra = [key for key in EXTRA_METRICS if key != "recall_malignant"]
    if len(set(truth.tolist())) > 1:  # AUC needs both sides in a resample
        values.update(_headline(truth, probabilities, extra))
    if "recall_malignant" in EXTRA_METRICS and "malignant" in classes:
        malignant = list(classes).index("malignant")
        actual = truth == malignant
        values["recall_malignant"] = float(
            (probabilities[actual].argmax(axis=1) == malignant).mean()) if actual.any() else None
    dense = dense_view(truth, probabilities, classes, resamples=0)
    if dense is not None:
        values["dense_accuracy"] = dense["accuracy"]
    return values


def bootstrap(variants: dict, names: list[str], resamples: int, seed: int) -> dict:
    """Patient resamples shared by `names` (pooled sets of the same images): per variant
    the percentile intervals, and for a pair the interval of the difference."""
    reference = variants[names[0]]
    order = {name: {path: i for i, path in enumerate(variants[name]["paths"])} for name in names}
    common = [path for path in reference["paths"] if all(path in order[n] for n in names)]
    patients: dict[str, list[str]] = {}
    for path in common:
        patients.setdefault(reference["patients"][order[names[0]][path]], []).append(path)
    groups = list(patients.values())
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in names}
    for _ in range(resamples):
        chosen = [path for g in rng.integers(len(groups), size=len(groups)) for path in groups[g]]
        for name in names:
            index = [order[name][path] for path in chosen]
            entry = variants[name]
            draws[name].append(figures(entry["truth"][index], entry["probabilities"][index],
                                       entry["classes"]))
    return {"images": len(common), "patients": len(groups), "draws": draws}


def common_figures(variants: dict, name: str, other: dict) -> dict:
    """The figures of variant `name` on the images `other` also predicted."""
    entry, shared = variants[name], set(other["paths"])
    index = [i for i, path in enumerate(entry["paths"]) if path in shared]
    return figures(entry["truth"][index], entry["probabilities"][index], entry["classes"])


def interval(values) -> list[float] | None:
    values = [v for v in values if v is not None]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))] if values \
        else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a grid's output folder (mammo-keras run --out)")
    parser.add_argument("--compare", action="append", default=[],
                        help="variant_a:variant_b, the difference a - b (repeatable)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--metrics", default="",
                        help="comma-separated figures to add: roc_auc_macro, balanced_accuracy")
    args = parser.parse_args(argv)
    global EXTRA_METRICS
    EXTRA_METRICS = tuple(name for name in args.metrics.split(",") if name)
    from mammo_keras.provenance import provenance

    variants = pooled_predictions(Path(args.run))
    if not variants:
        raise SystemExit(f"{args.run}: no finished cells")
    result = {"run": args.run, "provenance": provenance(), "variants": {}, "differences": {}}
    for name, entry in variants.items():
        spread = bootstrap(variants, [name], args.resamples, seed=0)
        point = figures(entry["truth"], entry["probabilities"], entry["classes"])
        result["variants"][name] = {
            "folds": entry["folds"], "images": int(len(entry["truth"])),
            "patients": len(set(entry["patients"])),
            # the share of images predicted as each class: one class at ~1.0 is a collapse
            "predicted": {name: float((entry["probabilities"].argmax(axis=1) == index).mean())
                          for index, name in enumerate(entry["classes"])},
            **{key: [value, interval([d[key] for d in spread["draws"][name]])]
               for key, value in point.items()}}
    for pair in args.compare:
        first, second = pair.split(":")
        if first not in variants or second not in variants:
            continue
        spread = bootstrap(variants, [first, second], args.resamples, seed=1)
        # both sides on the images they share (a grid whose variants ran different folds)
        point_a, point_b = (common_figures(variants, name, variants[other])
                            for name, other in ((first, second), (second, first)))
        result["differences"][pair] = {
            "images": spread["images"], "patients": spread["patients"],
            "a": {key: [value, interval([d[key] for d in spread["draws"][first]])]
                  for key, value in point_a.items()},
            "b": {key: [value, interval([d[key] for d in spread["draws"][second]])]
                  for key, value in point_b.items()},
            **{key: [point_a[key] - point_b[key], interval(
                [a[key] - b[key] for a, b in zip(spread["draws"][first],
                                                  spread["draws"][second])
                 if a.get(key) is not None and b.get(key) is not None])]
               for key in point_a if point_b.get(key) is not None}}
    write_result(args.out, result, render(result))
    return 0


def render(result: dict) -> str:
    def cell(pair) -> str:
        return with_interval(pair, " to ")  # differences may be negative

    keys = [key for key in (*METRICS, *EXTRA_METRICS, "dense_accuracy")
            if any(key in v for v in result["variants"].values())]
    lines = [f"# {Path(result['run']).name}: every fold pooled", "",
             "Each image's prediction by the model of the fold that held it out, all folds "
             "together; 95 % intervals by bootstrap over patients.", "",
             "| variant | folds | images | patients | " + " | ".join(keys)
             + " | predicted as (share per class) |",
             "|---|---:|---:|---:|" + "---:|" * len(keys) + "---|"]
    for name, entry in result["variants"].items():
        shares = " / ".join(f"{label} {share:.2f}" for label, share in
                            entry.get("predicted", {}).items())
        lines.append(f"| {name} | {entry['folds']} | {entry['images']} | {entry['patients']} | "
                     + " | ".join(cell(entry[key]) if key in entry else "n/a" for key in keys)
                     + f" | {shares} |")
    if result["differences"]:
        lines += ["", "Paired differences (a - b on the same images, the same patient "
                  "resamples):", "", "| a - b | images | " + " | ".join(keys) + " |",
                  "|---|---:|" + "---:|" * len(keys)]
        for pair, entry in result["differences"].items():
            lines.append(f"| {pair.replace(':', ' - ')} | {entry['images']} | "
                         + " | ".join(cell(entry[key]) if key in entry else "n/a"
                                      for key in keys) + " |")
    origin = result["provenance"]
    lines += ["", f"Pooled by `{origin['command']}` at commit {origin['commit']}; "
              f"{origin['hardware']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
