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
from mammo_keras.data.limits import check_finite, check_mammogram, check_pixel_count
from mammo_keras.data.naming import laterality_and_view_from_name

_RASTER_MAGIC = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"II*\x00": "tiff",
                 b"MM\x00*": "tiff", b"P5": "pgm", b"P2": "pgm", b"BM": "bmp"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
SUPPORTED = "DICOM, PGM, PNG, JPEG, TIFF or BMP"
CONTAINER_DEPTHS = (8, 10, 12, 14, 16)  # bit depths a 16-bit container is read as
_TIFF_MAX_SAMPLE_VALUE = 281


def _png_significant_bits(data: bytes) -> int | None:
    """The sBIT chunk's grey-channel depth of a PNG file, or None when it has none."""
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind == b"sBIT" and length >= 1:
            return data[position + 8]
        if kind in (b"IDAT", b"IEND"):
            return None
        position += 12 + length
    return None


def container_bits(pixels: np.ndarray, declared: int | None = None) -> tuple[int, str]:
    """The bit depth of the values in a 16-bit container, and how it was found.

    A declared depth (PNG sBIT, TIFF MaxSampleValue) is used when the values fit in it;
    values above it were scaled up to the container, as the PNG specification asks,
    and the maximum rule reads them. The rule: the smallest of 8, 10, 12, 14 and 16 bits
    that holds the image's maximum (a 16-bit PNG of a 12-bit detector, maximum <= 4095,
    is read as 12-bit). Returns (bits, "declared" | "maximum").

    >>> container_bits(np.array([0, 4095])), container_bits(np.array([0, 3000]), declared=14)
    ((12, 'maximum'), (14, 'declared'))
    """
    maximum = int(pixels.max()) if pixels.size else 0
    if declared is not None and 1 <= declared <= 16 and maximum < 2 ** declared:
        return int(declared), "declared"
    return next(bits for bits in CONTAINER_DEPTHS if maximum < 2 ** bits), "maximum"


def _declared_bits(data: bytes, fmt: str, picture: Image.Image) -> int | None:
    if fmt == "png":
        return _png_significant_bits(data)
    if fmt == "tiff":
        maximum = getattr(picture, "tag_v2", {}).get(_TIFF_MAX_SAMPLE_VALUE)
        if isinstance(maximum, tuple):
            maximum = maximum[0] if maximum else None
        if maximum and int(maximum) < 65535:
            return int(maximum).bit_length()
    return None


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
    """Decode a PGM / PNG / JPEG / TIFF / BMP file with Pillow into [0, 1]; whatever Pillow
    raises on a corrupt file (its plugins raise KeyError, IndexError... too) becomes a
    `DataError` naming the file."""
    try:
        return _read_raster(data, path, fmt)
    except DataError:
        raise
    except Exception as error:
        raise DataError(path, f"corrupt {fmt.upper()} ({type(error).__name__}: {error})") \
            from None


def _read_raster(data: bytes, path: str, fmt: str) -> tuple[np.ndarray, dict]:
    try:
        picture = Image.open(io.BytesIO(data))
        check_pixel_count(path, picture.size[1], picture.size[0],
                          getattr(picture, "n_frames", 1))
        picture.load()
    except Image.DecompressionBombError as error:
        raise DataError(path, f"image too large to decode safely ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(path, f"unreadable {fmt.upper()} ({error})") from error
    mode = picture.mode
    bits, rule = None, None
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        pixels = np.asarray(picture)
        if mode == "I" and not (pixels.size and 0 <= pixels.min() and pixels.max() <= 65535):
            pixels, scale = pixels.astype(np.float64), None  # signed or 32-bit data
        else:
            bits, rule = container_bits(pixels, _declared_bits(data, fmt, picture))
            pixels, scale = np.minimum(pixels, 2 ** bits - 1), float(2 ** bits - 1)
    elif mode == "F":
        pixels, scale = np.asarray(picture, dtype=np.float64), None
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
            "bits_stored": bits if bits is not None else 8 if scale == 255.0 else None,
            "bits_rule": rule, "original_shape": tuple(pixels.shape)}
    return check_finite(image, path).astype(np.float32), meta


def decode_image(data: bytes, path: str | Path, mammogram: bool = True
                 ) -> tuple[np.ndarray, dict]:
    """Decode the bytes of an image file; `path` names it in errors and metadata.
    `mammogram`: refuse what cannot be one (`check_mammogram`); False for masks."""
    path = str(path)
    if not data:
        raise DataError(path, "empty file")
    fmt = sniff_format(data, path)
    if fmt is None:
        raise DataError(path, f"unsupported file format (expected {SUPPORTED})")
    image, meta = read_dicom(data, path) if fmt == "dicom" else read_raster(data, path, fmt)
    if mammogram:
        check_mammogram(image, path)
    meta["source_path"] = path
    named = dict(zip(("laterality", "view"), laterality_and_view_from_name(path)))
    for key, value in named.items():  # tags win over the name
        if meta.get(key) is None and value is not None:
            meta[key] = value
            meta["laterality_source"] = meta.get("laterality_source") or "file name"
    return image, meta


def read_image(path: str | Path, mammogram: bool = True) -> tuple[np.ndarray, dict]:
    """Read a mammogram at full resolution.

    Args:
        path: a file (DICOM, PGM, PNG 8/16-bit, JPEG, TIFF, BMP) or a member of an
            archive addressed as "<archive>::<member>" (e.g. "all-mias.tar.gz::mdb001.pgm").
        mammogram: refuse an image that cannot be a mammogram (under 16 px on a side, or
            blank); False to read a lesion mask, which may be blank.

    Returns:
        (image, meta): image float32 (H, W) in [0, 1], bright = dense (DICOM
        MONOCHROME1 is inverted); meta a dict with at least `laterality`
        ("L" / "R" / None), `view` ("CC" / "MLO" / None), `source_path`, `format`
        and `original_shape`, plus the DICOM tags that matter (patient id,
        transfer syntax, bits stored, pixel spacing). Laterality and view come from
        the DICOM tags, else from the file name (`laterality_and_view_from_name`);
        `laterality_source` says which. 16-bit PNG / TIFF are scaled by the bit depth
        of their values (`container_bits`: 12-bit values in a 16-bit file reach 1.0).

    Raises:
        DataError (a ValueError): one line "<path>: <problem>" for a missing,
            empty, truncated, corrupt or unsupported file, and for one that is no
            mammogram to classify (`mammo_keras.data.limits`: over the pixel limit, checked
            from the header before decoding; non-finite values; with `mammogram`, under
            16 px on a side or blank).

    Example::

        image, meta = read_image("mammogram.dcm")
        image.dtype, image.min() >= 0, image.max() <= 1, meta["laterality"]
        # (dtype('float32'), True, True, 'L')
    """
    return decode_image(read_bytes(path), path, mammogram)
