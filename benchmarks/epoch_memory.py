"""Peak memory of one training epoch against the number of images: the row store vs the old path.

Writes synthetic phantoms (DICOM, 512 px), then, each in a fresh process, builds the training
pipeline of the first N at 512 px input (`load_dataset(training=True, cache=<file>)`, which
fills an `ImageStore` and shuffles row numbers) and runs one epoch, recording the process's
peak resident memory. The reference, in the same run: the path training had before, TensorFlow's
file cache followed by a shuffle over every image (`.cache(file).shuffle(N)`), fed by the
same decoding. Memory that is flat in N is the target.

    python benchmarks/epoch_memory.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

COUNTS = (100, 400)
SIZE = 512
BATCH = 16


def child(root: str, count: int, mode: str, cache: str) -> None:
    """One epoch over the first `count` phantoms; print the peak RSS in MiB as JSON."""
    from mammo_keras.data import load_records
    from mammo_keras.data.pipeline import load_dataset

    records = load_records("synthetic", root=root)[:count]
    if mode == "row_store":
        dataset = load_dataset(records, image_size=SIZE, batch_size=BATCH, training=True,
                               augment=False, cache=cache)
    else:  # the old path: the file cache, then a shuffle buffer of every image
        dataset = load_dataset(records, image_size=SIZE, batch_size=1, augment=False,
                               cache=False).unbatch().cache(cache).shuffle(
                                   count, seed=0, reshuffle_each_iteration=True).batch(BATCH)
        for _ in dataset:  # the first pass writes the cache (as the trainer's fill did)
            pass
    seen = sum(int(images.shape[0]) for images, _ in dataset)  # the training epoch
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": seen, "mode": mode, "peak_rss_mib": round(peak, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], args.child[3])
        return
    from mammo_keras.data.synthetic_writer import write_synthetic
    from mammo_keras.provenance import provenance

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = write_synthetic(Path(folder) / "phantoms", max(COUNTS), size=SIZE, fmt="dicom")
        for count in COUNTS:
            for mode in ("row_store", "file_cache_then_shuffle"):
                cache = Path(folder) / f"cache-{mode}-{count}"
                result = subprocess.run([sys.executable, __file__, "--child", str(root),
                                         str(count), mode, str(cache)], capture_output=True,
                                        text=True, check=True)
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    peak = {(row["mode"], row["images"]): row["peak_rss_mib"] for row in rows}
    small, large = COUNTS
    megabytes = (large - small) * SIZE * SIZE * 4 / 2 ** 20
    summary = {mode: {"growth_mib": round(peak[mode, large] - peak[mode, small], 1),
                      "growth_per_image_mib": round((peak[mode, large] - peak[mode, small])
                                                    / (large - small), 3)}
               for mode in ("row_store", "file_cache_then_shuffle")}
    record = {**provenance(), "image_size": SIZE, "batch_size": BATCH, "rows": rows,
              "summary": summary, "decoded_growth_mib": round(megabytes, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "epoch_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# One training epoch: peak memory against the number of images", "",
             f"Synthetic 512 px DICOM phantoms, {SIZE} px input, batch {BATCH}, no augmentation; "
             "each cell a fresh process (cache filled, then one shuffled epoch); "
             f"`python benchmarks/epoch_memory.py`; commit {record.get('commit')}; "
             f"{record.get('hardware')}.", "",
             "| path | images | peak RSS (MiB) |", "|---|---:|---:|"]
    lines += [f"| {row['mode']} | {row['images']} | {row['peak_rss_mib']} |" for row in rows]
    lines += ["", f"From {small} to {large} images ({megabytes:.0f} MiB more of preprocessed "
              f"float32 images): row store {summary['row_store']['growth_mib']} MiB, file "
              "cache then shuffle (the old path, measured in the same run) "
              f"{summary['file_cache_then_shuffle']['growth_mib']} MiB."]
    (args.out / "epoch_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
