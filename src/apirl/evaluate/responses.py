"""Responses files: JSONL with `question_id` and `text`, the format of Gorilla's published responses.

Our own generations use the same format, so one evaluator scores both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from apirl.errors import InputError


@dataclass(frozen=True)
class Response:
    question_id: int
    text: str
    line: int


def load_responses(path: str | Path) -> list[Response]:
    """Read a responses file. A line without an integer `question_id`, a non-string `text` or a repeated id is
    an error naming the file, the line and the field. A null `text` is read as an empty response."""
    path = Path(path)
    if not path.is_file():
        raise InputError("responses file not found", path=path)
    responses: list[Response] = []
    first_line: dict[int, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=line_number) from exc
            if not isinstance(raw, dict):
                raise InputError("expected a JSON object", path=path, line=line_number)
            qid = raw.get("question_id")
            if isinstance(qid, str) and qid.strip().isdigit():
                qid = int(qid)
            if not isinstance(qid, int) or isinstance(qid, bool):
                raise InputError("missing or non-integer value", path=path, line=line_number, field="question_id")
            text = raw.get("text", None)
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise InputError(f"expected a string, got {type(text).__name__}", path=path, line=line_number,
                                 field="text")
            if qid in first_line:
                raise InputError(f"question_id {qid} repeats line {first_line[qid]}", path=path,
                                 line=line_number, field="question_id")
            first_line[qid] = line_number
            responses.append(Response(qid, text, line_number))
    return responses
