"""Executability entry points: a responses file, the gold code, and the gold code's mutants, on a split.

These are what `apirl exec check|gold|mutants` and `apirl eval responses --exec` call: each is given the
question ids, the Gorilla data and the `[execution]` table, opens one `Executor` (workers started once), shows
progress, and returns a JSON-ready summary plus the per-snippet verdicts.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apirl.data.apidb import ApiDatabase
from apirl.data.dataset import GorillaData
from apirl.data.stage import hub_evidence
from apirl.evaluate.responses import load_responses
from apirl.evaluate.scorer import select_responses
from apirl.execution.config import ExecConfig
from apirl.execution.executor import Executor, ExecVerdict, runnable_code, summarize
from apirl.execution.mutants import MUTANT_KINDS, make_mutants


def hub_dir(execution: ExecConfig) -> Path:
    """Where the offline hub lives: `execution.hub_dir`, else $APIRL_HUB_DIR, else the user cache."""
    if execution.hub_dir:
        return Path(execution.hub_dir).expanduser()
    if os.environ.get("APIRL_HUB_DIR"):
        return Path(os.environ["APIRL_HUB_DIR"]).expanduser()
    return Path.home() / ".cache" / "apirl" / "offline-hub"


@contextmanager
def open_executor(execution: ExecConfig, api_db: ApiDatabase, evidence: dict[str, list[str]]) -> Iterator[Executor]:
    """An `Executor` with the `[execution]` table's settings; `evidence` is the data stage's hub evidence."""
    with Executor(hub_dir(execution), api_db, workers=execution.workers, timeout_s=execution.timeout_s,
                  memory_mb=execution.memory_mb, evidence=evidence) as executor:
        yield executor


def run_checks(executor: Executor, codes: dict[str, str], mode: str, label: str) -> list[ExecVerdict]:
    """`executor.check` with a progress display: hub checkpoints built, then snippets run."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, console=Console(stderr=True)) as progress:  # stdout may carry --json
        built = progress.add_task("offline hub: building checkpoints", total=None)
        task = progress.add_task(f"{label} ({mode})", total=len(codes))
        return executor.check(codes, mode, on_hub_build=lambda _id: progress.advance(built),
                              on_result=lambda: progress.advance(task))


def _report(verdicts: list[ExecVerdict], domains: dict[str, str], executor: Executor, mode: str,
            started: float, **extra: Any) -> dict[str, Any]:
    return {**extra, "mode": mode, **summarize(verdicts, domains), **executor.info,
            "seconds": round(time.perf_counter() - started, 1)}


def check_responses(path: str | Path, question_ids: list[int], data: GorillaData, execution: ExecConfig,
                    modes: tuple[str, ...] | None = None) -> dict[str, tuple[dict[str, Any], list[ExecVerdict]]]:
    """Executability of a responses file's code sections on these questions, per mode (default
    `execution.mode`); a question without a response counts as a failure (an empty snippet is not an answer)."""
    selected, _ignored = select_responses(load_responses(path), data.records, question_ids, path)
    codes = {str(qid): runnable_code(text) if not missing else "raise NotImplementedError('no response')\n"
             for qid, text, missing in selected}
    domains = {str(qid): data.records[qid].gold_domain for qid, _text, _missing in selected}
    results = {}
    with open_executor(execution, data.api_db, hub_evidence(data)) as executor:
        for mode in modes or (execution.mode,):
            started = time.perf_counter()
            verdicts = run_checks(executor, codes, mode, Path(path).name)
            results[mode] = (_report(verdicts, domains, executor, mode, started, file=str(path)), verdicts)
    return results


def gold_codes(question_ids: list[int], data: GorillaData) -> tuple[dict[str, str], dict[str, str]]:
    """The gold `<<<code>>>` of each question, and each question's domain."""
    codes, domains = {}, {}
    for qid in question_ids:
        record = data.records[qid]
        codes[str(qid)] = runnable_code(record.output.code or "")
        domains[str(qid)] = record.gold_domain
    return codes, domains


def check_gold(question_ids: list[int], data: GorillaData, execution: ExecConfig
               ) -> tuple[dict[str, Any], list[ExecVerdict]]:
    """The gold code of these questions, in `execution.mode`: the harness's ceiling."""
    codes, domains = gold_codes(question_ids, data)
    started = time.perf_counter()
    with open_executor(execution, data.api_db, hub_evidence(data)) as executor:
        verdicts = run_checks(executor, codes, execution.mode, "gold code")
        return _report(verdicts, domains, executor, execution.mode, started), verdicts


def check_mutants(question_ids: list[int], data: GorillaData, execution: ExecConfig
                  ) -> tuple[dict[str, Any], list[ExecVerdict]]:
    """Run the gold code, then one mutant of each kind for every gold snippet that ran: the rate at which
    each kind is rejected (a mutant that still runs is a harness blind spot)."""
    mode = execution.mode
    codes, _domains = gold_codes(question_ids, data)
    known = data.api_db.model_ids
    started = time.perf_counter()
    with open_executor(execution, data.api_db, hub_evidence(data)) as executor:
        gold = run_checks(executor, codes, mode, "gold code")
        mutant_codes, kinds, descriptions = {}, {}, {}
        for verdict in gold:
            if not verdict.ok:
                continue
            for mutant in make_mutants(codes[verdict.key], known_model_ids=known, seed=execution.mutant_seed):
                key = f"{verdict.key}:{mutant.kind}"
                mutant_codes[key], kinds[key], descriptions[key] = mutant.code, mutant.kind, mutant.description
        verdicts = run_checks(executor, mutant_codes, mode, "mutants")
        info = executor.info
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in MUTANT_KINDS:
        mine = [v for v in verdicts if kinds[v.key] == kind]
        statuses: dict[str, int] = defaultdict(int)
        for verdict in mine:
            statuses[verdict.status] += 1
        rejected = sum(not v.ok for v in mine)
        per_kind[kind] = {"n": len(mine), "rejected": rejected,
                          "rejection_rate": rejected / len(mine) if mine else None,
                          "statuses": dict(sorted(statuses.items())),
                          "survivors": [f"{v.key}: {descriptions[v.key]}" for v in mine if v.ok][:20]}
    summary = {"mode": mode, "gold_n": len(gold), "gold_ok": sum(v.ok for v in gold),
               "mutants_n": len(verdicts), "per_kind": per_kind, **info,
               "seconds": round(time.perf_counter() - started, 1)}
    return summary, verdicts
