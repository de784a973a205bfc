"""What judges take and give: a sample, an answer to one question (with its token counts from an LLM judge), and
the score of a sample's answers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from apirl.data.prompts import code_section

# An undecided answer counts half: it neither rewards nor punishes the sample, so a judge that abstains on a
# question (the tools judge on "task", a missing verdict) shifts every sample's score equally instead of
# ranking samples by what the judge could not see.
UNKNOWN_WEIGHT = 0.5


@dataclass(frozen=True)
class Sample:
    """One generated response to judge: its id, the instruction it answers and the raw completion text."""

    sample_id: str
    instruction: str
    completion: str

    @cached_property
    def code(self) -> str:
        """The code section of the completion (`<<<code>>>`, else a fenced block, else the whole text)."""
        return code_section(self.completion)


@dataclass(frozen=True)
class Answer:
    """A judge's answer to one question: `value` None means the judge could not decide ("unknown").

    `p_yes` is the probability of "yes" when the judge gives one (an LLM's token probabilities; the tools
    judge gives 1.0/0.0 when it decides), `detail` says why (the syntax error, the undefined names...).
    """

    question: str
    value: bool | None
    p_yes: float | None
    judge: str
    detail: str = ""

    def __post_init__(self) -> None:
        # A probability that is not one (NaN, inf, outside [0, 1]) is no probability: stored, SQLite would give it
        # back as NULL, and a resumed run would weigh the answer differently from the run that judged it.
        p = self.p_yes
        if p is not None and not (isinstance(p, int | float) and math.isfinite(p) and 0.0 <= p <= 1.0):
            object.__setattr__(self, "p_yes", None)


@dataclass(frozen=True)
class JudgedAnswer:
    """An LLM judge's answer and the tokens its request used (what `JudgmentCache.put` stores beside it; 0 when
    the judge reports none, as the in-process one)."""

    answer: Answer
    prompt_tokens: int = 0
    completion_tokens: int = 0


def answer_weight(answer: Answer) -> float:
    """How much one answer adds to a score: P(yes) when known, else 1/0 from the value, else UNKNOWN_WEIGHT."""
    if answer.p_yes is not None:
        return answer.p_yes
    if answer.value is not None:
        return 1.0 if answer.value else 0.0
    return UNKNOWN_WEIGHT


def score(answers: Iterable[Answer]) -> float:
    """The score S of a sample: the number of "yes" answers (0..8), with probabilities the sum of P(yes)."""
    return sum(answer_weight(answer) for answer in answers)


def label(score: float, threshold: float) -> bool:
    """Whether a sample with this score counts as good (score at or above the threshold)."""
    return score >= threshold


def quantile_threshold(scores: Sequence[float], quantile: float) -> float:
    """The threshold of the quantile label rule: of the scores that leave at least one sample below them (each
    distinct score but the lowest), the one whose share of samples at or above it is closest to 1 - `quantile`
    (the higher on a tie). Scores tie often (the tools judge's are multiples of a half), so the share is the
    nearest one the ties allow; when every sample ties, all are good, as the threshold rule would say."""
    import bisect

    ordered = sorted(scores)
    candidates = sorted(set(ordered))[1:]
    if not candidates:
        return ordered[0] if ordered else 0.0
    target = 1 - quantile

    def share(threshold: float) -> float:
        return (len(ordered) - bisect.bisect_left(ordered, threshold)) / len(ordered)

    return min(candidates, key=lambda t: (abs(share(t) - target), -t))
