"""The eval stage (`apirl eval run`): every model's responses of the run scored on the split, executability
included, beside Gorilla-7B's published answers on the same questions; and `evaluate_file`, the scorer of one
responses file that `apirl eval responses` and the stage share.

Outputs in `runs/<name>/eval/`: `<label>.json` (a model's summary), `details/<label>.jsonl` (its per-question
verdicts, for paired comparisons) and `gorilla.json` (`[[label, summary], ...]` for Gorilla-7B's files, their
details beside the others').
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from apirl.data.config import DataConfig
from apirl.data.dataset import GorillaData, load_gorilla
from apirl.data.paths import RETRIEVERS
from apirl.data.splits import scored_question_ids
from apirl.data.stage import data_inputs
from apirl.errors import InputError
from apirl.evaluate.config import EvalConfig
from apirl.evaluate.responses import load_responses
from apirl.evaluate.scorer import evaluate_responses, uses_api
from apirl.execution.config import ExecConfig
from apirl.jsonl import write_jsonl
from apirl.rundir import RunLayout, StageOutput, StageResult, run_stage

STAGE = "eval"


def evaluate_file(path: str | Path, table: EvalConfig, data: GorillaData, split_dir: str | Path, *,
                  limit: int = 0, execution: ExecConfig | None = None
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one responses file on `table.split` (its first `limit` questions when > 0): the summary (naming the
    file and split) and one details row per question (every verdict, for `--details` and paired comparisons).
    With `execution` the code also runs in both modes: the summary gains `executability` (bound),
    `executability_strict` and the bound failure classes, each details row `executes`, `executes_strict` and
    `exec_status` (bound)."""
    question_ids = None if table.split == "all" and not limit else \
        scored_question_ids(table.split, split_dir, data.question_ids, limit)
    responses = load_responses(path)
    summary, rows = evaluate_responses(responses, data.records, data.api_db, table,
                                       question_ids=question_ids, path=path)
    summary = {"file": str(path), "split": table.split, **summary}
    details = [asdict(row) for row in rows]
    if execution is not None:
        from apirl.execution.stage import check_responses

        ids = question_ids if question_ids is not None else list(data.question_ids)
        runs = check_responses(path, ids, data, execution, modes=("bound", "strict"))
        summary["executability"] = runs["bound"][0]["executability"]
        summary["executability_strict"] = runs["strict"][0]["executability"]
        summary["exec_failures"] = runs["bound"][0]["failures"]
        bound = {verdict.key: verdict for verdict in runs["bound"][1]}
        strict = {verdict.key: verdict for verdict in runs["strict"][1]}
        texts = {response.question_id: response.text for response in responses}
        for row in details:
            key = str(row["question_id"])
            verdict = bound[key]
            row.update(executes=verdict.ok, executes_strict=strict[key].ok, exec_status=verdict.status,
                       exec_loaded=list(verdict.loaded),
                       executes_api=verdict.ok and uses_api(verdict.loaded, texts.get(row["question_id"], ""),
                                                            [row["domain"]], data.api_db))
        with_api = sum(row["executes_api"] for row in details)
        summary["executability_api"] = with_api / len(details) if details else 0.0
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


def evaluate_gorilla_anchors(table: EvalConfig, data: GorillaData, split_dir: str | Path
                             ) -> list[tuple[str, dict[str, Any]]]:
    return [(label, evaluate_file(path, table, data, split_dir, limit=table.limit)[0])
            for label, path in gorilla_response_files(data)]


def run_eval(table: EvalConfig, execution: ExecConfig, data_table: DataConfig, layout: RunLayout, seed: int,
             labels: Sequence[str], *, limit: int = 0, gorilla_exec: bool = True, force: bool = False
             ) -> StageResult[dict[str, Any]]:
    """The eval stage: the responses of each label in the run (`generate/<label>/`) scored on the split's first
    `limit` questions (the run scores what it generates), executability included, and Gorilla-7B's published
    answers on the same questions (their 0-shot files executed too when `gorilla_exec`). Its summary is
    {label: summary} of the run's models."""
    responses = {label: layout.responses(label) for label in labels}
    missing = [label for label, path in responses.items() if not path.is_file()]
    if missing:
        raise InputError(f"no responses for {', '.join(missing)}: run the generate stage first", field="pipeline")
    def work(directory: Path, _fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        data = load_gorilla(data_table)
        outputs, summaries = [], {}
        for label, path in responses.items():
            summary, details = evaluate_file(path, table, data, data_table.split_dir, limit=limit,
                                             execution=execution)
            summaries[label] = summary
            outputs.append(layout.eval_summary(label))
            outputs[-1].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            outputs.append(write_jsonl(layout.eval_details(label), details))
        anchors = []
        for label, path in gorilla_response_files(data):
            summary, details = evaluate_file(path, table, data, data_table.split_dir, limit=limit,
                                             execution=execution if gorilla_exec and label.endswith("0_shot")
                                             else None)
            anchors.append([label, summary])
            outputs.append(write_jsonl(layout.eval_details(label), details))
        outputs.append(layout.gorilla_summaries)
        outputs[-1].write_text(json.dumps(anchors, indent=2) + "\n", encoding="utf-8")
        return StageOutput(outputs, summaries)

    stage_config = {"eval": {**table.model_dump(mode="json"), "limit": limit},
                    "execution": execution.model_dump(mode="json"), "labels": list(responses),
                    "gorilla_exec": gorilla_exec,
                    # in the fingerprint so that an eval stage from before the details files runs again
                    "details": "details+executes_api"}
    return run_stage(layout.stage(STAGE), config=stage_config, seed=seed,
                     inputs=[*responses.values(), *data_inputs(data_table)], work=work, force=force)
