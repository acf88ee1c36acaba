"""Names of a package imported when first used (PEP 562), so `import mammo_keras` and the
command line's argument parsing do not pay for TensorFlow until a command needs it.

    # in a package's __init__.py
    __getattr__, __dir__ = lazy_exports(__name__, {"load_dataset": "mammo_keras.data.pipeline"})
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """(`__getattr__`, `__dir__`) for `package`: name -> the module it is imported from.

    A name that is a submodule of `package` maps to that submodule itself. The value is
    cached in the package's namespace after its first use.

    Raises:
        ImportError: a name that is not its module's own name but equals a submodule's:
            importing the submodule would put the module in its place.
    """
    for name, module in exports.items():
        if module != f"{package}.{name}" and importlib.util.find_spec(f"{package}.{name}"):
            raise ImportError(f"{package}.{name} is both a submodule and an exported name")

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        value = module if exports[name] == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
