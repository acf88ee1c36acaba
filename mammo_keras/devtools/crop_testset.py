"""The breast-crop test set: phantoms of every kind of mammogram the crop must handle.

Each case is a synthetic mammogram with its *true* breast mask (skin line included) and
the mask of what must be left out (labels, markers, film edges), written in a real file
format. The kinds, each in every density A-D and in CC and MLO views:

- "film": digitised film as the built-in data set draws it (near-black background);
- "faint_film": digitised film with a grey, uneven background, a periphery that fades
  almost into it (a faint skin edge), a bright film-edge strip and a lead marker;
- "presentation": full-field digital "for presentation": black background, grey fat,
  a bright skin line, the periphery equalised, a processed (sigmoid) tone curve and
  burned-in text;
- "edges": the breast cut by the top and bottom (and for some the far) image edges, as
  in images their source already cropped;
- "label_touching": a bright label whose edge touches the breast;
- "chest_fade": digitised film (CBIS-DDSM style) whose tissue fades into the film at the chest
  wall: towards the upper and lower ends of the chest-wall side the breast is barely above
  the background, the part a crop found by thresholding cuts.

Encodings rotate over 8-bit PNG, 16-bit PNG and TIFF holding 12-bit values, DICOM
MONOCHROME1 and MONOCHROME2 (12 bits stored), JPEG and PGM; file names carry laterality
and view in the naming of NYU, CBIS-DDSM, INbreast or the Kaggle sets, so that the
readers' name parsing is exercised too.

All of this is our design, made for the crop (issue "Every mammogram from any site cropped
and scaled right"); `benchmarks/crop_coverage.py` prints its coverage distribution and
`docs/make_crop_examples.py` draws some of the cases.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from mammo_keras.data.breast_mask import ANALYSIS_SIZE
from mammo_keras.data.dicom_writer import write_dicom
from mammo_keras.data.synthetic import (FAT, GLAND, MUSCLE, PhantomLayers, PhantomSpec,
                                        compose_film, draw_phantom_layers)

KINDS = ("film", "faint_film", "presentation", "edges", "label_touching", "chest_fade")
ENCODINGS = ("png8", "png12in16", "tiff12in16", "dicom_mono1", "dicom_mono2", "jpeg", "pgm")
_NAMINGS = ("{i}_{lat}_{view}", "{i}_{lat}-{view}", "Mass-Training_P_{i:05d}_{side}_{view}",
            "{i}_4a1b2c3d_MG_{lat}_{view}_ANON", "case{i}.{lat}{view}")


@dataclasses.dataclass
class CropCase:
    """One mammogram of the test set.

    Attributes:
        name: file stem (it carries laterality and view, as a site would name it).
        kind: one of KINDS. encoding: one of ENCODINGS.
        image: (H, W) float32 in [0, 1], bright = dense, as it is to be stored.
        breast: (H, W) bool, the true breast (skin line and pectoral muscle included).
        artefacts: (H, W) bool, labels, markers and film edges the crop must drop.
        laterality, view, density: of the phantom ("L"/"R", "CC"/"MLO", "A"-"D").
    """

    name: str
    kind: str
    encoding: str
    image: np.ndarray
    breast: np.ndarray
    artefacts: np.ndarray
    laterality: str
    view: str
    density: str

    @property
    def file_name(self) -> str:
        suffix = {"png8": ".png", "png12in16": ".png", "tiff12in16": ".tif", "jpeg": ".jpg",
                  "pgm": ".pgm", "dicom_mono1": ".dcm", "dicom_mono2": ".dcm"}[self.encoding]
        return self.name + suffix


def _tone_curve(x: np.ndarray, gain: float = 6.0, centre: float = 0.5) -> np.ndarray:
    """A processed-image LUT: a sigmoid through (0, 0) and (1, 1)."""
    def s(v):
        return 1.0 / (1.0 + np.exp(-gain * (v - centre)))
    return (s(x) - s(0.0)) / (s(1.0) - s(0.0))


def compose_presentation(layers: PhantomLayers, rng: np.random.Generator) -> np.ndarray:
    """Full-field digital "for presentation": grey fat, equalised periphery, tone curve."""
    fat = rng.uniform(0.3, 0.46)
    tissue = fat + (GLAND + 0.25 - fat) * layers.glandular + 0.025 * layers.fine
    tissue = np.where(layers.pectoral, MUSCLE + 0.12 + 0.02 * layers.fine, tissue)
    tissue = tissue * (0.85 + 0.15 * layers.thickness)  # thickness equalisation
    tissue = np.where(layers.skin, tissue + 0.12, tissue) + layers.lesion + 0.5 * layers.quantum
    image = np.where(layers.breast, _tone_curve(np.clip(tissue, 0.0, 1.0)), 0.0)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def compose_faint_film(layers: PhantomLayers, rng: np.random.Generator) -> np.ndarray:
    """Digitised film with a grey uneven background and a periphery fading into it."""
    height, width = layers.breast.shape
    level = rng.uniform(0.04, 0.12)
    rows, cols = np.mgrid[:height, :width] / max(height, width)
    gradient = rng.uniform(-0.03, 0.03) * rows + rng.uniform(-0.03, 0.03) * cols
    background = level + gradient + rng.normal(0.0, 0.01, (height, width))
    tissue = FAT + (GLAND - FAT) * layers.glandular + 0.03 * layers.fine
    tissue = np.where(layers.pectoral, MUSCLE + 0.02 * layers.fine, tissue)
    fade = 0.12 + 0.88 * layers.thickness ** 0.7  # the faint edge: ~0.05 over the background
    tissue = background + tissue * fade + np.where(layers.skin, 0.03, 0.0) + layers.lesion
    image = np.where(layers.breast, tissue + layers.quantum, background)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def compose_chest_fade(layers: PhantomLayers, rng: np.random.Generator) -> np.ndarray:
    """Digitised film whose breast fades into the background along the chest wall: the
    tissue's contrast over the background falls to a few hundredths at the upper and lower
    ends of the chest-wall side (thin tissue, the film's heel), as on CBIS-DDSM films."""
    height, width = layers.breast.shape
    rows, cols = np.nonzero(layers.breast)
    top, bottom = rows.min(), rows.max() + 1
    chest = 0 if cols.mean() < width / 2 else width - 1  # the chest wall's image edge
    across = np.abs(np.arange(width) - chest)[None, :] / width
    # the film is darker (more exposed) towards the chest wall: the heel effect
    heel = rng.uniform(0.02, 0.05) * np.clip(1.0 - across / 0.5, 0.0, 1.0)
    background = rng.uniform(0.05, 0.1) + heel + rng.normal(0.0, 0.01, (height, width))
    along = np.arange(height)[:, None]
    ends = np.minimum(along - top, bottom - 1 - along) / max(bottom - top, 1)  # 0 at the ends
    reach = rng.uniform(0.3, 0.45)  # the share of the height that fades, at each end
    fade = np.clip(np.maximum(ends / reach, across / 0.45), 0.0, 1.0) ** 2
    tissue = FAT + (GLAND - FAT) * layers.glandular + 0.03 * layers.fine
    tissue = np.where(layers.pectoral, MUSCLE + 0.02 * layers.fine, tissue)
    floor = rng.uniform(0.005, 0.02)  # the contrast left at the ends: about the film's noise
    contrast = floor + (1.0 - floor) * fade
    tissue = background + tissue * contrast * (0.3 + 0.7 * layers.thickness ** 0.5) \
        + layers.lesion * fade
    image = np.where(layers.breast, tissue + layers.quantum * fade, background)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _label(image, artefacts, top, left, height, width, value=0.97):
    """A bright film label with dark 'text' bars, clipped to the image."""
    h, w = image.shape
    top, left = max(0, top), max(0, left)
    bottom, right = min(h, top + height), min(w, left + width)
    if bottom <= top or right <= left:
        return
    image[top:bottom, left:right] = value
    bar = max(1, (bottom - top) // 7)
    for k in range(1, 6, 2):
        image[top + k * bar: top + (k + 1) * bar, left + (right - left) // 5:
              right - (right - left) // 5] = 0.15
    artefacts[top:bottom, left:right] = True


def _marker(image, artefacts, top, left, size):
    """A lead marker letter 'L' (two strokes), bright."""
    stroke = max(2, size // 5)
    for rows, cols in ((slice(top, top + size), slice(left, left + stroke)),
                       (slice(top + size - stroke, top + size), slice(left, left + size * 3 // 4))):
        image[rows, cols] = 0.99
        artefacts[rows, cols] = True


def _burned_in_text(image, artefacts, top, left, size):
    """Burned-in digital text: thin white strokes (as in 'L MLO') at full brightness."""
    stroke = max(1, size // 8)
    for k in range(4):
        x = left + k * size
        image[top:top + size, x:x + stroke] = 1.0
        image[top:top + stroke, x:x + size * 2 // 3] = 1.0
        artefacts[top:top + size, x:x + size * 2 // 3] = True


def _far_side(case_lat: str, width: int, span: int) -> slice:
    """Columns at the side opposite the chest wall."""
    return slice(width - span, width) if case_lat == "L" else slice(0, span)


def _breast_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def make_case(index: int, kind: str, density: str, view: str, laterality: str, size: int,
              seed: int = 0) -> CropCase:
    """One case of the test set, drawn from its arguments alone."""
    rng = np.random.default_rng([seed, index])
    spec = PhantomSpec(seed=int(rng.integers(2 ** 31)), size=size, view=view,
                       laterality=laterality, density=density,
                       finding=str(rng.choice(["normal", "benign_mass", "malignant_mass"])))
    layers = draw_phantom_layers(spec)
    breast = layers.breast.copy()
    if kind == "presentation":
        image = compose_presentation(layers, rng)
    elif kind == "faint_film":
        image = compose_faint_film(layers, rng)
    elif kind == "chest_fade":
        image = compose_chest_fade(layers, rng)
    else:
        image = compose_film(layers) if kind != "edges" or index % 2 else \
            compose_presentation(layers, rng)
    image = image.copy()
    artefacts = np.zeros_like(breast)
    height, width = image.shape
    top, bottom, left, right = _breast_box(breast)
    unit = max(4, height // 40)
    far_left = width - 5 * unit if laterality == "L" else unit
    if kind in ("film", "faint_film", "chest_fade"):
        _label(image, artefacts, unit, far_left, 3 * unit, 4 * unit)
        _marker(image, artefacts, height - 5 * unit, far_left + unit, 3 * unit)
    if kind == "faint_film":  # an unexposed film edge along the far side
        strip = _far_side(laterality, width, max(3, width // 60))
        image[:, strip] = rng.uniform(0.9, 1.0)
        artefacts[:, strip] = True
    if kind == "presentation":
        _burned_in_text(image, artefacts, unit, far_left - 2 * unit, unit)
    if kind == "label_touching":  # a label beside the nipple, touching the breast's edge
        middle = (top + bottom) // 2
        tip_rows = np.nonzero(breast[middle - unit: middle + unit].any(axis=0))[0]
        edge = tip_rows.max() + 1 if laterality == "L" else tip_rows.min()
        column = edge if laterality == "L" else edge - 4 * unit
        _label(image, artefacts, middle - unit, column, 2 * unit, 4 * unit)
        artefacts &= ~breast
    if kind == "edges":  # a source crop: the breast runs off the top and bottom edges
        cut = int((bottom - top) * rng.uniform(0.06, 0.15))
        rows = slice(top + cut, bottom - cut)
        cols = slice(0, width)
        if index % 3 == 0:  # also off the far side: the nipple cut
            tip = int((right - left) * rng.uniform(0.04, 0.1))
            cols = slice(0, right - tip) if laterality == "L" else slice(left + tip, width)
        image, breast, artefacts = image[rows, cols], breast[rows, cols], artefacts[rows, cols]
    encoding = ENCODINGS[index % len(ENCODINGS)]
    naming = _NAMINGS[index % len(_NAMINGS)]
    name = naming.format(i=index, lat=laterality, view=view,
                         side="LEFT" if laterality == "L" else "RIGHT")
    return CropCase(name, kind, encoding, np.ascontiguousarray(image, np.float32),
                    np.ascontiguousarray(breast), np.ascontiguousarray(artefacts), laterality,
                    view, density)


def crop_test_cases(size: int = 512, seed: int = 0, kinds=KINDS) -> list[CropCase]:
    """Every kind x density A-D x view CC / MLO, lateralities alternating: 8 cases a kind."""
    cases = []
    for kind in kinds:
        for d, density in enumerate("ABCD"):
            for v, view in enumerate(("CC", "MLO")):
                index = len(cases) + KINDS.index(kind) * 100
                laterality = "LR"[(d + v) % 2]
                cases.append(make_case(index, kind, density, view, laterality, size, seed))
    return cases


def write_case(case: CropCase, folder: str | Path) -> Path:
    """Write a case into `folder` in its encoding (12-bit values in 16-bit containers)."""
    path = Path(folder) / case.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.encoding.startswith("dicom"):
        return write_dicom(path, case.image, bits_stored=12, laterality_in="none",
                           photometric="MONOCHROME1" if case.encoding == "dicom_mono1"
                           else "MONOCHROME2")
    if case.encoding in ("png12in16", "tiff12in16"):
        picture = Image.fromarray(np.round(case.image * 4095).astype(np.uint16))
    else:
        picture = Image.fromarray(np.round(case.image * 255).astype(np.uint8))
    fmt = {"png8": "PNG", "png12in16": "PNG", "tiff12in16": "TIFF", "jpeg": "JPEG",
           "pgm": "PPM"}[case.encoding]
    picture.save(path, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return path


def write_cases(cases: list[CropCase], folder: str | Path) -> list[Path]:
    """Write every case into `folder` (file names from the cases); returns the paths."""
    return [write_case(case, folder) for case in cases]


def score_crop(case: CropCase, geometry, margin: float = 0.02) -> dict:
    """How well a crop box serves a case.

    Args:
        geometry: [flipped, top, left, height, width] from `breast_geometry` (the box in
            the coordinates of the flipped image when flipped is 1).
        margin: the crop's margin (fraction of the image size); artefacts within the
            breast's bounding box grown by it cannot be left out by a rectangle.

    Returns:
        {"coverage": fraction of breast pixels inside the box (1.0 = all),
         "artefacts_kept": fraction of the avoidable artefact pixels inside the box,
         "box_over_breast": box area / area of the breast's bounding box,
         "flipped": bool}.
    """
    flipped, top, left, height, width = (float(v) for v in np.asarray(geometry))
    breast = case.breast[:, ::-1] if flipped > 0.5 else case.breast
    artefacts = case.artefacts[:, ::-1] if flipped > 0.5 else case.artefacts
    inside = np.zeros_like(breast)
    inside[int(top):int(top + height), int(left):int(left + width)] = True
    b_top, b_bottom, b_left, b_right = _breast_box(breast)
    # the margin, and two cells of the grid the breast is found on
    pad_y, pad_x = (int(np.ceil(margin * n + 2 * n / ANALYSIS_SIZE)) + 1 for n in breast.shape)
    unavoidable = np.zeros_like(breast)
    unavoidable[max(0, b_top - pad_y):b_bottom + pad_y, max(0, b_left - pad_x):b_right + pad_x] = True
    avoidable = artefacts & ~unavoidable
    return {"coverage": float((breast & inside).sum() / breast.sum()),
            "artefacts_kept": float((avoidable & inside).sum() / max(avoidable.sum(), 1)),
            "box_over_breast": float(height * width / ((b_bottom - b_top) * (b_right - b_left))),
            "flipped": bool(flipped > 0.5)}
