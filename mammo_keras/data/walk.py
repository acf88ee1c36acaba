"""The files of an input folder, and every entry left out with its reason.

`Path.rglob` with `is_file()` leaves FIFOs, sockets, devices, broken links and link loops
out without a word (and reading a FIFO would block forever). `walk_files` returns the
regular files (links to regular files included) and a `DataError` for each other entry;
hidden entries (".DS_Store", ".git", the package's own stamps) are not inputs and are passed
over. A folder reached twice through links is walked once.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mammo_keras.data.errors import DataError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def walk_files(folder: str | Path) -> tuple[list[Path], list[DataError]]:
    """(regular files under `folder`, sorted; a DataError per entry that is not one)."""
    files, skipped, seen = [], [], set()
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            identity = current.stat()
        except OSError as error:
            skipped.append(DataError(current, f"folder cannot be read ({error.strerror})"))
            continue
        if (identity.st_dev, identity.st_ino) in seen:
            skipped.append(DataError(current, "a link back to a folder already read (a link "
                                              "loop); left out"))
            continue
        seen.add((identity.st_dev, identity.st_ino))
        try:
            entries = sorted(os.scandir(current), key=lambda entry: entry.name)
        except OSError as error:
            skipped.append(DataError(current, f"folder cannot be read ({error.strerror})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                mode = os.stat(path).st_mode  # through links
            except OSError as error:
                reason = "a link loop" if error.errno == errno.ELOOP else "a broken link" \
                    if path.is_symlink() else error.strerror
                skipped.append(DataError(path, f"{reason}; left out"))
                continue
            if stat.S_ISDIR(mode):
                stack.append(path)
            elif stat.S_ISREG(mode):
                files.append(path)
            else:
                kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
                skipped.append(DataError(path, f"{kind}, not an image file; left out"))
    return sorted(files), skipped
