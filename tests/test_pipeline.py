"""`apirl run`: the stage order, the models a run generates with, and the smoke pipeline end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apirl.errors import InputError
from apirl.pipeline.run import model_rows, needs_reward_model, remaining_estimate, run_pipeline, stage_range
from smoke_helpers import smoke_config


def test_stage_range_is_inclusive_and_checked() -> None:
    assert stage_range(None, None)[0] == "data" and stage_range(None, None)[-1] == "report"
    assert stage_range("rl", "eval") == ["rl", "generate", "eval"]
    with pytest.raises(InputError, match="unknown stage"):
        stage_range("train", None)
    with pytest.raises(InputError, match="comes after"):
        stage_range("eval", "sft")


def test_model_rows_and_when_the_reward_model_is_needed() -> None:
    from apirl.config import load_config

    config = load_config(None, ['pipeline.baselines=["chat", "fewshot"]', 'pipeline.algorithms=["ppo", "dpo"]'])
    rows = model_rows(config)
    assert [r.label for r in rows] == ["base-chat", "base-fewshot", "sft", "ppo", "dpo"]
    assert (rows[0].prompt_style, rows[1].prompt_style, rows[1].shots) == ("chat", "plain", 2)
    assert rows[2].spec.endswith("sft/model") and rows[3].spec.endswith("ppo/model")
    assert needs_reward_model(config)
    assert not needs_reward_model(load_config(None, ['pipeline.algorithms=["dpo"]']))
    assert not needs_reward_model(load_config(None, ['rl.reward_model="rule:long"']))
    with pytest.raises(InputError, match="listed twice"):
        load_config(None, ['pipeline.algorithms=["ppo", "ppo"]'])


def test_remaining_estimate_only_when_every_remaining_step_was_timed() -> None:
    times = {"sft": 600.0, "feedback": 300.0, "eval": 120.0}
    assert remaining_estimate(times, ["feedback", "eval"]) == ", ~7 min left by the last run's times"
    assert remaining_estimate(times, ["feedback", "ppo"]) == ""  # ppo never ran: no partial sum
    assert remaining_estimate({}, ["data"]) == ""


def _statuses(record: dict) -> dict[str, str]:
    return {stage["name"]: stage["status"] for stage in record["stages"]}


@pytest.mark.integration
def test_smoke_pipeline_runs_skips_and_resumes_after_a_failure(real_data_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import apirl.pipeline.run as pipeline

    # A relative runs dir, as `make demo` has (the default "runs"), so paths are joined the way a user's are.
    monkeypatch.chdir(tmp_path)
    overrides = ["pipeline.gorilla_exec=false", f'execution.hub_dir="{tmp_path / "hub"}"',
                 f'data.split_dir="{Path(__file__).parents[1] / "data" / "splits"}"']
    config = smoke_config(real_data_dir, Path("runs"), "pipe", *overrides)
    record = run_pipeline(config)
    assert _statuses(record) == {name: "ran" for name in ("data", "sft", "feedback", "calibrate", "ppo",
                                                          "generate base-chat", "generate sft", "generate ppo",
                                                          "eval", "report")}
    run_dir = tmp_path / "runs" / "pipe"
    for label in ("base-chat", "sft", "ppo"):
        summary = json.loads((run_dir / "eval" / f"{label}.json").read_text())
        assert summary["n"] == 8 and summary["missing_responses"] == 0  # the run scores what it generates
        assert 0 <= summary["executability"] <= 1 and "exec_failures" in summary
        details = [json.loads(line) for line in (run_dir / "eval" / "details" / f"{label}.jsonl").open()]
        assert len(details) == 8 and sum(row["executes"] for row in details) == round(8 * summary["executability"])
    assert (run_dir / "eval" / "details" / "Gorilla-7B_FT_0_shot.jsonl").is_file()
    anchors = json.loads((run_dir / "eval" / "gorilla.json").read_text())
    assert anchors[0][0].startswith("Gorilla-7B") and anchors[0][1]["n"] == 8
    assert json.loads((run_dir / "pipeline.json").read_text())["finished_at"]
    report = (run_dir / "report.md").read_text()
    assert "base-chat" in report and "ppo" in report and (run_dir / "report.html").is_file()
    assert "| ppo | sft | 8 |" in report and "| ppo | Gorilla-7B FT 0_shot | 8 |" in report
    calibration = json.loads((run_dir / "calibration" / "tools" / "calibration.json").read_text())
    assert (calibration["limit"], calibration["examples"]) == (5, 5) and "Judge calibration: not run" not in report

    again = run_pipeline(config, until_stage="eval")
    assert set(_statuses(again).values()) == {"skipped"}
    # The times of the steps that ran survive a rerun that skipped them (what the remaining-time estimate reads).
    assert set(again["step_seconds"]) == set(_statuses(record)) and again["step_seconds"] == record["step_seconds"]

    # A second algorithm whose generation dies: the stages before it stay done, the rerun does only the rest.
    two = smoke_config(real_data_dir, Path("runs"), "pipe", *overrides, 'pipeline.algorithms=["ppo", "grpo"]')
    real_generate = pipeline.generate_model

    def dies_on_grpo(config, row, force=False):
        if row.label == "grpo":
            raise KeyboardInterrupt("killed")
        return real_generate(config, row, force)

    monkeypatch.setattr(pipeline, "generate_model", dies_on_grpo)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(two, until_stage="eval")
    failed = json.loads((run_dir / "pipeline.json").read_text())
    assert _statuses(failed)["generate grpo"] == "failed" and _statuses(failed)["grpo"] == "ran"
    assert "killed" in (run_dir / "pipeline.log").read_text()
    monkeypatch.setattr(pipeline, "generate_model", real_generate)
    resumed = _statuses(run_pipeline(two, from_stage="rl", until_stage="eval"))
    assert resumed == {"ppo": "skipped", "grpo": "skipped", "generate base-chat": "skipped", "generate sft": "skipped",
                       "generate ppo": "skipped", "generate grpo": "ran", "eval": "ran"}
    assert (run_dir / "eval" / "grpo.json").is_file()
