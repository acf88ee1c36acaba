"""`write_dicom_seg`: a predicted lesion mask -> a DICOM Segmentation object (highdicom).

The SEG references its source image (Study / Series / SOP Instance UIDs, the patient and
study it belongs to), so a DICOM viewer (OHIF, 3D Slicer, Weasis) shows it as an overlay of
that mammogram; it holds one binary segment "Mass" (SNOMED CT 4147007, category
Morphologically Abnormal Structure 49755003), made by an automatic algorithm named after the
model. Only a DICOM source can be referenced: for PGM / PNG sources the PNG mask is the
output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from mammo_keras.atomic import atomic_path
from mammo_keras.data.errors import DataError

# Type 2 attributes of the Patient and General Study modules (required, may be empty), which
# the SEG copies from its source; some exporters leave them out
TYPE_2_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                     "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
# What a SEG needs of its source to reference it: the study it joins and the instance it names
REFERENCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def write_dicom_seg(source: str | Path, mask: np.ndarray, out: str | Path, *,
                    algorithm: str = "mammo-keras", version: str = "0",
                    label: str = "Mass") -> Path:
    """Write `mask` (H, W) bool, on the source image's grid, as a binary DICOM SEG at `out`.

    Raises:
        DataError: the source is not a readable DICOM image, lacks a UID the reference
            needs (`REFERENCE_UIDS`), its size is not the mask's, or highdicom refuses it.
    """
    try:
        import highdicom as hd
    except ImportError:
        raise DataError(source, "writing a DICOM SEG needs highdicom (pip install "
                                "\"mammo-keras[dicom]\")") from None

    try:
        image = pydicom.dcmread(str(source))
    except Exception as error:  # noqa: BLE001 - any unreadable source is one message
        raise DataError(source, f"cannot be referenced by a DICOM SEG ({error})") from None
    for keyword in TYPE_2_ATTRIBUTES:  # present in a conformant file, possibly empty
        if keyword not in image:
            setattr(image, keyword, "")
    missing = [keyword for keyword in REFERENCE_UIDS
               if not str(getattr(image, keyword, "") or "").strip()]
    if missing:
        raise DataError(source, f"has no {', '.join(missing)}, so a DICOM SEG cannot "
                                "reference it")
    rows, columns = int(getattr(image, "Rows", 0)), int(getattr(image, "Columns", 0))
    if (rows, columns) != tuple(np.shape(mask)):
        raise DataError(source, f"image is {rows} x {columns} but the mask is "
                                f"{np.shape(mask)[0]} x {np.shape(mask)[1]}")
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=str(version), family=codes.DCM.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Mass,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_id)
    try:
        segmentation = _segmentation(hd, image, mask, segment, algorithm, version)
    except (ValueError, TypeError, AttributeError, KeyError) as error:  # highdicom's checks
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(source, f"no DICOM SEG can reference it ({first})") from None
    with atomic_path(out) as partial:
        segmentation.save_as(partial)
    return Path(out)


def _segmentation(hd, image, mask: np.ndarray, segment, algorithm: str, version: str):
    """highdicom's binary Segmentation of `mask` on `image`, in a new series."""
    return hd.seg.Segmentation(
        source_images=[image], pixel_array=np.asarray(mask, bool)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=100,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="mammo-keras",
        manufacturer_model_name=algorithm, software_versions=str(version),
        device_serial_number="none", omit_empty_frames=False)
