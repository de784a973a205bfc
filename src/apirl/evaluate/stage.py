"""The eval stage (`apirl eval run`): every model's responses of the run scored on the split, executability
included, beside Gorilla-7B's published answers on the same questions; and `evaluate_file`, the scorer of one
responses file that `apirl eval responses` and the stage share.

Outputs in `runs/<name>/eval/`: `<label>.json` (a model's summary), `details/<label>.jsonl` (its per-question
verdicts, for paired comparisons), `gorilla.json` (`[[label, summary], ...]` for Gorilla-7B's files, their
details beside the others') and `details/scored.json`, each label's key (the stage's config and data with that label's
responses alone) and outputs: a label whose key and files are unchanged is not scored again when the stage reruns
for another label (scoring one model with executability takes minutes).
"""

from __future__ import annotations

import hashlib
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
from apirl.rundir import RunLayout, StageOutput, StageResult, file_sha256, run_stage

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
    {label: summary} of the run's models. A label scored by the previous run of the stage with the same key
    (`label_key`) and an intact details file keeps its scores; `force` scores every label again."""
    responses = {label: layout.responses(label) for label in labels}
    missing = [label for label, path in responses.items() if not path.is_file()]
    if missing:
        raise InputError(f"no responses for {', '.join(missing)}: run the generate stage first", field="pipeline")
    data_files = data_inputs(data_table)

    def work(_directory: Path, fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        data = load_gorilla(data_table)
        previous = {} if force else _read_scored(layout.eval_scored)
        scored: dict[str, dict[str, Any]] = {}

        def score(label: str, path: Path, details_path: Path, execute: bool) -> dict[str, Any]:
            key = label_key(fingerprint, data_files, path)
            entry = previous.get(label, {})
            digest = entry.get("details_sha256")
            if entry.get("key") == key and _same_file(details_path, digest):
                summary = entry["summary"]
            else:
                summary, details = evaluate_file(path, table, data, data_table.split_dir, limit=limit,
                                                 execution=execution if execute else None)
                digest = file_sha256(write_jsonl(details_path, details))
            scored[label] = {"key": key, "summary": summary, "details_sha256": digest}
            return summary

        outputs, summaries = [], {}
        for label, path in responses.items():
            summaries[label] = score(label, path, layout.eval_details(label), execute=True)
            outputs.append(layout.eval_summary(label))
            outputs[-1].write_text(json.dumps(summaries[label], indent=2) + "\n", encoding="utf-8")
            outputs.append(layout.eval_details(label))
        anchors = []
        for label, path in gorilla_response_files(data):
            anchors.append([label, score(label, path, layout.eval_details(label),
                                         execute=gorilla_exec and label.endswith("0_shot"))])
            outputs.append(layout.eval_details(label))
        outputs.append(layout.gorilla_summaries)
        outputs[-1].write_text(json.dumps(anchors, indent=2) + "\n", encoding="utf-8")
        outputs.append(layout.eval_scored)
        outputs[-1].write_text(json.dumps(scored, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return StageOutput(outputs, summaries)

    stage_config = {"eval": {**table.model_dump(mode="json"), "limit": limit},
                    "execution": execution.model_dump(mode="json"), "labels": list(responses),
                    "gorilla_exec": gorilla_exec,
                    # in the fingerprint so that an eval stage from before the details files runs again
                    "details": "details+executes_api"}
    return run_stage(layout.stage(STAGE), config=stage_config, seed=seed,
                     inputs=[*responses.values(), *data_files], work=work, force=force)


def label_key(stage_fingerprint: dict[str, Any], data_files: Sequence[Path], responses: Path) -> str:
    """What decides one label's scores: the stage's config (less its list of labels), seed and data files, and
    that label's responses; a hash, so that adding or dropping another label leaves it unchanged."""
    config = {k: v for k, v in stage_fingerprint["config"].items() if k != "labels"}
    data = {str(path): stage_fingerprint["inputs"][str(path)] for path in data_files}
    own = {"config": config, "seed": stage_fingerprint["seed"], "data": data, "responses": file_sha256(responses)}
    return hashlib.sha256(json.dumps(own, sort_keys=True, default=str).encode()).hexdigest()


def _read_scored(path: Path) -> dict[str, dict[str, Any]]:
    """The previous run's `scored.json`; empty when missing or unreadable (the labels are then scored again)."""
    try:
        scored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return scored if isinstance(scored, dict) else {}


def _same_file(path: Path, digest: Any) -> bool:
    return isinstance(digest, str) and path.is_file() and file_sha256(path) == digest
