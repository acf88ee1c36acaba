"""What produced a number: the command, the commit and the hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path

import keras

from mammo_keras import __version__


def git_commit() -> str:
    """The commit of the mammo-keras checkout in use (with "+dirty" for local changes), or
    "release <version>" for an installed package: the package must be the checkout's own
    `mammo_keras/` folder, not a wheel inside a virtual environment that lies in some other
    repository."""
    source = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=source, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        if Path(top).resolve() != source:
            return f"release {__version__}"
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=source, text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=source, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return f"release {__version__}"
    return commit + ("+dirty" if dirty.strip() else "")


@functools.lru_cache(maxsize=None)
def commit_at_start() -> str:
    """The checkout's commit when this process first asked (a run asks when it starts: a run
    that lasts hours records the code it runs, not a commit made while it ran)."""
    return git_commit()


# The CPU features that decide which kernels run (bfloat16 / AMX on today's Intel Xeons)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> str:
    """The CPU's model and its kernel-deciding flags, e.g. "AMD EPYC 7B13; avx2" (Linux; on
    other systems the platform's processor string)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines()
                  if line.startswith("flags")), set())
    return f"{model}; {' '.join(flag for flag in CPU_FLAGS if flag in flags) or 'no AVX2'}"


def hardware() -> str:
    """e.g. "2 CPU cores x86_64 (AMD EPYC 7B13; avx2), no GPU, TensorFlow 2.21.0, Keras 3.15.1
    (tensorflow backend)"."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (f"{os.cpu_count()} CPU cores {platform.machine()} ({cpu()}), "
            f"{f'{len(gpus)} GPU' if gpus else 'no GPU'}, TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__} ({keras.backend.backend()} backend)")


def provenance() -> dict:
    """{"command", "commit", "hardware", "mammo_keras"} of this process; the commit is the
    checkout's when the process first asked (`commit_at_start`)."""
    program = Path(sys.argv[0])
    is_cli = program.name == "mammo-keras" or program.parts[-2:] == ("mammo_keras", "cli.py")
    command = " ".join(["mammo-keras" if is_cli else program.name] + sys.argv[1:])
    return {"command": command, "commit": commit_at_start(), "hardware": hardware(),
            "mammo_keras": __version__}
