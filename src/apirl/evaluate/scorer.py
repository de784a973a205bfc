"""Score a responses file on a set of questions: AST match (both modes), exact call, model id, ROUGE, CodeBLEU.

Every headline rate is a fraction in 0..1 of the responses scored, with a bootstrap 95% interval, overall and
per gold domain. Gorilla divides by the number of responses in the file; so do we with `--split all`. With a
split, a question of the split that has no response is scored as an empty response (a hallucination) and
counted in `missing_responses`, so two files are always compared on the same questions.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apirl.data.apidb import ApiDatabase, normalize_call
from apirl.data.prompts import code_section, normalize_text, parse_completion
from apirl.data.records import ApiBenchRecord
from apirl.errors import InputError
from apirl.evaluate.ast_match import AstMatcher
from apirl.evaluate.config import EvalConfig
from apirl.evaluate.responses import Response
from apirl.evaluate.text_metrics import codebleu, rouge, sentence_codebleu
from apirl.stats import bootstrap_ci

_QUOTED_RE = re.compile(r"""['"]([^'"\s]+)['"]""")
TEXT_KEYS = ("rouge_1", "rouge_2", "rouge_l", "codebleu_sentence")


@dataclass(frozen=True)
class ScoredResponse:
    """Every per-sample verdict, written to `--details` and aggregated into the summary."""

    question_id: int
    domain: str
    gold_api_name: str
    missing: bool
    gorilla_outcome: str
    gorilla_row: int | None
    strict_outcome: str
    strict_row: int | None
    extracted_call: str
    api_call_exact: bool
    model_id: str | None
    model_id_match: bool
    has_reference_code: bool
    rouge_1: float
    rouge_2: float
    rouge_l: float
    codebleu_sentence: float
    code: str
    reference_code: str


def response_model_id(call_text: str, code: str, api_db: ApiDatabase) -> str | None:
    """The model id a response uses: the first quoted database id (or `org/name`) in its call, else its code."""
    for text in (call_text, code):
        quoted = _QUOTED_RE.findall(text)
        for candidate in quoted:
            if api_db.by_model_id(candidate):
                return candidate
        for candidate in quoted:
            if re.fullmatch(r"[\w.\-]+/[\w.\-]+", candidate):
                return candidate
    return None


def uses_api(loaded: Sequence[str], response: str, gold_domains: Collection[str], api_db: ApiDatabase) -> bool:
    """Executability with the API: code that ran counts only if it loaded (`loaded`: the sandbox's record) a
    database model that is the one the response's `<<<api_call>>>` names or one of a gold domain. Code that
    calls no API (plain Python, pandas reading a CSV) runs; it does not do the task, and RL must not be paid
    for it. No gold domain: only the named model counts."""
    wanted = set().union(*(api_db.domain_model_ids(domain) for domain in gold_domains))
    named = response_model_id(parse_completion(response).api_call or "", "", api_db)
    if named:
        wanted.add(named.lower())
    return any(model_id.lower() in wanted for model_id in loaded)


def score_response(text: str, record: ApiBenchRecord, matcher: AstMatcher, *, missing: bool = False,
                   with_codebleu: bool = True) -> ScoredResponse:
    gorilla = matcher.judge(text, gold_domain=record.gold_domain, gold_api_name=record.gold_api_name)
    strict = matcher.judge(text, gold_domain=record.gold_domain, gold_api_name=record.gold_api_name,
                           mode="strict")
    gold_call = record.output.api_call or record.api_data.api_call
    call_text = normalize_text(gorilla.extracted_call)
    code = code_section(text) if text.strip() else ""
    model_id = response_model_id(call_text, code, matcher.api_db)
    reference = record.output.code or ""
    has_reference = bool(reference.strip())
    text_scores = rouge(code, reference) if has_reference else {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    return ScoredResponse(
        question_id=record.question_id,
        domain=record.gold_domain,
        gold_api_name=record.gold_api_name,
        missing=missing,
        gorilla_outcome=gorilla.outcome,
        gorilla_row=gorilla.row_index,
        strict_outcome=strict.outcome,
        strict_row=strict.row_index,
        extracted_call=gorilla.extracted_call,
        api_call_exact=bool(call_text.strip()) and normalize_call(call_text) == normalize_call(gold_call),
        model_id=model_id,
        model_id_match=model_id is not None
        and model_id.lower() in {record.gold_api_name.lower(), record.api_data.model_id.lower()},
        has_reference_code=has_reference,
        rouge_1=text_scores["rouge1"],
        rouge_2=text_scores["rouge2"],
        rouge_l=text_scores["rougeL"],
        codebleu_sentence=sentence_codebleu(code, reference) if with_codebleu and has_reference else 0.0,
        code=code,
        reference_code=reference,
    )


def select_responses(responses: list[Response], records: dict[int, ApiBenchRecord], question_ids: list[int] | None,
                     path: str | Path = "<responses>") -> tuple[list[tuple[int, str, bool]], int]:
    """(question_id, text, missing) to score, and how many responses were outside the selected questions."""
    for response in responses:
        if response.question_id not in records:
            raise InputError(f"question_id {response.question_id} is not a question of the eval data",
                             path=path, line=response.line, field="question_id")
    if question_ids is None:
        return [(r.question_id, r.text, False) for r in responses], 0
    by_id = {r.question_id: r.text for r in responses}
    wanted = set(question_ids)
    ignored = sum(1 for r in responses if r.question_id not in wanted)
    return [(qid, by_id.get(qid, ""), qid not in by_id) for qid in question_ids], ignored


def _outcome_indicators(rows: list[ScoredResponse], mode: str) -> dict[str, np.ndarray]:
    """0/1 per sample for accuracy, hallucination and error under one matcher mode."""
    outcomes = [r.gorilla_outcome if mode == "gorilla" else r.strict_outcome for r in rows]
    return {name: np.array([o == outcome for o in outcomes], dtype=float)
            for name, outcome in (("accuracy", "correct"), ("hallucination", "hallucination"), ("error", "error"))}


def _rates(rows: list[ScoredResponse], mode: str = "gorilla") -> dict[str, np.ndarray]:
    """Per-sample indicators of every rate; the unprefixed AST keys follow `mode`."""
    headline = _outcome_indicators(rows, mode)
    return {
        "ast_accuracy": headline["accuracy"],
        "hallucination": headline["hallucination"],
        "error": headline["error"],
        "strict_accuracy": _outcome_indicators(rows, "strict")["accuracy"],
        "api_call_exact": np.array([r.api_call_exact for r in rows], dtype=float),
        "model_id_match": np.array([r.model_id_match for r in rows], dtype=float),
    }


def _text_values(rows: list[ScoredResponse]) -> dict[str, np.ndarray]:
    with_ref = [r for r in rows if r.has_reference_code]
    return {key: np.array([getattr(r, key) for r in with_ref], dtype=float) for key in TEXT_KEYS}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def summarize(rows: list[ScoredResponse], config: EvalConfig, *, with_codebleu: bool = True) -> dict[str, Any]:
    """Aggregate per-sample verdicts into the evaluation JSON (without file-level bookkeeping)."""
    rates = _rates(rows, config.mode)
    texts = _text_values(rows)
    by_mode = {mode: {k: _mean(v) for k, v in _outcome_indicators(rows, mode).items()}
               for mode in ("gorilla", "strict")}
    summary: dict[str, Any] = {
        "n": len(rows),
        "mode": config.mode,
        "ast_accuracy": _mean(rates["ast_accuracy"]),
        "hallucination": _mean(rates["hallucination"]),
        "error": _mean(rates["error"]),
        **by_mode,
        "strict_accuracy": _mean(rates["strict_accuracy"]),
        "api_call_exact": _mean(rates["api_call_exact"]),
        "model_id_match": _mean(rates["model_id_match"]),
        "n_with_reference_code": int(texts["rouge_l"].size),
        "rouge_1": _mean(texts["rouge_1"]),
        "rouge_2": _mean(texts["rouge_2"]),
        "rouge_l": _mean(texts["rouge_l"]),
        "rouge_tokenizer": "code tokens: identifiers, numbers, single punctuation characters; case kept",
    }
    if with_codebleu:
        with_ref = [r for r in rows if r.has_reference_code]
        corpus = codebleu([r.code for r in with_ref], [r.reference_code for r in with_ref])
        summary["codebleu"] = corpus.codebleu
        summary["codebleu_components"] = {k: v for k, v in asdict(corpus).items() if k != "codebleu"}
        summary["codebleu_sentence_mean"] = _mean(texts["codebleu_sentence"])
    ci_values = {**rates, "rouge_l": texts["rouge_l"]}
    if with_codebleu:
        ci_values["codebleu_sentence_mean"] = texts["codebleu_sentence"]
    summary["ci95"] = {key: list(bootstrap_ci(values, samples=config.bootstrap_samples, seed=config.bootstrap_seed))
                       for key, values in ci_values.items()}
    summary["per_domain"] = _per_domain(rows)
    return summary


def _per_domain(rows: list[ScoredResponse]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[ScoredResponse]] = defaultdict(list)
    for row in rows:
        groups[row.domain].append(row)
    out = {}
    for domain in sorted(groups):
        rates = _rates(groups[domain])
        texts = _text_values(groups[domain])
        out[domain] = {
            "n": len(groups[domain]),
            "ast_accuracy": _mean(rates["ast_accuracy"]),
            "hallucination": _mean(rates["hallucination"]),
            "strict_accuracy": _mean(rates["strict_accuracy"]),
            "rouge_l": _mean(texts["rouge_l"]),
        }
    return out


def evaluate_responses(responses: list[Response], records: dict[int, ApiBenchRecord], api_db: ApiDatabase,
                       config: EvalConfig, *, question_ids: list[int] | None,
                       path: str | Path = "<responses>") -> tuple[dict[str, Any], list[ScoredResponse]]:
    """Score responses against the gold records; `question_ids` None scores every response in the file."""
    started = time.perf_counter()
    selected, ignored = select_responses(responses, records, question_ids, path)
    matcher = AstMatcher(api_db)
    rows = [score_response(text, records[qid], matcher, missing=missing, with_codebleu=config.codebleu)
            for qid, text, missing in selected]
    summary = summarize(rows, config, with_codebleu=config.codebleu)
    summary["missing_responses"] = sum(row.missing for row in rows)
    summary["ignored_responses"] = ignored
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary, rows
