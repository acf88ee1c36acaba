"""Does Grad-CAM point at the lesion? Pointing game and heat-map / mask IoU of a trained run.

For the images of one subset of a training run folder (written by `mammo-keras train` or
`run`) that have a lesion mask or ROI, each image is explained for its true class and
the heat-map, mapped back onto the original image, is compared with the mask.

    python experiments/gradcam_localization.py --run runs/quickstart --name quickstart
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import keras


from mammo_keras.explain import METHODS, localization_metrics
from mammo_keras.export.metadata import build_metadata
from mammo_keras.models import description_of
from mammo_keras.training.data_setup import dataset_records
from mammo_keras.provenance import provenance
from mammo_keras.yaml_files import read_yaml


def subset_records(run: Path, subset: str, data_dir: Path | None):
    """The records of `subset` in the run's splits.csv, with their ROIs and masks."""
    config = read_yaml(run / "config.yaml")
    candidates = [data_dir] if data_dir else [run / "data", run.parent.parent / "data"]
    folder = next((c for c in candidates if c and c.is_dir()), candidates[0])
    records = {record.path: record for record in dataset_records(config["data"], folder)}
    with open(run / "splits.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle) if row["split"] == subset]
    return [records[path] for path in paths if path in records]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a training run folder")
    parser.add_argument("--name", required=True, help="names the result files")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--method", choices=METHODS, default="gradcam")
    parser.add_argument("--data-dir", type=Path, help="where generated phantoms are")
    parser.add_argument("--out", default="experiments/results")
    args = parser.parse_args()
    run = Path(args.run)
    model = keras.saving.load_model(run / "model.keras")
    facts = build_metadata(model, description_of(model, run / "model.keras"),
                           str(run / "model.keras"), "keras")
    records = subset_records(run, args.subset, args.data_dir)
    result = localization_metrics(model, records, facts["class_names"], args.method,
                                  preprocessing=facts.get("preprocessing"))
    origin = provenance()
    summary = {**origin, "run": str(run), "subset": args.subset,
               "model": {"backbone": facts.get("backbone"), "head": facts.get("head"),
                         "trained_at": facts.get("training_data", {}).get("commit"),
                         "test_metrics": facts.get("metrics")},
               **{k: v for k, v in result.items() if k != "per_image"}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gradcam_localization_{args.name}.json").write_text(
        json.dumps({**summary, "per_image": result["per_image"]}, indent=2) + "\n")
    low, high = result["pointing_game_ci"]
    lines = [f"# Grad-CAM localization: {args.name}", "",
             f"{result['images']} images with a lesion in the {args.subset} subset of "
             f"`{run}` ({facts.get('backbone')} / {facts.get('head')}), {args.method}, each "
             "explained for its true class on the original image.", "",
             "| pointing game (95 % CI) | chance (lesion share of the crop) | IoU mean | "
             "IoU median |", "|---:|---:|---:|---:|",
             f"| {result['pointing_game']:.3f} ({low:.3f}-{high:.3f}) | "
             f"{result['chance_pointing']:.3f} | {result['iou_mean']:.3f} | "
             f"{result['iou_median']:.3f} |", "",
             f"A hit is a heat-map peak within {result['tolerance_px']:g} px of the lesion at "
             f"the model's input scale. IoU: heat-map >= {result['threshold']} against the "
             "lesion mask. "
             f"`{origin['command']}` at commit {origin['commit']}; {origin['hardware']}.", ""]
    (out / f"gradcam_localization_{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
