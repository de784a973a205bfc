"""Paired comparison of two models scored on the same questions: the difference of each metric, with a paired
bootstrap 95% interval.

Two models' own intervals overlap long before their difference is uncertain: both answer the same questions, and
most of the spread of each rate is which questions were drawn, which the two share. Resampling questions once for
both models and taking the difference of means inside each resample removes that shared part, so the interval is
the one of "is B better than A on questions like these", the question RL must answer against M_SFT.

The inputs are per-question details (`apirl eval responses --details`, the pipeline's `eval/details/<label>.jsonl`):
one object per question with `question_id`, both AST outcomes, the text metrics and, when the code was run,
`executes` and `executes_api` (it ran and loaded the named model or one of the gold domain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apirl.errors import InputError
from apirl.jsonl import iter_jsonl
from apirl.stats import mcnemar_exact, paired_bootstrap

# (key, label, per-question value or None when the question does not count for it). The text metrics count only
# questions with reference code, as in the summary; executability only where the code was run.
Metric = tuple[str, str, Callable[[dict[str, Any], str], float | None]]


def _outcome(name: str) -> Callable[[dict[str, Any], str], float | None]:
    def value(row: dict[str, Any], mode: str) -> float | None:
        return float(row[f"{mode}_outcome"] == name)
    return value


def _text(key: str) -> Callable[[dict[str, Any], str], float | None]:
    def value(row: dict[str, Any], mode: str) -> float | None:
        return float(row[key]) if row.get("has_reference_code") else None
    return value


def _executes(row: dict[str, Any], mode: str) -> float | None:
    return float(row["executes"]) if row.get("executes") is not None else None


def _executes_api(row: dict[str, Any], mode: str) -> float | None:
    return float(row["executes_api"]) if row.get("executes_api") is not None else None


METRICS: tuple[Metric, ...] = (
    ("ast_accuracy", "AST acc", _outcome("correct")),
    ("hallucination", "halluc.", _outcome("hallucination")),
    ("rouge_l", "ROUGE-L", _text("rouge_l")),
    ("codebleu_sentence", "CodeBLEU (per q.)", _text("codebleu_sentence")),
    ("executability", "exec bound", _executes),
    ("executability_api", "exec API", _executes_api),
)
REQUIRED_KEYS = ("question_id", "gorilla_outcome", "strict_outcome", "has_reference_code", "rouge_l",
                 "codebleu_sentence")


@dataclass(frozen=True)
class Difference:
    """B minus A on the questions where both count. For 0/1 metrics `better` counts the questions where B has 1
    and A 0, `worse` the reverse, and `p_value` is the exact McNemar test on those discordant questions (all None for
    continuous metrics)."""

    key: str
    n: int
    a: float
    b: float
    diff: float
    low: float
    high: float
    better: int | None
    worse: int | None
    p_value: float | None = None


def load_details(path: str | Path) -> dict[int, dict[str, Any]]:
    """Per-question details by question id; a row without a needed key or a repeated id names file and line."""
    rows: dict[int, dict[str, Any]] = {}
    for line, row in iter_jsonl(path, what="details file"):
        for key in REQUIRED_KEYS:
            if key not in row:
                raise InputError(f"missing '{key}' (write details with `apirl eval responses --details`)",
                                 path=path, line=line, field=key)
        qid = row["question_id"]
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise InputError(f"question_id must be an integer, got {qid!r}", path=path, line=line,
                             field="question_id")
        if qid in rows:
            raise InputError(f"question {qid} appears twice", path=path, line=line, field="question_id")
        rows[qid] = row
    return rows


def compare(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], *, mode: str = "gorilla",
            samples: int = 1000, seed: int = 0, names: tuple[str, str] = ("A", "B")) -> list[Difference]:
    """B minus A on every metric both have. Both must score the same questions: a difference over different
    questions is not paired, and would silently mix a change of model with a change of test set."""
    if mode not in ("gorilla", "strict"):
        raise InputError(f"mode must be gorilla or strict, got {mode!r}", field="mode")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise InputError(f"{names[0]} and {names[1]} score different questions: {len(only_a)} only in "
                         f"{names[0]} (e.g. {only_a[:3]}), {len(only_b)} only in {names[1]} (e.g. {only_b[:3]})")
    differences = []
    for key, _label, value in METRICS:
        pairs = [(va, vb) for qid in sorted(a)
                 if (va := value(a[qid], mode)) is not None and (vb := value(b[qid], mode)) is not None]
        if not pairs:
            continue
        values_a, values_b = np.array(pairs, dtype=float).T
        diff, low, high = paired_bootstrap(values_a, values_b, samples=samples, seed=seed)
        binary = bool(np.isin(values_a, (0.0, 1.0)).all() and np.isin(values_b, (0.0, 1.0)).all())
        better = int(((values_b == 1) & (values_a == 0)).sum()) if binary else None
        worse = int(((values_b == 0) & (values_a == 1)).sum()) if binary else None
        differences.append(Difference(
            key=key, n=len(pairs), a=float(values_a.mean()), b=float(values_b.mean()), diff=diff, low=low, high=high,
            better=better, worse=worse, p_value=mcnemar_exact(better, worse) if binary else None))
    return differences


def format_difference(difference: Difference | None) -> str:
    """Points (percent of questions, or of the metric's 0..1 scale), signed, with the paired interval and, for
    0/1 metrics, the questions where only B has it / only A has it and McNemar's p: `+1.5 [+0.4, +2.9] (+4/-0,
    p=0.12)`."""
    if difference is None or np.isnan(difference.diff):
        return "–"
    text = f"{100 * difference.diff:+.1f}"
    if difference.low != difference.high:
        text += f" [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]"
    if difference.better is not None:
        text += f" (+{difference.better}/-{difference.worse}, p={difference.p_value:.2g})"
    return text


COMPARISON_HEADER = ["model", "minus", "n", *(label for _, label, _ in METRICS)]


def comparison_row(name: str, base: str, differences: list[Difference]) -> list[str]:
    """One table row: `name` minus `base` on every metric (`–` where either lacks it); n is the questions."""
    by_key = {difference.key: difference for difference in differences}
    n = max((difference.n for difference in differences), default=0)
    return [name, base, str(n), *(format_difference(by_key.get(key)) for key, _, _ in METRICS)]
