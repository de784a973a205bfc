"""The reward model: the held-out split, the gold-vs-mutant rate and the loss by hand, padding-independent scores,
and both kinds trained on the smoke preset (tiny random Llama, real data), a killed classifier run resuming to
the same weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from apirl.errors import InputError
from apirl.stats import auc, win_rate
from apirl.train.reward import gold_vs_mutant_rate, heldout_examples, load_feedback, mutant_negatives
from smoke_helpers import KillAtStep, smoke_config, stage_reward


def test_heldout_split_keeps_prompts_together_and_is_seeded() -> None:
    rows = [{"example_id": f"e{i}", "k": k} for i in range(20) for k in range(4)]
    ids = [r["example_id"] for r in rows]
    held = heldout_examples(ids, 0.25, seed=0)
    assert len(held) == 5 and held <= set(ids)
    heldout_rows = [r for r in rows if r["example_id"] in held]
    assert len(heldout_rows) == 4 * len(held)  # every sample of a held-out prompt, none of the others
    assert held == heldout_examples(list(reversed(ids)), 0.25, seed=0)  # the file order does not matter
    assert len({frozenset(heldout_examples(ids, 0.25, seed=seed)) for seed in range(4)}) > 1  # the seed decides
    assert heldout_examples(ids, 0.0, seed=0) == set()
    assert len(heldout_examples(["a", "b"], 0.1, seed=0)) == 1  # at least one out, one kept
    assert len(heldout_examples(["a", "b"], 0.9, seed=0)) == 1
    assert heldout_examples(["a", "a"], 0.5, seed=0) == set()  # one prompt: all of it trains


def test_gold_vs_mutant_rate_by_hand() -> None:
    scored = [
        ("e1", "gold", 2.0), ("e1", "unknown_model_id", 1.0), ("e1", "syntax_error", 3.0),
        ("e2", "gold", 0.5), ("e2", "unknown_model_id", 0.5), ("e2", "missing_import", -1.0),
        ("e3", "syntax_error", -5.0),  # no gold for e3: not paired
    ]
    rate = gold_vs_mutant_rate(scored)
    assert rate["pairs"] == 4
    assert rate["rate"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert rate["per_kind"]["unknown_model_id"] == {"pairs": 2, "rate": 0.75}  # a win and a tie
    assert rate["per_kind"]["syntax_error"] == {"pairs": 1, "rate": 0.0}
    assert rate["per_kind"]["missing_import"] == {"pairs": 1, "rate": 1.0}
    assert rate["per_kind"]["unknown_name"] == {"pairs": 0, "rate": None}


ANSWER = ("<<<domain>>>: Natural Language Processing Fill-Mask\n"
          "<<<api_call>>>: pipeline('fill-mask', model='bert-base-uncased')\n<<<code>>>: "
          "from transformers import pipeline\nunmasker = pipeline('fill-mask', model='bert-base-uncased')\n"
          "print(unmasker('Hello [MASK].'))")


def test_mutant_negatives_mutate_only_the_code_of_acceptable_samples() -> None:
    import ast

    rows = [{"example_id": "e1", "prompt": "p1", "completion": ANSWER, "label": True},
            {"example_id": "e2", "prompt": "p2", "completion": ANSWER, "label": False},  # not acceptable: none
            {"example_id": "e3", "prompt": "p3", "completion": "<<<domain>>>: x", "label": True}]  # no code: none
    known = {"bert-base-uncased"}
    two = mutant_negatives(rows, 2, known, seed=0)
    assert [n["example_id"] for n in two] == ["e1", "e1"] and len({n["kind"] for n in two}) == 2
    head = ANSWER[:ANSWER.index("<<<code>>>: ") + len("<<<code>>>: ")]
    for negative in two:
        assert negative["prompt"] == "p1" and negative["chosen"] == ANSWER
        assert negative["rejected"] != ANSWER and negative["rejected"].startswith(head)
    every = mutant_negatives(rows, 10, known, seed=0)
    kinds = {n["kind"]: n["rejected"][len(head):] for n in every}
    assert {"unknown_model_id", "unknown_kwarg", "missing_import", "syntax_error"} <= set(kinds)
    with pytest.raises(SyntaxError):
        ast.parse(kinds["syntax_error"])
    assert "'bert-base-uncased'" not in kinds["unknown_model_id"]  # the id, quoted: a longer one may contain it
    assert mutant_negatives(rows, 2, known, seed=0) == two  # seeded
    assert [n["kind"] for n in two] == [n["kind"] for n in every[:2]]  # the first of one seeded order


def test_bce_loss_by_hand_divides_by_the_accumulated_batch() -> None:
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    from apirl.train.reward import bce_loss

    outputs = SequenceClassifierOutput(logits=torch.tensor([[0.0], [2.0]]))
    labels = torch.tensor([1.0, 0.0])
    by_hand = math.log(2) + math.log(1 + math.exp(2))
    assert bce_loss(outputs, labels).item() == pytest.approx(by_hand / 2)
    assert bce_loss(outputs, labels, num_items_in_batch=torch.tensor(4)).item() == pytest.approx(by_hand / 4)


def test_feedback_with_a_bad_label_names_the_file_line_and_field(tmp_path: Path) -> None:
    good = {"example_id": "e", "prompt": "p", "completion": "c", "label": True}
    path = tmp_path / "feedback.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": 1}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"feedback.jsonl:2.*label"):
        load_feedback(path)
    with pytest.raises(InputError, match="apirl feedback"):
        load_feedback(tmp_path / "missing.jsonl")


def test_a_score_does_not_depend_on_the_batch_or_its_padding(tmp_path: Path) -> None:
    from apirl.models.load import resolve_model
    from apirl.train.reward import RewardModel, load_base

    model, tokenizer, fresh = load_base(resolve_model("tiny-random"), seed=0)
    assert fresh == ["score.weight"]  # a causal LM gets a new, seeded head
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    reward_model = RewardModel.load(tmp_path / "rm", device="cpu")
    assert reward_model.pad_token_id == tokenizer.pad_token_id is not None

    prompt = "###Instruction: Classify this review.\n###Output:"
    short = " <<<code>>>: pipeline('sentiment-analysis')"
    longer = [short + " and more words" * n for n in (3, 9, 20)]
    alone = reward_model.score([prompt], [short])[0]
    for batch_size in (4, 2):
        batched = reward_model.score([prompt] * 4, [longer[2], short, longer[0], longer[1]], batch_size=batch_size)
        assert batched[1] == pytest.approx(alone, abs=1e-5)
        assert batched[0] != pytest.approx(alone, abs=1e-3)  # the texts differ, so do their scores
    left = type(reward_model)(model.eval(), tokenizer, max_length=8)
    assert len(left.encode(prompt, short)) == 8
    assert left.encode(prompt, short)[-1] == tokenizer.eos_token_id  # the end is kept: the reward is read there


# ------------------------------------------------------------------------------------------------------------
# The smoke preset (tiny random Llama, real data) on a synthetic feedback stage: seconds per run.


def smoke(real_data_dir: Path, runs: Path, name: str, *overrides: str):
    return smoke_config(real_data_dir, runs, name, 'reward.base="tiny-random"', *overrides)


def write_feedback(config: Any, examples: int = 6) -> None:
    """A feedback stage's files from real train examples: per example its target (acceptable, score 7) and the
    target's first third (not acceptable, score 2), and the pair of the two."""
    from apirl.data.stage import prepare_data

    data = prepare_data(config.data, config.layout, config.seed)
    rows = [json.loads(line) for line in (data.stage_dir / "train.jsonl").read_text().splitlines()]
    rows, pairs = [r for r in rows if r["complete"]][:examples], []
    feedback = []
    for row in rows:
        good, bad = row["target"], row["target"][:len(row["target"]) // 3]
        for k, (completion, label) in enumerate(((good, True), (bad, False))):
            feedback.append({"sample_id": f"{row['example_id']}:{k}", "example_id": row["example_id"], "k": k,
                             "prompt": row["prompt"], "completion": completion, "answers": [],
                             "score": 7.0 if label else 2.0, "label": label})
        pairs.append({"example_id": row["example_id"], "prompt": row["prompt"], "chosen": good, "rejected": bad,
                      "chosen_score": 7.0, "rejected_score": 2.0})
    stage = config.layout.root / "feedback"
    stage.mkdir(parents=True, exist_ok=True)
    (stage / "feedback.jsonl").write_text("".join(json.dumps(r) + "\n" for r in feedback), encoding="utf-8")
    (stage / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def check_summary(summary: dict[str, Any], kind: str) -> None:
    assert summary["kind"] == kind and summary["fresh_weights"] == ["score.weight"]
    assert summary["heldout_examples"] == 2 and summary["heldout_samples"] == 4 and summary["train_samples"] == 8
    for key in ("heldout_accuracy", "heldout_auc"):
        assert 0.0 <= summary[key] <= 1.0, key
    gold = summary["gold_vs_mutant"]
    assert gold["split"] == "val" and gold["examples"] == 3 and gold["pairs"] >= 3
    assert 0.0 <= gold["rate"] <= 1.0
    assert all(row["rate"] is None or 0.0 <= row["rate"] <= 1.0 for row in gold["per_kind"].values())


@pytest.mark.integration
def test_smoke_classifier_scores_and_a_killed_run_resumes_to_the_same_weights(real_data_dir: Path,
                                                                             tmp_path: Path) -> None:
    import torch

    from apirl.train.checkpoints import last_checkpoint
    from apirl.train.reward import RewardModel

    config = smoke(real_data_dir, tmp_path, "straight")
    write_feedback(config)
    straight = stage_reward(config)
    summary = json.loads((straight.stage_dir / "summary.json").read_text())
    check_summary(summary, "classifier")
    assert summary["steps"] == 4 and summary["accuracy_of"] == "label: logit > 0"
    # The figures are recomputed from the scores the stage wrote beside them.
    scores = [json.loads(line) for line in (straight.stage_dir / "scores.jsonl").read_text().splitlines()]
    heldout = [row for row in scores if row["set"] == "heldout"]
    assert len(heldout) == 4
    assert auc([r["score"] for r in heldout if r["label"]],
               [r["score"] for r in heldout if not r["label"]]) == pytest.approx(summary["heldout_auc"], abs=1e-4)
    gold = [(r["example_id"], r["kind"], r["score"]) for r in scores if r["set"] == "gold_vs_mutant"]
    assert gold_vs_mutant_rate(gold)["rate"] == pytest.approx(summary["gold_vs_mutant"]["rate"], abs=1e-4)
    assert summary["last_loss"] < summary["first_loss"]
    assert not (straight.stage_dir / "checkpoints").exists()
    reward_model = RewardModel.load(straight.stage_dir / "model", device="cpu")
    assert reward_model.kind == "classifier" and reward_model.max_length == 256
    assert len(reward_model.score(["###Instruction: x\n###Output:"] * 2, [" a", " b"])) == 2

    killed = smoke(real_data_dir, tmp_path, "killed")
    write_feedback(killed)
    with pytest.raises(KeyboardInterrupt):
        stage_reward(killed, callbacks=[KillAtStep(3)])
    checkpoints = killed.run_dir / "reward" / "checkpoints"
    assert last_checkpoint(checkpoints).name == "checkpoint-2"
    with pytest.raises(InputError, match="--resume"):
        stage_reward(killed)  # never silently throw away an interrupted run
    with pytest.raises(InputError, match="different config"):
        stage_reward(smoke(real_data_dir, tmp_path, "killed", "reward.learning_rate=0.01"), resume=True)
    resumed = stage_reward(killed, resume=True)
    assert json.loads((resumed.stage_dir / "summary.json").read_text())["resumed_from"] == "checkpoint-2"

    a, b = weights(straight.stage_dir / "model"), weights(resumed.stage_dir / "model")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert stage_reward(killed, resume=True).skipped  # finished and unchanged: nothing to do


@pytest.mark.integration
def test_smoke_pairwise_from_the_cli(real_data_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from apirl.cli import app
    from apirl.train.reward import RewardModel

    config = smoke(real_data_dir, tmp_path, "smoke")
    write_feedback(config)
    args = ["reward", "--config", str(Path(__file__).parents[1] / "configs" / "smoke.toml"),
            "--set", f'data.data_dir="{real_data_dir}"', "--set", f'runs_dir="{tmp_path}"',
            "--set", 'reward.base="tiny-random"', "--set", 'reward.kind="pairwise"', "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.stdout)
    check_summary(summary, "pairwise")
    assert summary["skipped"] is False and summary["steps"] == 4
    assert summary["train_pairs"] == 4 and summary["heldout_pairs"] == 2
    assert summary["accuracy_of"] == "pairs: chosen > rejected"
    scores = [json.loads(line) for line in (config.layout.root / "reward" / "scores.jsonl").read_text().splitlines()]
    pairs = [row for row in scores if row["set"] == "heldout_pair"]
    assert len(pairs) == 2 and win_rate([p["chosen"] for p in pairs],
                                        [p["rejected"] for p in pairs]) == pytest.approx(summary["heldout_accuracy"],
                                                                                         abs=1e-4)
    assert RewardModel.load(config.layout.root / "reward" / "model", device="cpu").kind == "pairwise"
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["skipped"] is True


@pytest.mark.integration
def test_smoke_lora_reward_model_trains_on_mutant_negatives_and_saves_merged(real_data_dir: Path,
                                                                             tmp_path: Path) -> None:
    import torch

    from apirl.models.load import resolve_model
    from apirl.train.reward import load_base

    config = smoke(real_data_dir, tmp_path, "lora", 'reward.method="lora"', "reward.max_steps=2",
                   "reward.mutant_negatives=1")
    write_feedback(config)
    result = stage_reward(config)
    summary = json.loads((result.stage_dir / "summary.json").read_text())
    assert summary["method"] == "lora" and 64 < summary["trainable_parameters"] < 200_000
    added = sum(summary["train_mutant_negatives"].values())  # one per acceptable train sample that mutates
    assert 1 <= added <= 4 and summary["train_samples"] == 8 + added
    assert summary["train_label_rate"] == pytest.approx(4 / (8 + added), abs=1e-4)
    saved = weights(result.stage_dir / "model")
    assert not any("lora" in name or "modules_to_save" in name for name in saved)
    initial = load_base(resolve_model("tiny-random"), seed=0)[0].state_dict()
    assert not torch.equal(saved["score.weight"], initial["score.weight"])  # the head trained too
