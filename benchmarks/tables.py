"""What every benchmark does with its table: print it, and keep it where `--out` says (results/bench/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(table: dict[str, Any], out: str) -> None:
    """Print `table` as JSON; also write it to `out` unless that is empty."""
    print(json.dumps(table, indent=2))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
