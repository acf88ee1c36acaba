"""`crop_contact_sheet`: what the model sees, for a user's own mammograms.

One tile pair per file: the image as read with the crop box (yellow), and the model input
that `preprocess` makes of it. `mammo-keras data crops FILES --out sheet.png` runs it, so a
site can check the crop on its own data before training or serving. Unreadable files are
listed, never fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


from mammo_keras.errors import UserError
from mammo_keras.atomic import atomic_path
from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import read_image


def crop_contact_sheet(paths: Sequence[str | Path], out: str | Path, size: int = 224,
                       window: bool = False, columns: int = 4
                       ) -> tuple[Path, list[dict], list[DataError]]:
    """Draw the crop of every readable file in `paths` into one PNG.

    Args:
        paths: image files (any format `read_image` reads; archive members too).
        out: the PNG to write.
        size: the model input size shown.
        window: show the input with the per-image intensity window.
        columns: files per row (each takes two tiles).

    Returns:
        (out, rows, skipped): rows {"path", "flipped", "laterality", "laterality_source",
        "box": [top, left, bottom, right] in the image as read, "box_fraction": the box's
        share of the image}, and a DataError per unreadable file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mammo_keras.data.preprocessing import crop_box_in_original, preprocess

    shown, rows, skipped = [], [], []
    for path in paths:
        try:
            image, meta = read_image(path)
        except DataError as error:
            skipped.append(error)
            continue
        processed, geometry = preprocess(image, size, window=window,
                                         laterality=meta.get("laterality"))
        box = crop_box_in_original(geometry.numpy(), image.shape)
        rows.append({"path": str(path), "flipped": bool(geometry.numpy()[0] > 0.5),
                     "laterality": meta.get("laterality"),
                     "laterality_source": meta.get("laterality_source"),
                     "box": [int(v) for v in box],
                     "box_fraction": float((box[2] - box[0]) * (box[3] - box[1]) / image.size)})
        shown.append((image, processed.numpy()[..., 0], box, rows[-1]))
    if not shown:
        raise UserError("no readable image to draw: " + "; ".join(str(e) for e in skipped)
                         if skipped else "no image files given")
    columns = max(1, min(columns, len(shown)))
    lines = -(-len(shown) // columns)
    figure, axes = plt.subplots(lines, 2 * columns, figsize=(3.2 * columns, 2.4 * lines),
                                squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for index, (image, model_input, (top, left, bottom, right), row) in enumerate(shown):
        line, column = divmod(index, columns)
        original, processed = axes[line, 2 * column], axes[line, 2 * column + 1]
        original.imshow(image, cmap="gray", vmin=0, vmax=1)
        original.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False,
                                         edgecolor="yellow", lw=1.2))
        side = row["laterality"] or "?"
        original.set_title(f"{Path(str(row['path']).split('::')[-1]).name[:28]}\n"
                           f"laterality {side}, box {100 * row['box_fraction']:.0f} %",
                           fontsize=6)
        processed.imshow(model_input, cmap="gray", vmin=0, vmax=1)
        processed.set_title(f"model input {size} px" + (", windowed" if window else ""),
                            fontsize=6)
    figure.tight_layout()
    with atomic_path(out) as partial:
        figure.savefig(partial, dpi=120, format="png")
    plt.close(figure)
    return Path(out), rows, skipped
