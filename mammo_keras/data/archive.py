"""Files inside archives, addressed as "<archive>::<member>" (e.g. "all-mias.tar.gz::mdb001.pgm").

Datasets are often distributed as one archive (MIAS: `all-mias.tar.gz`); mammo-keras
reads them in place. Opened archives are kept (one per path, thread-safe), so reading
the members of a gzip-compressed tar in archive order costs one decompression pass.
"""

from __future__ import annotations

import functools
import tarfile
import threading
import zipfile
from pathlib import Path

from mammo_keras.data.errors import DataError

SEPARATOR = "::"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


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
                self.handle = tarfile.open(path, "r:*")
                self.members = {m.name: m for m in self.handle.getmembers() if m.isfile()}
                self.names = list(self.members)
        except FileNotFoundError:
            raise DataError(path, "archive not found") from None
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
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
            except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
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
