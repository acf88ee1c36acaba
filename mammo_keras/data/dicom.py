"""DICOM mammograms -> float32 [0, 1] image + metadata, through pydicom.

Order of operations (DICOM PS3.3 C.11): stored values -> modality LUT (rescale
slope / intercept) -> VOI LUT or window (first one in the file) -> presentation
(MONOCHROME1 inverted so that dense tissue is bright, like MONOCHROME2).
Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg with
libjpeg / openjpeg / rle, pyjpegls), installed with mammo-keras.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from mammo_keras.data.errors import DataError
from mammo_keras.data.limits import check_finite, check_pixel_count

_VIEW_CODES = {"CC": "CC", "XCCL": "CC", "XCCM": "CC", "FB": "CC", "MLO": "MLO"}
_VIEW_MEANINGS = {"cranio-caudal": "CC", "medio-lateral oblique": "MLO"}
# "L CC", "R-MLO", "LCC", "RMLO", "LEFT", "RIGHT" in series / study / image descriptions
_DESCRIPTION_PATTERN = re.compile(
    r"(?<![A-Z])(?:(?P<side>LEFT|RIGHT|L|R)[\s_\-]*(?P<view>CC|MLO)?)(?![A-Z])")


def laterality_and_view(ds: pydicom.Dataset) -> tuple[str | None, str | None, str]:
    """("L"/"R"/None, "CC"/"MLO"/None, where they came from) from tags, then descriptions."""
    laterality = _clean(ds.get("ImageLaterality")) or _clean(ds.get("Laterality"))
    laterality = laterality if laterality in ("L", "R") else None
    view = _VIEW_CODES.get(_clean(ds.get("ViewPosition")) or "")
    if view is None and ds.get("ViewCodeSequence"):
        meaning = str(ds.ViewCodeSequence[0].get("CodeMeaning", "")).strip().lower()
        view = _VIEW_MEANINGS.get(meaning)
    source = "tags"
    if laterality is None or view is None:
        for keyword in ("SeriesDescription", "ImageComments", "StudyDescription",
                        "ProtocolName", "PatientID"):
            text = str(ds.get(keyword, "") or "").upper()
            for match in _DESCRIPTION_PATTERN.finditer(text):
                side, code = match.group("side"), match.group("view")
                if laterality is None and side:
                    laterality, source = side[0], keyword
                if view is None and code:
                    view, source = code, keyword
            if laterality is not None and view is not None:
                break
    return laterality, view, source


# What `dicom_identity` reads of a header: who, which study, which breast and view
_IDENTITY_TAGS = ("PatientID", "StudyInstanceUID", "ImageLaterality", "Laterality",
                  "ViewPosition", "ViewCodeSequence", "SeriesDescription", "ImageComments",
                  "StudyDescription", "ProtocolName")


def dicom_identity(path: str) -> dict[str, str | None]:
    """{"patient_id", "study_uid", "laterality", "view"} of the DICOM file at `path`, read
    from its header alone (no pixel data); values the header lacks are None, and a file
    whose header cannot be read gives {} (reading its image reports the problem)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_IDENTITY_TAGS))
    except Exception:  # noqa: BLE001 - an unreadable header is reported when the image is read
        return {}
    laterality, view, _ = laterality_and_view(ds)
    return {"patient_id": str(ds.get("PatientID", "") or "").strip() or None,
            "study_uid": str(ds.get("StudyInstanceUID", "") or "").strip() or None,
            "laterality": laterality, "view": view}


# Modalities a mammogram is stored under: MG, and DX / CR for digitised or general X-ray
# exports; OT (other) for converted sets. Anything else (CT, MR, US, ...) is not one.
MAMMOGRAPHY_MODALITIES = ("MG", "DX", "CR", "OT")
_MODALITY_NAMES = {"CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound",
                   "PT": "PET", "NM": "nuclear medicine", "SEG": "a segmentation",
                   "SR": "a structured report", "XA": "angiography", "RF": "fluoroscopy",
                   "PR": "a presentation state", "KO": "a key object selection"}
BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
FRAME_VARIABLE = "MAMMO_KERAS_DICOM_FRAME"  # "first", "middle", "last" or an index from 0


def _check_mammography_object(ds: pydicom.Dataset, path: str) -> None:
    """A DataError unless `ds` can be a 2-D mammogram: its Modality is a mammography one,
    and a tomosynthesis (or other multi-frame) object is read only when a frame is chosen
    (`FRAME_VARIABLE`)."""
    modality = _clean(ds.get("Modality"))
    if modality is not None and modality not in MAMMOGRAPHY_MODALITIES:
        meaning = f" ({_MODALITY_NAMES[modality]})" if modality in _MODALITY_NAMES else ""
        raise DataError(path, f"Modality {modality}{meaning}: not a mammogram (MG)")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return  # the size check below names the bad header
    tomosynthesis = str(ds.get("SOPClassUID", "")) == BREAST_TOMOSYNTHESIS
    if (frames > 1 or tomosynthesis) and not os.environ.get(FRAME_VARIABLE):
        kind = "a breast tomosynthesis object" if tomosynthesis else "a multi-frame object"
        raise DataError(path, f"{kind} of {frames} frames, not one 2-D mammogram; read its "
                              "synthetic 2-D view instead, or choose a frame with "
                              f"{FRAME_VARIABLE}=middle (or first, last, an index)")


def selected_frame(frames: int, path: str) -> int:
    """The frame `FRAME_VARIABLE` chooses of a `frames`-frame object (0-based)."""
    choice = os.environ.get(FRAME_VARIABLE, "").strip().lower()
    named = {"first": 0, "middle": frames // 2, "last": frames - 1}
    if choice in named:
        return named[choice]
    if choice.isdigit() and int(choice) < frames:
        return int(choice)
    raise DataError(path, f"{FRAME_VARIABLE}={choice!r}: choose first, middle, last or a frame "
                          f"index below {frames}")


def _clean(value: Any) -> str | None:
    text = str(value).strip().upper() if value is not None else ""
    return text or None


def _stored_range(ds: pydicom.Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0 ** bits - 1


def _output_range(ds: pydicom.Dataset, pixels: np.ndarray, voi_applied: bool) -> tuple[float, float]:
    """The range the displayed values can take, as pydicom defines it, to map them onto [0, 1].

    A VOI LUT gives LUT entries of LUTDescriptor[2] bits; a window (and no VOI at all)
    keeps the modality range: the stored-bit range through the modality LUT or rescale.
    """
    if voi_applied and ds.get("VOILUTSequence") and pixels.dtype.kind == "u":
        return 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    if ds.get("ModalityLUTSequence"):
        return 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    lo, hi = _stored_range(ds)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    return ends[0], ends[1]


def read_dicom(data: bytes, path: str) -> tuple[np.ndarray, dict]:
    """Decode one DICOM file. Returns (image float32 (H, W) in [0, 1], metadata).

    pydicom converts elements when they are first read, so a corrupt element can fail
    anywhere below; whatever it or a pixel decoder raises becomes a `DataError` naming the
    file (found by tests/test_fuzz_readers.py: an unknown VR, a Rust decoder's panic)."""
    try:
        return _read_dicom(data, path)
    except DataError:
        raise
    except Exception as error:
        raise DataError(path, f"corrupt DICOM ({type(error).__name__}: {error})") from None
    except BaseException as error:  # a Rust decoder's panic (pylibjpeg-rle) is no Exception
        if type(error).__name__ != "PanicException":
            raise
        raise DataError(path, f"unreadable pixel data (the decoder failed: {error})") from None


def _read_dicom(data: bytes, path: str) -> tuple[np.ndarray, dict]:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as error:  # pydicom's text advises force=True: not for a user
        raise DataError(path, "not a DICOM file (no 'DICM' marker after the 128-byte preamble "
                              "and no file meta header)") from error
    except Exception as error:  # pydicom raises many types on a truncated header
        raise DataError(path, f"unreadable DICOM header ({type(error).__name__}: {error})") \
            from error
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(path, "DICOM file has no pixel data")
    _check_mammography_object(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(path, f"photometric interpretation {photometric}: not a grayscale "
                              "image (a mammogram is MONOCHROME1 or MONOCHROME2)")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        check_pixel_count(path, ds.Rows, ds.Columns, frames)
    except (AttributeError, TypeError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(path, f"unreadable image size in the header ({error})") from None
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        stored = ds.pixel_array
    except NotImplementedError as error:
        name = getattr(syntax, "name", syntax)
        raise DataError(path, f"cannot decode transfer syntax {name} ({error})") from error
    except Exception as error:
        raise DataError(path, f"unreadable pixel data ({type(error).__name__}: {error})") \
            from error
    if stored.ndim == 3 and frames > 1:
        stored = stored[selected_frame(frames, path)]
    if stored.ndim != 2:
        raise DataError(path, f"expected a grayscale image, got pixel array of shape {stored.shape}")
    if stored.size == 0:
        raise DataError(path, "empty image")
    try:  # pydicom raises on impossible LUT tags (a WindowWidth of 0, say)
        modality = apply_modality_lut(stored, ds)
        windowed = apply_voi_lut(modality, ds)
        voi_applied = windowed is not modality
        lo, hi = _output_range(ds, windowed, voi_applied)
    except Exception as error:
        raise DataError(path, f"cannot apply its rescale / window tags ({type(error).__name__}: "
                              f"{error})") from None
    with np.errstate(all="ignore"):  # overflow shows as non-finite values, checked below
        image = (np.asarray(windowed, np.float64) - lo) / max(hi - lo, 1e-12)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise DataError(path, f"pixel values are not finite numbers after its rescale "
                              f"(RescaleSlope {ds.get('RescaleSlope', 1)!s}, "
                              f"RescaleIntercept {ds.get('RescaleIntercept', 0)!s})")
    check_finite(image, path)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    laterality, view, found_in = laterality_and_view(ds)
    meta = {
        "format": "dicom",
        "laterality": laterality,
        "view": view,
        "laterality_source": found_in if (laterality or view) else None,
        "photometric": photometric,
        "bits_stored": int(ds.get("BitsStored", 0)) or None,
        "transfer_syntax": getattr(syntax, "name", str(syntax)) if syntax else None,
        "voi_applied": voi_applied,
        "patient_id": str(ds.get("PatientID", "")) or None,
        "study_uid": str(ds.get("StudyInstanceUID", "")) or None,
        "pixel_spacing_mm": [float(v) for v in ds.get("ImagerPixelSpacing", ds.get(
            "PixelSpacing", []))] or None,
        "original_shape": tuple(image.shape),
    }
    return image, meta
