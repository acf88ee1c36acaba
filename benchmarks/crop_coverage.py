"""Breast-crop coverage: how much of the true breast the crop keeps, on every kind of mammogram.

Runs `read_image` + `breast_geometry` on the crop test set (`mammo_keras.devtools.crop_testset`:
film, faint-edged film, full-field digital "for presentation", breasts cut by the image
edges, labels touching the breast; densities A-D, CC and MLO; 8-bit, 12-in-16-bit PNG / TIFF,
DICOM MONOCHROME1 / 2, JPEG, PGM) written to real files, and scores each crop against the
phantom's true breast mask. On MIAS (when `../shared/data/mias/all-mias.tar.gz` is there) it
counts the lesion centres inside the crop. Also times the crop against the area resize every
image goes through anyway (the reference, measured in the same run).

    python benchmarks/crop_coverage.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from mammo_keras.data import load_records, read_image
from mammo_keras.devtools.crop_testset import crop_test_cases, score_crop, write_case
from mammo_keras.data.preprocessing import breast_geometry

MIAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mias" / "all-mias.tar.gz"
GEOMETRY = tf.function(breast_geometry, input_signature=[tf.TensorSpec([None, None], tf.float32)])


def test_set_rows(size: int, seed: int) -> list[dict]:
    """One row per case: kind, density, view, encoding, coverage, artefacts kept, box size."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in crop_test_cases(size=size, seed=seed):
            image, _ = read_image(write_case(case, folder))
            scores = score_crop(case, GEOMETRY(image).numpy())
            rows.append({"name": case.file_name, "kind": case.kind, "density": case.density,
                         "view": case.view, "encoding": case.encoding,
                         "laterality": case.laterality, **scores,
                         "flip_right": scores["flipped"] == (case.laterality == "R")})
    return rows


def mias_rows() -> dict | None:
    if not MIAS.exists():
        return None
    inside = total = 0
    areas = []
    for record in load_records("mias", root=MIAS):
        image, _ = read_image(record.path)
        flipped, top, left, height, width = GEOMETRY(image).numpy()
        areas.append(float(height * width / image.size))
        for roi in record.rois:
            x = image.shape[1] - 1 - roi.x if flipped else roi.x
            total += 1
            inside += bool((top <= roi.y < top + height) and (left <= x < left + width))
    return {"films": len(areas), "lesions": total, "lesions_inside": inside,
            "mean_box_area": float(np.mean(areas))}


def timing(size: int, repeats: int) -> dict:
    """Median ms per image of the crop and of the area resize to 256 (the reference)."""
    case = crop_test_cases(size=size, kinds=("presentation",))[5]
    image = tf.constant(case.image)
    resize = tf.function(lambda x: tf.image.resize(x[..., None], [256, 256], method="area"),
                         input_signature=[tf.TensorSpec([None, None], tf.float32)])

    def median_ms(run):
        run(image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(image).numpy()
            times.append(1e3 * (time.perf_counter() - start))
        return statistics.median(times)

    crop_ms, resize_ms = median_ms(GEOMETRY), median_ms(resize)
    return {"image": list(case.image.shape), "crop_ms": crop_ms, "resize_ms": resize_ms,
            "crop_over_resize": crop_ms / resize_ms}


def summary(rows: list[dict]) -> list[dict]:
    table = []
    for kind in ["all"] + sorted({row["kind"] for row in rows}):
        chosen = [row for row in rows if kind in ("all", row["kind"])]
        coverage = np.array([row["coverage"] for row in chosen])
        table.append({"kind": kind, "n": len(chosen), "min": float(coverage.min()),
                      "p05": float(np.percentile(coverage, 5)),
                      "median": float(np.median(coverage)),
                      "below_99": int((coverage < 0.99).sum()),
                      "below_90": int((coverage < 0.90).sum()),
                      "below_50": int((coverage < 0.50).sum()),
                      "artefacts_kept_max": max(row["artefacts_kept"] for row in chosen),
                      "box_over_breast_median": float(np.median([row["box_over_breast"]
                                                                 for row in chosen])),
                      "flip_right": sum(row["flip_right"] for row in chosen)})
    return table


def markdown(result: dict) -> str:
    lines = [f"# Breast-crop coverage ({result['label']})", "",
             f"`{result['command']}` at commit {result['commit']} on {result['hardware']}; "
             f"test set at {result['size']} px, seed {result['seed']}.", "",
             "Coverage: the fraction of the phantom's true breast (skin line included) inside "
             "the crop box. Artefacts kept: the largest fraction, over the cases, of label / "
             "marker / film-edge pixels a rectangle could leave out that the box kept. Flip: "
             "cases whose chest wall ended on the left.", "",
             "| kind | n | min | 5 % | median | < 99 % | < 90 % | < 50 % | artefacts kept "
             "(max) | box / breast box | flip right |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["summary"]:
        lines.append(f"| {row['kind']} | {row['n']} | {row['min']:.3f} | {row['p05']:.3f} | "
                     f"{row['median']:.3f} | {row['below_99']} | {row['below_90']} | "
                     f"{row['below_50']} | {row['artefacts_kept_max']:.3f} | "
                     f"{row['box_over_breast_median']:.2f} | {row['flip_right']} / {row['n']} |")
    worst = sorted(result["cases"], key=lambda row: row["coverage"])[:8]
    lines += ["", "Lowest coverage:", "", "| case | kind | density | view | encoding | coverage |",
              "|---|---|---|---|---|---:|"]
    lines += [f"| {r['name']} | {r['kind']} | {r['density']} | {r['view']} | {r['encoding']} | "
              f"{r['coverage']:.3f} |" for r in worst]
    if result["mias"]:
        m = result["mias"]
        lines += ["", f"MIAS: {m['lesions_inside']} of {m['lesions']} lesion centres inside the "
                      f"crop over {m['films']} films; mean box area {m['mean_box_area']:.2f} of "
                      "the film."]
    t = result["timing"]
    lines += ["", f"Speed ({t['image'][0]} x {t['image'][1]} image, median of "
                  f"{result['repeats']}): crop {t['crop_ms']:.1f} ms, area resize to 256 "
                  f"{t['resize_ms']:.1f} ms: the crop costs {t['crop_over_resize']:.1f}x the "
                  "resize.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--size", type=int, default=1024, help="phantom height in px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--label", default="crop_coverage", help="file stem of the results")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    rows = test_set_rows(args.size, args.seed)
    result = {"label": args.label, "command": "python " + " ".join(sys.argv), "commit": commit,
              "hardware": f"{platform.processor() or platform.machine()}, "
                          f"{__import__('os').cpu_count()} cores",
              "size": args.size, "seed": args.seed, "repeats": args.repeats,
              "summary": summary(rows), "cases": rows, "mias": mias_rows(),
              "timing": timing(args.size, args.repeats)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / f"{args.label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
