"""TensorBoard scalars of finished epochs, written so that a killed and resumed run logs each
epoch exactly once.

Keras' TensorBoard callback logs an epoch when it ends, before the run's checkpoint is
committed: a kill in between makes the resumed run train that epoch again and log it a
second time. Here an epoch is logged only from the committed history, one event file per
epoch (TensorBoard merges the files of a folder into one run), each moved into place whole;
a file that is already there is not written again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tensorflow as tf


def _tag(epoch: int) -> str:
    return f"epoch-{epoch:05d}"


def log_epochs(folder: str | Path, history: list[dict]) -> None:
    """Write each row of `history` ({"epoch": n, name: value, ...}) not yet in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for row in history:
        tag = _tag(int(row["epoch"]))
        if any(folder.glob(f"events.out.tfevents.*.{tag}")):
            continue
        partial = folder / f".{tag}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        writer = tf.summary.create_file_writer(str(partial), filename_suffix=f".{tag}")
        with writer.as_default():
            for name, value in row.items():
                if name != "epoch" and isinstance(value, (int, float)):
                    tf.summary.scalar(name, value, step=int(row["epoch"]))
        writer.close()
        for event_file in partial.iterdir():
            os.replace(event_file, folder / event_file.name)
        shutil.rmtree(partial, ignore_errors=True)


def logged_epochs(folder: str | Path) -> list[int]:
    """The epochs whose scalars are in `folder`, in order (for tests and reports)."""
    return sorted(int(path.name.rsplit("epoch-", 1)[1])
                  for path in Path(folder).glob("events.out.tfevents.*.epoch-*"))
