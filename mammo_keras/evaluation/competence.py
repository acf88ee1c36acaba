"""What a model was trained on, said beside each answer where the input is unlike it.

`evaluate` states it in its report; an answer alone (`predict`, `explain`, the dashboard, a
case report) carries the same statement, so that a model trained on phantoms calling a
real film "malignant" is read for what it is.

    >>> from mammo_keras.models.description import ModelDescription
    >>> demo = ModelDescription(provenance={"dataset": "synthetic",
    ...                                     "image_shape": {"median": [512, 416]}})
    >>> answer_note(demo, (3328, 2560))
    'the model was trained on synthetic phantoms only, never on real mammograms: this answer says nothing about a real film; this image is 3328 x 2560 px where the training images were 512 x 416 px (median)'
"""

from __future__ import annotations

from typing import Sequence

SIZE_TOLERANCE = 1.25  # a side this many times larger or smaller than training's is noted
SOURCE_NAMES = {"synthetic": "synthetic phantoms", "mias": "MIAS",
                "cbis_ddsm": "CBIS-DDSM", "inbreast": "INbreast",
                "kaggle_merged": "the Kaggle merged set", "folder": "image folders"}


def model_note(description) -> str | None:
    """What every answer of the model should carry: its training data when it is not real
    mammograms (phantoms), else None."""
    provenance = description.provenance or {}
    if provenance.get("dataset") == "synthetic":
        return ("the model was trained on synthetic phantoms only, never on real mammograms: "
                "this answer says nothing about a real film")
    return None


def trained_on(description) -> str:
    """"MIAS (214 training images)"-like words for the model's training data."""
    provenance = description.provenance or {}
    dataset = provenance.get("dataset")
    name = SOURCE_NAMES.get(dataset, dataset)
    images = (provenance.get("images") or {}).get("train")
    return f"{name or 'unknown data'}" + (f" ({images} training images)" if images else "")


def answer_note(description, shape: Sequence[int] | None, view: str | None = None) -> str:
    """The notes of one answer ("" when the input is like the training data): the model's
    own (`model_note`), a size unlike the training images' (`shape`: the input's (H, W) as
    read) and a view the model never trained on (`view`: "CC" / "MLO" / None)."""
    notes = [note for note in (model_note(description), size_note(description, shape),
                               view_note(description, view)) if note]
    return "; ".join(notes)


def view_note(description, view: str | None) -> str | None:
    """A note when the image's view is known and the model trained on other views only (a
    MIAS model, MLO films only, shown a CC film)."""
    views = (description.provenance or {}).get("views") or {}
    if not view or not views or views.get(view):
        return None
    return (f"this is a {view} view; the model was trained on {' and '.join(views)} views "
            "only")


def size_note(description, shape: Sequence[int] | None) -> str | None:
    """A note when the image (H, W) is far from the training images' median size."""
    median = ((description.provenance or {}).get("image_shape") or {}).get("median")
    if not shape or not median or not all(median):
        return None
    ratios = [here / there for here, there in zip(shape, median)]
    if all(1 / SIZE_TOLERANCE <= ratio <= SIZE_TOLERANCE for ratio in ratios):
        return None
    return (f"this image is {shape[0]} x {shape[1]} px where the training images were "
            f"{median[0]} x {median[1]} px (median)")
