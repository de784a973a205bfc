"""Supervised fine-tuning on the tiny random model: the loss falls, a killed run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apirl.errors import InputError
from apirl.train.checkpoints import last_checkpoint
from apirl.train.sft import load_pairs
from smoke_helpers import KillAtStep, smoke_config, stage_sft


def write_examples(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_pairs_skip_incomplete_examples_and_subset_is_seeded(tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i}", "target": f" t{i}", "complete": True} for i in range(10)]
    rows += [{"prompt": "p", "target": " ", "complete": False}, {"prompt": "p", "target": " t", "complete": False}]
    path = write_examples(tmp_path / "train.jsonl", rows)
    pairs, skipped = load_pairs(path, 0, seed=0)
    assert skipped == 2 and len(pairs) == 10
    assert pairs[0] == {"prompt": "p0", "completion": " t0"}
    subset, _ = load_pairs(path, 4, seed=0)
    assert subset == load_pairs(path, 4, seed=0)[0] and len(subset) == 4
    assert subset != load_pairs(path, 4, seed=1)[0]


def test_pairs_with_a_bad_field_name_the_file_line_and_field(tmp_path: Path) -> None:
    path = write_examples(tmp_path / "train.jsonl", [{"prompt": "p", "target": " t"}, {"prompt": 3, "target": "t"}])
    with pytest.raises(InputError, match=r"train.jsonl:2.*prompt"):
        load_pairs(path, 0, seed=0)


@pytest.mark.parametrize(("batching", "grouped", "packed"), [("length_grouped", True, False),
                                                             ("packed", False, True), ("padded", False, False)])
def test_batching_reaches_the_trainer(tmp_path: Path, batching: str, grouped: bool, packed: bool) -> None:
    from apirl.train.config import SftConfig
    from apirl.train.sft import _trainer_args

    args = _trainer_args(SftConfig(batching=batching), 0, tmp_path, has_eval=False)
    assert (args.group_by_length, args.packing, args.completion_only_loss) == (grouped, packed, True)
    assert args.include_num_input_tokens_seen == "non_padding"  # the summary's real tokens


def test_last_checkpoint_ignores_incomplete_ones(tmp_path: Path) -> None:
    for step, complete in ((2, True), (4, True), (6, False)):
        directory = tmp_path / f"checkpoint-{step}"
        directory.mkdir()
        if complete:
            (directory / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-4"
    assert last_checkpoint(tmp_path / "missing") is None


# ------------------------------------------------------------------------------------------------------------
# The smoke preset (tiny random Llama, real data): seconds per run.


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


@pytest.mark.integration
def test_smoke_sft_loss_falls_and_a_killed_run_resumes_to_the_same_weights(real_data_dir: Path,
                                                                           tmp_path: Path) -> None:
    import torch

    from apirl.models.load import resolve_model

    curve = ("sft.curve_steps=2", "sft.curve_limit=4", "sft.curve_max_new_tokens=8")
    straight = stage_sft(smoke_config(real_data_dir, tmp_path, "straight", *curve))
    summary = json.loads((straight.stage_dir / "summary.json").read_text())
    # The learning curve: before the first step and every 2 steps, in the summary, the curve file and the log.
    assert [row["step"] for row in summary["curve"]] == [0, 2, 4, 6]
    assert all(row["n"] == 4 and 0 <= row["val_hallucination"] <= 1 for row in summary["curve"])
    log = [json.loads(line) for line in (straight.stage_dir / "log.jsonl").read_text().splitlines()]
    assert sum("val_ast_accuracy" in row for row in log) == 4
    assert summary["steps"] == 6
    from apirl.hardware import resolve_precision

    # "auto": bf16 autocast only where the CPU has native bf16 (TRL would turn it on on any CPU if not told)
    assert summary["precision"] == resolve_precision("auto", "cpu")
    assert summary["last_loss"] < summary["first_loss"]
    assert summary["batching"] == "length_grouped" and 0 < summary["train_tokens"] <= 6 * 4 * 128
    assert (straight.stage_dir / "tensorboard").is_dir()
    assert any((straight.stage_dir / "tensorboard").rglob("events.out.tfevents.*"))

    config = smoke_config(real_data_dir, tmp_path, "killed", *curve)
    with pytest.raises(KeyboardInterrupt):
        stage_sft(config, callbacks=[KillAtStep(3)])
    checkpoints = config.layout.root / "sft" / "checkpoints"
    assert last_checkpoint(checkpoints).name == "checkpoint-2"
    with pytest.raises(InputError, match="--resume"):
        stage_sft(config)  # never silently throw away an interrupted run
    changed = smoke_config(real_data_dir, tmp_path, "killed", *curve, "sft.learning_rate=0.01")
    with pytest.raises(InputError, match="different config"):
        stage_sft(changed, resume=True)  # nor continue it with other settings
    resumed = stage_sft(config, resume=True)
    resumed_summary = json.loads((resumed.stage_dir / "summary.json").read_text())
    assert resumed_summary["resumed_from"] == "checkpoint-2"
    # The point written at step 2 is kept, none past the checkpoint is doubled, and the curve is the same.
    assert resumed_summary["curve"] == [{**row, "seconds": r["seconds"]}
                                        for row, r in zip(summary["curve"], resumed_summary["curve"], strict=True)]
    assert not checkpoints.exists()  # optimizer states are dropped once the final model is saved

    a, b = weights(straight.stage_dir / "model"), weights(resumed.stage_dir / "model")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    initial = weights(Path(resolve_model("tiny-random").location))
    assert any(not torch.equal(a[k], initial[k]) for k in a if k in initial)  # training changed the weights

    assert stage_sft(config, resume=True).skipped  # finished and unchanged: nothing to do


@pytest.mark.integration
def test_smoke_lora_sft_saves_a_merged_plain_checkpoint(real_data_dir: Path, tmp_path: Path) -> None:
    from apirl.models.load import load_model, resolve_model

    config = smoke_config(real_data_dir, tmp_path, "lora", 'sft.method="lora"', "sft.max_steps=2")
    result = stage_sft(config)
    summary = json.loads((result.stage_dir / "summary.json").read_text())
    assert summary["method"] == "lora" and 0 < summary["trainable_parameters"] < 200_000
    model = load_model(resolve_model(str(result.stage_dir / "model")))
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_a_run_started_over_keeps_no_point_of_the_earlier_curve(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from apirl.data.apidb import ApiDatabase
    from apirl.train.curve import ValCurve

    out = tmp_path / "curve.jsonl"
    curve = ValCurve([], ApiDatabase([]), None, out, every=5, max_new_tokens=8, batch_size=1)
    curve._point = lambda _model, state: out.open("a").write(json.dumps({"step": state.global_step, "new": 1}) + "\n")
    out.write_text('{"step": 0}\n{"step": 5}\n')
    curve.on_train_begin(None, SimpleNamespace(global_step=0), None, model=None)
    assert curve.rows() == [{"step": 0, "new": 1}]  # once, and this run's
    out.write_text('{"step": 0}\n{"step": 5}\n{"step": 10}\n')
    curve.on_train_begin(None, SimpleNamespace(global_step=5), None, model=None)  # resumed at step 5
    assert curve.rows() == [{"step": 0}, {"step": 5}]


def test_curve_scores_domain_choice_beside_ast(tiny_data_dir: Path) -> None:
    """The curve's domain accuracy is the share of answers whose `<<<domain>>>` is the gold one, whatever their
    call: what catalog-grounded decoding's AST accuracy comes down to."""
    from apirl.data.config import DataConfig
    from apirl.data.dataset import Example, load_gorilla
    from apirl.evaluate.ast_match import AstMatcher
    from apirl.train.curve import score_answers

    api_db = load_gorilla(DataConfig(data_dir=str(tiny_data_dir))).api_db
    gold = "Natural Language Processing Text Classification"
    example = Example("e", "val", "apibench-eval", 1, "###Instruction: x\n###Output:", "", gold,
                      "distilbert-base-uncased-finetuned-sst-2-english", None, True)
    answers = [f" <<<domain>>>: {gold}\n<<<api_call>>>: pipeline('sentiment-analysis', model='made-up/model')",
               " <<<domain>>>: Computer Vision Image Classification\n<<<api_call>>>: "
               "pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')",
               "no tags at all"]
    scores = score_answers(answers, [example] * 3, AstMatcher(api_db))
    assert scores["val_domain_accuracy"] == pytest.approx(1 / 3)
    # The made-up id and the untagged text are hallucinations in Gorilla's mode; the gold call under a wrong
    # domain line is correct (Gorilla reads the call's row, not the line): the two are measured apart.
    assert scores["val_hallucination"] == pytest.approx(2 / 3)
    assert scores["val_ast_accuracy"] == pytest.approx(1 / 3)
