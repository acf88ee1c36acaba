"""`UserError`: the base of every error that is the user's to fix (a file, an option, a config).

The command line reports a `UserError` (and `FileNotFoundError`) as one line and exit
status 2; any other exception is a bug and shows its traceback. It is a `ValueError`,
so library callers that catch `ValueError` keep working.
"""

from __future__ import annotations

import difflib
from typing import Iterable

MAX_MESSAGE = 1000  # characters: a message quoting a huge value is cut, not printed whole


class UserError(ValueError):
    """A mistake in what the user gave; the message is one line naming the thing and the problem
    (at most MAX_MESSAGE characters, with the length of what was cut)."""

    def __init__(self, message: object = ""):
        text = str(message)
        if len(text) > MAX_MESSAGE:
            text = f"{text[:MAX_MESSAGE]}... ({len(text):,} characters in all)"
        super().__init__(text)


class ConfigError(UserError):
    """A config that cannot be used; the message names the key (and the file)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the choice closest to a misspelt `word`, else ""."""
    close = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
