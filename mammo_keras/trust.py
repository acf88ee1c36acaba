"""Code named by a file runs only when the user says so.

A config's `model.builder` and `data.task`, and the task a saved model names, may be a
reference "package.module:attribute". Inside `mammo_keras` that is the package's own code;
anywhere else it is code from elsewhere, imported (which runs the module) and called. As
Hugging Face's `trust_remote_code` and Hydra's `_target_`, such a reference is refused
unless the user trusts it: `--trust-code` on the command line, or `MAMMO_KERAS_TRUST_CODE=1`
in the environment (the command line sets it, so the processes of a run inherit it).

    >>> import_reference("os:system", "model.builder")
    Traceback (most recent call last):
    ...
    mammo_keras.errors.UserError: model.builder 'os:system' is code from module 'os', outside mammo_keras; refused unless you trust it: add --trust-code (or set MAMMO_KERAS_TRUST_CODE=1)
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any, Iterator

from mammo_keras.errors import UserError

TRUST_VARIABLE = "MAMMO_KERAS_TRUST_CODE"
_TRUE = ("1", "true", "yes", "on")


def code_is_trusted() -> bool:
    """Whether the user trusts code named by files (`MAMMO_KERAS_TRUST_CODE`)."""
    return os.environ.get(TRUST_VARIABLE, "").strip().lower() in _TRUE


@contextlib.contextmanager
def trusting_code(trusted: bool = True) -> Iterator[None]:
    """Trust code named by files (when `trusted`) inside the block, in this process and the
    processes it starts; the environment is as before afterwards."""
    before = os.environ.get(TRUST_VARIABLE)
    if trusted:
        os.environ[TRUST_VARIABLE] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TRUST_VARIABLE, None)
        else:
            os.environ[TRUST_VARIABLE] = before


def split_reference(reference: str, what: str) -> tuple[str, str]:
    """("package.module", "attribute") of "package.module:attribute"; a UserError naming
    `what` when it is not of that form."""
    module, sep, attribute = str(reference).partition(":")
    if not sep or not module or not attribute.isidentifier() or \
            not all(part.isidentifier() for part in module.split(".")):
        raise UserError(f"{what} {reference!r} is not a reference 'package.module:name'")
    return module, attribute


def import_reference(reference: str, what: str) -> Any:
    """The object "package.module:attribute" names, imported only when it is mammo-keras' own
    or the user trusts code (`code_is_trusted`).

    Raises:
        UserError: one line naming `what` and the module, when the code is not trusted, the
            module is missing or has no such attribute.
    """
    module, attribute = split_reference(reference, what)
    if module.split(".")[0] != "mammo_keras" and not code_is_trusted():
        raise UserError(f"{what} {reference!r} is code from module {module!r}, outside "
                        "mammo_keras; refused unless you trust it: add --trust-code (or set "
                        f"{TRUST_VARIABLE}=1)")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise UserError(f"{what} {reference!r}: cannot import it ({error})") from None
