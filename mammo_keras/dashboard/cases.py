"""One uploaded case: bytes -> mammogram with the checks a web upload needs; display window;
the decision at a threshold.

>>> decide([0.2, 0.3, 0.5], ["normal", "benign", "malignant"], threshold=0.4)["flagged"]
True
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mammo_keras.data.errors import DataError
from mammo_keras.data.preprocessing import crop_box_in_original
from mammo_keras.data.readers import decode_image
from mammo_keras.dashboard.settings import DEFAULT_MAX_UPLOAD_MB

UPLOAD_TYPES = ("dcm", "dicom", "png", "pgm", "jpg", "jpeg", "tif", "tiff", "bmp")


def read_upload(name: str, data: bytes, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
                ) -> tuple[np.ndarray, dict]:
    """Decode an uploaded file into (image float32 (H, W) in [0, 1], metadata).

    The size is checked before anything is decoded: first the byte count against
    `max_upload_mb`, then (in every reader) the pixel count in the file's header against
    the pixel limit (`mammo_keras.data.limits`), so a huge or decompression-bomb file
    costs no memory.

    Raises:
        DataError: one line "<name>: <problem>" (too large, not an image, corrupt DICOM...).
    """
    limit = int(max_upload_mb * 1e6)
    if len(data) > limit:
        raise DataError(name, f"file of {len(data) / 1e6:.1f} MB is over the upload limit of "
                              f"{max_upload_mb:g} MB")
    return decode_image(data, name)  # it checks the header's pixel count before decoding


def window_level(image: np.ndarray, center: float = 0.5, width: float = 1.0) -> np.ndarray:
    """Display window of an image in [0, 1]: values center -/+ width / 2 map onto 0..1.

    Only the display changes; the model always sees the image as read.
    """
    width = max(float(width), 1e-6)
    low = float(center) - width / 2
    return np.clip((np.asarray(image, np.float32) - low) / width, 0.0, 1.0)


def positive_class(class_names: list[str]) -> str:
    """The class whose probability the decision threshold applies to: "malignant" when
    there is one, else the last class (e.g. density D)."""
    return "malignant" if "malignant" in class_names else class_names[-1]


def decide(probabilities, class_names: list[str], threshold: float) -> dict:
    """The decision on one case at `threshold` on P(positive class).

    Returns {"positive": name, "p_positive": float, "flagged": bool,
    "most_likely": name of the argmax class}.
    """
    probabilities = np.asarray(probabilities, np.float64)
    positive = positive_class(list(class_names))
    p = float(probabilities[list(class_names).index(positive)])
    return {"positive": positive, "p_positive": p, "flagged": p >= threshold,
            "most_likely": class_names[int(np.argmax(probabilities))]}


CROP_COLOUR = (255, 220, 0)


def draw_crop_box(picture: Image.Image, geometry, original_shape: tuple) -> Image.Image:
    """`picture` (the mammogram at any display scale) with the model's crop box drawn on it."""
    top, left, bottom, right = crop_box_in_original(geometry, original_shape)
    scale = picture.height / original_shape[0]
    marked = picture.convert("RGB")
    ImageDraw.Draw(marked).rectangle(
        [left * scale, top * scale, right * scale - 1, bottom * scale - 1],
        outline=CROP_COLOUR, width=max(2, picture.height // 300))
    return marked


def crop_caption(geometry, meta: dict) -> str:
    """One line on the crop: its size, and where the flip's laterality came from.

    >>> crop_caption([1, 0, 5, 300, 200], {"laterality": "R", "laterality_source": "file name"})
    'the breast crop the model sees (200 x 300 px), flipped: laterality R from the file name'
    """
    flipped, _, _, height, width = (float(v) for v in np.asarray(geometry))
    side, source = meta.get("laterality"), meta.get("laterality_source") or "file"
    source = source if source == "file name" else f"DICOM {source}"
    reason = f"laterality {side} from the {source}" if side else \
        "chest wall found from the pixels"
    return (f"the breast crop the model sees ({width:.0f} x {height:.0f} px), "
            f"{'flipped' if flipped > 0.5 else 'not flipped'}: {reason}")
