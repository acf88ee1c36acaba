"""Synthetic mammography phantoms: the built-in data set of mammo-keras (demo, tests, benchmarks).

Each phantom is drawn from a seed alone, at any height from 256 to 4096 px (width
0.78 x height, like a 24 x 30 cm detector), with a pixel mask for every lesion:

- a breast outline anchored at the chest wall (left edge for "L", right edge for
  "R", as in MIAS), thinning towards a brighter skin line; CC or MLO view, the MLO
  with a pectoral muscle triangle at the chest wall's upper corner;
- fibroglandular tissue from power-law noise (power spectrum 1/f^beta, beta = 3),
  denser towards the centre of the breast, thresholded so that the dense fraction
  of the breast sets the BI-RADS density (A < 0.25 <= B < 0.5 <= C < 0.75 <= D);
- findings: benign masses (round / oval, circumscribed), malignant masses
  (irregular outline with spicules), benign calcifications (few, round, spread)
  and malignant calcifications (many, pleomorphic, tight), each calcification a
  few pixels wide at 4096 px, so that they fade at low resolution; or nothing.

Difficulty: `contrast` (lesion signal over the local tissue, default 0.3) and
`lesion_scale` (lesion size factor, default 2.0). The defaults are measured, not
guessed (experiments/results/phantom_difficulty_*): the baseline CNN at 128 px, 300
phantoms and 12 epochs reaches about 0.67 validation accuracy (chance 1/3), while
contrast 0.08 or 0.15 left it at chance. Lower them for a harder task or at higher
resolution. All of this is our design: the papers give no phantom.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DENSITY_FRACTIONS = {"A": (0.05, 0.2), "B": (0.28, 0.45), "C": (0.55, 0.72), "D": (0.78, 0.92)}
FINDINGS = ("normal", "benign_mass", "malignant_mass", "benign_calcification",
            "malignant_calcification")
LABEL_OF_FINDING = {"normal": "normal", "benign_mass": "benign", "malignant_mass": "malignant",
                    "benign_calcification": "benign", "malignant_calcification": "malignant"}
MIN_SIZE, MAX_SIZE = 256, 4096
DEFAULT_CONTRAST, DEFAULT_LESION_SCALE = 0.3, 2.0
ASPECT = 0.78
FAT, GLAND, MUSCLE = 0.32, 0.62, 0.7


@dataclasses.dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines one phantom; the same spec always draws the same image.

    Attributes:
        seed: the random seed of the drawing.
        size: image height in px (256-4096); width is round(0.78 * size).
        view: "CC" or "MLO". laterality: "L" or "R". density: "A"-"D".
        finding: one of FINDINGS.
        contrast: mean lesion contrast (each lesion draws 0.6-1.4 x this).
        lesion_scale: multiplies lesion sizes.
        calcification_radius: radius in px (of this image) of one micro-calcification;
            None: 0.6-2 px, growing with the image size (a few px at 4096). Set it to make
            clusters that only a high-resolution network can see (MorphHR's experiment).
    """

    seed: int
    size: int = 512
    view: str = "CC"
    laterality: str = "L"
    density: str = "B"
    finding: str = "normal"
    contrast: float = DEFAULT_CONTRAST
    lesion_scale: float = DEFAULT_LESION_SCALE
    calcification_radius: float | None = None

    def __post_init__(self):
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ValueError(f"phantom size must be in {MIN_SIZE}..{MAX_SIZE} px; got {self.size}.")
        if self.view not in ("CC", "MLO") or self.laterality not in ("L", "R"):
            raise ValueError(f"view must be CC/MLO and laterality L/R; got {self.view}, "
                             f"{self.laterality}.")
        if self.density not in DENSITY_FRACTIONS:
            raise ValueError(f"density must be one of A-D; got {self.density!r}.")
        if self.finding not in FINDINGS:
            raise ValueError(f"finding must be one of {FINDINGS}; got {self.finding!r}.")

    @property
    def label(self) -> str:
        return LABEL_OF_FINDING[self.finding]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f^beta, zero mean, unit variance."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2)
    radius[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.standard_normal(shape)) * radius ** (-beta / 2)
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=shape)
    return (field - field.mean()) / (field.std() + 1e-12)


def _breast_geometry(spec: PhantomSpec, rng, height: int, width: int):
    """Pixel rows / columns, depth from the chest wall, the breast mask and its thickness."""
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    depth = cols if spec.laterality == "L" else (width - 1 - cols)  # 0 at the chest wall
    centre_y = height * rng.uniform(0.45, 0.55) - (0.08 * height if spec.view == "MLO" else 0)
    semi_x = width * rng.uniform(0.62, 0.8)
    semi_y = height * (rng.uniform(0.36, 0.44) if spec.view == "CC" else rng.uniform(0.44, 0.5))
    radial = ((rows - centre_y) / semi_y) ** 2 + (depth / semi_x) ** 2
    breast = radial <= 1.0
    thickness = np.sqrt(np.clip(1.0 - radial, 0.0, 1.0))
    return rows, cols, depth, radial, breast, thickness


def _pectoral(spec: PhantomSpec, rng, rows, depth, height, width):
    if spec.view != "MLO":
        return np.zeros(rows.shape, bool)
    reach_x, reach_y = width * rng.uniform(0.25, 0.4), height * rng.uniform(0.35, 0.55)
    return depth / reach_x + rows / reach_y <= 1.0


def _lesion_centre(rng, breast, pectoral, radial, margin=0.6):
    candidates = np.argwhere(breast & ~pectoral & (radial < margin))
    if len(candidates) == 0:
        candidates = np.argwhere(breast)
    row, col = candidates[rng.integers(len(candidates))]
    return float(row), float(col)


def _mass(spec, rng, rows, cols, centre, height, malignant: bool):
    """(intensity profile in [0, 1], mask) of a mass."""
    radius = height * rng.uniform(0.025, 0.05) * spec.lesion_scale
    dy, dx = rows - centre[0], cols - centre[1]
    angle = np.arctan2(dy, dx)
    distance = np.hypot(dy, dx)
    if malignant:  # irregular outline: low-order harmonics of the radius
        outline = np.ones_like(angle)
        for order in range(2, 7):
            outline += rng.uniform(0.04, 0.12) * np.cos(order * angle + rng.uniform(0, 2 * np.pi))
        boundary = radius * outline
    else:  # oval
        stretch, tilt = rng.uniform(1.0, 1.5), rng.uniform(0, np.pi)
        boundary = radius / np.sqrt((np.cos(angle - tilt) / stretch) ** 2
                                    + (np.sin(angle - tilt) * stretch) ** 2) * stretch
    ratio = distance / np.maximum(boundary, 1e-6)
    edge = 0.15 if malignant else 0.05  # fuzzy vs circumscribed margin
    body = _sigmoid(-(ratio - 1.0) / edge)
    profile = body * np.sqrt(np.clip(1.0 - 0.5 * ratio ** 2, 0.0, 1.0) + 0.3)
    mask = ratio <= 1.0
    if malignant:  # spicules: thin bright lines radiating out to 1.5-3 radii
        width_px = max(1.0, height / 700)
        for _ in range(rng.integers(8, 16)):
            direction = rng.uniform(0, 2 * np.pi)
            length = radius * rng.uniform(1.5, 3.0)
            along = dx * np.cos(direction) + dy * np.sin(direction)
            across = np.abs(-dx * np.sin(direction) + dy * np.cos(direction))
            line = (along > 0) & (along < length) & (across < width_px * (1 - along / length) + 0.5)
            profile = np.maximum(profile, 0.6 * line * (1 - np.clip(along / length, 0, 1)))
    return profile / max(profile.max(), 1e-6), mask


def _calcifications(spec, rng, rows, cols, centre, height, malignant: bool):
    """(intensity profile, mask) of a cluster of micro-calcifications."""
    count = rng.integers(10, 22) if malignant else rng.integers(4, 9)
    spread = height * (0.012 if malignant else 0.03) * spec.lesion_scale
    base = spec.calcification_radius or max(0.6, 2.0 * height / MAX_SIZE * 2)  # a few px at
    # 4096, sub-pixel at 512
    profile = np.zeros(rows.shape, np.float32)
    window = int(spread * 3 + 10)
    r0, c0 = int(centre[0]), int(centre[1])
    sub = (slice(max(r0 - window, 0), r0 + window), slice(max(c0 - window, 0), c0 + window))
    sub_rows, sub_cols = rows[sub], cols[sub]
    for _ in range(count):
        offset = rng.normal(0, spread, 2)
        radius = base * (rng.uniform(0.6, 2.2) if malignant else rng.uniform(1.2, 1.8))
        stretch = rng.uniform(1.0, 2.5) if malignant else 1.0  # pleomorphic vs round
        tilt = rng.uniform(0, np.pi)
        dy, dx = sub_rows - centre[0] - offset[0], sub_cols - centre[1] - offset[1]
        u = (dx * np.cos(tilt) + dy * np.sin(tilt)) / stretch
        v = -dx * np.sin(tilt) + dy * np.cos(tilt)
        dot = np.exp(-(u ** 2 + v ** 2) / (2 * radius ** 2))
        profile[sub] = np.maximum(profile[sub], dot)
    return profile, profile > 0.5


@dataclasses.dataclass
class PhantomLayers:
    """The drawn parts of one phantom, before a look (film or digital) composes them.

    All arrays are (H, W): `breast` the true breast mask (skin line included),
    `pectoral` the muscle (MLO), `skin` the skin line, `thickness` in [0, 1] (0 at the
    skin), `glandular` the dense-tissue fraction in [0, 1], `fine` fine texture
    (unit variance), `lesion` the lesion's added signal, `mask` the lesion mask,
    `quantum` detector noise and `background` the film background noise.
    """

    breast: np.ndarray
    pectoral: np.ndarray
    skin: np.ndarray
    thickness: np.ndarray
    glandular: np.ndarray
    fine: np.ndarray
    lesion: np.ndarray
    mask: np.ndarray
    quantum: np.ndarray
    background: np.ndarray
    meta: dict


def draw_phantom_layers(spec: PhantomSpec) -> PhantomLayers:
    """Draw every random part of the phantom of `spec` (the same spec, the same layers)."""
    rng = np.random.default_rng(spec.seed)
    height, width = spec.size, int(round(ASPECT * spec.size))
    rows, cols, depth, radial, breast, thickness = _breast_geometry(spec, rng, height, width)
    pectoral = _pectoral(spec, rng, rows, depth, height, width) & breast
    texture = power_law_noise((height, width), 3.0, rng)
    central = texture + 1.2 * (1.0 - np.clip(radial, 0, 1))  # denser towards the centre
    low, high = DENSITY_FRACTIONS[spec.density]
    target = rng.uniform(low, high)
    tissue = breast & ~pectoral
    threshold = np.quantile(central[tissue], 1.0 - target)
    glandular = _sigmoid((central - threshold) / 0.35)
    fine = power_law_noise((height, width), 2.0, rng)
    skin_width = max(1.5, height / 400)
    skin = breast & (radial > (1.0 - skin_width / (0.4 * height)) ** 2)
    mask = np.zeros((height, width), bool)
    lesion = np.zeros((height, width))
    meta = {**dataclasses.asdict(spec), "label": spec.label,
            "dense_fraction": float((glandular[tissue] > 0.5).mean()),
            "lesion_centre": None, "lesion_radius": None}
    if spec.finding != "normal":
        centre = _lesion_centre(rng, breast, pectoral, radial)
        malignant = spec.label == "malignant"
        draw = _mass if spec.finding.endswith("mass") else _calcifications
        profile, mask = draw(spec, rng, rows, cols, centre, height, malignant)
        strength = spec.contrast * rng.uniform(0.6, 1.4)
        if draw is _calcifications:
            strength *= 3.0  # calcium attenuates far more than soft tissue
        lesion = strength * profile * breast
        mask &= breast
        rows_on, cols_on = np.nonzero(mask)
        if len(rows_on):
            meta["lesion_centre"] = (float(rows_on.mean()), float(cols_on.mean()))
            meta["lesion_radius"] = float(np.sqrt(len(rows_on) / np.pi))
    quantum = rng.normal(0.0, 0.008, (height, width))
    background = rng.uniform(0.0, 0.02, (height, width))
    return PhantomLayers(breast, pectoral, skin, thickness, glandular, fine, lesion, mask,
                         quantum, background, meta)


def compose_film(layers: PhantomLayers) -> np.ndarray:
    """The digitised-film look (the built-in data set): dark fat thinning towards the skin,
    a near-black background. Float32 (H, W) in [0, 1]."""
    image = FAT + (GLAND - FAT) * layers.glandular + 0.03 * layers.fine
    image = np.where(layers.pectoral, MUSCLE + 0.02 * layers.fine, image)
    image = image * (0.55 + 0.45 * layers.thickness)  # thinner breast at the periphery
    image = np.where(layers.skin, image + 0.08, image)
    image = image + layers.lesion
    image = np.where(layers.breast, image + layers.quantum, layers.background)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def generate_phantom(spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one phantom (digitised-film look).

    Returns:
        (image, mask, meta): image float32 (H, W) in [0, 1], bright = dense; mask bool
        (H, W), True on the lesion (all False for normal cases); meta with the spec's
        fields, `label`, the dense fraction achieved and the lesion centre / radius.
    """
    layers = draw_phantom_layers(spec)
    return compose_film(layers), layers.mask, layers.meta


def synthetic_specs(count: int, seed: int = 0, size: int = 512,
                    contrast: float = DEFAULT_CONTRAST,
                    lesion_scale: float = DEFAULT_LESION_SCALE,
                    label_weights: tuple[float, float, float] = (1, 1, 1),
                    calcification_share: float = 0.3,
                    calcification_radius: float | None = None) -> list[PhantomSpec]:
    """`count` phantom specs, two views (CC, MLO) of one breast per patient.

    Patients draw a laterality, a density (A-D uniformly) and a label (normal /
    benign / malignant with `label_weights`); a lesioned patient's finding is a mass
    or, with probability `calcification_share` (0.3), a calcification cluster (dots of
    `calcification_radius` px, see `PhantomSpec`), and shows in both views. Spec i
    belongs to patient i // 2.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1; got {count}.")
    rng = np.random.default_rng(seed)
    weights = np.asarray(label_weights, float) / np.sum(label_weights)
    specs = []
    for patient in range((count + 1) // 2):
        laterality = str(rng.choice(["L", "R"]))
        density = str(rng.choice(list(DENSITY_FRACTIONS)))
        label = str(rng.choice(["normal", "benign", "malignant"], p=weights))
        # the comparison keeps the draws of the 30 % default: the same seed, the same phantoms
        kind = "mass" if rng.random() < 1.0 - calcification_share else "calcification"
        finding = "normal" if label == "normal" else f"{label}_{kind}"
        for view in ("CC", "MLO"):
            if len(specs) < count:
                specs.append(PhantomSpec(seed=int(rng.integers(2 ** 31)), size=size, view=view,
                                         laterality=laterality, density=density, finding=finding,
                                         contrast=contrast, lesion_scale=lesion_scale,
                                         calcification_radius=calcification_radius))
    return specs
