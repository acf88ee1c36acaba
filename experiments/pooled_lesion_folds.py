"""Every fold of a cross-validated lesion_segmentation grid (HDS) pooled: each film's
out-of-fold prediction and Dice, the figures of each ablation with patient-bootstrap
intervals, and paired differences between ablations (the same films, the same resamples).

    python experiments/pooled_lesion_folds.py runs/zhang_hds_phantoms \
        --out experiments/results/zhang_hds_phantoms

Reads `<run>/cells/<fold>-<variant>/predictions.csv` (columns of
`mammo_keras.evaluation.lesion_report`) and writes <out>.json and <out>.md. The compared
pairs are the paper's question: does image-level supervision help segmentation (hds vs ds),
and does pixel-level supervision help classification (hds vs cls)?
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from pooled_folds import interval
from result_files import with_interval, write_result

PAIRS = ("hds:ds", "hds:seg", "ds:seg", "hds:cls")
KEYS = ("dice_mass_films", "dice_all_films", "mass_auc", "mass_accuracy")


def pooled(run: Path) -> dict[str, dict]:
    """{variant: {path: {"patient", "truth" (0/1), "p" (P(mass)), "dice" or None}}, "folds"}."""
    variants: dict[str, dict] = {}
    for cell in sorted((run / "cells").glob("fold*-*")):
        if not (cell / "done.json").is_file():
            continue
        variant = cell.name.split("-", 1)[1]
        entry = variants.setdefault(variant, {"films": {}, "folds": 0})
        entry["folds"] += 1
        with open(cell / "predictions.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                entry["films"][row["path"]] = {
                    "patient": row["patient_id"] or row["path"],
                    "truth": int(row["label"] == "mass"),
                    # p_lesion: the column's name in runs of commits before 573f366
                    "p": float(row["p_mass"] if "p_mass" in row else row["p_lesion"]),
                    "dice": float(row["dice"]) if row.get("dice") else None}
    return variants


def figures(films: list[dict]) -> dict:
    from sklearn.metrics import roc_auc_score

    truth = np.array([f["truth"] for f in films])
    p = np.array([f["p"] for f in films])
    values = {"mass_accuracy": float(((p > 0.5) == truth).mean()),
              "mass_auc": float(roc_auc_score(truth, p)) if 0 < truth.sum() < len(truth)
              else None}
    dice = [f["dice"] for f in films]
    if all(d is not None for d in dice):
        dice = np.array(dice)
        values["dice_all_films"] = float(dice.mean())
        values["dice_mass_films"] = float(dice[truth == 1].mean()) if truth.any() else None
    return values


def bootstrap(variants: dict, names: list[str], resamples: int, seed: int) -> dict:
    """Figures of each of `names` on shared patient resamples of their common films."""
    common = sorted(set.intersection(*(set(variants[n]["films"]) for n in names)))
    patients: dict[str, list[str]] = {}
    for path in common:
        patients.setdefault(variants[names[0]]["films"][path]["patient"], []).append(path)
    groups = list(patients.values())
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in names}
    for _ in range(resamples):
        chosen = [path for g in rng.integers(len(groups), size=len(groups)) for path in groups[g]]
        for name in names:
            draws[name].append(figures([variants[name]["films"][p] for p in chosen]))
    point = {name: figures([variants[name]["films"][p] for p in common]) for name in names}
    return {"films": len(common), "patients": len(groups), "draws": draws, "point": point}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a lesion_segmentation grid's output folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    from mammo_keras.provenance import provenance

    variants = pooled(Path(args.run))
    if not variants:
        raise SystemExit(f"{args.run}: no finished cells")
    result = {"run": args.run, "provenance": provenance(), "variants": {}, "differences": {}}
    for name, entry in variants.items():
        spread = bootstrap(variants, [name], args.resamples, seed=0)
        films = list(entry["films"].values())
        result["variants"][name] = {
            "folds": entry["folds"], "films": len(films),
            "mass_films": int(sum(f["truth"] for f in films)),
            "patients": len({f["patient"] for f in films}),
            **{key: [value, interval([d.get(key) for d in spread["draws"][name]])]
               for key, value in spread["point"][name].items()}}
    for pair in PAIRS:
        first, second = pair.split(":")
        if first not in variants or second not in variants:
            continue
        spread = bootstrap(variants, [first, second], args.resamples, seed=1)
        a, b = spread["point"][first], spread["point"][second]
        result["differences"][pair] = {
            "films": spread["films"], "patients": spread["patients"],
            **{key: [a[key] - b[key], interval(
                [x[key] - y[key] for x, y in zip(spread["draws"][first], spread["draws"][second])
                 if x.get(key) is not None and y.get(key) is not None])]
               for key in a if a.get(key) is not None and b.get(key) is not None}}
    write_result(args.out, result, render(result))
    return 0


def render(result: dict) -> str:
    def cell(entry, key) -> str:
        return with_interval(entry[key], " to ") if key in entry else "n/a"

    lines = [f"# {Path(result['run']).name}: every fold pooled", "",
             "Each film's prediction by the model of the fold that held it out, all folds "
             "together; 95 % intervals by bootstrap over patients. Dice at 0.5 on the model's "
             "input grid; on a film without a mass an empty prediction scores 1.", "",
             "| ablation | folds | films | mass films | patients | Dice (mass films) | "
             "Dice (all films) | mass present: ROC-AUC | mass present: accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("hds", "ds", "seg", "cls"):
        entry = result["variants"].get(name)
        if entry:
            lines.append(f"| {name} | {entry['folds']} | {entry['films']} | "
                         f"{entry['mass_films']} | {entry['patients']} | "
                         + " | ".join(cell(entry, key) for key in KEYS) + " |")
    if result["differences"]:
        lines += ["", "Paired differences (a - b on the same films and patient resamples):", "",
                  "| a - b | films | Dice (mass films) | Dice (all films) | ROC-AUC | accuracy |",
                  "|---|---:|---:|---:|---:|---:|"]
        for pair, entry in result["differences"].items():
            lines.append(f"| {pair.replace(':', ' - ')} | {entry['films']} | "
                         + " | ".join(cell(entry, key) for key in KEYS) + " |")
    origin = result["provenance"]
    lines += ["", f"Pooled by `{origin['command']}` at commit {origin['commit']}; "
              f"{origin['hardware']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
