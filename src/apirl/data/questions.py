"""Gorilla's evaluation questions: `question_id`, double-escaped `text`, `category`.

`question_id - 1` is the line index into huggingface_eval.json; seven ids are absent (their records are
malformed). The texts are stored escaped (a literal backslash-n for a newline): they are decoded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apirl.data.prompts import unescape
from apirl.errors import InputError
from apirl.jsonl import iter_jsonl


@dataclass(frozen=True)
class Question:
    question_id: int
    text: str
    category: str | None = None


def load_questions(path: str | Path) -> list[Question]:
    """Read a questions JSONL; each line needs an integer `question_id` and a string `text`."""
    questions: list[Question] = []
    for line_number, raw in iter_jsonl(path, what="questions file"):
        qid, text = raw.get("question_id"), raw.get("text")
        if not isinstance(qid, int):
            raise InputError("missing or non-integer value", path=path, line=line_number, field="question_id")
        if not isinstance(text, str):
            raise InputError("missing or non-string value", path=path, line=line_number, field="text")
        questions.append(Question(qid, unescape(text).strip(), raw.get("category")))
    return questions
