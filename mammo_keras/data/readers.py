"""`read_image`: any supported mammogram file -> (float32 (H, W) in [0, 1], metadata).

Formats are recognised by their content, not their extension: DICOM (the "DICM"
marker, or a .dcm / .dicom name), PGM (MIAS), PNG 8 / 16-bit, JPEG, TIFF, BMP.
Colour files (e.g. JPEG exports) are converted to luminance. Images come back at
full resolution; `mammo_keras.data.preprocessing` crops and resizes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mammo_keras.data.archive import read_bytes
from mammo_keras.data.dicom import read_dicom
from mammo_keras.data.errors import DataError

_RASTER_MAGIC = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"II*\x00": "tiff",
                 b"MM\x00*": "tiff", b"P5": "pgm", b"P2": "pgm", b"BM": "bmp"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
SUPPORTED = "DICOM, PGM, PNG, JPEG, TIFF or BMP"


def sniff_format(data: bytes, path: str | Path = "") -> str | None:
    """"dicom", "png", "jpeg", "tiff", "pgm", "bmp", or None when unrecognised."""
    if data[128:132] == b"DICM":
        return "dicom"
    for magic, name in _RASTER_MAGIC.items():
        if data.startswith(magic):
            return name
    if str(path).lower().endswith((".dcm", ".dicom")):
        return "dicom"  # DICOM without the 128-byte preamble
    return None


def read_raster(data: bytes, path: str, fmt: str) -> tuple[np.ndarray, dict]:
    """Decode a PGM / PNG / JPEG / TIFF / BMP file with Pillow into [0, 1]."""
    try:
        picture = Image.open(io.BytesIO(data))
        picture.load()
    except Image.DecompressionBombError as error:
        raise DataError(path, f"image too large to decode safely ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(path, f"unreadable {fmt.upper()} ({error})") from error
    mode = picture.mode
    if mode in _SIXTEEN_BIT_MODES:
        pixels, scale = np.asarray(picture, dtype=np.uint16), 65535.0
    elif mode in ("I", "F"):
        pixels = np.asarray(picture, dtype=np.float64)
        scale = 65535.0 if mode == "I" and 0 <= pixels.min() and pixels.max() <= 65535 else None
    else:
        if mode != "L":
            picture = picture.convert("L")  # colour or palette: ITU-R 601 luminance
        pixels, scale = np.asarray(picture, dtype=np.uint8), 255.0
    if pixels.size == 0:
        raise DataError(path, "empty image")
    if scale is None:  # floating-point or 32-bit data: stretch its own range
        lo, hi = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        image = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    else:
        image = pixels / scale
    meta = {"format": fmt, "laterality": None, "view": None, "mode": mode,
            "bits_stored": 16 if scale == 65535.0 else 8 if scale == 255.0 else None,
            "original_shape": tuple(pixels.shape)}
    return np.nan_to_num(image).astype(np.float32), meta


def decode_image(data: bytes, path: str | Path) -> tuple[np.ndarray, dict]:
    """Decode the bytes of an image file; `path` names it in errors and metadata."""
    path = str(path)
    if not data:
        raise DataError(path, "empty file")
    fmt = sniff_format(data, path)
    if fmt is None:
        raise DataError(path, f"unsupported file format (expected {SUPPORTED})")
    image, meta = read_dicom(data, path) if fmt == "dicom" else read_raster(data, path, fmt)
    meta["source_path"] = path
    return image, meta


def read_image(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read a mammogram at full resolution.

    Args:
        path: a file (DICOM, PGM, PNG 8/16-bit, JPEG, TIFF, BMP) or a member of an
            archive addressed as "<archive>::<member>" (e.g. "all-mias.tar.gz::mdb001.pgm").

    Returns:
        (image, meta): image float32 (H, W) in [0, 1], bright = dense (DICOM
        MONOCHROME1 is inverted); meta a dict with at least `laterality`
        ("L" / "R" / None), `view` ("CC" / "MLO" / None), `source_path`, `format`
        and `original_shape`, plus the DICOM tags that matter (patient id,
        transfer syntax, bits stored, pixel spacing).

    Raises:
        DataError (a ValueError): one line "<path>: <problem>" for a missing,
            empty, truncated, corrupt or unsupported file.

    Example::

        image, meta = read_image("mammogram.dcm")
        image.dtype, image.min() >= 0, image.max() <= 1, meta["laterality"]
        # (dtype('float32'), True, True, 'L')
    """
    return decode_image(read_bytes(path), path)
