"""YAML read the safe way for files a user hands over: safe_load, and bounded.

PyYAML shares an aliased node instead of copying it, so a file of a few hundred bytes
("billion laughs": nine levels of nine aliases) loads quickly but stands for billions
of values, which copying, checking or printing the config would expand. `read_yaml`
counts the values the document stands for and refuses it past `MAX_VALUES`.

    >>> read_yaml_text("a: &x [1, 2]\\nb: *x\\n", "c.yaml")
    {'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mammo_keras.errors import UserError

MAX_VALUES = 100_000  # a config has hundreds; a split manifest in YAML a few thousand


def _expanded_size(value: Any, budget: int) -> int:
    """How many values `value` stands for with aliases expanded, stopping past `budget`."""
    count, stack = 0, [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def read_yaml_text(text: str, where: str) -> Any:
    """The value of a YAML document; a UserError naming `where` when it is not valid YAML
    or expands to more than MAX_VALUES values."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{where}: not valid YAML ({str(error).splitlines()[0]})") from None
    if _expanded_size(value, MAX_VALUES) > MAX_VALUES:
        raise UserError(f"{where}: expands to more than {MAX_VALUES:,} values (YAML aliases "
                        "nested inside each other?); refused")
    return value


def read_yaml(path: str | Path) -> Any:
    """`read_yaml_text` of a file, with a UserError for a folder or a binary file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text (UTF-8) file; a YAML file was expected") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; a YAML file was expected") from None
    return read_yaml_text(text, str(path))
