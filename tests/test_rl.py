"""RL beyond PPO: the reward's terms (`apirl.train.rewards`), the `[rl]` config, GRPO / RLOO and DPO through TRL
on the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apirl.errors import InputError
from apirl.train.rewards import (
    RewardTerm,
    combine,
    rollout_log,
    rule_reward,
    term_means,
    tools_fn,
    trl_reward_funcs,
)
from smoke_helpers import KillAtStep, smoke_config, stage_rl

GOOD = """<<<code>>>: from transformers import pipeline
classifier = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')
print(classifier('I love this'))"""
BROKEN = """<<<code>>>: classifier = pipeline('sentiment-analysis', model='distilbert-base-uncased'
print(classifer("I love this")"""


def test_rule_rewards() -> None:
    assert rule_reward("rule:contains:abc")(["p", "p"], ["xabcx", "ab"]) == [1.0, 0.0]
    short = rule_reward("rule:short")(["p", "p"], ["", "x" * 100])
    assert short == [0.0, -1.0]
    with pytest.raises(InputError, match="unknown rule reward"):
        rule_reward("rule:nope")


def test_combine_weights_each_term_and_reports_its_mean() -> None:
    terms = [RewardTerm("a", 2.0, lambda p, c: [1.0, 0.0]), RewardTerm("b", 0.5, lambda p, c: [0.0, 4.0])]
    totals, values = combine(terms, ["p", "q"], ["x", "y"])
    assert totals == [2.0, 2.0]
    assert values == {"a": [1.0, 0.0], "b": [0.0, 4.0]}
    assert term_means(values) == {"a": 0.5, "b": 2.0}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trl_reward_funcs_log_each_batch_once_with_every_term_and_the_step(tmp_path: Path) -> None:
    class State:
        global_step = 4

    terms = [RewardTerm("a", 2.0, lambda p, c: [1.0, 0.0]), RewardTerm("b", 0.5, lambda p, c: [0.0, 4.0])]
    with rollout_log(tmp_path / "rollouts.jsonl") as log:
        funcs, _ = trl_reward_funcs(terms, log, eos_ids=[2])
        for func in funcs:  # as TRL calls them: each term on the same batch, in order
            func(prompts=["p", "q"], completions=["x", "y"], completion_ids=[[7, 2], [7, 7]], trainer_state=State())
        with pytest.raises(TypeError, match="trainer_state"):
            for func in funcs:
                func(prompts=["p"], completions=["x"])
    rows = _rows(tmp_path / "rollouts.jsonl")
    assert rows == [{"step": 5, "prompt": "p", "completion": "x", "terms": {"a": 1.0, "b": 0.0}, "reward": 2.0,
                     "ended": True},
                    {"step": 5, "prompt": "q", "completion": "y", "terms": {"a": 0.0, "b": 4.0}, "reward": 2.0,
                     "ended": False}]


def test_a_resumed_rollout_log_drops_the_steps_it_will_draw_again(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    with rollout_log(path) as log:
        for step in (1, 2, 3):
            log.write(step, ["p"], [f"c{step}"], {"a": [1.0]}, {"a": 1.0})
    with rollout_log(path, start=2) as log:
        log.write(3, ["p"], ["again"], {"a": [0.0]}, {"a": 1.0})
    assert [(row["step"], row["completion"]) for row in _rows(path)] == [(1, "c1"), (2, "c2"), (3, "again")]
    # A kill cut the last line short: the whole lines before it are kept, the cut one is drawn again.
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"step": 4, "prompt": "p", "compl')
    with rollout_log(path, start=3) as log:
        log.write(4, ["p"], ["c4"], {"a": [1.0]}, {"a": 1.0})
    assert [row["completion"] for row in _rows(path)] == ["c1", "c2", "again", "c4"]
    with rollout_log(path) as log:  # a fresh run starts a fresh file
        pass
    assert path.read_text() == ""


def test_trl_reward_funcs_take_trl_keywords_and_carry_names_and_weights() -> None:
    terms = [RewardTerm("reward_model", 1.0, rule_reward("rule:long")),
             RewardTerm("exec", 0.25, lambda p, c: [1.0] * len(c))]
    funcs, weights = trl_reward_funcs(terms)
    assert [f.__name__ for f in funcs] == ["reward_model", "exec"]
    assert weights == [1.0, 0.25]
    # TRL passes the dataset's other columns and its own extras as keywords.
    assert funcs[0](prompts=["p"], completions=["x" * 64], completion_ids=[[1]], trainer_state=None) == [1.0]
    assert funcs[1](prompts=["p", "q"], completions=["a", "b"]) == [1.0, 1.0]


def test_tools_reward_ranks_working_code_above_broken_code(real_data_dir: Path) -> None:
    from apirl.data.config import DataConfig
    from apirl.data.dataset import load_gorilla

    api_db = load_gorilla(DataConfig(data_dir=str(real_data_dir))).api_db
    good, broken = tools_fn(api_db)(["###Instruction: classify\n###Output:"] * 2, [GOOD, BROKEN])
    assert 0.0 <= broken < good <= 1.0
    assert good >= 0.9  # every static check passes
    assert broken <= 0.5  # syntax error, undefined names, no import


def test_an_online_algorithm_needs_a_reward_and_dpo_does_not() -> None:
    from apirl.config import load_config

    with pytest.raises(InputError, match="every reward weight is 0"):
        load_config(None, ['rl.algorithm="grpo"', "rl.reward_model_weight=0"])
    assert load_config(None, ['rl.algorithm="dpo"', "rl.reward_model_weight=0"]).rl.algorithm == "dpo"


def test_group_batch_must_split_into_micro_batches() -> None:
    from apirl.config import load_config

    with pytest.raises(InputError, match="divisible by gradient_accumulation_steps"):
        load_config(None, ["grpo.prompts_per_step=3", "grpo.num_generations=3", "grpo.gradient_accumulation_steps=2"])


# ------------------------------------------------------------------------------------------------------------
# GRPO and RLOO (TRL) on the tiny random model.


def _weights(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(path) / "model.safetensors")


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_group_algorithm_trains_logs_each_term_and_saves_a_loadable_policy(
        algorithm: str, real_data_dir: Path, tmp_path: Path) -> None:
    from apirl.models.load import load_model, resolve_model

    config = smoke_config(real_data_dir, tmp_path, algorithm, f'rl.algorithm="{algorithm}"', f"{algorithm}.steps=2")
    result = stage_rl(config)
    assert result.stage_dir == tmp_path / algorithm / algorithm
    summary = json.loads((result.stage_dir / "summary.json").read_text())
    assert summary["algorithm"] == algorithm and summary["steps"] == 2
    assert summary["reward"] == {"reward_model": {"weight": 1.0, "model": "rule:long"}}
    log = [json.loads(line) for line in (result.stage_dir / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if "rewards/reward_model/mean" in entry]
    assert len(steps) == 2 and all(0 < entry["reward"] <= 1 for entry in steps)
    # Every scored completion, with its step and term: 2 steps x 2 prompts x 4 completions, the step's mean as
    # logged.
    rollouts = _rows(result.stage_dir / "rollouts.jsonl")
    assert [row["step"] for row in rollouts] == [1] * 8 + [2] * 8
    for entry in steps:
        rewards = [row["terms"]["reward_model"] for row in rollouts if row["step"] == entry["step"]]
        assert sum(rewards) / len(rewards) == pytest.approx(entry["rewards/reward_model/mean"], abs=1e-5)
    assert not (result.stage_dir / "checkpoints").exists()
    start = _weights(resolve_model("tiny-random").location)
    trained = _weights(result.stage_dir / "model")
    assert any(not (start[k] == trained[k]).all() for k in trained)  # it learned something
    assert load_model(resolve_model(str(result.stage_dir / "model"))).config.model_type == "llama"
    assert stage_rl(config).skipped  # an identical finished run is not redone


def test_grpo_resumed_after_a_kill_ends_with_the_same_weights(real_data_dir: Path, tmp_path: Path) -> None:
    straight = stage_rl(smoke_config(real_data_dir, tmp_path, "straight", 'rl.algorithm="grpo"'))
    killed = smoke_config(real_data_dir, tmp_path, "killed", 'rl.algorithm="grpo"')
    with pytest.raises(KeyboardInterrupt):
        stage_rl(killed, callbacks=[KillAtStep(3)])  # after the checkpoint of step 2
    with pytest.raises(InputError, match="--resume"):
        stage_rl(killed)  # never silently discards an interrupted run
    resumed = stage_rl(killed, resume=True)
    assert json.loads((resumed.stage_dir / "summary.json").read_text())["resumed_from"] == "checkpoint-2"
    # The killed run's rollouts of step 3 are drawn again, not logged twice.
    assert [row["step"] for row in _rows(resumed.stage_dir / "rollouts.jsonl")] == [s for s in (1, 2, 3, 4)
                                                                                      for _ in range(8)]
    a, b = _weights(straight.stage_dir / "model"), _weights(resumed.stage_dir / "model")
    assert all((a[k] == b[k]).all() for k in a)


# ------------------------------------------------------------------------------------------------------------
# DPO (TRL) on hand-written pairs: the chosen completion always says the same thing, so the policy can learn it.


def _write_pairs(config: Any, count: int = 12) -> Path:
    from apirl.data.stage import prepare_data

    train = prepare_data(config.data, config.layout, config.seed).stage_dir / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    path = config.layout.root / "feedback" / "pairs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for index, row in enumerate(rows[:count]):
            handle.write(json.dumps({"example_id": str(index), "prompt": row["prompt"],
                                     "chosen": " from transformers import pipeline", "rejected": " import foo"})
                         + "\n")
    return path


def test_dpo_learns_the_preferred_completions(real_data_dir: Path, tmp_path: Path) -> None:
    config = smoke_config(real_data_dir, tmp_path, "dpo", 'rl.algorithm="dpo"')
    _write_pairs(config)
    result = stage_rl(config)
    summary = json.loads((result.stage_dir / "summary.json").read_text())
    assert summary["train_pairs"] + summary["heldout_pairs"] == 12 and summary["heldout_pairs"] >= 1
    assert summary["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy = reference at the start
    assert summary["last_loss"] < summary["first_loss"]
    assert summary["heldout_preference_accuracy"] == 1.0
    assert (result.stage_dir / "model" / "model.safetensors").is_file()


def test_dpo_without_pairs_says_to_run_feedback(real_data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="apirl feedback"):
        stage_rl(smoke_config(real_data_dir, tmp_path, "nopairs", 'rl.algorithm="dpo"'))


def test_dpo_bad_pairs_line_names_the_file_line_and_field(real_data_dir: Path, tmp_path: Path) -> None:
    config = smoke_config(real_data_dir, tmp_path, "badpairs", 'rl.algorithm="dpo"')
    path = _write_pairs(config, count=3)
    lines = path.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["chosen"] = None
    path.write_text("\n".join([lines[0], json.dumps(broken), lines[2]]) + "\n")
    with pytest.raises(InputError) as info:
        stage_rl(config)
    assert "pairs.jsonl" in str(info.value) and ":2" in str(info.value) and "chosen" in str(info.value)


def test_exec_reward_pays_code_that_runs_and_loads_the_requested_kind_of_model(tiny_data_dir: Path) -> None:
    """Code that runs is paid only if it loaded a model of the prompt's gold domain or the one its api_call names:
    code that avoids the API runs too, and earns nothing."""
    from apirl.data.config import DataConfig
    from apirl.data.dataset import load_gorilla
    from apirl.execution.executor import ExecVerdict
    from apirl.train.rewards import exec_fn

    sentiment = "distilbert-base-uncased-finetuned-sst-2-english"

    class FakeExecutor:
        def __init__(self) -> None:
            self.seen: dict[str, str] = {}

        def check(self, codes: dict[str, str], mode: str) -> list[ExecVerdict]:
            self.seen = codes
            return [ExecVerdict(key, mode, "ok" if "print" in code else "runtime_error", None, "", 0.0, (),
                                (sentiment,) if sentiment in code else ()) for key, code in codes.items()]

    api_db = load_gorilla(DataConfig(data_dir=str(tiny_data_dir))).api_db
    executor = FakeExecutor()
    domains = {"###Instruction: classify reviews\n###Output:": frozenset({"Natural Language Processing Text "
                                                                          "Classification"}),
               "###Instruction: label photos\n###Output:": frozenset({"Computer Vision Image Classification"})}
    prompts = ["###Instruction: classify reviews\n###Output:"] * 3 + ["###Instruction: label photos\n###Output:",
                                                                        "###Instruction: unknown\n###Output:"]
    no_api = "<<<code>>>: import pandas\nprint(pandas.__name__)"
    named = f"<<<api_call>>>: pipeline('sentiment-analysis', model='{sentiment}')\n<<<api_provider>>>: HF\n{GOOD}"
    rewards = exec_fn(executor, "bound", api_db, domains)(prompts, [GOOD, "<<<code>>>: 1 / 0", no_api, GOOD, named])
    assert rewards == [1.0, 0.0, 0.0, 0.0, 1.0]  # wrong domain, unnamed: 0; unknown prompt, named model: 1
    assert executor.seen["0"].startswith("from transformers import pipeline")  # the code section, not the tags


def test_grpo_rollouts_come_from_the_engine_seeded_by_the_step() -> None:
    """GRPO's `rollout_func`: one completion per prompt (TRL repeats the prompts), each at most
    max_completion_length tokens and ended by an EOS otherwise, the same at the same step, another at the next."""
    from types import SimpleNamespace

    from apirl.models.load import load_model, load_tokenizer, resolve_model
    from apirl.train.grpo import engine_rollouts

    source = resolve_model("tiny-random")
    model, tokenizer = load_model(source), load_tokenizer(source)
    trainer = SimpleNamespace(processing_class=tokenizer, model=model,
                              args=SimpleNamespace(max_completion_length=6, temperature=1.0, top_p=1.0),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m),
                              state=SimpleNamespace(global_step=0))
    prompts = ["###Instruction: a\n###Output:"] * 3 + ["###Instruction: bb\n###Output:"] * 3
    rollout = engine_rollouts(seed=5)
    first = rollout(prompts, trainer)
    assert first["prompt_ids"] == tokenizer(text=prompts)["input_ids"] and first["logprobs"] is None
    assert len(first["completion_ids"]) == len(prompts)
    assert all(len(row) == 6 or row[-1] == tokenizer.eos_token_id for row in first["completion_ids"])
    assert len({tuple(row) for row in first["completion_ids"][:3]}) > 1  # a group samples different answers
    assert rollout(prompts, trainer) == first
    trainer.state.global_step = 1
    assert rollout(prompts, trainer)["completion_ids"] != first["completion_ids"]


@pytest.mark.integration
def test_check_reward_ranks_gold_above_its_mutants_per_term(real_data_dir: Path, tmp_path: Path) -> None:
    """`apirl rl --check-reward` on a reward that is not learned: the tools share must put gold code above a
    mutant that does not parse, and the file it writes must give the rate it prints."""
    from typer.testing import CliRunner

    from apirl.cli import app
    from apirl.train.reward import gold_vs_mutant_rate

    config = Path(__file__).parents[1] / "configs" / "smoke.toml"
    overrides = [f'data.data_dir="{real_data_dir}"', f'runs_dir="{tmp_path}"', "rl.reward_model_weight=0",
                 "rl.tools_weight=0.5", "rl.exec_weight=1.0", f'execution.hub_dir="{tmp_path / "hub"}"']
    result = CliRunner().invoke(app, ["rl", "--check-reward", "--config", str(config), "--json",
                                      *[x for o in overrides for x in ("--set", o)]])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["examples"] == 3 and summary["weights"] == {"tools": 0.5, "exec": 1.0}
    assert summary["terms"]["tools"]["per_kind"]["syntax_error"]["rate"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "smoke" / "reward-check" / "scores.jsonl").open()]
    assert len(rows) == 3 + summary["pairs"]
    assert all(row["reward"] == pytest.approx(0.5 * row["terms"]["tools"] + row["terms"]["exec"], abs=1e-5)
               for row in rows)
    assert gold_vs_mutant_rate([(r["example_id"], r["kind"], r["reward"]) for r in rows])["rate"] == summary["rate"]
    assert not (tmp_path / "smoke" / "ppo").exists()  # nothing trained
