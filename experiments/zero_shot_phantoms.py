"""Does the zero-shot path learn? A small CLIP of BiomedCLIP's design trained contrastively on
phantom images paired with generated screening-report sentences, then held-out patients
classified for BI-RADS density by class prompts alone; a control trained on the same images
with the reports shuffled across patients must stay at chance.

    python experiments/zero_shot_phantoms.py --out experiments/results/zero_shot_phantoms

Writes <out>.json and <out>.md (accuracy, macro F1, quadratic kappa and the dense vs
non-dense view with patient-bootstrap intervals, per prompt set), with command, commit and
hardware.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from result_files import with_interval, write_result


def clip_arguments(out: str) -> argparse.ArgumentParser:
    """The options of the CLIP trained on phantom / report pairs (this script's and
    zero_shot_mias.py's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=out)
    parser.add_argument("--count", type=int, default=400, help="phantoms (two per patient)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    return parser


def phantom_pairs(args, work: Path) -> tuple[list, list, list, np.random.Generator]:
    """(training records, held-out records, one generated report per training record, the
    generator that wrote them): `args.count` phantoms split 80 / 20 by patient."""
    from mammo_keras.data import load_records, split_records, write_synthetic
    from mammo_keras.training.contrastive import phantom_report

    records = load_records("synthetic", write_synthetic(work / "phantoms", args.count, size=256,
                                                        seed=args.seed + 2))
    subsets = split_records(records, (0.8, 0.0, 0.2), seed=args.seed, stratify="density")
    rng = np.random.default_rng(args.seed)
    reports = [phantom_report(record, rng) for record in subsets["train"]]
    return subsets["train"], subsets["test"], reports, rng


def main(argv=None) -> int:
    args = clip_arguments("experiments/results/zero_shot_phantoms").parse_args(argv)

    from mammo_keras.evaluation import evaluate_model
    from mammo_keras.models.clip import tokenizer_of
    from mammo_keras.models.zero_shot import DENSITY_PROMPTS, zero_shot_classifier
    from mammo_keras.provenance import provenance
    from mammo_keras.training.contrastive import train_contrastive

    work = Path(tempfile.mkdtemp(prefix="zero-shot-"))
    train, test, reports, rng = phantom_pairs(args, work)
    results = {"provenance": provenance(), "images": {"train": len(train), "test": len(test)},
               "patients": {"train": len({r.patient_id for r in train}),
                            "test": len({r.patient_id for r in test})},
               "example_reports": reports[:4], "runs": {}}
    shuffled = list(rng.permutation(reports))
    for name, texts in (("paired", reports), ("shuffled_control", shuffled)):
        started = time.monotonic()
        clip, history = train_contrastive(train, texts, image_size=args.image_size,
                                          epochs=args.epochs, seed=args.seed)
        seconds = time.monotonic() - started
        run = {"train_seconds": round(seconds, 1), "final_loss": history[-1]["loss"],
               "first_loss": history[0]["loss"], "parameters": clip.count_params(),
               "prompt_sets": {}}
        for prompts in ("birads", "mama", "paper"):
            classifier = zero_shot_classifier(clip, tokenizer_of(clip), prompts,
                                              input_size=args.image_size)
            metrics = evaluate_model(classifier, test, work / name / prompts,
                                     resamples=args.resamples, target="density",
                                     class_names=("A", "B", "C", "D"))
            intervals = metrics["confidence_intervals"]
            dense = metrics["dense_view"]
            run["prompt_sets"][prompts] = {
                "prompts": DENSITY_PROMPTS[prompts],
                **{key: [metrics[key], intervals.get(key)]
                   for key in ("accuracy", "macro_f1", "quadratic_kappa")},
                "dense_accuracy": [dense["accuracy"],
                                   dense["confidence_intervals"].get("accuracy")],
                "confusion_matrix": metrics["confusion_matrix"]}
        results["runs"][name] = run
        print(name, json.dumps({p: v["accuracy"] for p, v in run["prompt_sets"].items()}),
              flush=True)
    write_result(args.out, results, render(results, args))
    return 0


def render(results: dict, args) -> str:
    cell = with_interval
    lines = ["# Zero-shot density on phantoms: a CLIP trained on image / report pairs", "",
             f"Phantoms: {results['images']['train']} training images "
             f"({results['patients']['train']} patients) with one generated report each, "
             f"{results['images']['test']} held-out images ({results['patients']['test']} "
             f"patients, patient-grouped split); BI-RADS A-D uniform, so chance is 0.25 "
             f"(dense vs non-dense 0.5). Model: BiomedCLIP's design "
             f"(mammo_keras.models.clip) at {args.image_size} px, "
             f"{results['runs']['paired']['parameters']:,} parameters, trained from nothing "
             f"for {args.epochs} epochs with CLIP's symmetric contrastive loss. 95 % "
             "intervals: bootstrap over patients.", "",
             "Example reports: " + " / ".join(f"\"{text}\"" for text in
                                               results["example_reports"][:3]), "",
             "| training pairs | prompt set | accuracy | macro F1 | quadratic kappa | "
             "dense vs non-dense acc. |", "|---|---|---:|---:|---:|---:|"]
    for name, run in results["runs"].items():
        for prompts, figures in run["prompt_sets"].items():
            lines.append(f"| {name} | {prompts} | {cell(figures['accuracy'])} | "
                         f"{cell(figures['macro_f1'])} | {cell(figures['quadratic_kappa'])} | "
                         f"{cell(figures['dense_accuracy'])} |")
    lines += ["", "Prompt sets (mammo_keras.models.zero_shot.DENSITY_PROMPTS): `birads` is the "
              "atlas wording, which the reports use among others; `mama` and `paper` "
              "(Molina-Roman's \"The breast is ...\") are worded otherwise, and their words "
              "that the reports never use are [UNK] to the vocabulary learnt from them. The "
              "shuffled control learns to match each training image with its (wrong) report, "
              "its loss falling lower than the paired run's, yet classifies held-out patients "
              "at chance: what the paired model learnt is the pairing of density and wording.",
              "",
              "Training loss (first -> last epoch): " + ", ".join(
                  f"{name} {run['first_loss']:.2f} -> {run['final_loss']:.2f} "
                  f"({run['train_seconds']:.0f} s)" for name, run in results["runs"].items()),
              "", f"Command: `{results['provenance']['command']}`; commit "
              f"{results['provenance']['commit']}; {results['provenance']['hardware']}.", ""]
    return "\n".join(lines)


def rerender(path: str, image_size: int = 64, epochs: int = 40) -> None:
    """Write <path>.md again from <path>.json (the tables' wording changed, not the runs)."""
    results = json.loads(Path(path).with_suffix(".json").read_text())
    Path(path).with_suffix(".md").write_text(
        render(results, argparse.Namespace(image_size=image_size, epochs=epochs)))


if __name__ == "__main__":
    sys.exit(main())
