"""`apirl feedback calibrate`: how well a judge tells good code from bad, on code whose truth we know.

Positives are the gold answers of the calibration split (val by default): the example's target, which should
be judged good. Negatives are its mutants (`apirl.execution.mutants`: an unknown model id, an unknown name, a
bogus keyword, a missing import, a syntax error), each the same target with only its code section replaced by
the mutated code, which should be judged bad. Both are built by the same replacement (the gold code after
`runnable_code`), so a positive and its negatives differ in the fault only.

The measure is the AUC: the probability that a random positive scores above a random negative (ties count
half), for the score S, for each question's answer weight (P(yes), else the value, else 0.5), and for S on
each mutant kind alone. A question's abstention rate says how often the judge left it unknown. The report
also gives the judgments made (and found in the cache) and the seconds per 1,000 judgments made, the cost
side of choosing a judge.

Reports live in their own stage directory, `runs/<name>/calibration/` (one file per judge label, the execution
verdicts beside them); the judgments share the feedback stage's cache, so a judge never answers twice.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from apirl.data.dataset import Example
from apirl.data.prompts import parse_completion
from apirl.data.stage import read_catalog, read_examples, read_hub_evidence
from apirl.execution.config import ExecConfig
from apirl.execution.executor import runnable_code
from apirl.execution.mutants import MUTANT_KINDS, make_mutants
from apirl.feedback.cache import JudgmentCache
from apirl.feedback.config import FeedbackConfig
from apirl.feedback.judges import judge_label, make_judge, questions_of, uses_execution
from apirl.feedback.stage import CACHE, answer_stats, execute_samples, judge_samples, judge_settings, per_1000
from apirl.feedback.types import Answer, Sample, answer_weight, score
from apirl.models.config import ModelConfig
from apirl.models.generation import request_of
from apirl.rundir import RunLayout, StageOutput, StageResult, run_stage
from apirl.stats import auc

GOLD = "gold"
_CODE_TAG_RE = re.compile(r"<<<\s*code\s*>>>\s*:?[ \t]*")


def with_code(target: str, code: str) -> str | None:
    """The target with its `<<<code>>>` section replaced by `code`; None when it has no such section."""
    match = _CODE_TAG_RE.search(target)
    if match is None:
        return None
    return target[:match.end()] + code.strip("\n")


def calibration_samples(examples: Sequence[Example], known_ids: set[str], seed: int) -> list[tuple[Sample, str]]:
    """(sample, kind) for every example with a code section: its gold answer (kind "gold") and each mutant
    of the gold code (kind = the mutant's kind). Sample ids are "<example_id>:<kind>"."""
    out = []
    for example in examples:
        if parse_completion(example.target).code is None:
            continue
        gold = runnable_code(example.target)
        positive = with_code(example.target, gold)
        if positive is None:
            continue
        instruction = request_of(example.prompt)
        out.append((Sample(f"{example.example_id}:{GOLD}", instruction, positive), GOLD))
        for kind, negative in mutated_answers(example.target, known_ids, seed):
            out.append((Sample(f"{example.example_id}:{kind}", instruction, negative), kind))
    return out


def mutated_answers(answer: str, known_ids: Collection[str], seed: int) -> list[tuple[str, str]]:
    """(mutant kind, the answer with only its code replaced by that mutant) for each mutant of its code."""
    mutants = make_mutants(runnable_code(answer), known_model_ids=known_ids, seed=seed)
    return [(m.kind, text) for m in mutants if (text := with_code(answer, m.code)) is not None]


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def calibration_report(kinds: Sequence[str], answers: Sequence[Sequence[Answer]]) -> dict[str, Any]:
    """The AUCs, means and abstention rates of judged calibration samples (kind "gold" is a positive)."""
    scores = [score(row) for row in answers]
    positive = [s for s, kind in zip(scores, kinds, strict=True) if kind == GOLD]
    negative = [s for s, kind in zip(scores, kinds, strict=True) if kind != GOLD]
    per_question: dict[str, dict[str, Any]] = {}
    for position, answer in enumerate(answers[0] if answers else []):
        weights = [answer_weight(row[position]) for row in answers]
        pos = [w for w, kind in zip(weights, kinds, strict=True) if kind == GOLD]
        neg = [w for w, kind in zip(weights, kinds, strict=True) if kind != GOLD]
        per_question[answer.question] = {
            "auc": _round(auc(pos, neg)), "mean_positive": _mean(pos), "mean_negative": _mean(neg),
            "abstain_rate": round(sum(row[position].value is None for row in answers) / len(answers), 4)}
    per_kind = {}
    for kind in MUTANT_KINDS:
        mine = [s for s, k in zip(scores, kinds, strict=True) if k == kind]
        per_kind[kind] = {"n": len(mine), "auc": _round(auc(positive, mine)), "mean_score": _mean(mine)}
    return {"positives": len(positive), "negatives": len(negative), "auc": _round(auc(positive, negative)),
            "mean_score_positive": _mean(positive), "mean_score_negative": _mean(negative),
            "per_question": per_question, "per_kind": per_kind, **answer_stats(answers)}


def calibrate(feedback: FeedbackConfig, model: ModelConfig, execution: ExecConfig, layout: RunLayout,
              console: Console | None = None) -> dict[str, Any]:
    """Judge the calibration split's gold answers (the data stage's) and their mutants with the feedback judge;
    returns the report, also written to `layout.calibration(judge label)`."""
    console = console or Console(stderr=True)
    fb = feedback
    started = time.perf_counter()
    examples = read_examples(layout, fb.calibrate_split)
    if fb.calibrate_limit:
        examples = examples[:fb.calibrate_limit]
    api_db = read_catalog(layout)
    items = calibration_samples(examples, api_db.model_ids, execution.mutant_seed)
    samples = [sample for sample, _kind in items]
    kinds = [kind for _sample, kind in items]
    executions = layout.calibration(judge_label(fb)).with_name(f"executions-{fb.calibrate_split}.jsonl")
    verdicts = (execute_samples(execution, api_db, read_hub_evidence(layout), samples, executions)
                if uses_execution(fb) else None)
    with JudgmentCache(layout.feedback(CACHE)) as cache:
        judge = make_judge(fb, api_db, cache, device=model.device or None, exec_verdicts=verdicts)
        answers = judge_samples(judge, samples, console, what="calibrate")
        cache_stats = cache.stats()
    counts = judge.counts
    report = {
        "judge": judge_label(fb), "judge_model": judge.model, "grounding": fb.grounding and fb.judge != "tools",
        "execute": uses_execution(fb),
        "split": fb.calibrate_split, "limit": fb.calibrate_limit, "examples": len(examples),
        "examples_with_code": kinds.count(GOLD),
        "questions": [q.key for q in questions_of(fb)], "mutant_seed": execution.mutant_seed,
        **calibration_report(kinds, answers),
        "judgments": sum(len(row) for row in answers), "judgments_made": counts.made, "cache_hits": counts.cached,
        "judge_tokens": counts.tokens,
        "judge_seconds": round(counts.seconds, 3), "seconds_per_1000_judgments": per_1000(counts.seconds, counts.made),
        "wall_seconds": round(time.perf_counter() - started, 1), "cache": cache_stats,
    }
    path = layout.calibration(judge_label(fb))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def run_calibration(feedback: FeedbackConfig, model: ModelConfig, execution: ExecConfig, layout: RunLayout,
                    seed: int, *, force: bool = False, console: Console | None = None
                    ) -> StageResult[dict[str, Any]]:
    """The calibration stage of one judge (`apirl feedback calibrate`, `runs/<name>/calibration/<judge>/`): skipped
    when its judge,
    examples, mutants and data are unchanged (judgments come from the feedback stage's cache either way)."""
    path = layout.calibration(judge_label(feedback))

    def work(directory: Path, _fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        return StageOutput([path], calibrate(feedback, model, execution, layout, console))

    stage_config = {"feedback": feedback.model_dump(mode="json"), "execution": execution.model_dump(mode="json"),
                    **judge_settings(feedback)}
    inputs = [layout.split(feedback.calibrate_split), layout.catalog,
              *([layout.hub_evidence] if uses_execution(feedback) else [])]
    return run_stage(path.parent, config=stage_config, seed=seed, inputs=inputs, work=work, force=force)


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def print_calibration(report: dict[str, Any], console: Console) -> None:
    """The report as a table: AUC of S, of each question and on each mutant kind, with abstention rates."""
    table = Table(title=f"calibration of the {report['judge']} judge on {report['split']}: "
                        f"{report['positives']} gold vs {report['negatives']} mutants")
    for column in ("", "AUC", "mean gold", "mean mutant", "abstain"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("score S", _cell(report["auc"]), _cell(report["mean_score_positive"]),
                  _cell(report["mean_score_negative"]), "")
    table.add_section()
    for key, row in report["per_question"].items():
        table.add_row(key, _cell(row["auc"]), _cell(row["mean_positive"]), _cell(row["mean_negative"]),
                      _cell(row["abstain_rate"], percent=True))
    table.add_section()
    for kind, row in report["per_kind"].items():
        table.add_row(f"S on {kind} (n={row['n']})", _cell(row["auc"]), "", _cell(row["mean_score"]), "")
    console.print(table)
    cost = report["seconds_per_1000_judgments"]
    console.print(f"{report['judgments']} judgments: {report['judgments_made']} made, {report['cache_hits']} from "
                  f"the cache; {report['judge_seconds']} s judging"
                  + (f" = {cost} s per 1000 judgments" if cost is not None else "")
                  + f"; answered by {report['answered_by']}")
