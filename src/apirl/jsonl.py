"""JSON Lines in and out: readers whose errors name the file and the line, writers that take any string.

Run files hold text that models and snippets wrote, so both directions must survive it: bytes that are not
UTF-8, JSON nested deeper than the parser recurses, and strings with lone surrogates (a snippet's
`ValueError(chr(0xDC80))` reaches the verdicts), which a UTF-8 file cannot hold as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from apirl.errors import InputError


def iter_jsonl(path: str | Path, *, what: str = "file") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a missing file, bytes that are not UTF-8, bad or too
    deeply nested JSON, or a non-object is an InputError naming the file and line. `what` names the file in the
    not-found message."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    with path.open("rb") as handle:
        for line_number, data in enumerate(handle, start=1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 text (byte {exc.start + 1} of the line)", path=path,
                                 line=line_number) from exc
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=line_number) from exc
            except RecursionError as exc:
                raise InputError("JSON nested too deeply", path=path, line=line_number) from exc
            if not isinstance(raw, dict):
                raise InputError(f"expected a JSON object, got {type(raw).__name__}", path=path, line=line_number)
            yield line_number, raw


def json_line(row: dict[str, Any]) -> str:
    """One JSONL line for `row`, writable as UTF-8 whatever its strings hold: text stays as it is, but a lone
    surrogate (which UTF-8 cannot encode) becomes its JSON escape `\\udc80`, read back as the same value."""
    text = json.dumps(row, ensure_ascii=False)
    if text.isascii():
        return text + "\n"
    return text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n"


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows atomically (temp file + rename) so a killed run never leaves half a file behind, and a row
    that cannot be written leaves no temp file either; the file's directory is made when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json_line(row))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | Path, *, what: str = "output file") -> Path:
    """Fail before the work, not after it: the directory of `path` must exist and be writable, and `path` must
    not be a directory."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{what} is a directory", path=path)
    if not parent.is_dir():
        raise InputError(f"the directory of the {what} does not exist", path=path)
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{what} is not writable", path=path)
    return path


def rows_written_under(rows_path: Path, meta_path: Path, fingerprint: dict[str, Any], key: str
                       ) -> dict[str, dict[str, Any]]:
    """The rows of a resumable JSONL (complete or partial) by their `key`, when `meta_path` holds this
    fingerprint; {} when it holds another (other settings start over) or either file is missing. A last line cut
    short by a kill is dropped: it is generated again."""
    if not (rows_path.is_file() and meta_path.is_file()):
        return {}
    try:
        if json.loads(meta_path.read_text(encoding="utf-8")) != fingerprint:
            return {}
    except json.JSONDecodeError:
        return {}
    return {row[key]: row for row in whole_rows(rows_path)}


def whole_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL that a kill may have cut: up to the first line that is not whole JSON."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return
            yield row
