"""Write synthetic phantoms in the on-disk layouts mammo-keras reads (`mammo-keras data synth`).

- "dicom":  images/<id>.dcm (mammography DICOM, 12-bit, tags as a modality writes them) and
            masks/<id>.png, listed in synthetic.csv -> read by the "synthetic" adapter;
- "mias":   mdbNNN.pgm (8-bit, 1024 x 1024 like every MIAS film: the phantom is drawn at
            `size` and resampled) and an Info.txt in MIAS' format (circle ROIs, origin
            bottom-left, MLO views, odd numbers right) -> the "mias" adapter;
- "folder": <label>/<id>.png (16-bit), the Kaggle class-folder layout -> "kaggle_merged";
- "cbis":   CBIS-DDSM: {mass,calc}_case_description_{train,test}_set.csv with the paths of the
            official CSVs, and the DICOM tree laid out as a TCIA download (other folder and
            file names: the adapter must find them) -> the "cbis_ddsm" adapter. Lesion cases
            only, as in CBIS-DDSM; patients 5, 10, ... form the test set;
- "inbreast": INbreast.csv (semicolons, BI-RADS), AllDICOMs/<n>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm
            and AllXML/<n>.xml (OsiriX plist ROIs: mass outlines as Point_px polygons, each
            calcification a point) -> the "inbreast" adapter.

Writes are atomic (temporary file, then rename) and a re-run skips the files already
written, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import plistlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from mammo_keras.atomic import atomic_path
from mammo_keras.errors import UserError
from mammo_keras.data.adapters.mias import IMAGE_SIZE as MIAS_SIZE
from mammo_keras.data.adapters.synthetic import MANIFEST
from mammo_keras.data.dicom_writer import write_dicom
from mammo_keras.data.synthetic import (DEFAULT_CONTRAST, DEFAULT_LESION_SCALE, PhantomSpec,
                                        generate_phantom, synthetic_specs)

FORMATS = ("dicom", "mias", "folder", "cbis", "inbreast")
# What a folder of phantoms was written with: a second write into it goes on only with the
# same options (an interrupted write is finished), never mixes two sets' pixels and labels
STAMP = ".mammo-keras-synth.json"
INBREAST_COLUMNS = ("Patient ID", "Patient age", "Laterality", "View", "Acquisition date",
                    "File Name", "ACR", "Bi-Rads")
MANIFEST_FIELDS = ("path", "mask_path", "label", "density", "patient_id", "laterality", "view",
                   "finding", "seed", "size", "contrast", "lesion_scale")
MIAS_TISSUE = {"A": "F", "B": "G", "C": "D", "D": "D"}
CBIS_FIELDS = {
    "mass": ("patient_id", "breast_density", "left or right breast", "image view",
             "abnormality id", "abnormality type", "mass shape", "mass margins", "assessment",
             "pathology", "subtlety", "image file path", "cropped image file path",
             "ROI mask file path"),
    "calc": ("patient_id", "breast density", "left or right breast", "image view",
             "abnormality id", "abnormality type", "calc type", "calc distribution",
             "assessment", "pathology", "subtlety", "image file path", "cropped image file path",
             "ROI mask file path"),
}
MIAS_CLASS = {"benign_mass": "CIRC", "malignant_mass": "SPIC", "benign_calcification": "CALC",
              "malignant_calcification": "CALC"}


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    with atomic_path(path) as partial:
        write(partial)


def _save_png(array: np.ndarray, path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    _atomic_write(path, lambda target: target.write_bytes(buffer.getvalue()))


def _square(image: np.ndarray, mask: np.ndarray, side: int, chest_wall_left: bool):
    """Pad to a square (background on the side away from the chest wall) and resize to `side`."""
    height, width = image.shape
    pad = ((0, 0), (0, height - width) if chest_wall_left else (height - width, 0))
    image, mask = np.pad(image, pad), np.pad(mask, pad)
    image = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side),
                                                                          Image.NEAREST)) > 127
    return image, mask


def _claim(out: Path, options: dict) -> None:
    """Create `out` stamped with `options`, or accept it when it is empty or stamped with the
    same options (an interrupted write goes on).

    Raises:
        UserError: `out` holds other files, or phantoms of other options.
    """
    stamp = out / STAMP
    if out.is_dir() and any(out.iterdir()):
        try:
            written = json.loads(stamp.read_text())
        except (OSError, ValueError):
            written = None
        if written != json.loads(json.dumps(options)):
            held = "phantoms of other options" if written else "files that are not phantoms"
            raise UserError(f"{out}: not empty (it holds {held}); write phantoms into a new "
                            "or empty folder, or into the folder of the same options to "
                            "finish an interrupted write")
        return
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(options) + "\n")


def write_synthetic(out: str | Path, count: int, size: int = 512, fmt: str = "dicom",
                    seed: int = 0, contrast: float = DEFAULT_CONTRAST,
                    lesion_scale: float = DEFAULT_LESION_SCALE,
                    progress: Callable[[int, int], None] | None = None,
                    calcification_share: float = 0.3,
                    calcification_radius: float | None = None) -> Path:
    """Write `count` phantoms into `out` in layout `fmt`; returns `out`.

    Args:
        out: output folder: new, empty, or one written with the same options (an interrupted
            write is finished there); anything else is a UserError.
        count: number of images (two views per patient).
        size: phantom height in px (256-4096); the "mias" layout is always 1024 x 1024.
        fmt: "dicom", "mias" or "folder".
        seed, contrast, lesion_scale, calcification_share, calcification_radius: see
            `synthetic_specs`.
        progress: called as progress(done, count) after each image.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown synthetic format {fmt!r}; choose one of {list(FORMATS)}.")
    out = Path(out)
    _claim(out, {"count": count, "size": size, "format": fmt, "seed": seed,
                 "contrast": contrast, "lesion_scale": lesion_scale,
                 "calcification_share": calcification_share,
                 "calcification_radius": calcification_radius})
    specs = synthetic_specs(count, seed=seed, size=size, contrast=contrast,
                            lesion_scale=lesion_scale,
                            calcification_share=calcification_share,
                            calcification_radius=calcification_radius,
                            label_weights=(0, 1, 1) if fmt == "cbis" else (1, 1, 1))
    if fmt == "mias":  # MIAS: MLO films, pairs of one patient, odd numbers right
        specs = [dataclasses.replace(spec, view="MLO", laterality="R" if i % 2 == 0 else "L")
                 for i, spec in enumerate(specs)]
    rows, info, inbreast_rows = [], [], []
    cbis_rows: dict[str, list[dict]] = {}
    for index, spec in enumerate(specs):
        case = f"case{index:05d}"
        if fmt == "dicom":
            rows.append(_write_dicom_case(out, case, spec, index))
        elif fmt == "folder":
            path = out / spec.label / f"{case}.png"
            if not path.exists():
                image, _, _ = generate_phantom(spec)
                _save_png(np.round(image * 65535).astype(np.uint16), path)
        elif fmt == "cbis":
            table, row = _write_cbis_case(out, spec, index)
            cbis_rows.setdefault(table, []).append(row)
        elif fmt == "inbreast":
            inbreast_rows.append(_write_inbreast_case(out, spec, index))
        else:
            info.append(_write_mias_case(out, index + 1, spec))
        if progress is not None:
            progress(index + 1, len(specs))
    if fmt == "dicom":
        _write_manifest(out / MANIFEST, rows)
    if fmt == "inbreast":
        lines = [";".join(INBREAST_COLUMNS)] + [";".join(str(row[c]) for c in INBREAST_COLUMNS)
                                                for row in inbreast_rows]
        _atomic_write(out / "INbreast.csv", lambda t: t.write_text("\n".join(lines) + "\n"))
    for table, table_rows in cbis_rows.items():
        kind = table.split("_")[0]
        _write_csv(out / table, CBIS_FIELDS[kind], table_rows)
    if fmt == "mias":
        text = "Synthetic MIAS-style database written by mammo-keras\n\n" + "\n".join(info) + "\n"
        _atomic_write(out / "Info.txt", lambda target: target.write_text(text))
    return out


def _write_dicom_case(out: Path, case: str, spec: PhantomSpec, index: int) -> dict:
    image_path, mask_path = out / "images" / f"{case}.dcm", out / "masks" / f"{case}.png"
    if not (image_path.exists() and mask_path.exists()):
        image, mask, _ = generate_phantom(spec)
        _atomic_write(image_path, lambda target: write_dicom(
            target, image, bits_stored=12, laterality=spec.laterality, view=spec.view,
            patient_id=f"SYN{index // 2:05d}", window=(2048, 4096)))
        _save_png(mask.astype(np.uint8) * 255, mask_path)
    return {"path": f"images/{case}.dcm", "mask_path": f"masks/{case}.png", "label": spec.label,
            "density": spec.density, "patient_id": f"SYN{index // 2:05d}",
            "laterality": spec.laterality, "view": spec.view, "finding": spec.finding,
            "seed": spec.seed, "size": spec.size, "contrast": spec.contrast,
            "lesion_scale": spec.lesion_scale}


def _write_mias_case(out: Path, number: int, spec: PhantomSpec) -> str:
    """Write mdbNNN.pgm and return its Info.txt row."""
    refnum = f"mdb{number:03d}"
    image, mask, meta = generate_phantom(spec)
    side = MIAS_SIZE
    image, mask = _square(image, mask, side, chest_wall_left=spec.laterality == "L")
    path = out / f"{refnum}.pgm"
    if not path.exists():
        pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        header = f"P5\n{side} {side}\n255\n".encode()
        _atomic_write(path, lambda target: target.write_bytes(header + pixels.tobytes()))
    tissue = MIAS_TISSUE[spec.density]
    if spec.finding == "normal" or not mask.any():
        return f"{refnum} {tissue} NORM"
    rows, cols = np.nonzero(mask)
    centre_row, centre_col = rows.mean(), cols.mean()
    radius = np.sqrt(((rows - centre_row) ** 2 + (cols - centre_col) ** 2).max()) + 1
    severity = "M" if spec.label == "malignant" else "B"
    return (f"{refnum} {tissue} {MIAS_CLASS[spec.finding]} {severity} {int(round(centre_col))} "
            f"{int(round(side - 1 - centre_row))} {int(np.ceil(radius))}")


def _write_cbis_case(out: Path, spec: PhantomSpec, index: int) -> tuple[str, dict]:
    """Write one CBIS-DDSM-style case (full image, ROI mask, cropped patch); return its CSV row."""
    patient = index // 2
    kind = "mass" if spec.finding.endswith("mass") else "calc"
    split = "test" if patient % 5 == 4 else "train"
    case = (f"{kind.capitalize()}-{'Test' if split == 'test' else 'Training'}_P_{patient:05d}_"
            f"{'LEFT' if spec.laterality == 'L' else 'RIGHT'}_{spec.view}")
    tcia = out / "CBIS-DDSM"
    full = tcia / case / "07-20-2016-DDSM-NA" / "1.000000-full mammogram images-NA" / "1-1.dcm"
    roi_folder = tcia / f"{case}_1" / "07-21-2016-DDSM-NA"
    mask_file = roi_folder / "1.000000-ROI mask images-NA" / "1-1.dcm"
    crop_file = roi_folder / "1.000000-cropped images-NA" / "1-2.dcm"
    if not (full.exists() and mask_file.exists() and crop_file.exists()):
        image, mask, _ = generate_phantom(spec)
        if not mask.any():  # a lesion can fall outside the breast at tiny sizes: keep a dot
            centre = tuple(s // 2 for s in mask.shape)
            mask[centre] = True
        rows, cols = np.nonzero(mask)
        patch = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        patient_id = f"P_{patient:05d}"
        _atomic_write(full, lambda t: write_dicom(t, image, bits_stored=16, patient_id=patient_id,
                                                  laterality=spec.laterality, view=spec.view))
        _atomic_write(mask_file, lambda t: write_dicom(t, mask.astype(np.float32), bits_stored=8,
                                                       patient_id=patient_id))
        _atomic_write(crop_file, lambda t: write_dicom(t, patch, bits_stored=16,
                                                       patient_id=patient_id))
    uid = f"1.3.6.1.4.1.9590.100.1.2.{index + 1000}"
    severity = spec.label.upper() if spec.label == "malignant" or index % 3 else \
        "BENIGN_WITHOUT_CALLBACK"
    row = {"patient_id": f"P_{patient:05d}",
           "breast_density" if kind == "mass" else "breast density": "ABCD".index(spec.density) + 1,
           "left or right breast": "LEFT" if spec.laterality == "L" else "RIGHT",
           "image view": spec.view, "abnormality id": 1,
           "abnormality type": "mass" if kind == "mass" else "calcification",
           "assessment": 5 if spec.label == "malignant" else 3, "pathology": severity,
           "subtlety": 3,
           "image file path": f"{case}/{uid}.1/{uid}.2/000000.dcm",
           "cropped image file path": f"{case}_1/{uid}.3/{uid}.4/000000.dcm",
           "ROI mask file path": f"{case}_1/{uid}.3/{uid}.4/000001.dcm\n"}  # the stray newline
    if kind == "mass":
        row.update({"mass shape": "IRREGULAR" if spec.label == "malignant" else "OVAL",
                    "mass margins": "SPICULATED" if spec.label == "malignant" else "CIRCUMSCRIBED"})
    else:
        row.update({"calc type": "PLEOMORPHIC" if spec.label == "malignant" else "PUNCTATE",
                    "calc distribution": "CLUSTERED"})
    return f"{kind}_case_description_{split}_set.csv", row


def outline_points(mask: np.ndarray, count: int = 48) -> list[tuple[float, float]]:
    """About `count` (x, y) boundary points of a star-shaped mask, in angular order."""
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] \
        & mask[1:-1, 2:]
    rows, cols = np.nonzero(mask & ~inner)
    angles = np.arctan2(rows - rows.mean(), cols - cols.mean())
    order = np.argsort(angles)
    step = max(1, len(order) // count)
    return [(float(cols[i]), float(rows[i])) for i in order[::step]]


def _write_inbreast_case(out: Path, spec: PhantomSpec, index: int) -> dict:
    """Write one INbreast-style image and its XML; return its INbreast.csv row."""
    name = str(20586900 + index)
    patient = f"{(index // 2) * 7919 + 0x5a3c1d:x}"
    view = "CC" if spec.view == "CC" else "ML"
    dicom = out / "AllDICOMs" / f"{name}_{patient}_MG_{spec.laterality}_{view}_ANON.dcm"
    xml = out / "AllXML" / f"{name}.xml"
    birads = {"normal": "1", "benign": "2" if index % 2 else "3",
              "malignant": "4c" if index % 2 else "5"}[spec.label]
    if not dicom.exists() or (spec.label != "normal" and not xml.exists()):
        image, mask, _ = generate_phantom(spec)
        _atomic_write(dicom, lambda t: write_dicom(t, image, bits_stored=14, patient_id=patient,
                                                   laterality=spec.laterality, view=spec.view))
        if mask.any():
            if spec.finding.endswith("mass"):
                rois = [{"Name": "Mass", "Point_px": [f"({x:.2f}, {y:.2f})" for x, y in
                                                      outline_points(mask)]}]
            else:
                from scipy import ndimage
                labelled, count = ndimage.label(mask)
                centres = ndimage.center_of_mass(mask, labelled, range(1, count + 1))
                rois = [{"Name": "Calcification", "Point_px": [f"({c:.2f}, {r:.2f})"]}
                        for r, c in centres]
            for roi in rois:
                roi["NumberOfPoints"] = len(roi["Point_px"])
            document = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]}
            _atomic_write(xml, lambda t: t.write_bytes(plistlib.dumps(document)))
    return {"Patient ID": "removed", "Patient age": "removed", "Laterality": spec.laterality,
            "View": view, "Acquisition date": "201001", "File Name": name,
            "ACR": "ABCD".index(spec.density) + 1, "Bi-Rads": birads}


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    _atomic_write(path, write)


def _write_manifest(path: Path, rows: list[dict]) -> None:
    _write_csv(path, MANIFEST_FIELDS, rows)
