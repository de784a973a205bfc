"""Config loading (unknown keys, overrides, locations) and run-directory stage skipping."""

from pathlib import Path

import pytest

from apirl.config import load_config, parse_override
from apirl.errors import InputError
from apirl.rundir import RunLayout, StageOutput, read_manifest, run_stage, weight_files


def test_defaults_and_overrides():
    cfg = load_config(overrides=["name=exp1", "data.split_seed=3", "eval.split=all", 'data.data_dir="/x"'])
    assert cfg.name == "exp1" and cfg.data.split_seed == 3 and cfg.eval.split == "all"
    assert str(cfg.data.data_dir) == "/x" and cfg.run_dir == Path.cwd() / "runs" / "exp1"
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=hello world") == (["a"], "hello world")


def test_unknown_key_in_file_names_file_line_and_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n\n[eval]\nsplit = "test"\nbootstap_samples = 5\n', encoding="utf-8")
    with pytest.raises(InputError) as excinfo:
        load_config(path)
    err = excinfo.value
    assert err.path == str(path) and err.line == 5 and err.field == "eval.bootstap_samples"


def test_bad_values_and_bad_overrides_are_errors(tmp_path):
    with pytest.raises(InputError, match=r"--set eval\.split"):
        load_config(overrides=["eval.split=train"])
    with pytest.raises(InputError, match="key=value"):
        load_config(overrides=["novalue"])
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(InputError, match="10%"):
        load_config(overrides=["data.val_fraction=0.5", "data.test_fraction=0.45"])


def test_shipped_configs_load():
    for path in sorted(Path("configs").glob("*.toml")):
        load_config(path)


def test_stage_is_skipped_when_up_to_date_and_redone_otherwise(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("v1", encoding="utf-8")
    calls = []

    def work(stage_dir: Path, fingerprint: dict):
        calls.append(fingerprint)
        (stage_dir / "out.txt").write_text(source.read_text() + "!", encoding="utf-8")
        return StageOutput(["out.txt"], {"run": len(calls)})

    stage = tmp_path / "run" / "stage"
    first = run_stage(stage, config={"a": 1}, seed=0, inputs=[source], work=work)
    assert not first.skipped and len(calls) == 1 and first.summary == {"run": 1}
    manifest = read_manifest(stage)
    assert manifest["config"] == {"a": 1} and "out.txt" in manifest["outputs"] and "versions" in manifest
    assert calls[0] == {key: manifest[key] for key in ("config", "seed", "inputs")}  # the work gets the fingerprint
    skipped = run_stage(stage, config={"a": 1}, seed=0, inputs=[source], work=work)
    assert skipped.skipped and skipped.summary == {"run": 1}  # the summary of the run that made the outputs
    assert not run_stage(stage, config={"a": 2}, seed=0, inputs=[source], work=work).skipped  # config changed
    assert not run_stage(stage, config={"a": 2}, seed=1, inputs=[source], work=work).skipped  # seed changed
    source.write_text("v2", encoding="utf-8")
    assert not run_stage(stage, config={"a": 2}, seed=1, inputs=[source], work=work).skipped  # input changed
    (stage / "out.txt").write_text("damaged", encoding="utf-8")
    assert not run_stage(stage, config={"a": 2}, seed=1, inputs=[source], work=work).skipped  # output damaged
    assert not run_stage(stage, config={"a": 2}, seed=1, inputs=[source], work=work, force=True).skipped
    assert len(calls) == 6


def test_a_rerun_removes_the_outputs_it_no_longer_writes(tmp_path):
    labels = ["a", "b"]

    def work(stage_dir: Path, _fingerprint: dict):
        for label in labels:
            (stage_dir / f"{label}.json").write_text("{}", encoding="utf-8")
        return StageOutput([f"{label}.json" for label in labels], {})

    stage = tmp_path / "eval"
    run_stage(stage, config={"labels": list(labels)}, seed=0, inputs=[], work=work)
    (stage / "mine.json").write_text("{}", encoding="utf-8")  # not the stage's: left alone
    labels.remove("b")
    run_stage(stage, config={"labels": list(labels)}, seed=0, inputs=[], work=work)
    assert sorted(p.name for p in stage.glob("*.json")) == ["a.json", "manifest.json", "mine.json"]


def test_a_failed_stage_leaves_no_manifest(tmp_path):
    stage = tmp_path / "stage"

    def work(stage_dir: Path, _fingerprint: dict):
        (stage_dir / "partial.txt").write_text("x", encoding="utf-8")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(stage, config={}, seed=0, inputs=[], work=work)
    assert read_manifest(stage) is None and (stage / "partial.txt").exists()


def test_run_layout_names_every_path_under_the_run(tmp_path):
    layout = RunLayout(tmp_path)
    assert layout.split("train") == tmp_path / "data" / "train.jsonl"
    assert layout.model("ppo") == tmp_path / "ppo" / "model" and layout.log("sft") == tmp_path / "sft" / "log.jsonl"
    assert layout.responses("base-chat") == tmp_path / "generate" / "base-chat" / "responses.jsonl"
    assert layout.eval_details("Gorilla-7B FT 0_shot") == tmp_path / "eval" / "details" / "Gorilla-7B_FT_0_shot.jsonl"
    assert layout.calibration("tools") == tmp_path / "calibration" / "tools" / "calibration.json"
    assert layout.catalog == tmp_path / "data" / "api.jsonl" and layout.pairs == tmp_path / "feedback" / "pairs.jsonl"


def test_a_missing_input_names_the_command_that_writes_it(tmp_path):
    from apirl.errors import InputError

    layout = RunLayout(tmp_path / "run")
    with pytest.raises(InputError, match="run `apirl data prepare` first") as caught:
        run_stage(layout.stage("sft"), config={}, seed=0, inputs=[layout.split("train")],
                  work=lambda directory, fingerprint: StageOutput([], {}))
    assert "train.jsonl" in str(caught.value)
    with pytest.raises(InputError, match="run `apirl feedback` first"):
        run_stage(layout.stage("reward"), config={}, seed=0, inputs=[layout.pairs],
                  work=lambda directory, fingerprint: StageOutput([], {}))


def test_weight_files_are_every_shard(tmp_path):
    for name in ("model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors", "config.json"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in weight_files(tmp_path)] == ["model-00001-of-00002.safetensors",
                                                         "model-00002-of-00002.safetensors"]
    assert weight_files(tmp_path / "missing") == []
