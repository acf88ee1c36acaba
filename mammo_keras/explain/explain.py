"""Heat-maps on the original mammogram: preprocess -> Grad-CAM -> back through the geometry.

`explain_files` writes, per image, `<n>_<name>_overlay.png` (the uncropped mammogram,
at most 1024 px high, with the heat-map blended in, and under it the class explained, its
probability and the heat-map's colour bar) and `<n>_<name>_map.png` (the raw
map, 16-bit, at the original resolution), plus `explanations.csv`. A model whose
description names mask outputs (a segmentation, `mammo_keras.models.outputs`) also gets
`<n>_<name>_<mask>.png` per mask: its probabilities (16-bit) on the uncropped mammogram,
the model's own answer to "where", beside Grad-CAM's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import keras
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from mammo_keras.errors import UserError
from mammo_keras.data.errors import DataError  # noqa: E402
from mammo_keras.data.readers import read_image  # noqa: E402
from mammo_keras.explain import METHOD_NAMES  # noqa: E402
from mammo_keras.explain.gradcam import grad_cam, upsample  # noqa: E402
from mammo_keras.atomic import write_csv_atomically  # noqa: E402
from mammo_keras.evaluation.competence import answer_note  # noqa: E402
from mammo_keras.models.description import description_of  # noqa: E402
from mammo_keras.models.outputs import mask_outputs  # noqa: E402
from mammo_keras.models.output_checks import check_probabilities  # noqa: E402

DISPLAY_HEIGHT = 1024


def explain_image(model: keras.Model, image: np.ndarray, method: str = "gradcam",
                  layer: str | None = None, class_index: int | None = None,
                  preprocessing: dict | None = None, laterality: str | None = None) -> dict:
    """Grad-CAM of one full mammogram (H, W) in [0, 1], mapped back onto it.

    `laterality` ("L" / "R", from the file's tags or name) decides the flip when known.
    `preprocessing`: the `preprocess` options; default the model's description's.

    Returns {"heatmap": (H, W) float32 in [0, 1] (0 outside the breast crop),
    "class_index": int, "probabilities": (K,), "input": (S, S) model input,
    "geometry": [flipped, top, left, height, width] of the crop, "masks": {name: (H, W)
    float32 probabilities} of the mask outputs its description names ({} for a classifier)}.
    """
    description = description_of(model)
    preprocessor = dataclasses.replace(
        description, preprocessing={**description.preprocessing, **(preprocessing or {})}
    ).preprocessor()
    processed, geometry = preprocessor(image, laterality)
    maps, chosen, probabilities = grad_cam(model, processed[None], class_index, layer, method)
    check_probabilities(probabilities, model.name)
    square = upsample(maps, preprocessor.image_size)[0]
    heatmap = preprocessor.invert(square, geometry, image.shape[:2])[..., 0].numpy()
    return {"heatmap": np.clip(heatmap, 0.0, 1.0).astype(np.float32),
            "class_index": int(chosen[0]), "probabilities": probabilities[0],
            "input": processed.numpy()[..., 0], "geometry": geometry.numpy(),
            "masks": _masks_on_image(model, description, preprocessor, processed, geometry,
                                     image.shape[:2])}


def _masks_on_image(model: keras.Model, description, preprocessor, processed, geometry,
                    shape) -> dict:
    """{name: (H, W) float32} of the model's mask outputs, mapped back onto the image."""
    masks = mask_outputs(model, description)
    if not masks:
        return {}
    predicted = keras.Model(model.inputs, masks)(processed[None], training=False)
    return {name: np.clip(preprocessor.invert(keras.ops.convert_to_numpy(value)[0], geometry,
                                              shape)[..., 0].numpy(), 0.0, 1.0
                          ).astype(np.float32)
            for name, value in predicted.items()}


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5,
            height: int = DISPLAY_HEIGHT, caption: str | None = None) -> Image.Image:
    """An RGB picture: the grayscale image with the heat-map (jet) blended in where it is warm.

    `caption` (e.g. "Grad-CAM of malignant, P = 0.83") adds a band under the picture with
    it and the colour bar of the heat-map's 0..1 scale.
    """
    scale = min(1.0, height / image.shape[0])
    shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    gray = np.asarray(Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
                      .resize(shape, Image.BILINEAR), np.float32) / 255
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(shape, Image.BILINEAR))
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    weight = opacity * np.clip(heat, 0, 1)[..., None]
    blended = (1 - weight) * gray[..., None] + weight * colours
    picture = Image.fromarray((np.clip(blended, 0, 1) * 255).astype(np.uint8))
    return picture if caption is None else with_colour_bar(picture, caption)


def with_colour_bar(picture: Image.Image, caption: str) -> Image.Image:
    """`picture` with a white band below: `caption`, and the jet colour bar from 0 (low
    attention) to 1 (the map's maximum) with its ends labelled. The band's text and bar grow
    with the picture (readable on a full 3328 px film) and the band is never narrower than
    what it holds (nothing is cut on a thumbnail)."""
    unit = max(1.0, picture.width / 500)  # 1 up to a 500 px wide picture
    font = ImageFont.load_default(size=round(11 * unit))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin, bar_height = round(4 * unit), round(10 * unit)
    line = round(measure.textbbox((0, 0), "0 (max)", font=font)[3]) + margin
    ramp_width = round(200 * unit)
    bar_left = margin + round(measure.textlength("0", font=font)) + margin
    needed = max(bar_left + ramp_width + margin + round(measure.textlength("1 (max)", font=font))
                 + margin, margin + round(measure.textlength(caption, font=font)) + margin)
    canvas = Image.new("RGB", (max(picture.width, needed),
                               picture.height + 2 * line + bar_height + margin), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    top = picture.height + margin
    draw.text((margin, top), caption, fill="black", font=font)
    ramp = (colormaps["jet"](np.linspace(0, 1, ramp_width))[:, :3] * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(ramp[None], bar_height, axis=0)),
                 (bar_left, top + line))
    draw.text((margin, top + line), "0", fill="black", font=font)
    draw.text((bar_left + ramp_width + margin, top + line), "1 (max)", fill="black", font=font)
    return canvas


def explain_files(model: keras.Model, inputs: Sequence[str | Path], out: str | Path,
                  class_names: Sequence[str] | None = None, method: str = "gradcam",
                  layer: str | None = None, target_class: str | None = None,
                  preprocessing: dict | None = None,
                  progress: Callable[[int, int], None] | None = None
                  ) -> tuple[list[dict], list[DataError]]:
    """Explain every readable image of `inputs`; returns (rows of explanations.csv, skipped).

    `class_names` and `preprocessing` default to the model's description.
    """
    from mammo_keras.predict import collect_files

    description = description_of(model)
    class_names = list(class_names or description.class_names)
    if target_class is not None and target_class not in class_names:
        raise UserError(f"--class {target_class!r} is not one of {list(class_names)}")
    class_index = None if target_class is None else list(class_names).index(target_class)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_files(inputs)
    rows = []
    for number, path in enumerate(files, start=1):
        try:
            image, meta = read_image(path)
        except DataError as error:
            skipped.append(error)
            continue
        result = explain_image(model, image, method, layer, class_index, preprocessing,
                               meta.get("laterality"))
        stem = f"{number:04d}_{Path(path.split('::')[-1]).stem}"
        probability = float(result["probabilities"][result["class_index"]])
        note = answer_note(description, image.shape[:2], meta.get("view"))
        caption = (f"{METHOD_NAMES[method]} of {class_names[result['class_index']]}, "
                   f"P = {probability:.2f}" + (" (see the note in explanations.csv)"
                                               if note else ""))
        overlay(image, result["heatmap"], caption=caption).save(out / f"{stem}_overlay.png")
        Image.fromarray(np.round(result["heatmap"] * 65535).astype(np.uint16)).save(
            out / f"{stem}_map.png")
        for name, mask in result["masks"].items():
            Image.fromarray(np.round(mask * 65535).astype(np.uint16)).save(
                out / f"{stem}_{name}.png")
        probabilities = result["probabilities"]
        rows.append({"path": path, "prediction": class_names[int(np.argmax(probabilities))],
                     "explained_class": class_names[result["class_index"]],
                     **{f"p_{name}": float(p) for name, p in zip(class_names, probabilities)},
                     "overlay": f"{stem}_overlay.png", "map": f"{stem}_map.png",
                     **{name: f"{stem}_{name}.png" for name in result["masks"]},
                     "note": note})
        if progress is not None:
            progress(number, len(files))
    if rows:
        write_csv_atomically(out / "explanations.csv", rows)
    return rows, skipped
