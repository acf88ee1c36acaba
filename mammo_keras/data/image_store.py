"""`ImageStore`: preprocessed images (and masks) on disk, read back one row at a time.

A training epoch over the store shuffles row numbers, not images, so memory holds the
batches in flight whatever the number of images (TensorFlow's file cache is read in order
only, and a shuffle after it buffers every decoded image). The store is filled once, in
order, by the decoding pipeline; it names the records it holds, so a store of other data is
never read for new data (nor for files rewritten since), and it keeps the files the first
pass skipped, with their reasons.

Files beside `path`: `<path>.images.bin` (rows of S x S x 1 float32), `<path>.masks.bin`
(rows of S x S x 1 uint8) when masks are stored, and `<path>.index.json` (written last: the
record paths and their files' sizes and times, the preprocessing (size and options), the
position and class index of each stored row, the skipped files).
"""

from __future__ import annotations

import contextlib
import json
import os
import weakref
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from mammo_keras.atomic import write_json_atomically
from mammo_keras.data.errors import DataError


def file_fingerprints(paths: Sequence[str]) -> list:
    """[size, modification time (ns)] of each record's file (its archive, for a member
    "<archive>::<member>"), or None where it cannot be read: a file rewritten under the same
    name (new pixels, new data) does not match the store filled from the old one."""
    prints = []
    for path in paths:
        try:
            facts = os.stat(str(path).split("::", 1)[0])
            prints.append([facts.st_size, facts.st_mtime_ns])
        except OSError:
            prints.append(None)
    return prints


class ImageStore:
    """Rows of preprocessed (S, S, 1) images, with masks when asked, at `path`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, kind: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{kind}")

    @property
    def index_file(self) -> Path:
        return self.file("index.json")

    def index(self) -> dict | None:
        """The store's index, or None when it was never completed."""
        try:
            return json.loads(self.index_file.read_text())
        except (OSError, ValueError):
            return None

    def holds(self, paths: Sequence[str], preprocessing: dict, masks: bool) -> bool:
        """Whether the store is complete and holds exactly these records, preprocessed so
        (`MammogramPreprocessor.get_config()`: the size and options), with masks if asked."""
        index = self.index()
        return index is not None and index["paths"] == list(paths) and \
            index.get("files") == file_fingerprints(paths) and \
            index.get("preprocessing") == preprocessing and (index["masks"] or not masks)

    def write(self, examples: Iterable[tuple[np.ndarray, np.ndarray | None, int, int]],
              paths: Sequence[str], preprocessing: dict, masks: bool,
              skipped: Callable[[], Sequence[DataError]]) -> None:
        """Fill the store from (image (S, S, 1), mask (S, S, 1) or None, class index, position
        in `paths`) examples, in order; `skipped()`: the files the pass could not use (asked
        once the examples are consumed)."""
        self.index_file.unlink(missing_ok=True)  # incomplete until the index is rewritten
        positions, targets = [], []
        with open(self.file("images.bin"), "wb") as images, \
                open(self.file("masks.bin"), "wb") if masks else contextlib.nullcontext() \
                as stored_masks:
            for image, mask, target, position in examples:
                images.write(np.ascontiguousarray(image, np.float32).tobytes())
                if stored_masks is not None:
                    stored_masks.write(np.ascontiguousarray(mask, np.uint8).tobytes())
                positions.append(int(position))
                targets.append(int(target))
        write_json_atomically(self.index_file, {
            "paths": list(paths), "files": file_fingerprints(paths),
            "preprocessing": preprocessing,
            "size": preprocessing["image_size"], "masks": masks, "positions": positions,
            "targets": targets,
            "skipped": [{"path": error.path, "problem": error.problem}
                        for error in skipped()]})

    def reader(self) -> "StoreReader":
        """A reader of the complete store's rows."""
        return StoreReader(self)

    def remove(self) -> None:
        """Delete the store's files."""
        for kind in ("index.json", "images.bin", "masks.bin"):
            self.file(kind).unlink(missing_ok=True)


class StoreReader:
    """Rows of a complete `ImageStore`, read with positioned reads (no memory map: the pages
    stay in the page cache, not in the process, so a long epoch holds no more than a batch).

    Attributes: positions (each row's position among the store's records), targets (each
    row's class index), skipped (DataErrors of the files the filling pass could not use).
    """

    def __init__(self, store: ImageStore):
        index = store.index()
        self.size, self.masks = index["size"], index["masks"]
        self.positions, self.targets = index["positions"], index["targets"]
        self.skipped = [DataError(item["path"], item["problem"]) for item in index["skipped"]]
        self._images = os.open(store.file("images.bin"), os.O_RDONLY)
        self._masks = os.open(store.file("masks.bin"), os.O_RDONLY) if self.masks else None
        weakref.finalize(self, _close, self._images, self._masks)

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(image (S, S, 1) float32, mask (S, S, 1) uint8 or None) of row `row`."""
        pixels = self.size * self.size
        image = np.frombuffer(os.pread(self._images, pixels * 4, row * pixels * 4), np.float32)
        mask = None if self._masks is None else np.frombuffer(
            os.pread(self._masks, pixels, row * pixels), np.uint8).reshape(self.size, self.size, 1)
        return image.reshape(self.size, self.size, 1), mask


def _close(*descriptors: int | None) -> None:
    for descriptor in descriptors:
        if descriptor is not None:
            os.close(descriptor)
