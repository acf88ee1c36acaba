"""A run folder belongs to mammo-keras and to one process at a time.

`train` and `run` write into `--out` and, when a run ends, delete the scratch folders they
made there (`checkpoints/`, `cache/`, `workers/`). So they write only into a folder that is
new, empty, or one they made: the folder holds `MARKER` (or, from before the marker, a
finished or checkpointed run). Anything else is a one-line refusal, and nothing the package
did not make is deleted.

While a run writes its folder it holds an exclusive lock on `LOCK` (`fcntl.flock`, released
by the kernel when the process ends, so a crash leaves no stale lock); a second run into the
same folder is refused instead of mixing the two runs' files. The lock is re-entrant within
a process: an experiment holds its folder while its cells train inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from mammo_keras import __version__
from mammo_keras.errors import ConfigError, UserError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the ownership check still holds
    fcntl = None

MARKER = ".mammo-keras-run.json"
LOCK = ".mammo-keras-run.lock"
# What a folder written before the marker holds when mammo-keras made it.
_EARLIER_RUN = ("done.json", "checkpoints/state.json", "results.csv", "cells")
_A = {"run": "a", "experiment": "an"}
_SHOWN = 4  # names of a foreign folder's entries in the refusal

_held: dict[Path, tuple[int, int]] = {}  # folder -> (descriptor, depth) of this process


def check_run_folder(out: Path) -> None:
    """A UserError naming `out` unless it is new, empty, or a folder mammo-keras made."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: is a file; --out names a run folder")
    entries = sorted(entry.name for entry in out.iterdir())
    if not entries or MARKER in entries or any((out / name).exists() for name in _EARLIER_RUN) \
            or _workers_only(out, entries):
        return
    shown = ", ".join(entries[:_SHOWN]) + (f" and {len(entries) - _SHOWN} more"
                                           if len(entries) > _SHOWN else "")
    raise UserError(f"{out}: not empty and not a mammo-keras run folder (it holds {shown}); "
                    "write into a new or empty folder, or into the run folder of the same "
                    "config to resume it")


def _workers_only(out: Path, entries: list[str]) -> bool:
    """Whether `out` holds only the folders of a cluster's workers, which may start before
    the chief marks the run folder (`training.distribute`'s `workers/worker-N`)."""
    if entries != ["workers"] or not (out / "workers").is_dir():
        return False
    return all(entry.name.startswith("worker-") and entry.name[7:].isdigit()
               for entry in (out / "workers").iterdir())


@contextlib.contextmanager
def owned_run_folder(out: str | Path, kind: str, config_hash: str | None = None
                     ) -> Iterator[Path]:
    """`out` created (or checked with `check_run_folder`), marked as a mammo-keras `kind`
    ("run" or "experiment") folder of the config `config_hash` (when given), and locked
    against other processes while the block runs.

    Raises:
        UserError: `out` is someone else's folder, a folder of another kind or config, or
            another process is writing it.
    """
    out = Path(out)
    check_run_folder(out)
    key = out.resolve()
    marked = _marker(out)
    if key not in _held and marked.get("kind") not in (None, kind):
        raise UserError(f"{out}: is a mammo-keras {marked['kind']} folder, not {_A[kind]} "
                        f"{kind} folder; choose another folder")
    if key not in _held and None not in (config_hash, marked.get("config_hash")) and \
            marked["config_hash"] != config_hash:
        raise ConfigError(f"{out}: holds a run of another config; resume it with its own "
                          f"config ({out / 'config.yaml'}) or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    if key in _held:
        descriptor, depth = _held[key]
        _held[key] = (descriptor, depth + 1)
    else:
        _held[key] = (_lock(out), 1)
    try:
        if not (out / MARKER).exists():
            (out / MARKER).write_text(json.dumps({
                "kind": kind, "made_by": f"mammo-keras {__version__}",
                **({"config_hash": config_hash} if config_hash else {})}) + "\n")
        yield out
    finally:
        descriptor, depth = _held.pop(key)
        if depth > 1:
            _held[key] = (descriptor, depth - 1)
        else:
            os.close(descriptor)  # releases the lock


def _marker(out: Path) -> dict:
    """What `MARKER` in `out` says ({} where there is none)."""
    try:
        marked = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return marked if isinstance(marked, dict) else {}


def _lock(out: Path) -> int:
    """An open descriptor of `out`'s lock file holding its exclusive lock."""
    path = out / LOCK
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return descriptor
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(descriptor, 20, 0).decode(errors="replace").strip()
        os.close(descriptor)
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise UserError(f"{out}: {who} is writing this run folder now; wait for it to end or "
                        "choose another folder") from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(os.getpid()).encode(), 0)
    return descriptor
