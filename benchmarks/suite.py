"""The benchmark suite: `mammo-keras bench` over the classifiers, heads and sizes that matter.

Train-step and inference throughput and peak memory of the baseline CNN, ConvNeXt-Tiny and
InceptionV3 with the GAP and GAGM+SE heads at 224 px (batch 16), of the baseline CNN at
512 px (batch 4), and of the HDS U-Net at the authors' 512 x 384 crop (batch 8; its train
step is the hybrid deep-supervision loss with SGD), each against the references of the same
run: the naive keras.applications route, the PyTorch peer (when torch is installed) and the
dense matmul ceiling.

    python benchmarks/suite.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mammo_keras.atomic import write_json_atomically, write_text_atomically
from mammo_keras.bench import markdown_table, plan, run
from mammo_keras.bench.suite import CEILING, ceiling_spec, print_progress
from mammo_keras.provenance import provenance

CONFIGURATIONS = [  # (models, heads, image size, batch)
    (["baseline_cnn", "convnext_tiny", "inception_v3"], ["gap", "gagm_se"], 224, 16),
    (["baseline_cnn"], ["gagm_se"], 512, 4),
    (["hds_unet"], ["hds"], "512x384", 8),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for suite.{json,md}")
    parser.add_argument("--steps", type=int, default=1, help="train / infer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the median is kept")
    args = parser.parse_args()
    specs = [spec for models, heads, size, batch in CONFIGURATIONS
             for spec in plan(models, heads, ["train", "infer"], size, batch,
                              steps=args.steps, repeats=args.repeats)
             if spec["model"] != CEILING]
    rows = run(specs + [ceiling_spec(args.repeats)], progress=print_progress)
    facts = provenance()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "suite.json", {**facts, "rows": rows})
    write_text_atomically(out / "suite.md", "\n".join([
        "# mammo-keras benchmark suite", "",
        f"Command: `{facts['command']}`, commit {facts['commit']}, {facts['hardware']}.",
        f"Median of {args.repeats} runs of {args.steps} step(s) after a warm-up; each row in "
        "its own process. Train: AdamW step through `train_on_batch` (keras.applications "
        "rows: default Adam, TF defaults); PyTorch rows: plain loop, GAP head. GFLOP/s count "
        "convolutions and dense layers, a train step as 3x the forward pass.", "",
        markdown_table(rows)]))


if __name__ == "__main__":
    main()
