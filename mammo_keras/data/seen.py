"""What a model was trained and validated on, kept in the model so that an evaluation can
name (and leave out) the images it has seen.

An image is known by its folder and file name and its patient (`image_key`), not its full
path: the same films copied to another machine are still recognised, and two files of one
name in different class folders are not confused. A content hash would survive renaming but
would mean reading every film of a 20,000-image set once more.

    >>> from mammo_keras.data.records import Record
    >>> record = Record("/data/set/benign/a.png", "benign", None, "P1", None, None, "folder")
    >>> image_key(record) == image_key(Record("/copy/benign/a.png", "benign", None, "P1",
    ...                                      None, None, "folder"))
    True
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Iterable, Sequence

from mammo_keras.data.errors import DataError
from mammo_keras.data.records import Records

KEY_LENGTH = 12  # hex digits: 48 bits, no collision expected among millions of films


def image_key(record) -> str:
    """The key of a record's image: its folder and file name (the member of an archive)
    and its patient id."""
    name = PurePath(str(record.path).split("::")[-1])
    text = f"{name.parent.name}/{name.name}|{record.patient_id or ''}"
    return hashlib.sha1(text.encode()).hexdigest()[:KEY_LENGTH]


def view_counts(records: Iterable) -> dict[str, int]:
    """{"CC": n, "MLO": m} of the records whose view is known (a model's training images)."""
    counts: dict[str, int] = {}
    for record in records:
        if record.view:
            counts[record.view] = counts.get(record.view, 0) + 1
    return dict(sorted(counts.items()))


def seen_keys(records: Iterable) -> list[str]:
    """The sorted keys of `records` (a model's training and validation images)."""
    return sorted({image_key(record) for record in records})


def leave_out_seen(records: Sequence, seen: Iterable[str]) -> tuple[Records, list]:
    """(the records the model has not seen, as `Records` whose `skipped` lists the others
    besides what `records` skipped; the records it has seen), by `image_key`."""
    known = set(seen)
    fresh, overlap = [], []
    for record in records:
        (overlap if image_key(record) in known else fresh).append(record)
    return Records(fresh, skipped=[*getattr(records, "skipped", ()), *map(seen_error, overlap)],
                   subset=getattr(records, "subset", None)), overlap


def seen_error(record) -> DataError:
    """The skipped-list entry of an evaluated image the model was trained or validated on."""
    return DataError(record.path, "the model was trained or validated on this image; left out "
                                  "(--include-seen evaluates it)")
