"""`apirl run`: the whole method, stage after stage, in one run directory.

    data -> sft -> feedback -> reward -> rl -> generate -> eval -> report

Every step calls a stage's one entry point with its own tables of the run config, the same entry point its
`apirl <stage>` command calls; every stage is skipped when its manifest matches (config, seed, input hashes), and
the training stages continue an interrupted run from its last checkpoint (`resume=True`), so a killed `apirl run`
started again picks up where it stopped.

* data, sft, feedback, reward (only when an online algorithm reads the reward model) and each algorithm of
  `[pipeline] algorithms` (`rl_stage`: its own table and the `RlRun` its recipe reads).
* calibrate (in the feedback stage, `[pipeline] calibrate`): the feedback judge's AUC on gold answers against
  their mutants (`runs/<name>/calibration/<judge>/`), a stage of its own like the others.
* generate: one stage per model (`runs/<name>/generate/<label>/responses.jsonl`): the untuned policy model for
  each baseline of `[pipeline] baselines` (`base-chat`, `base-fewshot`), M_SFT (`sft`) and each M_RL (its
  algorithm's name). A killed generation resumes from its partial file.
* eval: every responses file scored on the first `generate.limit` questions of the split (what the run
  generates) with every metric, executability included (`runs/<name>/eval/<label>.json`), and Gorilla-7B's
  published answers on the same ids (`eval/gorilla.json`); the per-question verdicts of each beside them
  (`eval/details/<label>.jsonl`) for paired comparisons.
* report: `runs/<name>/report.md` and `report.html` (`apirl.report.run_report`).

`runs/<name>/pipeline.json` records the config, versions, commit and each stage's status and seconds, rewritten
after every stage; `runs/<name>/pipeline.log` keeps a timestamped line per stage event. It also keeps the last
measured seconds of every step that ran (`step_seconds`, carried over from run to run), from which a later run of
the same directory prints its remaining time: a first run has no estimate, and no number is made up.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from apirl.config import RunConfig
from apirl.errors import InputError
from apirl.models.config import GROUNDED
from apirl.rundir import StageResult, git_commit, package_versions

STAGES = ("data", "sft", "feedback", "reward", "rl", "generate", "eval", "report")


@dataclass(frozen=True)
class ModelRow:
    """One model the run generates with: its label (file names, report rows), its model spec and prompting."""

    label: str
    spec: str
    prompt_style: str
    shots: int


def model_rows(config: RunConfig) -> list[ModelRow]:
    """The baselines of the untuned model, M_SFT, then each M_RL, in report order; `-catalog` labels when the
    run's `[generate]` grounds the answers in the API database."""
    rows = []
    for baseline in config.pipeline.baselines:
        if baseline == "chat":
            rows.append(ModelRow("base-chat", config.model.name, "chat", 0))
        else:
            rows.append(ModelRow("base-fewshot", config.model.name, "plain", config.pipeline.fewshot_shots))
    rows.append(ModelRow("sft", str(config.layout.model("sft")), "plain", 0))
    rows += [ModelRow(algorithm, str(config.layout.model(algorithm)), "plain", 0)
             for algorithm in config.pipeline.algorithms]
    if config.generate.grounding == "catalog":
        rows = [replace(row, label=f"{row.label}{GROUNDED}") for row in rows]
    return rows


def rl_stage(config: RunConfig, algorithm: str | None = None, **kwargs: Any) -> StageResult:
    """The RL stage of `algorithm` (default `rl.algorithm`): its own table and the RlRun its recipe reads."""
    from apirl.train.common import RlRun
    from apirl.train.rl import run_rl

    algorithm = algorithm or config.rl.algorithm
    run = RlRun(algorithm, config.rl, config.model, config.execution, config.layout, config.seed)
    return run_rl(getattr(config, algorithm), run, **kwargs)


def needs_reward_model(config: RunConfig) -> bool:
    """Whether an algorithm of the run reads the trained reward model (an online one, with its weight > 0 and no
    other model or rule named in `rl.reward_model`)."""
    online = [a for a in config.pipeline.algorithms if a != "dpo"]
    return bool(online) and config.rl.reward_model_weight > 0 and not config.rl.reward_model


def generate_model(config: RunConfig, row: ModelRow, force: bool = False) -> StageResult:
    """The generate stage of one model row: its spec and prompting over the run's `[generate]` table."""
    from apirl.models.stage import run_generate

    generate = config.generate.model_copy(update={"prompt_style": row.prompt_style, "shots": row.shots})
    model = config.model.model_copy(update={"name": row.spec})
    return run_generate(generate, model, config.layout, config.seed, row.label, force=force)


# ---------------------------------------------------------------------------------------------------------------
# The run.


def stage_range(from_stage: str | None, until_stage: str | None) -> list[str]:
    """The stages from `from_stage` to `until_stage`, both included (None: the first / the last)."""
    for name, value in (("--from", from_stage), ("--until", until_stage)):
        if value is not None and value not in STAGES:
            raise InputError(f"unknown stage {value!r}; stages: {', '.join(STAGES)}", field=name)
    first = STAGES.index(from_stage) if from_stage else 0
    last = STAGES.index(until_stage) if until_stage else len(STAGES) - 1
    if first > last:
        raise InputError(f"--from {from_stage} comes after --until {until_stage}", field="--from")
    return list(STAGES[first:last + 1])


class Record:
    """`pipeline.json` and `pipeline.log`: what ran, was skipped or failed, and for how long."""

    def __init__(self, config: RunConfig, console: Console) -> None:
        self.layout = config.layout
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.console = console
        self.data: dict[str, Any] = {
            "config": config.model_dump(mode="json"), "versions": package_versions(),
            "commit": git_commit(Path(__file__).parent), "started_at": _now(), "finished_at": None, "stages": [],
            "step_seconds": previous_step_seconds(self.layout.pipeline_record)}

    def log(self, message: str) -> None:
        with self.layout.pipeline_log.open("a", encoding="utf-8") as handle:
            handle.write(f"{_now()} {message}\n")

    def add(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        self.data["stages"].append({"name": name, "status": status, "seconds": round(seconds, 1), "detail": detail})
        if status == "ran":
            self.data["step_seconds"][name] = round(seconds, 1)
        self.log(f"{name}: {status} ({seconds:.1f} s){' ' + detail if detail else ''}")
        self.save()

    def save(self) -> None:
        record = self.layout.pipeline_record
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(record)


def previous_step_seconds(record: Path) -> dict[str, float]:
    """The seconds each step took when it last ran, from an earlier `pipeline.json` (empty if none or unreadable:
    the estimate is a convenience, never a reason to stop)."""
    try:
        return {str(k): float(v) for k, v in json.loads(record.read_text(encoding="utf-8"))["step_seconds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def remaining_estimate(step_seconds: dict[str, float], names: list[str]) -> str:
    """"~N min left" when every remaining step has a measured time, else "" (a partial sum would mislead)."""
    if not names or any(name not in step_seconds for name in names):
        return ""
    return f", ~{sum(step_seconds[name] for name in names) / 60:.0f} min left by the last run's times"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _steps(config: RunConfig, stages: list[str]) -> list[tuple[str, str, Callable[[], Any]]]:
    """(stage, sub-step name, action) for every step of the chosen stages, in order: each stage's entry point
    with its own tables of the run config."""
    from apirl.data.stage import prepare_data
    from apirl.evaluate.stage import run_eval
    from apirl.feedback.calibrate import run_calibration
    from apirl.feedback.stage import run_feedback
    from apirl.report import run_report
    from apirl.train.reward import run_reward
    from apirl.train.sft import run_sft

    c, layout, seed = config, config.layout, config.seed
    rows = model_rows(config)
    steps: list[tuple[str, str, Callable[[], Any]]] = []
    for stage in stages:
        if stage == "data":
            steps.append((stage, "data", lambda: prepare_data(c.data, layout, seed)))
        elif stage == "sft":
            steps.append((stage, "sft", lambda: run_sft(c.sft, c.model, layout, seed, resume=True)))
        elif stage == "feedback":
            steps.append((stage, "feedback", lambda: run_feedback(c.feedback, c.model, c.execution, layout, seed)))
            if config.pipeline.calibrate:
                steps.append((stage, "calibrate",
                              lambda: run_calibration(c.feedback, c.model, c.execution, layout, seed)))
        elif stage == "reward" and needs_reward_model(config):
            steps.append((stage, "reward", lambda: run_reward(c.reward, c.model, layout, seed, resume=True,
                                                              calibrate_split=c.feedback.calibrate_split,
                                                              mutant_seed=c.execution.mutant_seed)))
        elif stage == "rl":
            for algorithm in config.pipeline.algorithms:
                steps.append((stage, algorithm, lambda algorithm=algorithm: rl_stage(c, algorithm, resume=True)))
        elif stage == "generate":
            for row in rows:
                steps.append((stage, f"generate {row.label}", lambda row=row: generate_model(config, row)))
        elif stage == "eval":
            steps.append((stage, "eval", lambda: run_eval(c.eval, c.execution, c.data, layout, seed,
                                                          [row.label for row in rows], limit=c.generate.limit,
                                                          gorilla_exec=c.pipeline.gorilla_exec)))
        elif stage == "report":
            steps.append((stage, "report", lambda: run_report(layout)))
    return steps


def run_pipeline(config: RunConfig, *, from_stage: str | None = None, until_stage: str | None = None,
                 console: Console | None = None) -> dict[str, Any]:
    """Run the stages in order; returns the record (also `pipeline.json`). A failing step is recorded and its
    error raised: what finished before it stays finished, and the next `apirl run` starts from it."""
    if config.generate.split != config.eval.split:
        raise InputError(f"generate.split ({config.generate.split}) and eval.split ({config.eval.split}) differ: "
                         "the run scores what it generates", field="generate.split")
    console = console or Console(stderr=True)
    stages = stage_range(from_stage, until_stage)
    steps = _steps(config, stages)
    record = Record(config, console)
    record.log(f"start: stages {', '.join(stages)}")
    started = time.perf_counter()
    for index, (stage, name, action) in enumerate(steps, start=1):
        elapsed = time.perf_counter() - started
        eta = remaining_estimate(record.data["step_seconds"], [n for _, n, _ in steps[index - 1:]])
        console.rule(f"[bold]apirl run {config.name}[/]  step {index}/{len(steps)}: {name}  "
                     f"(stage {stage}, {elapsed / 60:.1f} min so far{eta})")
        step_started = time.perf_counter()
        try:
            result = action()
        except BaseException as exc:
            record.add(name, "failed", time.perf_counter() - step_started, f"{type(exc).__name__}: {exc}"[:500])
            record.log(traceback.format_exc())
            raise
        skipped = isinstance(result, StageResult) and result.skipped
        record.add(name, "skipped" if skipped else "ran", time.perf_counter() - step_started)
    record.data["finished_at"] = _now()
    record.save()
    record.log("finished")
    return record.data

