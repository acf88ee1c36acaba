"""Draw docs/crop_examples.png: what the model sees, on phantoms of every kind of mammogram.

Columns: one case of each kind of the crop test set (`mammo_keras.devtools.crop_testset`),
written to its file format and read back as a user's file would be. Rows: the image as read
with the crop box (yellow) and the true breast outline (cyan); the model input
(`preprocess`, 224 px); the model input with the per-image intensity window. Phantoms only:
MIAS' licence forbids committing images derived from it.

    python docs/make_crop_examples.py --out docs/crop_examples.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from mammo_keras.data import read_image  # noqa: E402
from mammo_keras.devtools.crop_testset import make_case, score_crop, write_case  # noqa: E402
from mammo_keras.data.preprocessing import crop_box_in_original, preprocess  # noqa: E402

CASES = [  # (index, kind, density, view, laterality): one of each kind, densities A-D
    (0, "film", "A", "CC", "L"), (109, "faint_film", "B", "MLO", "R"),
    (216, "presentation", "C", "CC", "L"), (223, "presentation", "D", "MLO", "R"),
    (324, "edges", "D", "CC", "R"), (327, "edges", "B", "MLO", "L"),
    (432, "label_touching", "A", "CC", "L"), (437, "label_touching", "C", "MLO", "R")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/crop_examples.png"))
    parser.add_argument("--size", type=int, default=768, help="phantom height in px")
    args = parser.parse_args(argv)
    figure, axes = plt.subplots(3, len(CASES), figsize=(2.3 * len(CASES), 8.2))
    with tempfile.TemporaryDirectory() as folder:
        for column, (index, kind, density, view, laterality) in enumerate(CASES):
            case = make_case(index, kind, density, view, laterality, args.size)
            image, meta = read_image(write_case(case, folder))
            processed, geometry = preprocess(image, 224, laterality=meta.get("laterality"))
            windowed, _ = preprocess(image, 224, window=True,
                                     laterality=meta.get("laterality"))
            coverage = score_crop(case, geometry.numpy())["coverage"]
            top, left, bottom, right = crop_box_in_original(geometry.numpy(), image.shape)
            outline = case.breast & ~ndimage.binary_erosion(case.breast, iterations=3)
            shown = np.stack([image] * 3, axis=-1)
            shown[outline] = (0.0, 0.9, 1.0)
            axes[0, column].imshow(shown)
            axes[0, column].add_patch(plt.Rectangle((left, top), right - left, bottom - top,
                                                    fill=False, edgecolor="yellow", lw=1.5))
            axes[0, column].set_title(f"{kind.replace('_', ' ')}\n{density}, {view}, "
                                      f"{case.encoding}\n{case.file_name}", fontsize=7)
            axes[1, column].imshow(processed.numpy()[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[1, column].set_title(f"model input: breast kept {100 * coverage:.1f} %",
                                      fontsize=7)
            axes[2, column].imshow(windowed.numpy()[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[2, column].set_title("with window: true", fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_ylabel("as read: crop (yellow),\ntrue breast (cyan)", fontsize=8)
    axes[1, 0].set_ylabel("model input, 224 px", fontsize=8)
    axes[2, 0].set_ylabel("intensity window", fontsize=8)
    figure.suptitle("What the model sees: synthetic phantoms of the crop test set "
                    "(docs/make_crop_examples.py)", fontsize=10)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
