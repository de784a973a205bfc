"""Read everything a run directory holds into one `RunData`, tolerating what is missing.

A stage that has not run simply has no files: its field stays None (or empty) and the report says "not run".
A file that exists but cannot be read is a mistake worth stopping for: an InputError naming the file (and the
line, for JSON Lines), never a half-empty report that hides it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from apirl.errors import InputError
from apirl.evaluate.paired import load_details
from apirl.jsonl import iter_jsonl
from apirl.models.config import GROUNDED
from apirl.rundir import MANIFEST, RunLayout

# The stages of a full run, in pipeline order (`generate/<label>` holds one manifest per model); any other
# directory with a manifest is listed after them.
KNOWN_STAGES = ("data", "sft", "feedback", "reward", "ppo", "grpo", "rloo", "dpo", "generate", "eval")
RL_ALGORITHMS = ("ppo", "grpo", "rloo", "dpo")
# Report order of the run's own models (`eval/<label>.json`); other labels follow alphabetically.
MODEL_ORDER = ("base-chat", "base-fewshot", "sft", "ppo", "grpo", "rloo", "dpo")


@dataclass
class RunData:
    """What one run directory holds; None or empty where a stage left nothing behind."""

    run_dir: Path
    pipeline: dict[str, Any] | None = None
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage dir (relative) -> manifest
    models: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # eval/<label>.json, report order
    anchors: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # eval/gorilla.json
    details: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # label -> eval/details/, by id
    sft_log: list[dict[str, Any]] | None = None
    sft_summary: dict[str, Any] | None = None
    feedback_summary: dict[str, Any] | None = None
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    reward_summary: dict[str, Any] | None = None
    reward_log: list[dict[str, Any]] | None = None
    rl_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rl_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    rl_top_rollouts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name: the config's when pipeline.json has it, else the directory's."""
        config = (self.pipeline or {}).get("config") or {}
        return str(config.get("name") or self.run_dir.name)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it does not exist; unparsable JSON is an InputError with its line."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", path=path) from exc


def read_json_object(path: Path) -> dict[str, Any] | None:
    """Like read_json, for files whose top level must be an object (summaries, manifests, results)."""
    raw = read_json(path)
    if raw is not None and not isinstance(raw, dict):
        raise InputError(f"expected a JSON object, got {type(raw).__name__}", path=path)
    return raw


def read_log(path: Path) -> list[dict[str, Any]] | None:
    """A JSON Lines log (one object per line), or None when it does not exist."""
    if not path.is_file():
        return None
    return [row for _, row in iter_jsonl(path)]


class _EvalSummaryShape(BaseModel):
    """The keys of an eval summary that the report reads, with their types; other keys pass unchecked."""

    model_config = ConfigDict(extra="allow", strict=True)

    n: int
    split: str | None = None
    ast_accuracy: float | None = None
    hallucination: float | None = None
    strict_accuracy: float | None = None
    rouge_l: float | None = None
    codebleu: float | None = None
    executability: float | None = None
    executability_strict: float | None = None
    executability_api: float | None = None
    missing_responses: int | None = None
    ci95: dict[str, list[float | int] | None] | None = None
    exec_failures: dict[str, int] | None = None
    per_domain: dict[str, dict[str, Any]] | None = None

    @field_validator("ast_accuracy", "hallucination", "strict_accuracy", "rouge_l", "codebleu", "executability",
                     "executability_strict", "executability_api", mode="before")
    @classmethod
    def _int_is_a_rate_too(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_eval_summary(summary: Any, path: Path, label: str) -> dict[str, Any]:
    """An eval summary must say how many questions it scored (every rate in it is out of `n`), and what the report
    reads of it must have the type the evaluation writes: else an InputError naming the file and the key."""
    if not isinstance(summary, dict):
        raise InputError(f"{label}: expected a JSON object of metrics, got {type(summary).__name__}", path=path)
    if not isinstance(summary.get("n"), int):
        raise InputError(f"{label}: no integer 'n' (questions scored)", path=path, field="n")
    try:
        _EvalSummaryShape.model_validate(summary)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"{label}: {first['msg']}", path=path,
                         field=".".join(str(k) for k in first["loc"])) from exc
    return summary


def _check_pipeline(pipeline: dict[str, Any] | None, path: Path) -> dict[str, Any] | None:
    """pipeline.json's `config` (the run config, read for the header and the bootstrap settings) is a table."""
    if pipeline is not None and not isinstance(pipeline.get("config", {}), dict):
        raise InputError(f"expected the run config as an object, got {type(pipeline['config']).__name__}",
                         path=path, field="config")
    return pipeline


def read_models(eval_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every `eval/<label>.json` but the Gorilla anchors and the stage manifest, in report order."""
    gorilla = RunLayout(eval_dir.parent).gorilla_summaries.name
    paths = [p for p in eval_dir.glob("*.json") if p.name not in (gorilla, MANIFEST)]

    def order(path: Path) -> tuple[int, str]:
        label = path.stem.removesuffix(GROUNDED)  # a grounded row right after its model's
        return (MODEL_ORDER.index(label) if label in MODEL_ORDER else len(MODEL_ORDER), path.stem)

    return [(path.stem, _check_eval_summary(read_json(path), path, path.stem)) for path in sorted(paths, key=order)]


def read_anchors(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Gorilla-7B's rows: the pipeline writes a list of [label, summary] pairs; `apirl eval gorilla --json` prints
    an object {label: summary}. Both are read, in file order."""
    raw = read_json(path)
    if raw is None:
        return []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in raw):
        pairs = [(label, summary) for label, summary in raw]
    else:
        raise InputError("expected a list of [label, summary] pairs or an object {label: summary}", path=path)
    return [(label, _check_eval_summary(summary, path, label)) for label, summary in pairs]


def read_manifests(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The manifest of every finished stage, keyed by its directory relative to the run (`sft`,
    `generate/base-chat`): the known stages in pipeline order, then the others alphabetically."""
    paths = sorted([*run_dir.glob(f"*/{MANIFEST}"), *run_dir.glob(f"*/*/{MANIFEST}")])
    manifests = {path.parent.relative_to(run_dir).as_posix(): read_json_object(path) or {} for path in paths}

    def order(stage: str) -> tuple[int, str]:
        top = stage.split("/")[0]
        return (KNOWN_STAGES.index(top) if top in KNOWN_STAGES else len(KNOWN_STAGES), stage)

    return {stage: manifests[stage] for stage in sorted(manifests, key=order)}


def collect_run(run_dir: str | Path) -> RunData:
    """Read the run directory; missing pieces stay empty, malformed ones raise InputError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run directory not found", path=run_dir)
    layout = RunLayout(run_dir)
    run = RunData(
        run_dir=run_dir,
        pipeline=_check_pipeline(read_json_object(layout.pipeline_record), layout.pipeline_record),
        manifests=read_manifests(run_dir),
        models=read_models(layout.stage("eval")),
        anchors=read_anchors(layout.gorilla_summaries),
        sft_log=read_log(layout.log("sft")),
        sft_summary=read_json_object(layout.summary("sft")),
        feedback_summary=read_json_object(layout.summary("feedback")),
        # The directory is named after the judge's label; a report without its own "judge" key keeps that name.
        calibrations=[{"judge": path.parent.name, **(read_json_object(path) or {})} for path in layout.calibrations()],
        reward_summary=read_json_object(layout.summary("reward")),
        reward_log=read_log(layout.log("reward")),
    )
    for label, _summary in run.models + run.anchors:
        path = layout.eval_details(label)
        if path.is_file():
            run.details[label] = load_details(path)
    for algorithm in RL_ALGORITHMS:
        log = read_log(layout.log(algorithm))
        if log is not None:
            run.rl_logs[algorithm] = with_eos_share(log)
        summary = read_json_object(layout.summary(algorithm))
        if summary is not None:
            run.rl_summaries[algorithm] = summary
        rollouts = layout.stage(algorithm) / "rollouts.jsonl"
        if rollouts.is_file():
            run.rl_top_rollouts[algorithm] = top_rollouts(rollouts)
    return run


def with_eos_share(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL logs the share of completions cut at the length limit; PPO and the report say the share that ended."""
    key = "completions/clipped_ratio"
    return [{**row, "ended": 1 - row[key]} if _finite_number(row.get(key)) else row for row in log]


def top_rollouts(path: Path, per_step: int = 2) -> list[dict[str, Any]]:
    """The `per_step` highest-reward rollouts of the first, middle and last step of an RL stage's
    `rollouts.jsonl` (read in one pass, keeping only the candidates): what the reward paid most for, early and
    late, where reward hacking shows in the text."""
    best: dict[int, list[dict[str, Any]]] = {}
    for line, row in iter_jsonl(path, what="rollouts file"):
        step, reward, terms = row.get("step"), row.get("reward"), row.get("terms")
        if not isinstance(step, int) or isinstance(step, bool):
            raise InputError("expected an integer step", path=path, line=line, field="step")
        if not _finite_number(reward):
            raise InputError("expected a finite number", path=path, line=line, field="reward")
        if not isinstance(terms, dict) or not all(_finite_number(v) for v in terms.values()):
            raise InputError("expected an object of finite numbers", path=path, line=line, field="terms")
        best[step] = sorted([*best.get(step, []), row], key=lambda r: -r["reward"])[:per_step]
    if not best:
        return []
    ordered = sorted(best)
    chosen = sorted({ordered[0], ordered[len(ordered) // 2], ordered[-1]})
    return [row for step in chosen for row in best[step]]


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
