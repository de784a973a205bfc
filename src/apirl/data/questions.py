"""Gorilla's evaluation questions: `question_id`, double-escaped `text`, `category`.

`question_id - 1` is the line index into huggingface_eval.json; seven ids are absent (their records are
malformed). The texts are stored escaped (a literal backslash-n for a newline): they are decoded here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from apirl.data.prompts import unescape
from apirl.errors import InputError


@dataclass(frozen=True)
class Question:
    question_id: int
    text: str
    category: str | None = None


def load_questions(path: str | Path) -> list[Question]:
    """Read a questions JSONL; each line needs an integer `question_id` and a string `text`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("questions file not found", path=path)
    questions: list[Question] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=line_number) from exc
            qid, text = raw.get("question_id"), raw.get("text")
            if not isinstance(qid, int):
                raise InputError("missing or non-integer value", path=path, line=line_number, field="question_id")
            if not isinstance(text, str):
                raise InputError("missing or non-string value", path=path, line=line_number, field="text")
            questions.append(Question(qid, unescape(text).strip(), raw.get("category")))
    return questions
