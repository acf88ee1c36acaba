"""`write_dicom`: a grayscale image -> a Digital Mammography X-Ray DICOM file.

Used by the synthetic-data writer and the tests: the files carry the tags a
reader of real mammograms meets (Modality MG, the "for presentation" SOP class,
ImageLaterality / ViewPosition or only a series description, rescale, window,
MONOCHROME1 / 2, 12-16 bits stored) and can be compressed with RLE, JPEG-LS or
JPEG 2000 (lossless) through pydicom's encoder plugins.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (JPEG2000Lossless, JPEGLSLossless, RLELossless, ExplicitVRLittleEndian,
                         generate_uid)

DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless,
                     "jpeg_ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless}
VIEW_MEANINGS = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}


def write_dicom(
    path: str | Path,
    image: np.ndarray,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    laterality: str | None = None,
    view: str | None = None,
    laterality_in: str = "tags",
    patient_id: str = "ANON",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    transfer_syntax: str = "explicit",
    pixel_spacing_mm: float = 0.1,
) -> Path:
    """Write `image` as a mammography DICOM file.

    Args:
        path: output file.
        image: (H, W) float in [0, 1] (bright = dense), quantised to `bits_stored`
            bits; or an integer array written as stored values unchanged.
        bits_stored: 8-16 (allocated: 8 for <= 8, else 16).
        photometric: "MONOCHROME2", or "MONOCHROME1" (values stored inverted).
        laterality, view: "L"/"R", "CC"/"MLO"; where they are written depends on
            `laterality_in`: "tags" (ImageLaterality, ViewPosition, ViewCodeSequence),
            "description" (only SeriesDescription, e.g. "L MLO"), or "none".
        patient_id: PatientID.
        rescale: (slope, intercept) written as RescaleSlope / RescaleIntercept.
        window: (center, width) written as WindowCenter / WindowWidth.
        transfer_syntax: "explicit" (uncompressed), "rle", "jpeg_ls" or "jpeg2000".
        pixel_spacing_mm: ImagerPixelSpacing.

    Returns:
        The path written.
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)}; "
                         f"got {transfer_syntax!r}.")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in 8..16; got {bits_stored}.")
    if laterality_in not in ("tags", "description", "none"):
        raise ValueError(f"laterality_in must be tags, description or none; got {laterality_in!r}.")
    maximum = 2 ** bits_stored - 1
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        stored = np.asarray(image)
    else:
        stored = np.round(np.clip(image, 0.0, 1.0) * maximum)
    if photometric == "MONOCHROME1" and not np.issubdtype(np.asarray(image).dtype, np.integer):
        stored = maximum - stored
    allocated = 8 if bits_stored <= 8 else 16
    stored = stored.astype(np.uint8 if allocated == 8 else np.uint16)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    now = datetime.datetime.now()
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "BREAST"
    ds.PatientID = patient_id
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientBirthDate, ds.PatientSex = "", "F"
    ds.StudyDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ImagerPixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    if laterality_in == "tags":
        if laterality:
            ds.ImageLaterality = laterality
        if view:
            ds.ViewPosition = view
            code, meaning = VIEW_MEANINGS[view]
            item = pydicom.Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SRT", meaning
            ds.ViewCodeSequence = [item]
    elif laterality_in == "description":
        ds.SeriesDescription = " ".join(filter(None, [laterality, view]))
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = [float(v) for v in rescale]
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = [float(v) for v in window]
        ds.VOILUTFunction = "LINEAR"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    if transfer_syntax != "explicit":
        ds.compress(TRANSFER_SYNTAXES[transfer_syntax], stored)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
