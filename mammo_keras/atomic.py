"""Atomic writes: a file appears whole or not at all (temporary file in the folder, then rename)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import keras


def write_text_atomically(path: str | Path, text: str) -> Path:
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def write_json_atomically(path: str | Path, value) -> Path:
    return write_text_atomically(path, json.dumps(value, indent=2, default=float) + "\n")


def write_csv_atomically(path: str | Path, rows: list[dict]) -> Path:
    """Rows as CSV; the columns are every key that occurs, in order of first appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomically(path, buffer.getvalue())


def save_model_atomically(model: keras.Model, path: str | Path) -> Path:
    """`model.save(path)` through a temporary .keras file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.keras")
    model.save(partial)
    os.replace(partial, path)
    return path
