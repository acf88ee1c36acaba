"""Publishing an exported artefact: it becomes visible whole, checked, with its own metadata.

An export is built in a hidden staging folder inside the output folder (the TFLite
converter's intermediate SavedModel included), checked for parity there, and given its
metadata inside; only then is it renamed into place. The JSON beside it is removed
before that rename and rewritten after it, carrying the artefact's content hash, so a
process killed at any moment leaves either the old artefact or the new one, each with
metadata that belongs to it, and never a JSON describing other weights:

    OUT/.export-staging.<pid>/     while exporting; a later export removes it when that
                                   process is gone
    OUT/savedmodel/1/              published SavedModel (assets/mammo_keras.json inside,
                                   with "content_sha256" of everything else)
    OUT/savedmodel/1.json          beside copy, with "artefact_sha256" of the folder
    OUT/model.tflite, model.json   the same for a TFLite file
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from mammo_keras.atomic import write_json_atomically
from mammo_keras.errors import UserError

STAGING_PREFIX = ".export-staging."


def beside_path(artefact: str | Path) -> Path:
    """The metadata JSON beside an artefact: model.tflite -> model.json, savedmodel/1 -> 1.json."""
    artefact = Path(artefact)
    return artefact.with_suffix(".json") if artefact.suffix \
        else artefact.with_name(artefact.name + ".json")


def content_digest(artefact: str | Path, exclude: tuple[str, ...] = ()) -> str:
    """SHA-256 of a file, or of a folder's files (relative paths and contents, in sorted
    order) except those whose relative path is in `exclude`."""
    artefact = Path(artefact)
    digest = hashlib.sha256()
    files = [artefact] if artefact.is_file() else sorted(
        path for path in artefact.rglob("*") if path.is_file()
        and path.relative_to(artefact).as_posix() not in exclude)
    for path in files:
        if artefact.is_dir():
            digest.update(path.relative_to(artefact).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staging_folder(out: str | Path) -> Iterator[Path]:
    """A hidden folder inside `out` to build artefacts in, removed afterwards; staging
    folders left by killed exports (their process gone) are removed first."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(STAGING_PREFIX + "*"):
        pid = stale.name[len(STAGING_PREFIX):]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = out / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(staged: Path, target: Path, metadata: dict) -> dict:
    """Move the checked artefact `staged` to `target` (replacing an older one) and write
    `metadata` beside it with the artefact's content hash; the metadata written."""
    beside = beside_path(target)
    beside.unlink(missing_ok=True)  # no moment where an old JSON sits beside new weights
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(staged, target)
    metadata = {**metadata, "artefact_sha256": content_digest(target)}
    write_json_atomically(beside, metadata)
    return metadata


def check_belongs(artefact: str | Path, metadata: dict, where: str,
                  key: str = "artefact_sha256", exclude: tuple[str, ...] = ()) -> dict:
    """`metadata` if its content hash `key` matches `artefact` (or it has none, as
    metadata written before hashes existed); otherwise a UserError naming `where`."""
    expected = metadata.get(key)
    if expected and content_digest(artefact, exclude) != expected:
        raise UserError(f"{where}: this metadata belongs to another export (its content hash "
                        f"does not match {Path(artefact).name}); export the model again")
    return metadata
