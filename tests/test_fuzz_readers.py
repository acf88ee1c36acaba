"""Fuzzing `read_image`: valid files of every format, mutated (truncated, bytes flipped,
inserted or deleted, runs of zeros or 0xFF), must give an image or a `DataError` naming the
file, within a time limit, and nothing else.

The seeds are small valid files written here (DICOM 12-bit MONOCHROME2 and MONOCHROME1, RLE
DICOM, PNG 8 and 16 bit, JPEG, TIFF 16 bit, PGM 16 bit, BMP). Hypothesis draws the
mutations; the fast suite runs a fixed (derandomised) sample per format, `-m slow` a long
random run. A failure prints the mutation that broke the reader, to replay it.
"""

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mammo_keras.data.dicom_writer import write_dicom
from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import decode_image
from tests.fuzzing import MUTATION, MUTATIONS, mutate, time_limit

SECONDS_PER_FILE = 5  # far above a healthy decode of these 48 x 40 images (milliseconds)


def _phantom() -> np.ndarray:
    rows, cols = np.mgrid[0:48, 0:40]
    return np.clip(0.2 + 0.6 * np.exp(-((rows - 24) ** 2 + (cols - 12) ** 2) / 300.0), 0, 1)


def _raster(mode: str, fmt: str) -> bytes:
    image = _phantom()
    pixels = (image * 65535).astype(np.uint16) if mode == "I;16" else \
        (image * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _dicom(tmp: Path, **options) -> bytes:
    return write_dicom(tmp / "seed.dcm", _phantom(), laterality="L", view="CC",
                       **options).read_bytes()


@functools.cache
def seeds() -> dict[str, bytes]:
    """One small valid file of each format (bytes), written once per test process."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        return {"dicom": _dicom(tmp),
                "dicom_monochrome1": _dicom(tmp, photometric="MONOCHROME1"),
                "dicom_rle": _dicom(tmp, transfer_syntax="rle"),
                "png8": _raster("L", "PNG"), "png16": _raster("I;16", "PNG"),
                "jpeg": _raster("L", "JPEG"), "tiff16": _raster("I;16", "TIFF"),
                "pgm16": _raster("I;16", "PPM"), "bmp": _raster("L", "BMP")}




def check_outcome(data: bytes, name: str) -> str:
    """Decode `data` as file `name`: "image" or "error"; anything else fails the test."""
    try:
        with time_limit(SECONDS_PER_FILE, name):
            image, meta = decode_image(data, name)
    except DataError as error:
        assert str(error).startswith(name), str(error)
        assert "\n" not in str(error), str(error)
        return "error"
    assert image.dtype == np.float32 and image.ndim == 2
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    return "image"


FORMATS = ["dicom", "dicom_monochrome1", "dicom_rle", "png8", "png16", "jpeg", "tiff16",
           "pgm16", "bmp"]
SUFFIX = {"dicom": ".dcm", "dicom_monochrome1": ".dcm", "dicom_rle": ".dcm", "png8": ".png",
          "png16": ".png", "jpeg": ".jpg", "tiff16": ".tif", "pgm16": ".pgm", "bmp": ".bmp"}


def test_every_seed_is_read():
    for name, data in seeds().items():
        assert check_outcome(data, f"seed{SUFFIX[name]}") == "image", name


def _fuzz(fmt: str, mutations) -> None:
    check_outcome(mutate(seeds()[fmt], mutations), f"fuzzed-{fmt}{SUFFIX[fmt]}")


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(mutations=MUTATIONS)
def test_a_mutated_file_is_an_image_or_one_clear_error(fmt, mutations):
    _fuzz(fmt, mutations)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_a_long_random_fuzz_finds_no_other_outcome(fmt, mutations):
    _fuzz(fmt, mutations)


# --- the hostile files of the issue, one by one ---------------------------------------------

def _dataset(tmp: Path):
    import pydicom

    return pydicom.dcmread(write_dicom(tmp / "base.dcm", _phantom(), bits_stored=12))


def _saved(ds, tmp: Path, name: str) -> bytes:
    ds.save_as(tmp / name, enforce_file_format=False)
    return (tmp / name).read_bytes()


def hostile_files(tmp: Path) -> dict[str, bytes]:
    """{name: bytes} of files a reader meets at other sites, each built to one fault."""
    files = {}
    ds = _dataset(tmp)
    ds.Rows = ds.Columns = 0
    files["zero_by_zero.dcm"] = _saved(ds, tmp, "zero.dcm")
    ds = _dataset(tmp)
    stored = ds.pixel_array.copy()
    stored[:8] |= 0xF000  # BitsStored 12, the four high bits set anyway
    ds.PixelData = stored.tobytes()
    files["high_bits_set.dcm"] = _saved(ds, tmp, "high.dcm")
    ds = _dataset(tmp)
    del ds.PhotometricInterpretation
    files["no_photometric.dcm"] = _saved(ds, tmp, "nophoto.dcm")
    ds = _dataset(tmp)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    files["palette_photometric.dcm"] = _saved(ds, tmp, "palette.dcm")
    raw = _saved(_dataset(tmp), tmp, "syntax.dcm")  # declares RLE, holds raw pixels
    assert raw.count(b"1.2.840.10008.1.2.1\x00") == 1
    files["wrong_transfer_syntax.dcm"] = raw.replace(b"1.2.840.10008.1.2.1\x00",
                                                     b"1.2.840.10008.1.2.5\x00")
    ds = _dataset(tmp)
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3
    files["multi_frame.dcm"] = _saved(ds, tmp, "frames.dcm")
    ds = _dataset(tmp)
    values = _phantom().astype(np.float32)
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored = 32, 32
    for key in ("HighBit", "PixelRepresentation"):
        delattr(ds, key)
    ds.FloatPixelData = values.tobytes()
    files["float_pixels.dcm"] = _saved(ds, tmp, "float.dcm")
    buffer = io.BytesIO()
    Image.fromarray((_phantom() * 255).astype(np.uint8)).convert("P").save(buffer, "PNG")
    files["palette.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(np.full((1, 100_000), 128, np.uint8)).save(buffer, "PNG")
    files["one_by_100000.png"] = buffer.getvalue()
    jpeg = _raster("L", "JPEG")
    files["bad_jpeg_markers.jpg"] = jpeg[:2] + b"\xff\xd9" + jpeg[4:]  # an early end marker
    return files


def test_every_hostile_file_gives_an_image_or_one_clear_error(tmp_path):
    outcomes = {name: check_outcome(data, name) for name, data in hostile_files(tmp_path).items()}
    # what each must give, as a user of the file would expect
    assert outcomes["zero_by_zero.dcm"] == "error"
    assert outcomes["one_by_100000.png"] == "error"  # not a mammogram: under 16 px high
    assert outcomes["wrong_transfer_syntax.dcm"] == "error"
    assert outcomes["palette_photometric.dcm"] == "error"  # indexes are no intensities
    assert outcomes["multi_frame.dcm"] == "error"  # not one 2-D film unless a frame is chosen
    assert outcomes["palette.png"] == "image"
    assert outcomes["high_bits_set.dcm"] == outcomes["float_pixels.dcm"] == "image"
