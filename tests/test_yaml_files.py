"""Every YAML the package reads goes through the one bounded reader (`mammo_keras.yaml_files`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mammo_keras import cli
from mammo_keras.errors import UserError
from mammo_keras.yaml_files import read_yaml_text

ROOT = Path(__file__).resolve().parents[1]
LOADERS = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
           "full_load_all", "unsafe_load_all"}
THE_READER = ROOT / "mammo_keras" / "yaml_files.py"
# nine levels of nine aliases: 362 bytes standing for 9 ** 9 values
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [{', '.join(['*' + chr(97 + level)] * 9)}]\n"
    for level in range(8))


def _yaml_loads(path: Path) -> list[str]:
    """'file:line' of every call of a PyYAML loader in `path` (yaml.X(...) or an imported X)."""
    tree = ast.parse(path.read_text(), str(path))
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    imported = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "yaml"
                for alias in node.names if alias.name in LOADERS}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Attribute) and function.attr in LOADERS and \
                isinstance(function.value, ast.Name) and function.value.id == "yaml":
            found.append(f"{shown}:{node.lineno}")
        elif isinstance(function, ast.Name) and function.id in imported:
            found.append(f"{shown}:{node.lineno}")
    return found


def test_no_yaml_is_read_but_by_the_bounded_reader():
    sources = [path for folder in ("mammo_keras", "experiments", "benchmarks")
               for path in sorted((ROOT / folder).rglob("*.py")) if path != THE_READER]
    found = [where for path in sources for where in _yaml_loads(path)]
    assert found == [], f"YAML read outside mammo_keras/yaml_files.py: {found}"
    assert _yaml_loads(THE_READER), "the checker finds the reader's own call"


def test_the_checker_catches_both_spellings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import yaml\nfrom yaml import load as l\nyaml.safe_load('a')\n"
                      "l('a', Loader=None)\n")
    assert _yaml_loads(sample) == ["sample.py:3", "sample.py:4"]


def test_morph_step_refuses_an_alias_bomb(tmp_path, capsys):
    assert len(BOMB.encode()) < 400
    with pytest.raises(UserError, match="expands to more than 100,000 values"):
        read_yaml_text(BOMB, "bomb")
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the step is refused first")
    assert cli.main(["morph", str(model), "--out", str(tmp_path / "o.keras"),
                     "--step", BOMB]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "expands to more than 100,000 values" in error
