"""PPO on the tiny random model: the log-prob shift is right, a rule reward rises, a killed run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apirl.errors import InputError
from smoke_helpers import smoke_config, stage_rl

# ------------------------------------------------------------------------------------------------------------
# The tiny random model.


def test_logprobs_line_up_with_a_manual_forward_pass() -> None:
    """The trainer's log-probs of a sampled response equal log_softmax(logits / T) gathered by hand, position by
    position, from a forward pass of each row alone (no padding): the shift, the temperature and the padding are
    all right."""
    import torch

    from apirl.config import load_config
    from apirl.train.common import RlRun
    from apirl.train.ppo import encode_prompts, forward_response, load_models, sample_responses

    config = load_config(Path(__file__).parents[1] / "configs" / "smoke.toml", [])
    models = load_models(RlRun("ppo", config.rl, config.model, config.execution, config.layout, 0), "cpu")
    prompts = ["###Instruction: classify a review\n###Output:", "###Instruction: hi\n###Output:"]
    prompt_ids, prompt_mask = encode_prompts(models.tokenizer, prompts, 64, "cpu")
    assert prompt_mask[1, 0] == 0  # the short prompt is left-padded
    generator = torch.Generator().manual_seed(0)
    temperature = 0.7
    response_ids, response_mask, ended = sample_responses(
        models.policy, prompt_ids, prompt_mask, max_new_tokens=6, temperature=temperature, top_p=1.0,
        eos_ids=models.eos_ids, pad_id=models.tokenizer.pad_token_id, generator=generator)
    assert response_ids.shape == response_mask.shape == (2, 6) and ended.shape == (2,)
    with torch.no_grad():
        logits, logp, values = forward_response(models.policy, prompt_ids, prompt_mask, response_ids,
                                                response_mask, temperature, models.value_head)
    assert logits.shape[:2] == logp.shape == values.shape == (2, 6)
    for row in range(2):
        prompt = prompt_ids[row][prompt_mask[row].bool()]
        response = response_ids[row][response_mask[row].bool()]
        with torch.no_grad():
            full = models.policy(input_ids=torch.cat([prompt, response])[None]).logits[0]
        for t, token in enumerate(response.tolist()):
            expected = torch.log_softmax(full[len(prompt) + t - 1] / temperature, dim=-1)[token]
            assert torch.allclose(logp[row, t], expected, atol=1e-4), (row, t, float(logp[row, t]), float(expected))


def test_a_response_that_ends_early_is_padded_and_masked_after_its_eos() -> None:
    """The rollout's tensors from the engine's rows: the EOS is a real token, padding and a zero mask follow it,
    `ended` says which rows produced one, and T is the longest row."""
    import torch

    from apirl.config import load_config
    from apirl.train.common import RlRun
    from apirl.train.ppo import encode_prompts, load_models, sample_responses

    config = load_config(Path(__file__).parents[1] / "configs" / "smoke.toml", [])
    models = load_models(RlRun("ppo", config.rl, config.model, config.execution, config.layout, 0), "cpu")
    prompts = ["###Instruction: classify a review\n###Output:", "###Instruction: hi\n###Output:"]
    prompt_ids, prompt_mask = encode_prompts(models.tokenizer, prompts, 64, "cpu")
    pad = models.tokenizer.pad_token_id

    def sample(eos_ids: list[int]) -> tuple:
        return sample_responses(models.policy, prompt_ids, prompt_mask, max_new_tokens=6, temperature=1.0, top_p=1.0,
                                eos_ids=eos_ids, pad_id=pad, generator=torch.Generator().manual_seed(0))

    free_ids, free_mask, free_ended = sample([-1])
    assert free_mask.all() and not free_ended.any()
    eos = int(free_ids[0, 1])  # row 0 ends at its second token at the latest
    ids, mask, ended = sample([eos])
    first = [next((t + 1 for t in range(6) if int(free_ids[r, t]) == eos), 6) for r in range(2)]
    assert ids.shape == mask.shape == (2, max(first)) and mask.dtype == torch.float32
    for row in range(2):
        assert mask[row].tolist() == [1.0] * first[row] + [0.0] * (max(first) - first[row])
        assert ids[row, :first[row]].tolist() == free_ids[row, :first[row]].tolist()
        assert (ids[row, first[row]:] == pad).all()
        assert bool(ended[row]) == (int(ids[row, first[row] - 1]) == eos)
    assert bool(ended[0])


@pytest.mark.integration
def test_smoke_ppo_raises_a_rule_reward_with_a_bounded_kl(real_data_dir: Path, tmp_path: Path) -> None:
    """The smoke policy samples at temperature 0.05, so it is sharp enough that the tokens it tries differ in
    length, and `rule:long` (chars / 64) rewards the longer ones: 8 steps move the mean score up clearly."""
    config = smoke_config(real_data_dir, tmp_path, "toy", "ppo.steps=8")
    result = stage_rl(config)
    log = [json.loads(line) for line in (result.stage_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, 9))
    first = sum(e["score"] for e in log[:3]) / 3
    last = sum(e["score"] for e in log[-3:]) / 3
    assert last > first + 0.2, [e["score"] for e in log]
    assert max(e["kl"] for e in log) < 20.0, [e["kl"] for e in log]
    assert any((result.stage_dir / "tensorboard").rglob("events.out.tfevents.*"))
    from apirl.models.load import load_model, resolve_model

    load_model(resolve_model(str(result.stage_dir / "model")))  # a plain checkpoint `apirl generate` can load


def test_ppo_config_counts_rollouts_and_needs_a_group_for_its_baseline() -> None:
    from pydantic import ValidationError

    from apirl.train.config import PpoConfig

    assert PpoConfig(prompts_per_step=2, responses_per_prompt=2, minibatch_size=4, score_baseline="leave_one_out")
    with pytest.raises(ValidationError, match="exceeds the rollouts"):
        PpoConfig(prompts_per_step=2, responses_per_prompt=1, minibatch_size=4)
    with pytest.raises(ValidationError, match="needs responses_per_prompt >= 2"):
        PpoConfig(prompts_per_step=4, score_baseline="leave_one_out")
    with pytest.raises(ValidationError, match="at least 2 rollouts"):
        PpoConfig(prompts_per_step=1, minibatch_size=1)


@pytest.mark.integration
def test_smoke_ppo_groups_responses_by_prompt(real_data_dir: Path, tmp_path: Path) -> None:
    """Two responses to each of two prompts a step, paid their score less the other response's."""
    config = smoke_config(real_data_dir, tmp_path, "groups", "ppo.steps=2", "ppo.prompts_per_step=2",
                          "ppo.responses_per_prompt=2", 'ppo.score_baseline="leave_one_out"')
    result = stage_rl(config)
    rollouts = [json.loads(line) for line in (result.stage_dir / "rollouts.jsonl").read_text().splitlines()]
    for step in (1, 2):
        prompts = [r["prompt"] for r in rollouts if r["step"] == step]
        assert len(prompts) == 4 and prompts[0] == prompts[1] and prompts[2] == prompts[3] != prompts[0]
    log = [json.loads(line) for line in (result.stage_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2]
    for entry in log:  # the log keeps the scores as paid by the reward, before the baseline
        paid = [r["reward"] for r in rollouts if r["step"] == entry["step"]]
        assert entry["score"] == pytest.approx(sum(paid) / 4, abs=1e-5)


@pytest.mark.integration
def test_smoke_ppo_killed_run_resumes_to_the_same_weights(real_data_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from apirl.train.checkpoints import last_checkpoint

    straight = stage_rl(smoke_config(real_data_dir, tmp_path, "straight"))

    def kill_at_3(step: int) -> None:
        if step == 3:
            raise KeyboardInterrupt("killed at step 3")

    config = smoke_config(real_data_dir, tmp_path, "killed")
    with pytest.raises(KeyboardInterrupt):
        stage_rl(config, on_step=kill_at_3)
    assert last_checkpoint(config.layout.root / "ppo" / "checkpoints").name == "checkpoint-2"
    with pytest.raises(InputError, match="--resume"):
        stage_rl(config)
    resumed = stage_rl(config, resume=True)
    summary = json.loads((resumed.stage_dir / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-2" and summary["steps"] == 4

    a = load_file(straight.stage_dir / "model" / "model.safetensors")
    b = load_file(resumed.stage_dir / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    log_a = (straight.stage_dir / "log.jsonl").read_text()
    assert log_a == (resumed.stage_dir / "log.jsonl").read_text()
    # Every rollout once, the same texts and rewards as the uninterrupted run's (the killed step 3 drawn again).
    assert (straight.stage_dir / "rollouts.jsonl").read_text() == (resumed.stage_dir / "rollouts.jsonl").read_text()
    steps = [json.loads(line)["step"] for line in (resumed.stage_dir / "rollouts.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3, 4] and len(steps) == 4 * steps.count(1)


@pytest.mark.integration
def test_smoke_lora_ppo_via_the_cli_saves_a_merged_checkpoint(real_data_dir: Path, tmp_path: Path) -> None:
    """LoRA: the reference is the policy with its adapters disabled (no copy); the saved policy is merged."""
    from typer.testing import CliRunner

    from apirl.cli import app
    from apirl.models.load import load_model, resolve_model

    config = Path(__file__).parents[1] / "configs" / "smoke.toml"
    overrides = [f'data.data_dir="{real_data_dir}"', f'runs_dir="{tmp_path}"', 'rl.method="lora"', "ppo.steps=2",
                 "ppo.learning_rate=1e-3"]
    args = ["rl", "--config", str(config), "--json"] + [x for o in overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "lora" and summary["steps"] == 2
    log = [json.loads(line) for line in (Path(summary["stage_dir"]) / "log.jsonl").read_text().splitlines()]
    assert log[0]["kl"] == 0.0 and log[1]["kl"] != 0.0  # the adapters start as a no-op, then move off the reference
    model = load_model(resolve_model(str(Path(summary["stage_dir"]) / "model")))
    assert not any("lora" in name for name, _ in model.named_parameters())
