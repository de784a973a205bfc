"""`apirl export`: a run's scored results copied as committed evidence, with a meta.json that says how."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apirl.errors import InputError
from apirl.report.export import export_results
from apirl.rundir import RunLayout


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_export_copies_each_scored_model_and_records_every_stage(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "runs" / "demo")
    _write(layout.responses("sft"), '{"question_id": 1, "text": "a"}\n')
    _write(layout.responses("sft").with_name("responses.jsonl.meta.json"), '{"tokens_per_s": 9}\n')
    _write(layout.eval_summary("sft"), '{"accuracy": 0.5}\n')
    _write(layout.eval_details("sft"), '{"question_id": 1}\n')
    _write(layout.eval_details("Gorilla-7B FT 0_shot"), '{"question_id": 1}\n')
    _write(layout.gorilla_summaries, "[]\n")
    _write(layout.root / "eval" / "manifest.json", "{}\n")  # the stage's, not a model's
    _write(layout.stage("sft") / "curve.jsonl", '{"step": 0}\n')
    _write(layout.stage("sft") / "summary.json", '{"steps": 6}\n')
    _write(layout.stage("grpo") / "rollouts.jsonl", '{"step": 1}\n')
    _write(layout.stage("grpo") / "log.jsonl", '{"step": 1, "reward": 0.5}\n')
    _write(layout.stage("feedback") / "feedback.jsonl", '{"label": true}\n')
    _write(layout.stage("reward") / "scores.jsonl", '{"score": 0.1}\n')
    _write(layout.stage("sft") / "manifest.json", json.dumps(
        {"config": {"sft": {"epochs": 1}}, "seed": 0, "command": "apirl sft -c configs/x.toml",
         "git_commit": "abc", "wall_time_s": 12.5, "outputs": {}}))
    out = tmp_path / "results" / "demo"
    meta = export_results(layout, out, config={"name": "demo"})
    assert meta["models"] == ["sft"]
    assert (out / "sft.responses.jsonl").read_text() == '{"question_id": 1, "text": "a"}\n'
    for name in ("sft.details.jsonl", "sft.generate.json", "gorilla.json", "sft.curve.jsonl",
                 "Gorilla-7B_FT_0_shot.jsonl"):
        assert (out / name).is_file(), name
    # The model's evaluation and the SFT stage's summary are two files.
    assert json.loads((out / "sft.summary.json").read_text()) == {"accuracy": 0.5}
    assert json.loads((out / "sft.training.json").read_text()) == {"steps": 6}
    # An RL stage's log and what its reward paid for.
    assert (out / "grpo.rollouts.jsonl").read_text() == '{"step": 1}\n'
    assert (out / "grpo.training-log.jsonl").is_file() and not (out / "grpo.training.json").exists()
    # The judged samples behind the reward model, and the scores behind its figures.
    assert (out / "feedback.judged.jsonl").read_text() == '{"label": true}\n'
    assert (out / "reward.scores.jsonl").read_text() == '{"score": 0.1}\n'
    written = json.loads((out / "meta.json").read_text())
    assert written["stages"]["sft"] == {"config": {"sft": {"epochs": 1}}, "seed": 0,
                                        "command": "apirl sft -c configs/x.toml", "git_commit": "abc",
                                        "wall_time_s": 12.5, "finished_at": None, "peak_memory_mb": None}
    assert written["config"] == {"name": "demo"} and "weights" not in " ".join(written["files"])


def test_export_of_a_run_with_nothing_scored_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no scored models"):
        export_results(RunLayout(tmp_path / "empty"), tmp_path / "out", config={})
