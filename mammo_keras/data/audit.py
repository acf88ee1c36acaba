"""Near-duplicate audit: perceptual hashes that survive flips and 90-degree rotations.

Pre-augmented datasets (the Kaggle INbreast + MIAS + DDSM set holds rotated and
flipped copies of each lesion) leak when copies land on both sides of a split.
Each image gets a 256-bit DCT perceptual hash (the 16 x 16 lowest frequencies of
its 64 x 64 thumbnail, against their median) under all 8 flips / rotations; two
images are near-duplicates when some transform of one is within `threshold` bits
(Hamming distance) of the other. On MIAS, rotated, flipped, re-contrasted or
227-px resized copies of a film are 0-4 bits from it, while distinct films are
40 bits or more apart (1 % of pairs closer than 76); the default threshold is 12.
(A 64-bit hash does not separate them: whole mammograms share their coarse shape.)
Candidate pairs come from an exact index on the hash's 16 blocks of 16 bits: with
threshold <= 15, a near-duplicate pair shares at least one block (pigeonhole), so
the search is exact, and not quadratic even for the Kaggle set's 27,000 images.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from mammo_keras.errors import UserError
from mammo_keras.atomic import write_csv_atomically
from mammo_keras.data.errors import DataError

if TYPE_CHECKING:
    from mammo_keras.data.records import Record

THUMBNAIL = 64
FREQUENCIES = 16
HASH_BYTES = FREQUENCIES * FREQUENCIES // 8  # 32 bytes = 256 bits
BLOCKS = HASH_BYTES // 2  # 16-bit blocks of the index
DEFAULT_THRESHOLD = 12
MAX_THRESHOLD = BLOCKS - 1  # the block index finds every pair up to 15 differing bits


def _phash(thumbnail: np.ndarray) -> np.ndarray:
    """256-bit DCT hash (32 uint8): the 16 x 16 lowest frequencies against their median."""
    from scipy.fft import dctn  # here: the command line reads the thresholds at start-up

    coefficients = dctn(thumbnail, norm="ortho")[:FREQUENCIES, :FREQUENCIES].ravel()
    return np.packbits(coefficients > np.median(coefficients[1:]))


def _distance(first: np.ndarray, second: np.ndarray) -> int:
    """Smallest Hamming distance between `first` as is and any transform of `second`."""
    return int(np.bitwise_count(first[0][None] ^ second).sum(axis=1).min())


def dihedral_hashes(image: np.ndarray) -> np.ndarray:
    """Hashes (8, 32) uint8 of the image under the 8 flips / 90-degree rotations; [0] is as is."""
    thumbnail = np.asarray(Image.fromarray(np.asarray(image, np.float32)).resize(
        (THUMBNAIL, THUMBNAIL), Image.BOX), np.float64)
    variants = []
    for flipped in (thumbnail, thumbnail[:, ::-1]):
        for turns in range(4):
            variants.append(_phash(np.rot90(flipped, turns)))
    return np.stack(variants)


def hash_records(records: Sequence[Record],
                 progress: Callable[[int, int], None] | None = None
                 ) -> tuple[np.ndarray, list[int], list[DataError]]:
    """Hashes (M, 8, 32) of the readable records, their indices into `records`, the skipped files."""
    from mammo_keras.data.readers import read_image  # pydicom: not needed at start-up

    hashes, kept, skipped = [], [], []
    for index, record in enumerate(records):
        try:
            hashes.append(dihedral_hashes(read_image(record.path)[0]))
            kept.append(index)
        except DataError as error:
            skipped.append(error)
        if progress is not None:
            progress(index + 1, len(records))
    return np.array(hashes, dtype=np.uint8).reshape(-1, 8, HASH_BYTES), kept, skipped


def near_duplicate_pairs(hashes: np.ndarray, threshold: int = DEFAULT_THRESHOLD
                         ) -> list[tuple[int, int, int]]:
    """(i, j, distance) with i < j for every near-duplicate pair among `hashes` (M, 8, 32)."""
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise UserError(f"threshold must be in 0..{MAX_THRESHOLD} bits; got {threshold}.")
    blocks = np.ascontiguousarray(hashes).view(np.uint16)  # (image, transform, block)
    index: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for image in range(len(hashes)):
        for position in range(BLOCKS):
            for value in set(blocks[image, :, position].tolist()):
                index[(position, value)].append(image)
    candidates: set[tuple[int, int]] = set()
    for image in range(len(hashes)):
        for position in range(BLOCKS):
            for other in index[(position, int(blocks[image, 0, position]))]:
                if other != image:
                    candidates.add((min(image, other), max(image, other)))
    pairs = []
    for first, second in sorted(candidates):
        distance = min(_distance(hashes[first], hashes[second]),
                       _distance(hashes[second], hashes[first]))
        if distance <= threshold:
            pairs.append((first, second, distance))
    return pairs


def duplicate_groups(records: Sequence[Record], threshold: int = DEFAULT_THRESHOLD,
                     hashes: tuple[np.ndarray, list[int]] | None = None) -> list[int]:
    """A group id per record: near-duplicates (transitively) and same-patient images share one."""
    hashes_array, kept = hashes if hashes is not None else hash_records(records)[:2]
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for first, second, _ in near_duplicate_pairs(hashes_array, threshold):
        parent[root(kept[first])] = root(kept[second])
    by_patient: dict[str, int] = {}
    for i, record in enumerate(records):
        if record.patient_id is not None:
            parent[root(i)] = root(by_patient.setdefault(record.patient_id, i))
    return [root(i) for i in range(len(records))]


def cross_split_duplicates(assignment: dict[str, Sequence[Record]],
                           threshold: int = DEFAULT_THRESHOLD,
                           progress: Callable[[int, int], None] | None = None) -> dict:
    """Near-duplicate pairs whose images sit in different splits.

    Returns:
        {"pairs": [(path_a, split_a, path_b, split_b, distance)], "within_split": count of
        near-duplicate pairs inside one split, "skipped": [DataError]}.
    """
    flat = [(name, record) for name, members in assignment.items() for record in members]
    hashes, kept, skipped = hash_records([record for _, record in flat], progress)
    leaks, within = [], 0
    for first, second, distance in near_duplicate_pairs(hashes, threshold):
        (split_a, record_a), (split_b, record_b) = flat[kept[first]], flat[kept[second]]
        if split_a == split_b:
            within += 1
        else:
            leaks.append((record_a.path, split_a, record_b.path, split_b, distance))
    return {"pairs": leaks, "within_split": within, "skipped": skipped}


def write_pairs(path: str | Path, pairs: Sequence[tuple]) -> Path:
    """Write `cross_split_duplicates(...)["pairs"]` as CSV, atomically."""
    columns = ("path_a", "split_a", "path_b", "split_b", "distance_bits")
    return write_csv_atomically(path, [dict(zip(columns, pair)) for pair in pairs], columns)
