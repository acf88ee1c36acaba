"""What the experiment scripts share: writing a result as <out>.json and <out>.md, and a
figure with its interval as table text."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(out: str | Path, result: dict, markdown: str) -> None:
    """<out>.json (the figures) and <out>.md (their tables), the folder created."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)


def with_interval(pair, separator: str = "-") -> str:
    """[value, [low, high] or None] -> "0.775 (0.688-0.863)"; "n/a" for no value."""
    value, spread = pair
    if value is None:
        return "n/a"
    return f"{value:.3f} ({spread[0]:.3f}{separator}{spread[1]:.3f})" if spread else \
        f"{value:.3f}"
