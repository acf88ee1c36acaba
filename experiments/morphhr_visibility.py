"""How visible the MorphHR phantoms' calcification clusters are at each training resolution.

For phantoms drawn as `experiments/morphhr_phantoms.yaml` draws them, the lesion's added
signal and the film are area-downsampled to S x S (what the pipeline's resize does to a
512 x 400 film, up to the aspect change), and the cluster's peak signal is divided by the
standard deviation of the film's high-pass residue (film minus its 3 x 3 mean) inside the
breast: about 1 means the cluster is lost in the tissue texture, 5 or more that it stands out.

    python experiments/morphhr_visibility.py --out experiments/results/morphhr_phantoms
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


from mammo_keras.data.synthetic import PhantomSpec, compose_film, draw_phantom_layers
from mammo_keras.provenance import provenance
from mammo_keras.yaml_files import read_yaml

SIZES = (64, 128, 256, 512)
FINDINGS = ("benign_calcification", "malignant_calcification")


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf

    return tf.image.resize(image[None, ..., None].astype(np.float32), (size, size),
                           method="area").numpy()[0, ..., 0]


def visibility(spec: PhantomSpec, size: int) -> float:
    """Peak lesion signal over the tissue's high-pass std at `size` px."""
    layers = draw_phantom_layers(spec)
    film = area_resize(compose_film(layers), size)
    lesion = area_resize(layers.lesion, size)
    inside = area_resize(layers.breast.astype(np.float32), size) > 0.99
    padded = np.pad(film, 1, mode="edge")
    local_mean = sum(padded[r:r + size, c:c + size] for r in range(3) for c in range(3)) / 9
    return float(lesion.max() / (film - local_mean)[inside].std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("experiments/morphhr_phantoms.yaml"))
    parser.add_argument("--phantoms", type=int, default=12, help="per finding")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/morphhr_phantoms"))
    args = parser.parse_args()
    options = read_yaml(args.config)["data"]["synthetic"]
    rows = []
    for finding in FINDINGS:
        for seed in range(args.phantoms):
            spec = PhantomSpec(seed=1000 + seed, size=options["size"], finding=finding,
                               contrast=options["contrast"],
                               lesion_scale=options["lesion_scale"],
                               calcification_radius=options["calcification_radius"])
            rows.append({"finding": finding, "seed": spec.seed,
                         **{str(size): visibility(spec, size) for size in SIZES}})
    summary = {finding: {str(size): [float(np.median([r[str(size)] for r in rows
                                                      if r["finding"] == finding])),
                                     float(np.min([r[str(size)] for r in rows
                                                   if r["finding"] == finding])),
                                     float(np.max([r[str(size)] for r in rows
                                                   if r["finding"] == finding]))]
                         for size in SIZES} for finding in FINDINGS}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {**provenance(), "command": "python experiments/morphhr_visibility.py",
              "phantom_options": options, "sizes": SIZES, "summary": summary, "rows": rows}
    (args.out / "visibility.json").write_text(json.dumps(record, indent=1))
    lines = ["| finding | " + " | ".join(f"{s} px" for s in SIZES) + " |",
             "|---|" + "---:|" * len(SIZES)]
    for finding in FINDINGS:
        cells = [f"{m:.1f} ({lo:.1f}-{hi:.1f})" for m, lo, hi in
                 (summary[finding][str(s)] for s in SIZES)]
        lines.append(f"| {finding} | " + " | ".join(cells) + " |")
    (args.out / "visibility.md").write_text(
        "Cluster peak over tissue high-pass std, median (min-max) of "
        f"{args.phantoms} phantoms per finding\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
