"""Reading an LLM judge's yes/no answer: from the first token's probabilities, else from the text.

Token probabilities are the better signal (a graded P(yes) ranks samples where a bare yes/no ties), but not
every server returns them, and a model may open with markdown ("**Yes**") so that the first token says nothing.
Both readers therefore return None when they cannot tell, and the caller falls back or records an unknown
answer: a guess here would silently bias the score.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

# What a first token reads as once its whitespace, BPE markers (Ġ, ▁, Ċ) and punctuation are stripped and it
# is lower-cased. Single letters count: a tokenizer may split "YES" into "Y" + "ES".
YES_TOKENS = frozenset({"yes", "y", "yeah", "yep"})
NO_TOKENS = frozenset({"no", "n", "nope"})

_TOKEN_JUNK = " \t\r\n\u0120\u2581\u010a*_`\"'.,:;!#>-()[]"
# Leading noise before an answer word: whitespace, markdown emphasis/headers/quotes/bullets, punctuation.
_LEAD_RE = re.compile(r"^[\s*_`#>\-\"'.,:;!()\[\]]+")
_FIRST_WORD_RE = re.compile(r"(yes|no)\b", re.IGNORECASE)
_BOTH_RE = re.compile(r"(yes|no)\s*(?:/|\bor\b|\band\b)\s*(yes|no)\b", re.IGNORECASE)
# "The answer is yes", "Answer: **No**", "final answer - yes".
# One run of separators after the verb (two adjacent runs that both match spaces backtrack quadratically).
_ANSWER_IS_RE = re.compile(r"\banswer\s*(?:is|would be|:|-)[\s*_`\"':]*(yes|no)\b", re.IGNORECASE)
# A yes/no answer is at the start of a reply; a longer text is read up to here (the regexes stay linear).
MAX_ANSWER_CHARS = 2000


def normalize_token(token: str) -> str:
    """A token as a word: `" Yes"`, `"ĠYes"`, `"▁YES"` and `"Yes."` all read "yes"."""
    return token.strip(_TOKEN_JUNK).lower()


def token_class(token: str) -> bool | None:
    """True for a yes-like token, False for a no-like one, None for anything else."""
    word = normalize_token(token)
    if word in YES_TOKENS:
        return True
    if word in NO_TOKENS:
        return False
    return None


def _token_and_logprob(entry: Any) -> tuple[str, float | None]:
    """(token, logprob) of an OpenAI `TopLogprob` object or a plain dict with the same keys."""
    if isinstance(entry, Mapping):
        return str(entry.get("token", "")), entry.get("logprob")
    return str(getattr(entry, "token", "")), getattr(entry, "logprob", None)


def _is_logprob(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value <= 0  # -inf is probability 0


def p_yes_from_logprobs(top_logprobs: Iterable[Any]) -> float | None:
    """P(yes) from one generated position's top alternatives: the probability of the yes-like tokens over
    that of the yes-like and no-like ones together (the rest of the mass, "**" or "The", says nothing about
    the answer, so it is left out rather than counted as "no"). None when neither kind is among them, or when
    a value is no log-probability (a string, above 0): then the text decides."""
    yes = no = 0.0
    for entry in top_logprobs:
        token, logprob = _token_and_logprob(entry)
        if logprob is None or (isinstance(logprob, float) and math.isnan(logprob)):
            continue  # no value for this token
        if not _is_logprob(logprob):  # a string or a positive "log-probability": this position is garbage
            return None
        kind = token_class(token)
        if kind is True:
            yes += math.exp(logprob)
        elif kind is False:
            no += math.exp(logprob)
    if yes + no <= 0.0:
        return None
    return yes / (yes + no)


def parse_yes_no(text: str | None) -> bool | None:
    """The answer in a judge's text: True for yes, False for no, None when absent or ambiguous.

    Reads a leading "Yes"/"No" after any whitespace, punctuation or markdown ("**No**", "- yes, because...",
    "YES."), else an explicit "the answer is yes" / "Answer: No" (all such phrases must agree). "Yes or no",
    "yes/no" and text with no answer word in those places are None: a "no" inside a sentence ("there are no
    errors") is not an answer.
    """
    if not text:
        return None
    text = text.strip()[:MAX_ANSWER_CHARS]
    cleaned = _LEAD_RE.sub("", text)
    if _BOTH_RE.match(cleaned):
        return None
    first = _FIRST_WORD_RE.match(cleaned)
    if first:
        return first.group(1).lower() == "yes"
    stated = {match.lower() for match in _ANSWER_IS_RE.findall(text)}
    if len(stated) == 1:
        return stated.pop() == "yes"
    return None
