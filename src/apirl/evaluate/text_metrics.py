"""ROUGE and CodeBLEU between a response's code section and the gold code section.

ROUGE uses `rouge-score` with a code tokenizer: identifiers, numbers and single punctuation characters,
case kept (rouge-score's default tokenizer lowercases and drops punctuation, which erases most of what makes
code right or wrong). CodeBLEU uses `codebleu==0.7.0` for Python; its four components are reported too
because its dataflow term is 1 whenever the reference has no dataflow.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from rouge_score import rouge_scorer

_CODE_TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?|[^\sA-Za-z_0-9]")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
CODEBLEU_KEYS = ("codebleu", "ngram_match_score", "weighted_ngram_match_score", "syntax_match_score",
                 "dataflow_match_score")


class CodeTokenizer:
    """Tokenizer for rouge-score that keeps code tokens: `a.b('x')` -> a . b ( ' x ' )."""

    def tokenize(self, text: str) -> list[str]:
        return _CODE_TOKEN_RE.findall(text)


_SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=CodeTokenizer())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of one pair."""
    scores = _SCORER.score(reference, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


@dataclass(frozen=True)
class CodeBleu:
    codebleu: float
    ngram_match_score: float
    weighted_ngram_match_score: float
    syntax_match_score: float
    dataflow_match_score: float


def codebleu(predictions: list[str], references: list[str]) -> CodeBleu:
    """Corpus-level CodeBLEU (Python) with its components, over the pairs whose reference is not empty.

    All zeros when no prediction has any text: the library would otherwise give an empty answer 0.25.
    """
    from codebleu import calc_codebleu

    pairs = [(p, r) for p, r in zip(predictions, references, strict=True) if r.strip()]
    if not pairs or not any(p.strip() for p, _ in pairs):
        return CodeBleu(0.0, 0.0, 0.0, 0.0, 0.0)
    preds = [p for p, _ in pairs]
    refs = [r for _, r in pairs]
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # codebleu warns on the root logger for every dataflow-free reference
    try:
        result = calc_codebleu(refs, preds, lang="python")
    finally:
        logging.disable(previous)
    return CodeBleu(*(float(result[key]) for key in CODEBLEU_KEYS))


def sentence_codebleu(prediction: str, reference: str) -> float:
    """CodeBLEU of one pair (used for per-sample means, per-domain bars and confidence intervals)."""
    if not prediction.strip() or not reference.strip():
        return 0.0
    return codebleu([prediction], [reference]).codebleu
