"""TensorFlow's C++ start-up lines kept off the terminal of the command line.

TensorFlow 2.21 logs through absl before `absl::InitializeLog()` is called, so its INFO
lines ("oneDNN custom operations are on", "Could not find cuda drivers", "failed call
to cuInit") reach stderr whatever TF_CPP_MIN_LOG_LEVEL says. `silence_tensorflow_start()`
makes the first import of TensorFlow (by whichever module, Keras included) run with file
descriptor 2 pointed at a temporary file, together with its device discovery; what was
caught is shown only if the import fails. The command line does this unless the user
passes `--verbose` or sets TF_CPP_MIN_LOG_LEVEL.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def stderr_to_file() -> Iterator:
    """File descriptor 2 (C++ and Python stderr alike) redirected to a temporary file,
    which is yielded, then restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield capture
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name: str):  # everything else (resource readers, ...) as before
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        failure = None
        with stderr_to_file() as capture:
            try:
                self.loader.exec_module(module)
                module.config.list_physical_devices()  # device discovery logs too (cuInit)
            except BaseException as error:  # noqa: B036  (re-raised below, with what it said)
                failure = error
                capture.seek(0)
                caught = capture.read()
        if failure is not None:
            sys.stderr.buffer.write(caught)
            sys.stderr.flush()
            raise failure


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the import below and later ones are plain
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_tensorflow_start() -> None:
    """Make the first import of TensorFlow in this process quiet (no effect once imported)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
