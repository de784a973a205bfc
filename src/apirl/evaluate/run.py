"""Evaluation entry points: score a responses file, or Gorilla's published files, on a split."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from apirl.config import RunConfig
from apirl.data.dataset import GorillaData, load_gorilla
from apirl.data.paths import RETRIEVERS
from apirl.data.splits import read_split
from apirl.errors import InputError
from apirl.evaluate.responses import load_responses
from apirl.evaluate.scorer import evaluate_responses


def evaluate_file(path: str | Path, config: RunConfig, data: GorillaData | None = None, *,
                  execute: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one responses file on `config.eval.split`: the summary (naming the file and split) and one details
    row per question (every verdict, for `--details` and paired comparisons). `execute` also runs the code in both
    modes: the summary gains `executability` (bound), `executability_strict` and the bound failure classes, each
    details row `executes`, `executes_strict` and `exec_status` (bound)."""
    data = data or load_gorilla(config.data)
    question_ids = None if config.eval.split == "all" else read_split(config.data.split_dir, config.eval.split)
    if config.eval.limit:
        question_ids = (question_ids if question_ids is not None else list(data.question_ids))[:config.eval.limit]
    summary, rows = evaluate_responses(load_responses(path), data.records, data.api_db, config.eval,
                                       question_ids=question_ids, path=path)
    summary = {"file": str(path), "split": config.eval.split, **summary}
    details = [asdict(row) for row in rows]
    if execute:
        from apirl.execution.stage import check_responses

        runs = check_responses(path, config, data, modes=("bound", "strict"))
        summary["executability"] = runs["bound"][0]["executability"]
        summary["executability_strict"] = runs["strict"][0]["executability"]
        summary["exec_failures"] = runs["bound"][0]["failures"]
        bound = {verdict.key: verdict for verdict in runs["bound"][1]}
        strict = {verdict.key: verdict for verdict in runs["strict"][1]}
        for row in details:
            key = str(row["question_id"])
            row.update(executes=bound[key].ok, executes_strict=strict[key].ok, exec_status=bound[key].status)
    return summary, details


def gorilla_response_files(data: GorillaData) -> list[tuple[str, Path]]:
    """(label, path) of Gorilla-7B's published HF responses: FT and RT for each retriever setting."""
    data_dir = data.paths.responses_dir
    files = [(f"Gorilla-7B {kind} {retriever}", data_dir / f"response_huggingface_Gorilla_{kind}_{retriever}.jsonl")
             for kind in ("FT", "RT") for retriever in RETRIEVERS]
    present = [(label, path) for label, path in files if path.is_file()]
    if not present:
        raise InputError("no Gorilla response files (eval-data/responses/huggingface/)", path=data_dir)
    return present


def evaluate_gorilla_anchors(config: RunConfig) -> list[tuple[str, dict[str, Any]]]:
    data = load_gorilla(config.data)
    return [(label, evaluate_file(path, config, data)[0]) for label, path in gorilla_response_files(data)]
