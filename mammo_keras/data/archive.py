"""Files inside archives, addressed as "<archive>::<member>" (e.g. "all-mias.tar.gz::mdb001.pgm").

Datasets are often distributed as one archive (MIAS: `all-mias.tar.gz`); mammo-keras
reads them in place. A compressed tar cannot be read at random (each backward seek
restarts the decompression, which made parallel tf.data reading 2x slower than a
loop), so it is decompressed once into a plain tar in the cache folder
($MAMMO_KERAS_CACHE, default <temp>/mammo_keras_cache), keyed by the archive's path,
size and modification time. Opened archives are kept, one per path, thread-safe.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path

from mammo_keras.atomic import atomic_path
from mammo_keras.data.errors import DataError

SEPARATOR = "::"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
COMPRESSED_TAR_SUFFIXES = (".tar.gz", ".tgz")


def cache_folder() -> Path:
    """Where decompressed archives are kept ($MAMMO_KERAS_CACHE or <temp>/mammo_keras_cache)."""
    return Path(os.environ.get("MAMMO_KERAS_CACHE",
                               Path(tempfile.gettempdir()) / "mammo_keras_cache"))


def _plain_tar(path: str) -> str:
    """A random-access copy of a compressed tar: decompressed once, atomically, then reused."""
    stat = Path(path).stat()
    key = hashlib.sha256(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_folder() / f"{Path(path).name.split('.')[0]}-{key.hexdigest()[:16]}.tar"
    if not target.exists():
        with atomic_path(target) as partial, gzip.open(path, "rb") as source, \
                open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, length=1 << 22)
    return str(target)


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def member_path(archive: str | Path, member: str) -> str:
    """The address of `member` inside `archive`."""
    return f"{archive}{SEPARATOR}{member}"


def split_member_path(path: str | Path) -> tuple[str, str] | None:
    """(archive, member) for an archive address, None for a plain path."""
    text = str(path)
    if SEPARATOR not in text:
        return None
    archive, member = text.split(SEPARATOR, 1)
    return (archive, member) if is_archive(archive) else None


class _OpenArchive:
    """A tar or zip archive opened once; members read under a lock."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        try:
            if path.lower().endswith(".zip"):
                self.handle = zipfile.ZipFile(path)
                self.names = self.handle.namelist()
            else:
                plain = _plain_tar(path) if path.lower().endswith(COMPRESSED_TAR_SUFFIXES) \
                    else path
                self.handle = tarfile.open(plain, "r:")
                self.members = {m.name: m for m in self.handle.getmembers() if m.isfile()}
                self.names = list(self.members)
        except FileNotFoundError:
            raise DataError(path, "archive not found") from None
        except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, OSError,
                EOFError) as error:
            raise DataError(path, f"unreadable archive ({error})") from error

    def read(self, member: str) -> bytes:
        with self.lock:
            try:
                if isinstance(self.handle, zipfile.ZipFile):
                    return self.handle.read(member)
                return self.handle.extractfile(self.members[member]).read()
            except KeyError:
                raise DataError(member_path(self.path, member), "no such member in the archive") \
                    from None
            except (tarfile.TarError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
                raise DataError(member_path(self.path, member), f"unreadable member ({error})") \
                    from error


@functools.lru_cache(maxsize=8)
def _open(path: str, modified: float) -> _OpenArchive:
    return _OpenArchive(path)


def open_archive(path: str | Path) -> _OpenArchive:
    """The archive at `path`, opened once per modification time."""
    path = str(path)
    try:
        modified = Path(path).stat().st_mtime
    except FileNotFoundError:
        raise DataError(path, "archive not found") from None
    return _open(path, modified)


def list_members(path: str | Path) -> list[str]:
    """Names of the regular files in the archive, in archive order."""
    return list(open_archive(path).names)


def read_member(path: str | Path, member: str) -> bytes:
    return open_archive(path).read(member)


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a file or of an "<archive>::<member>" address."""
    parts = split_member_path(path)
    if parts is not None:
        return read_member(*parts)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not an image file") from None
    except OSError as error:
        raise DataError(path, f"cannot read ({error.strerror or error})") from error
