"""Reading JSON Lines with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apirl.errors import InputError


def iter_jsonl(path: str | Path, *, what: str = "file") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a missing file, bad JSON or a non-object is an
    InputError naming the file and line. `what` names the file in the not-found message."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=line_number) from exc
            if not isinstance(raw, dict):
                raise InputError(f"expected a JSON object, got {type(raw).__name__}", path=path, line=line_number)
            yield line_number, raw
