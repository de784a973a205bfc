"""The eight yes/no questions every judge answers about a sample (Dutta et al. 2024, the AI-feedback stage).

The score of a sample is the number of "yes" answers (or the sum of P(yes)), so the questions are fixed data:
their order is the order of the answers everywhere (reports, caches, training labels), and their keys name them
in code and in the cache. The cache keys an answer on the question's key, not its text: after editing a text,
the cached LLM answers to it are stale and must be cleared.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    """One yes/no question: a short stable key and the text a judge reads."""

    key: str
    text: str


QUESTIONS: tuple[Question, ...] = (
    Question("imports", "Does the code import every module, class and function it uses?"),
    Question("syntax", "Is the code free of syntax errors?"),
    Question("defined_names", "Does the code use only names that are defined?"),
    Question("api_exists", "Does the code call an API (model, class, function) that really exists and fits the task?"),
    Question("arguments", "Are the API call's arguments correct?"),
    Question("task", "Does the code accomplish the task in the instruction?"),
    Question("complete", "Is the code complete (no placeholders, no missing steps)?"),
    Question("logic", "Is the code free of logical errors?"),
)

_BY_KEY = {q.key: q for q in QUESTIONS}


def question(key: str) -> Question:
    """The question with this key; a KeyError that lists the valid keys (a typo in a config should say so)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown question {key!r}; valid keys: {', '.join(_BY_KEY)}") from None
