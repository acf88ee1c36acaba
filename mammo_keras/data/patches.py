"""Lesion and normal-tissue patches cut from whole films, at a stated physical scale.

The Kaggle set Dahes 2025 used is made of 227 x 227 mass patches plus normal thumbnails,
pre-augmented (rotated, flipped, zoomed, CLAHE copies). `make_patches` builds that kind of
set from films whose lesions are outlined, and records where every patch came from, so a
split can keep a patient's patches, and the copies of one patch, together:

    film (H, W) in [0, 1], its pixel spacing s mm/px (DICOM tag, else the dataset's own)
      -> centres: each annotated lesion (MIAS circle, INbreast polygon, CBIS-DDSM / phantom
         mask), and `normals_per_film` random points of a normal film whose whole field lies
         inside the breast (`breast_mask`), never on the background
      -> a square of `field_mm` x `field_mm` of tissue around the centre, smoothed against
         aliasing and resampled to `size` x `size` px: mm per px = field_mm / size
      -> `copies` more of each, rotated (any angle), flipped, zoomed (the field shrinks or
         grows by the zoom, its mm per px recorded) and CLAHE-equalised at random
      -> out/<label>/<film>_<kind><k>_c<copy>.png (8-bit), and out/manifest.csv: one row per
         patch with patient, film, lesion, scale and augmentation (`MANIFEST_FIELDS`);
         out/patches.json: the options, the counts and every film skipped with its reason.

`load_records(out)` reads the folder back (class folders), patient ids and sources from
the manifest. The patches of one lesion share `group`; a random per-image split puts its
copies on both sides of the split: the leakage the Kaggle set's near-perfect scores allow.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from mammo_keras.atomic import write_bytes_atomically, write_csv_atomically, write_json_atomically
from mammo_keras.data.adapters.folder import MANIFEST, SUMMARY
from mammo_keras.data.errors import DataError
from mammo_keras.data.lesions import MIAS_MASSES
from mammo_keras.data.readers import read_image
from mammo_keras.data.records import LABELS, Record
from mammo_keras.errors import UserError

MANIFEST_FIELDS = ("path", "label", "patient_id", "source", "film", "kind", "index",
                   "abnormality", "x_px", "y_px", "lesion_diameter_mm", "field_mm",
                   "mm_per_px", "copy", "rotation_deg", "flipped", "zoom", "clahe", "group")
KINDS = ("all", "masses")
# Pixel spacing of datasets whose files do not state it (MIAS PGMs: 200 micron, its README).
DATASET_SPACING_MM = {"mias": 0.2}


@dataclasses.dataclass(frozen=True)
class PatchOptions:
    """How patches are cut.

    Attributes:
        size: patch side in px (>= 16).
        field_mm: side of the square of tissue a patch shows, in mm; the patch's scale is
            field_mm / size mm per px (51.2 mm at 128 px: 0.4 mm / px).
        kinds: "all" (every annotated lesion) or "masses" (MIAS CIRC / SPIC / MISC, CBIS-DDSM
            and INbreast masses, phantom masses: the Kaggle set's mass regions).
        normals_per_film: normal-tissue patches from each normal film.
        min_breast_share: a normal patch's field lies at least this much inside the breast.
        copies: pre-augmented copies of each patch besides the plain one (0: none).
        zoom: (low, high) zoom factors of a copy; > 1 shows a smaller field, magnified.
        clahe_share: share of copies equalised with CLAHE.
        seed: draws the normal centres and the augmentations.
        film_spacing_mm: mm per px of films that state none (PNG exports); None: such
            films are refused (a patch of unknown scale is not cut).
    """

    size: int = 128
    field_mm: float = 51.2
    kinds: str = "all"
    normals_per_film: int = 1
    min_breast_share: float = 0.95
    copies: int = 0
    zoom: tuple[float, float] = (0.85, 1.15)
    clahe_share: float = 0.5
    seed: int = 0
    film_spacing_mm: float | None = None

    def __post_init__(self):
        if self.size < 16:
            raise UserError(f"patch size must be at least 16 px; got {self.size}")
        if not self.field_mm > 0:
            raise UserError(f"field_mm must be above 0; got {self.field_mm}")
        if self.kinds not in KINDS:
            raise UserError(f"kinds must be one of {list(KINDS)}; got {self.kinds!r}")
        if self.normals_per_film < 0 or self.copies < 0:
            raise UserError("normals_per_film and copies must be >= 0")
        if not 0 < self.min_breast_share <= 1:
            raise UserError(f"min_breast_share must be in (0, 1]; got {self.min_breast_share}")
        low, high = self.zoom
        if not 0 < low <= high:
            raise UserError(f"zoom must be (low, high) with 0 < low <= high; got {self.zoom}")
        if not 0 <= self.clahe_share <= 1:
            raise UserError(f"clahe_share must be in [0, 1]; got {self.clahe_share}")
        if self.film_spacing_mm is not None and not self.film_spacing_mm > 0:
            raise UserError(f"film_spacing_mm must be above 0; got {self.film_spacing_mm}")


@dataclasses.dataclass(frozen=True)
class Centre:
    """Where one patch is cut: (x, y) in film px, its label and what it shows."""

    x: float
    y: float
    label: str
    kind: str  # "lesion" | "normal"
    index: int
    abnormality: str = ""
    diameter_px: float = 0.0


@dataclasses.dataclass(frozen=True)
class Augmentation:
    rotation_deg: float = 0.0
    flipped: bool = False
    zoom: float = 1.0
    clahe: bool = False


def film_spacing_mm(record: Record, meta: dict, default: float | None = None) -> float:
    """mm per px of a film: its DICOM pixel spacing, else the dataset's known one, else
    `default`.

    Raises:
        DataError: neither is known (a PNG of an unknown scanner).
    """
    spacing = meta.get("pixel_spacing_mm")
    if spacing:
        return float(spacing[0])
    if record.source in DATASET_SPACING_MM:
        return DATASET_SPACING_MM[record.source]
    if default is not None:
        return default
    raise DataError(record.path, "its pixel spacing is unknown (no DICOM PixelSpacing and "
                                 f"no known spacing for source {record.source!r}), so no patch "
                                 "of a stated mm scale can be cut; give --film-spacing-mm")


def _lesion_label(record: Record, index: int, severity: str | None) -> str:
    if severity in ("benign", "malignant"):
        return severity
    labels = record.extra.get("pathologies")
    if labels and index < len(labels) and labels[index] in ("benign", "malignant"):
        return labels[index]
    return record.label


def _is_studied(kinds: str, source: str, abnormality: str | None) -> bool:
    if kinds == "all":
        return True
    name = str(abnormality or "")
    if source == "mias":
        return name in MIAS_MASSES
    return name.strip().lower() == "mass" or name.endswith("_mass")


def lesion_centres(record: Record, shape: tuple[int, int],
                   kinds: str = "all") -> tuple[list[Centre], list[DataError]]:
    """The lesions of a film as patch centres: ROI centres (circles, polygons) and the
    centroid of each pixel mask, with the lesion's diameter in px; and the lesions that
    cannot be placed (a MIAS row without coordinates), one DataError each film.

    Raises:
        DataError: a mask is missing, empty or of another shape than the film.
    """
    centres = []
    if record.mask_paths:
        types = record.extra.get("abnormality_types")
        if types is not None and len(types) != len(record.mask_paths):
            raise DataError(record.path, "an ROI mask of one of its lesions is missing")
        kinds_of = record.extra.get("abnormality_types") or [
            record.extra.get("finding", "")] * len(record.mask_paths)
        for index, path in enumerate(record.mask_paths):
            if not _is_studied(kinds, record.source, kinds_of[min(index, len(kinds_of) - 1)]):
                continue
            mask = read_image(path, mammogram=False)[0] > 0.5
            if mask.shape != tuple(shape):
                raise DataError(path, f"its mask is {mask.shape}, the film {tuple(shape)}")
            rows, cols = np.nonzero(mask)
            if not len(rows):
                raise DataError(path, "its lesion mask is empty")
            span = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
            centres.append(Centre(float(cols.mean()), float(rows.mean()),
                                  _lesion_label(record, index, None), "lesion", index,
                                  str(kinds_of[min(index, len(kinds_of) - 1)]), float(span)))
        return centres, []
    abnormalities = record.extra.get("abnormalities", [])
    studied = [name for name in abnormalities if _is_studied(kinds, record.source, name)]
    for index, roi in enumerate(record.rois):
        if _is_studied(kinds, record.source, roi.abnormality):
            centres.append(Centre(float(roi.x), float(roi.y),
                                  _lesion_label(record, index, roi.severity), "lesion", index,
                                  str(roi.abnormality or ""), 2.0 * float(roi.radius)))
    problems = []
    if record.source == "mias" and len(centres) < len(studied):
        missing = len(studied) - len(centres)
        problems.append(DataError(record.path, f"{missing} of its {len(studied)} lesions: no "
                                               "coordinates in Info.txt, no patch centred on "
                                               f"{'it' if missing == 1 else 'them'}"))
    elif not centres and record.label in ("benign", "malignant") and not studied:
        problems.append(DataError(record.path, f"a {record.label} film without a lesion "
                                               "outline"))
    return centres, problems


def normal_centres(image: np.ndarray, field_px: float, count: int, min_share: float,
                   rng: np.random.Generator) -> list[tuple[float, float]]:
    """`count` random (x, y) centres whose field_px x field_px square lies at least
    `min_share` inside the breast; fewer (maybe none) where the breast is too small.
    Centres are at least half a field apart."""
    from mammo_keras.data.breast_mask import ANALYSIS_SIZE, breast_mask

    mask = np.asarray(breast_mask(image)).astype(np.float32)
    height, width = image.shape
    scale_y, scale_x = ANALYSIS_SIZE / height, ANALYSIS_SIZE / width
    box = (max(1, int(round(field_px * scale_y))), max(1, int(round(field_px * scale_x))))
    if box[0] > ANALYSIS_SIZE or box[1] > ANALYSIS_SIZE:
        return []
    share = ndimage.uniform_filter(mask, size=box, mode="constant", cval=0.0)
    rows, cols = np.nonzero(share >= min_share - 1e-6)
    chosen: list[tuple[float, float]] = []
    for position in rng.permutation(len(rows)):
        x = (cols[position] + 0.5) / scale_x
        y = (rows[position] + 0.5) / scale_y
        if all(np.hypot(x - cx, y - cy) >= field_px / 2 for cx, cy in chosen):
            chosen.append((x, y))
        if len(chosen) == count:
            break
    return chosen


def cut_patch(image: np.ndarray, x: float, y: float, field_px: float, size: int,
              augmentation: Augmentation = Augmentation()) -> np.ndarray:
    """The size x size patch showing field_px / zoom film px around (x, y), rotated by
    `rotation_deg` (counter-clockwise) and mirrored left-right when `flipped`; outside the
    film is 0 (background). Smoothed first when it shrinks the film (no aliasing).
    Returns float32 (size, size) in [0, 1]."""
    step = field_px / augmentation.zoom / size  # film px per patch px
    sigma = 0.5 * step if step > 1 else 0.0
    # Only the region the patch samples is filtered: its half-diagonal, plus the filter's
    # reach (4 sigma) and the bilinear neighbours, so the result equals filtering the film.
    reach = int(np.ceil(size * step / np.sqrt(2) + 4 * sigma + 2))
    top, left = max(0, int(y) - reach), max(0, int(x) - reach)
    image = image[top:int(y) + reach + 1, left:int(x) + reach + 1]
    x, y = x - left, y - top
    if sigma:
        image = ndimage.gaussian_filter(image, sigma=sigma, mode="nearest")
    offsets = (np.arange(size) - (size - 1) / 2) * step
    u, v = np.meshgrid(offsets, offsets)  # u: right, v: down, in film px
    if augmentation.flipped:
        u = -u
    angle = np.deg2rad(augmentation.rotation_deg)
    cols = x + np.cos(angle) * u - np.sin(angle) * v  # the content turns counter-clockwise
    rows = y + np.sin(angle) * u + np.cos(angle) * v  # on screen, as np.rot90 turns it
    patch = ndimage.map_coordinates(image, [rows, cols], order=1, mode="constant", cval=0.0)
    if augmentation.clahe:
        from mammo_keras.data.preprocessing import clahe

        patch = np.asarray(clahe(patch.astype(np.float32)))
    return np.clip(patch, 0.0, 1.0).astype(np.float32)


def _augmentations(options: PatchOptions, rng: np.random.Generator) -> list[Augmentation]:
    copies = [Augmentation()]
    for _ in range(options.copies):
        copies.append(Augmentation(rotation_deg=float(rng.uniform(0.0, 360.0)),
                                   flipped=bool(rng.random() < 0.5),
                                   zoom=float(rng.uniform(*options.zoom)),
                                   clahe=bool(rng.random() < options.clahe_share)))
    return copies


def _png(patch: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(patch * 255).astype(np.uint8), mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def _film_stem(path: str) -> str:
    name = path.split("::")[-1].replace("\\", "/").rstrip("/")
    parts = [part for part in name.split("/") if part]
    stem = Path(parts[-1]).stem if parts else "film"
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in stem)


def _check_out(out: Path) -> None:
    """Refuse to write into a folder holding anything but an earlier patch set."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY).is_file():
        raise UserError(f"{out}: not empty and not a patch folder (no {SUMMARY}); "
                        "choose a new folder")


def make_patches(records: Iterable[Record], out: str | Path,
                 options: PatchOptions = PatchOptions(),
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Cut lesion and normal patches from `records` into `out` (see the module docstring).

    Args:
        records: films with lesion outlines (`load_records("mias", ...)`, CBIS-DDSM,
            INbreast, phantoms); normal films give normal patches.
        out: the folder (new, or an earlier patch folder, rewritten).
        options: `PatchOptions`.
        progress: called with (films done, films) after each film.

    Returns:
        The summary also written to out/patches.json: options, counts per label and kind,
        patients, and `skipped` ("<film>: <reason>" per film that gave no patch or lost one).

    Raises:
        UserError: `out` holds other files, or no film gave a patch.
    """
    out = Path(out)
    _check_out(out)
    if (out / MANIFEST).is_file():  # an earlier set: its files go, the new set replaces it
        for path in sorted(out.glob("*/*.png")):
            path.unlink()
    records = list(records)
    skipped = [str(error) for error in getattr(records, "skipped", [])]
    rows: list[dict] = []
    rng = np.random.default_rng(options.seed)
    names = _film_names([record.path for record in records])
    for done, record in enumerate(records, start=1):
        try:
            film_rows, problems = _film_patches(record, names[record.path], out, options, rng)
            rows.extend(film_rows)
            skipped.extend(str(problem) for problem in problems)
        except DataError as error:
            skipped.append(str(error))
        if progress:
            progress(done, len(records))
    if not rows:
        raise UserError(f"no patch could be cut from {len(records)} films"
                        + (f"; first problem: {skipped[0]}" if skipped else ""))
    write_csv_atomically(out / MANIFEST, rows, MANIFEST_FIELDS)
    summary = {
        "options": dataclasses.asdict(options),
        "patches": len(rows),
        "per_label": _count(rows, "label"),
        "per_kind": _count(rows, "kind"),
        "lesions": len({row["group"] for row in rows if row["kind"] == "lesion"}),
        "films": len({row["film"] for row in rows}),
        "patients": len({row["patient_id"] for row in rows}),
        "lesions_wider_than_field": len({row["group"] for row in rows
                                         if row["kind"] == "lesion" and
                                         float(row["lesion_diameter_mm"]) > options.field_mm}),
        "skipped": skipped,
    }
    write_json_atomically(out / SUMMARY, summary)
    return summary


def _count(rows: Sequence[dict], field: str) -> dict:
    return dict(sorted(collections.Counter(row[field] for row in rows).items()))


def _film_names(paths: Sequence[str]) -> dict[str, str]:
    """A file-name-safe name per film: its stem, with a digest of its path where stems
    repeat (CBIS-DDSM names every full mammogram 1-1.dcm)."""
    stems = {path: _film_stem(path) for path in paths}
    repeated = {stem for stem, count in collections.Counter(stems.values()).items() if count > 1}
    return {path: stem if stem not in repeated else
            f"{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
            for path, stem in stems.items()}


def _film_patches(record: Record, name: str, out: Path, options: PatchOptions,
                  rng: np.random.Generator) -> tuple[list[dict], list[DataError]]:
    """The manifest rows of one film's patches (their PNGs written), and its lesions that
    gave no patch."""
    image, meta = read_image(record.path)
    spacing = film_spacing_mm(record, meta, options.film_spacing_mm)
    field_px = options.field_mm / spacing
    if record.label == "normal":
        points = normal_centres(image, field_px, options.normals_per_film,
                                options.min_breast_share, rng)
        if len(points) < options.normals_per_film:
            raise DataError(record.path, f"its breast holds {len(points)} of the "
                                         f"{options.normals_per_film} normal fields of "
                                         f"{options.field_mm:g} mm asked for")
        centres = [Centre(x, y, "normal", "normal", index) for index, (x, y) in enumerate(points)]
        problems = []
    else:
        centres, problems = lesion_centres(record, image.shape, options.kinds)
    patient = record.patient_id or record.path
    rows = []
    for centre in centres:
        if centre.label not in LABELS:
            raise DataError(record.path, f"lesion {centre.index} has no benign / malignant "
                                         f"label ({centre.label!r})")
        group = f"{name}_{centre.kind}{centre.index}"
        for copy, augmentation in enumerate(_augmentations(options, rng)):
            patch = cut_patch(image, centre.x, centre.y, field_px, options.size, augmentation)
            relative = f"{centre.label}/{group}_c{copy}.png"
            write_bytes_atomically(out / relative, _png(patch))
            rows.append({
                "path": relative, "label": centre.label, "patient_id": patient,
                "source": record.source, "film": record.path, "kind": centre.kind,
                "index": centre.index, "abnormality": centre.abnormality,
                "x_px": round(centre.x, 1), "y_px": round(centre.y, 1),
                "lesion_diameter_mm": round(centre.diameter_px * spacing, 2),
                "field_mm": round(options.field_mm / augmentation.zoom, 3),
                "mm_per_px": round(options.field_mm / augmentation.zoom / options.size, 5),
                "copy": copy, "rotation_deg": round(augmentation.rotation_deg, 2),
                "flipped": int(augmentation.flipped), "zoom": round(augmentation.zoom, 4),
                "clahe": int(augmentation.clahe), "group": group})
    return rows, problems


def read_summary(folder: str | Path) -> dict:
    """The patches.json of a patch folder."""
    path = Path(folder) / SUMMARY
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not readable as a patch summary ({error})") from None
