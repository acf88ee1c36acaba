"""Near-duplicate audit: transformed copies are found, distinct images are not, splits use it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammo_keras.data import PhantomSpec, generate_phantom, load_records
from mammo_keras.data.audit import (DEFAULT_THRESHOLD, cross_split_duplicates, dihedral_hashes,
                                    duplicate_groups, hash_records, near_duplicate_pairs)
from mammo_keras.data.records import Record
from mammo_keras.data.splits import split_records
from test_data_mias import MIAS_ARCHIVE


def resized(image, side=227):
    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


COPIES = {
    "rotated 90": lambda image, rng: np.rot90(image, 1),
    "rotated 270 and flipped": lambda image, rng: np.rot90(image, 3)[:, ::-1],
    "flipped vertically": lambda image, rng: image[::-1],
    "contrast and noise": lambda image, rng: np.clip(image * 1.1 + rng.normal(0, 0.01, image.shape),
                                                     0, 1).astype(np.float32),
    "resized to 227 px": lambda image, rng: resized(image),
}


@pytest.fixture(scope="module")
def phantoms():
    return [generate_phantom(PhantomSpec(seed=s, size=256, density="ABCD"[s % 4],
                                         view=("CC", "MLO")[s % 2]))[0] for s in range(24)]


@pytest.mark.parametrize("name", sorted(COPIES))
def test_transformed_copies_are_near_duplicates(phantoms, name, rng):
    original = phantoms[3]
    hashes = np.stack([dihedral_hashes(original), dihedral_hashes(COPIES[name](original, rng))])
    pairs = near_duplicate_pairs(hashes, DEFAULT_THRESHOLD)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)], name
    assert pairs[0][2] <= 8  # 227 px square: the aspect changes too, 6 bits here


def test_distinct_phantoms_are_not(phantoms):
    hashes = np.stack([dihedral_hashes(image) for image in phantoms])
    assert near_duplicate_pairs(hashes, DEFAULT_THRESHOLD) == []


def test_index_search_equals_brute_force(rng):
    """The block index finds exactly the pairs a full comparison finds."""
    base = rng.integers(0, 256, (40, 8, 32), dtype=np.uint8)
    noisy = base.copy()
    for image in range(0, 40, 2):  # every other image: a copy of the next one with bit flips
        noisy[image] = base[image + 1]
        for _ in range(rng.integers(0, 15)):
            byte, bit = rng.integers(32), rng.integers(8)
            noisy[image, 0, byte] ^= np.uint8(1 << bit)
    expected = []
    for i in range(40):
        for j in range(i + 1, 40):
            distance = min(int(np.bitwise_count(noisy[i][0][None] ^ noisy[j]).sum(1).min()),
                           int(np.bitwise_count(noisy[j][0][None] ^ noisy[i]).sum(1).min()))
            if distance <= 12:
                expected.append((i, j, distance))
    assert near_duplicate_pairs(noisy, 12) == expected
    assert len(expected) >= 10
    with pytest.raises(ValueError, match="0..15"):
        near_duplicate_pairs(noisy, 16)


def write(path, image):
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return Record(path=str(path), label="benign", density=None, patient_id=None, laterality=None,
                  view=None, source="test")


def test_duplicate_groups_keep_copies_in_one_split(tmp_path, phantoms, rng):
    records = [write(tmp_path / f"{i}.png", image) for i, image in enumerate(phantoms[:12])]
    records += [write(tmp_path / f"{i}_copy.png", np.rot90(phantoms[i])) for i in range(6)]
    groups = duplicate_groups(records)
    for i in range(6):
        assert groups[i] == groups[12 + i]
    assert len(set(groups)) == 12
    splits = split_records(records, seed=0, groups=groups)
    audit = cross_split_duplicates(splits)
    assert audit["pairs"] == [] and audit["within_split"] == 6
    # Without the groups, the same seed splits copies apart: the audit must see those leaks.
    naive = split_records(records, seed=0)
    leaked = cross_split_duplicates(naive)
    assert len(leaked["pairs"]) >= 1
    assert len(leaked["pairs"]) + leaked["within_split"] == 6
    for path_a, split_a, path_b, split_b, _ in leaked["pairs"]:
        assert split_a != split_b and Path(path_a).stem.split("_")[0] == \
            Path(path_b).stem.split("_")[0]


def test_unreadable_files_are_reported(tmp_path, phantoms):
    good = write(tmp_path / "good.png", phantoms[0])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    bad = Record(path=str(tmp_path / "bad.png"), label=None, density=None, patient_id=None,
                 laterality=None, view=None, source="test")
    hashes, kept, skipped = hash_records([good, bad])
    assert kept == [0] and len(skipped) == 1 and "bad.png" in str(skipped[0])


def test_mias_has_no_near_duplicate_films():
    if not MIAS_ARCHIVE.exists():
        pytest.skip(f"real MIAS archive not found at {MIAS_ARCHIVE}")
    hashes, kept, skipped = hash_records(load_records("mias", root=MIAS_ARCHIVE))
    assert len(kept) == 322 and skipped == []
    assert near_duplicate_pairs(hashes, DEFAULT_THRESHOLD) == []
