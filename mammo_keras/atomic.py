"""Atomic writes: a file or folder appears whole or not at all (a partial copy beside it, then
a rename). `atomic_path` is the one implementation; the helpers below write common formats."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from mammo_keras.errors import UserError

if TYPE_CHECKING:
    import keras


def check_destination(path: str | Path, folder: bool = False) -> Path:
    """Make sure `path` can be written before any work is done for it: a file path (or a
    folder, with `folder`) whose nearest existing folder takes new files. Creates nothing.

    Raises:
        UserError: one line naming `path` and what is wrong with it.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{path}: the output folder is a file; name a folder")
    if not folder and path.is_dir():
        raise UserError(f"{path}: the output is a folder; name a file")
    existing = path if folder else path.parent  # nothing is created here: its nearest
    while not existing.exists() and existing != existing.parent:  # existing folder is tried
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{path}: cannot be created, {existing} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check."):
            pass
    except OSError as error:
        raise UserError(f"{path}: cannot write there ({error.strerror or error})") from None
    return path


def os_error_cause(error: BaseException) -> OSError | None:
    """The first OSError with an errno in `error`'s chain (libraries such as pydicom re-raise
    a write failure as a new OSError of the message alone, the errno in its cause)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno is not None:
            return error
        error = error.__cause__ or error.__context__
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a partial path beside `path` to write a file or a folder to; on success it
    replaces `path` (an older folder there is removed first), on failure it is removed.

    The partial name keeps the suffix (writers such as `savefig` and `model.save` choose
    the format by it) and carries the process id, so concurrent writers do not collide.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "a.txt") as partial:
    ...     _ = partial.write_text("whole")
    >>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('whole', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    _remove(partial)
    try:
        yield partial
        if partial.is_dir():
            _remove(path)
        os.replace(partial, path)
    except OSError as error:  # name the destination, not its hidden partial copy
        cause = os_error_cause(error)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror, str(path)) from error
    finally:
        _remove(partial)


def write_text_atomically(path: str | Path, text: str) -> Path:
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_bytes_atomically(path: str | Path, content: bytes, mode: int = 0o644) -> Path:
    """`content` to `path`, readable by others (`mode`) like a plainly written file."""
    with atomic_path(path) as partial:
        partial.write_bytes(content)
        os.chmod(partial, mode)
    return Path(path)


def write_json_atomically(path: str | Path, value) -> Path:
    """`value` as standard JSON: a NaN or infinity (a metric that is undefined, such as the
    AUC of a class with no example) is written as null, never as bare NaN, which JSON readers
    other than Python's refuse."""
    text = json.dumps(_finite_or_null(value), indent=2, default=_plain, allow_nan=False)
    return write_text_atomically(path, text + "\n")


def _plain(value):
    """A NumPy scalar or array as the Python value JSON can hold (non-finite -> None)."""
    if hasattr(value, "tolist"):
        return _finite_or_null(value.tolist())
    number = float(value)
    return number if math.isfinite(number) else None


def _finite_or_null(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def write_csv_atomically(path: str | Path, rows: list[dict],
                         columns: Sequence[str] | None = None) -> Path:
    """Rows as CSV; the columns are `columns`, or every key that occurs, in order of first
    appearance."""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomically(path, buffer.getvalue())


def save_model_atomically(model: "keras.Model", path: str | Path) -> Path:
    """`model.save(path)` through a temporary .keras file in the same folder and a rename."""
    with atomic_path(path) as partial:
        model.save(partial)
    return Path(path)
