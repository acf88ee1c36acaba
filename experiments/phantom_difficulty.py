"""Is the synthetic task neither trivial nor hopeless? Train the baseline CNN on phantoms and watch.

Writes experiments/results/phantom_difficulty_c<contrast>_s<lesion scale>.{json,md}: per-epoch train and validation
accuracy of the baseline CNN (gagm_se) on normal / benign / malignant phantoms, split by
patient, at a CPU-affordable size, with the command, commit and hardware.

    python experiments/phantom_difficulty.py --count 300 --size 256 --image-size 128 --epochs 12 \
        --contrast 0.3 --lesion-scale 2.0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from mammo_keras.data import load_dataset, load_records, split_records, write_synthetic
from mammo_keras.data.synthetic import DEFAULT_CONTRAST, DEFAULT_LESION_SCALE
from mammo_keras.models import build_classifier


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=256, help="phantom height in px")
    parser.add_argument("--image-size", type=int, default=128, help="model input in px")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--contrast", type=float, default=DEFAULT_CONTRAST)
    parser.add_argument("--lesion-scale", type=float, default=DEFAULT_LESION_SCALE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    tag = f"c{args.contrast}_s{args.lesion_scale}"
    data = Path(tempfile.gettempdir()) / f"phantoms_{args.count}_{args.size}_{tag}"
    write_synthetic(data, args.count, size=args.size, fmt="dicom", seed=args.seed,
                    contrast=args.contrast, lesion_scale=args.lesion_scale)
    splits = split_records(load_records(data), (0.7, 0.15, 0.15), seed=args.seed)
    train = load_dataset(splits["train"], image_size=args.image_size, batch_size=16,
                         training=True, seed=args.seed)
    val = load_dataset(splits["val"], image_size=args.image_size, batch_size=16)
    model = build_classifier("baseline_cnn", "gagm_se", num_classes=3,
                             input_shape=(args.image_size, args.image_size, 1))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.time()
    history = model.fit(train, validation_data=val, epochs=args.epochs, verbose=2).history
    seconds = time.time() - start
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    counts = {name: len(members) for name, members in splits.items()}
    result = {"command": " ".join(["python"] + sys.argv), "commit": commit,
              "hardware": f"{os.cpu_count()} cores {platform.machine()}, TensorFlow "
                          f"{tf.__version__}, Keras {keras.__version__}",
              "images": counts, "train_seconds": round(seconds), "args": vars(args),
              "accuracy": [round(v, 3) for v in history["accuracy"]],
              "val_accuracy": [round(v, 3) for v in history["val_accuracy"]]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"phantom_difficulty_{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Phantom difficulty: baseline CNN (gagm_se) on synthetic phantoms", "",
             f"{args.count} phantoms ({args.size} px high) -> {args.image_size} px input, "
             f"contrast {args.contrast}, lesion scale {args.lesion_scale}; patient-grouped "
             f"split {counts}; chance = 1/3 "
             f"(validation classes are not balanced exactly).", "",
             "| epoch | train accuracy | validation accuracy |", "|---:|---:|---:|"]
    lines += [f"| {i + 1} | {a:.3f} | {v:.3f} |"
              for i, (a, v) in enumerate(zip(result["accuracy"], result["val_accuracy"]))]
    lines += ["", f"`{result['command']}` at commit {commit}; {result['hardware']}; "
                  f"{round(seconds)} s of training. One seed, no confidence interval: a "
                  "sanity check of the data set's difficulty, not a result.", ""]
    (out / f"phantom_difficulty_{tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
