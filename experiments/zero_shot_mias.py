"""The phantom-trained CLIP of zero_shot_phantoms.py asked for the density of real films: all
322 MIAS films by prompts alone, a test of transfer from phantoms and generated reports to
real mammograms (MIAS F / G / D; the prompts of BI-RADS A, B and C + D, as the phantom writer
maps A-D onto MIAS: `synthetic_writer.MIAS_TISSUE`).

    python experiments/zero_shot_mias.py --out experiments/results/zero_shot_mias

Writes <out>.json and <out>.md with patient-bootstrap intervals, command, commit, hardware.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from result_files import with_interval, write_result
from zero_shot_phantoms import clip_arguments, phantom_pairs

MIAS = "../shared/data/mias/all-mias.tar.gz"


def main(argv=None) -> int:
    parser = clip_arguments("experiments/results/zero_shot_mias")
    parser.add_argument("--mias", default=MIAS)
    args = parser.parse_args(argv)

    from mammo_keras.data import load_records
    from mammo_keras.data.synthetic_writer import MIAS_TISSUE
    from mammo_keras.evaluation import evaluate_model
    from mammo_keras.models.clip import tokenizer_of
    from mammo_keras.models.zero_shot import DENSITY_PROMPTS, zero_shot_classifier
    from mammo_keras.provenance import provenance
    from mammo_keras.training.contrastive import train_contrastive

    work = Path(tempfile.mkdtemp(prefix="zero-shot-mias-"))
    train, _, reports, _ = phantom_pairs(args, work)  # zero_shot_phantoms.py's training set
    clip, history = train_contrastive(train, reports, image_size=args.image_size,
                                      epochs=args.epochs, seed=args.seed)
    films = load_records("mias", args.mias)
    results = {"provenance": provenance(), "films": len(films),
               "patients": len({r.patient_id for r in films}),
               "training_loss": [history[0]["loss"], history[-1]["loss"]], "prompt_sets": {}}
    for name in ("birads", "mama", "paper"):
        prompts = {tissue: [text for density, tissue_of in MIAS_TISSUE.items()
                            if tissue_of == tissue for text in DENSITY_PROMPTS[name][density]]
                   for tissue in ("F", "G", "D")}
        classifier = zero_shot_classifier(clip, tokenizer_of(clip), prompts,
                                          input_size=args.image_size)
        metrics = evaluate_model(classifier, films, work / name, resamples=args.resamples,
                                 target="density", class_names=("F", "G", "D"))
        intervals = metrics["confidence_intervals"]
        results["prompt_sets"][name] = {
            "prompts": prompts, "confusion_matrix": metrics["confusion_matrix"],
            "predicted_share": (np.asarray(metrics["confusion_matrix"]).sum(0)
                                / len(films)).round(3).tolist(),
            **{key: [metrics[key], intervals.get(key)]
               for key in ("accuracy", "macro_f1", "quadratic_kappa")}}
        print(name, results["prompt_sets"][name]["accuracy"], flush=True)
    counts = np.asarray(next(iter(results["prompt_sets"].values()))["confusion_matrix"]).sum(1)
    results["majority_share"] = float(counts.max() / counts.sum())
    write_result(args.out, results, render(results))
    return 0


def render(results: dict) -> str:
    cell = with_interval

    lines = ["# Zero-shot density on MIAS by a CLIP trained on phantoms", "",
             f"The CLIP of `zero_shot_phantoms.md` (trained on phantom / report pairs only; "
             f"training loss {results['training_loss'][0]:.2f} -> "
             f"{results['training_loss'][1]:.2f}) classifies all {results['films']} MIAS films "
             f"({results['patients']} women) as F / G / D by prompts (F: BI-RADS A's, G: B's, "
             f"D: C's and D's as an ensemble). The largest class is "
             f"{results['majority_share']:.3f} of the films. 95 % intervals: bootstrap over "
             "women.", "",
             "| prompt set | accuracy | macro F1 | quadratic kappa | predicted share F / G / D |",
             "|---|---:|---:|---:|---|"]
    for name, entry in results["prompt_sets"].items():
        share = " / ".join(f"{v:.2f}" for v in entry["predicted_share"])
        lines.append(f"| {name} | {cell(entry['accuracy'])} | {cell(entry['macro_f1'])} | "
                     f"{cell(entry['quadratic_kappa'])} | {share} |")
    origin = results["provenance"]
    lines += ["", f"Command: `{origin['command']}`; commit {origin['commit']}; "
              f"{origin['hardware']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
