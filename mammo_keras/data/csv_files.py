"""CSV files a user hands over (split manifests, dataset label sheets), read with one rule for
what is wrong with them: a file that is not UTF-8 text or not CSV is a `DataError` naming it."""

from __future__ import annotations

import csv
from pathlib import Path

from mammo_keras.data.errors import DataError


def read_csv_rows(path: str | Path, encoding: str = "utf-8") -> tuple[list[str], list[dict]]:
    """(column names, rows as dicts) of a CSV file with a header line."""
    try:
        with open(path, newline="", encoding=encoding) as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or ()), rows
    except UnicodeDecodeError:
        raise DataError(path, "not a text (UTF-8) CSV file") from None
    except csv.Error as error:
        raise DataError(path, f"unreadable CSV ({error})") from None
