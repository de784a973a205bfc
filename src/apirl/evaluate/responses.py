"""Responses files: JSONL with `question_id` and `text`, the format of Gorilla's published responses.

Our own generations use the same format, so one evaluator scores both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apirl.errors import InputError
from apirl.jsonl import iter_jsonl


@dataclass(frozen=True)
class Response:
    question_id: int
    text: str
    line: int


def load_responses(path: str | Path) -> list[Response]:
    """Read a responses file. A line without an integer `question_id`, a non-string `text` or a repeated id is
    an error naming the file, the line and the field. A null `text` is read as an empty response."""
    responses: list[Response] = []
    first_line: dict[int, int] = {}
    for line_number, raw in iter_jsonl(path, what="responses file"):
        qid = raw.get("question_id")
        if isinstance(qid, str) and qid.strip().isascii() and qid.strip().isdigit():  # not "²", which int() refuses
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
