"""The one error type of mammo_keras.data: a file (or dataset row) that cannot be used."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mammo_keras.errors import UserError


class DataError(UserError):
    """A bad input file or label row. The message is one line: "<path>: <problem>".

    Dataset scans catch it per file, skip the file and list it in their summary;
    single-file calls (`read_image`) let it propagate.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        super().__init__(f"{self.path}: {self.problem}")


def no_images(where: str, skipped: Sequence = ()) -> UserError:
    """The error of an input that holds no usable image: one line naming `where`, and how
    many items were skipped, with the first."""
    detail = f"; {len(skipped)} items skipped, the first: {skipped[0]}" if skipped else ""
    return UserError(f"{where}: no images found{detail}")
