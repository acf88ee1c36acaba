"""Peak memory of `predict_files` against the number of files: streamed vs an in-memory cache.

Writes 2,000 synthetic phantoms (PNG, 256 px), then, each in a fresh process, predicts the
first N of them with an untrained baseline CNN (224 px input) and records the process's peak
resident memory: once through `predict_files` (which streams: nothing is cached), and once
through the same `load_dataset` pass with `cache=True`, the way `predict` worked before
(the reference, measured in the same run). Memory that is flat in N is the target.

    python benchmarks/predict_memory.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

COUNTS = (250, 2000)
SIZE = 224


def child(root: str, count: int, mode: str) -> None:
    """Predict the first `count` files under `root`; print the peak RSS in MiB as JSON."""
    import keras

    from mammo_keras.data.pipeline import load_dataset
    from mammo_keras.data.records import Record
    from mammo_keras.export.runtime import keras_predictor
    from mammo_keras.models import build_classifier
    from mammo_keras.predict import collect_files, predict_files

    keras.utils.set_random_seed(0)
    predictor = keras_predictor(build_classifier("baseline_cnn", "gagm_se", 3, (SIZE, SIZE, 1)))
    files = collect_files([root])[0][:count]
    if mode == "streamed":
        rows, skipped = predict_files(predictor, files, batch_size=16)
        done = len(rows)
    else:
        records = [Record(path=p, label=None, density=None, patient_id=None, laterality=None,
                          view=None, source="predict") for p in files]
        done = 0
        for images, _ in load_dataset(records, target=None, image_size=SIZE, batch_size=16,
                                      cache=True, **predictor.preprocessing):
            done += len(predictor(images.numpy()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"files": done, "mode": mode, "peak_rss_mib": round(peak, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    from mammo_keras.data.synthetic_writer import write_synthetic
    from mammo_keras.provenance import provenance

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = write_synthetic(Path(folder) / "phantoms", max(COUNTS), size=256, fmt="folder")
        for count in COUNTS:
            for mode in ("streamed", "cached"):
                result = subprocess.run([sys.executable, __file__, "--child", str(root),
                                         str(count), mode], capture_output=True, text=True,
                                        check=True)
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    peak = {(row["mode"], row["files"]): row["peak_rss_mib"] for row in rows}
    small, large = COUNTS
    summary = {mode: {"growth_mib": round(peak[mode, large] - peak[mode, small], 1),
                      "ratio_large_to_small": round(peak[mode, large] / peak[mode, small], 3)}
               for mode in ("streamed", "cached")}
    record = {**provenance(), "image_size": SIZE,
              "rows": rows, "summary": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# predict: peak memory against the number of files", "",
             f"Untrained baseline CNN (gagm_se), {SIZE} px input, synthetic 256 px PNG phantoms; "
             "each cell a fresh process; `python benchmarks/predict_memory.py`; commit "
             f"{record.get('commit')}.", "",
             "| mode | files | peak RSS (MiB) |", "|---|---:|---:|"]
    lines += [f"| {row['mode']} | {row['files']} | {row['peak_rss_mib']} |" for row in rows]
    lines += ["", f"Growth from {small} to {large} files: streamed "
              f"{summary['streamed']['growth_mib']} MiB, in-memory cache (the old path) "
              f"{summary['cached']['growth_mib']} MiB."]
    (args.out / "predict_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
