"""PPO fine-tuning of the policy against the reward model (Dutta et al. 2024, after Ziegler et al. 2019): one recipe,
readable top to bottom. The math lives in `apirl.train.ppo_math` (tested by hand); this file is the plumbing.

One step:

1. sample `prompts_per_step` prompts of the data stage's train split (seeded by run seed and step), each
   repeated `responses_per_prompt` times;
2. sample one response for each from the policy with the one sampler of `apirl.models.engine` (left-padded prompts,
   KV cache, a `torch.Generator` seeded by run seed and step, temperature and top-p; finished rows stay in the
   batch, so the draws are those of the whole batch), truncated after its first EOS; `ended` says which
   responses produced one;
3. one no-grad forward pass of prompt + response through the policy (old log-probs, values) and the frozen
   reference (reference log-probs): the logits at position t predict token t + 1, so the response's log-probs are
   read from positions P - 1 .. P + T - 2, and the logits are divided by the sampling temperature;
4. score = the reward model's logit for (prompt, response text) (or a rule reward), less the mean score of the
   prompt's other responses with `score_baseline = "leave_one_out"`; token rewards = -kl_coef *
   KL per token + the score (minus `eos_missing_penalty` when cut off) at the last token; GAE; whitened advantages;
5. `ppo_epochs` passes of shuffled minibatches: clipped policy loss + vf_coef * clipped value loss, grad clipping,
   an optimizer step each; then the KL controller's update.

Choices, and why:

* The value function is a linear head (hidden -> 1, initialised to zero, so the first values are 0) on the
  policy's last hidden state: a shared trunk costs no second model. The value loss reaches the trunk too,
  weighted by `vf_coef`, so a small `vf_coef` keeps the value regression from dragging the policy around. The
  head has its own optimizer and learning rate (`value_learning_rate`): it starts from scratch.
* The reference model: with LoRA, the policy's base with the adapters disabled (`disable_adapter()`), no second
  copy; with full fine-tuning, a frozen deep copy of the starting policy.
* The model stays in eval mode throughout (no dropout): the old and new log-probs of step 3 and 5 must come from
  the same function, or the ratio is noise from the start (TRL does the same). LoRA's dropout is thus inactive.
* top_p < 1 samples from a truncated distribution while the log-probs are those of the full tempered softmax (as
  in TRL); keep top_p = 1 for an exact ratio.
* Every source of randomness is explicit: prompts from `random.Random(seed, step)`, sampling and minibatch
  shuffling from a `torch.Generator` seeded from (seed, step). A checkpoint (weights or adapters, value head,
  both optimizers, KL controller, step, RNG states for good measure) therefore resumes to exactly the weights an
  uninterrupted run ends with.

Outputs in `runs/<name>/ppo/`: `log.jsonl` (one line per step), `rollouts.jsonl` (every scored rollout: its
text, each reward term), `tensorboard/`, `summary.json`, `model/` (the
final policy as a plain checkpoint, LoRA merged: `apirl generate --model runs/<name>/ppo/model`) and
`value_head.pt`.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.jsonl import iter_jsonl, json_line
from apirl.models.engine import Sampling, decode, eos_token_ids, position_ids
from apirl.models.generation import cut_at_stop
from apirl.rundir import StageResult
from apirl.train import ppo_math
from apirl.train.checkpoints import (
    CHECKPOINTS_DIR,
    LOG,
    MODEL_DIR,
    checkpoint_to_resume,
    save_final_model,
    write_summary,
)
from apirl.train.common import (
    RlRun,
    load_policy,
    online_inputs,
    policy_source,
    progress_summary,
    reward_summary,
    run_rl_stage,
    train_prompts,
)
from apirl.train.config import PpoConfig, lora_config
from apirl.train.rewards import ROLLOUTS, combine, reward_terms, rollout_log, term_means

STATE_FILE = "state.pt"
DONE_FILE = "trainer_state.json"  # written last in a checkpoint: `last_checkpoint` trusts only complete ones

StepHook = Callable[[int], None]


# ---------------------------------------------------------------------------------------------------------------
# Models


@dataclass
class Models:
    """The trained policy, its value head, and how to run the frozen reference."""

    policy: Any
    value_head: Any
    reference: Any  # a frozen copy (full fine-tuning) or None (LoRA: the policy with adapters disabled)
    tokenizer: Any
    eos_ids: list[int]

    def reference_context(self) -> Any:
        """A context in which `self.reference_model` computes the reference's outputs."""
        import contextlib

        return self.policy.disable_adapter() if self.reference is None else contextlib.nullcontext()

    @property
    def reference_model(self) -> Any:
        return self.policy if self.reference is None else self.reference


def load_models(run: RlRun, device: str) -> Models:
    import torch

    policy, tokenizer, _ = load_policy(run, device)  # fp32; the tokenizer pads on the left
    eos_ids = eos_token_ids(policy, tokenizer)
    reference = None
    if run.rl.method == "lora":
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(run.rl))
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.eval()  # no dropout: see the module docstring
    value_head = torch.nn.Linear(policy.config.hidden_size, 1).to(device)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    return Models(policy, value_head, reference, tokenizer, eos_ids)


# ---------------------------------------------------------------------------------------------------------------
# Rollouts


def step_seed(seed: int, step: int) -> int:
    """The seed of everything random in one step: a function of (run seed, step) only, so a resumed run
    replays the same step exactly."""
    return (seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1)


def pick_prompts(prompts: Sequence[str], count: int, seed: int, step: int) -> list[str]:
    rng = random.Random(f"apirl-ppo:{seed}:{step}")
    return rng.sample(list(prompts), count) if count <= len(prompts) else rng.choices(list(prompts), k=count)


@dataclass
class Rollout:
    """A batch of B prompts (left-padded to P) and their sampled responses (right-padded to T)."""

    prompts: list[str]
    prompt_ids: Any  # (B, P)
    prompt_mask: Any  # (B, P)
    response_ids: Any  # (B, T); padding after the first EOS
    response_mask: Any  # (B, T) float: 1 up to and including the first EOS
    ended: Any  # (B,) bool: the response produced an EOS
    texts: list[str]


def encode_prompts(tokenizer: Any, prompts: Sequence[str], max_length: int, device: Any) -> tuple[Any, Any]:
    """Left-padded prompt ids and mask; a prompt longer than max_length keeps its last max_length tokens."""
    import torch

    ids = [tokenizer(p)["input_ids"][-max_length:] for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return input_ids, mask


def sample_responses(model: Any, prompt_ids: Any, prompt_mask: Any, *, max_new_tokens: int, temperature: float,
                     top_p: float, eos_ids: Sequence[int], pad_id: int, generator: Any) -> tuple[Any, Any, Any]:
    """(response ids (B, T), response mask (B, T), ended (B,)) from the engine (softmax(logits / temperature),
    nucleus-filtered; row i seeded by the i-th draw from `generator`, so the rollout is fixed by the generator's
    state, which the checkpoint keeps). A row stops at its first EOS (a real token; `pad_id` follows); T is the
    longest row, at most max_new_tokens."""
    import torch

    prompts = [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask, strict=True)]
    seeds = torch.randint(0, 2**62, (len(prompts),), generator=generator, device=generator.device).tolist()
    rows = decode(model, prompts, max_new_tokens=max_new_tokens, eos_ids=eos_ids, batch_size=len(prompts),
                  sampling=Sampling(True, temperature, top_p), seeds=seeds, pad_id=pad_id)
    width = max(len(row) for row in rows)
    device = prompt_ids.device
    response_ids = torch.tensor([row + [pad_id] * (width - len(row)) for row in rows], device=device)
    response_mask = torch.tensor([[1.0] * len(row) + [0.0] * (width - len(row)) for row in rows], device=device)
    ended = torch.tensor([row[-1] in eos_ids for row in rows], device=device)
    return response_ids, response_mask, ended


def rollout(models: Models, prompts: list[str], ppo: PpoConfig, generator: Any) -> Rollout:
    device = next(models.policy.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(models.tokenizer, prompts, ppo.max_prompt_length, device)
    response_ids, response_mask, ended = sample_responses(
        models.policy, prompt_ids, prompt_mask, max_new_tokens=ppo.response_length, temperature=ppo.temperature,
        top_p=ppo.top_p, eos_ids=models.eos_ids, pad_id=models.tokenizer.pad_token_id, generator=generator)
    # The reward judges the answer as `apirl generate` would return it: special tokens dropped, cut at a stop
    # string (the tokens after one still count in the KL and the log-probs).
    texts = [cut_at_stop(models.tokenizer.decode(row[mask.bool()], skip_special_tokens=True))
             for row, mask in zip(response_ids, response_mask, strict=True)]
    return Rollout(prompts, prompt_ids, prompt_mask, response_ids, response_mask, ended, texts)


def forward_response(model: Any, prompt_ids: Any, prompt_mask: Any, response_ids: Any, response_mask: Any,
                     temperature: float, value_head: Any = None) -> tuple[Any, Any, Any]:
    """(logits (B, T, V) / temperature, log-probs (B, T) of the response tokens, values (B, T) or None) from
    one forward pass of prompt + response.

    The shift: the logits at input position i predict token i + 1, so response token t (at input position
    P + t) is predicted by position P + t - 1: the slice P - 1 .. P + T - 2. The values use the same positions
    (the value of the state in which token t is chosen). Padding after an EOS is masked out of the attention."""
    import torch

    width = prompt_ids.shape[1]
    length = response_ids.shape[1]
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention = torch.cat([prompt_mask, response_mask.long()], dim=1)
    # Only the last T + 1 positions' logits are computed (the prompt's would be (B, P, V) of waste); the slice
    # P - 1 .. P + T - 2 is their first T.
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids(attention),
                output_hidden_states=value_head is not None, logits_to_keep=length + 1)
    logits = out.logits[:, :length].float() / temperature
    logp = ppo_math.logprobs_from_logits(logits, response_ids)
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, width - 1: width + length - 1]
        values = value_head(hidden).squeeze(-1).float()
    return logits, logp, values


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def trainable_state(model: Any) -> dict[str, Any]:
    """The weights the optimizer changes (all of them, or only the adapters), on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, step: int, models: Models, optimizers: Sequence[Any], kl_ctl: Any) -> None:
    import numpy as np
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step, "policy": trainable_state(models.policy), "value_head": models.value_head.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers], "kl_controller": kl_ctl.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    torch.save(state, directory / STATE_FILE)
    (directory / DONE_FILE).write_text(json.dumps({"global_step": step}) + "\n", encoding="utf-8")


def load_checkpoint(directory: Path, models: Models, optimizers: Sequence[Any], kl_ctl: Any) -> int:
    """Restore a checkpoint in place; returns the number of steps it had done."""
    import numpy as np
    import torch

    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    result = models.policy.load_state_dict(state["policy"], strict=False)
    if result.unexpected_keys:
        raise InputError(f"checkpoint {directory} does not fit the policy: unexpected {result.unexpected_keys[:3]}")
    models.value_head.load_state_dict(state["value_head"])
    for optimizer, saved in zip(optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    kl_ctl.load_state_dict(state["kl_controller"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])


# ---------------------------------------------------------------------------------------------------------------
# The loop


def ppo_step(models: Models, batch: Rollout, scores: Any, ppo: PpoConfig, kl_ctl: Any,
             optimizers: Sequence[Any], generator: Any) -> dict[str, float]:
    """Steps 3-5 of the module docstring for one rollout batch; returns the step's stats."""
    import torch

    mask = batch.response_mask
    with torch.no_grad():
        _, old_logp, old_values = forward_response(models.policy, batch.prompt_ids, batch.prompt_mask,
                                                   batch.response_ids, mask, ppo.temperature, models.value_head)
        with models.reference_context():
            _, ref_logp, _ = forward_response(models.reference_model, batch.prompt_ids, batch.prompt_mask,
                                              batch.response_ids, mask, ppo.temperature)
        kl = ppo_math.kl_penalty(old_logp, ref_logp, ppo.kl_kind)
        kl_k1 = torch.where(mask.bool(), old_logp - ref_logp, torch.zeros_like(old_logp))
        paid = (ppo_math.leave_one_out(scores, ppo.responses_per_prompt) if ppo.score_baseline == "leave_one_out"
                else scores)
        rewards = ppo_math.token_rewards(paid, kl, mask, kl_ctl.coef, ppo.eos_missing_penalty, batch.ended)
        if ppo.whiten_rewards:
            rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = ppo_math.gae(rewards, old_values, mask, ppo.gamma, ppo.lam)
        advantages = ppo_math.masked_whiten(advantages, mask)

    trainable = [p for p in models.policy.parameters() if p.requires_grad] + list(models.value_head.parameters())
    size = mask.shape[0]
    totals: dict[str, list[float]] = {}
    for _ in range(ppo.ppo_epochs):
        order = torch.randperm(size, generator=generator, device=generator.device).to(mask.device)
        for start in range(0, size, ppo.minibatch_size):
            rows = order[start:start + ppo.minibatch_size]
            logits, logp, values = forward_response(
                models.policy, batch.prompt_ids[rows], batch.prompt_mask[rows], batch.response_ids[rows],
                mask[rows], ppo.temperature, models.value_head)
            pg_loss, pg_stats = ppo_math.policy_loss(logp, old_logp[rows], advantages[rows], mask[rows], ppo.clip_eps)
            vf_loss, vf_stats = ppo_math.value_loss(values, old_values[rows], returns[rows], mask[rows],
                                                    ppo.value_clip)
            loss = pg_loss + ppo.vf_coef * vf_loss
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, ppo.max_grad_norm)
            for optimizer in optimizers:
                optimizer.step()
            stats = {"policy_loss": pg_loss, "value_loss": vf_loss, "clip_fraction": pg_stats["clip_fraction"],
                     "approx_kl": pg_stats["approx_kl"], "value_clip_fraction": vf_stats["clip_fraction"],
                     "entropy": ppo_math.entropy_from_logits(logits.detach(), mask[rows])}
            for key, value in stats.items():
                totals.setdefault(key, []).append(float(value.detach()))
    result = {key: sum(values) / len(values) for key, values in totals.items()}
    kl_per_sequence = kl_k1.sum(dim=1).mean().item()
    result.update({
        "score": scores.mean().item(), "kl": kl_per_sequence, "kl_coef": kl_ctl.coef,
        "response_length": mask.sum(dim=1).mean().item(), "ended": batch.ended.float().mean().item(),
        "reward_with_penalties": (rewards * mask).sum(dim=1).mean().item(),
        "explained_variance": float(ppo_math.explained_variance(old_values, returns, mask)),
    })
    kl_ctl.update(kl_per_sequence, size)
    return result


def train_ppo(ppo: PpoConfig, run: RlRun, stage_dir: Path, *, resume: bool = False,
              on_step: StepHook | None = None, fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run PPO and save the final policy into `stage_dir/model`; returns the summary (also `summary.json`).

    `on_step(step)` is called after each step's checkpoint (tests raise from it to simulate a kill)."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from apirl.models.load import default_device

    device = default_device()
    prompts = train_prompts(run.layout)
    checkpoints = stage_dir / CHECKPOINTS_DIR
    resume_from = checkpoint_to_resume(checkpoints, resume, fingerprint)
    torch.manual_seed(run.seed)
    models = load_models(run, device)
    optimizers = [
        torch.optim.AdamW([p for p in models.policy.parameters() if p.requires_grad], lr=ppo.learning_rate,
                          weight_decay=0.0),
        torch.optim.AdamW(models.value_head.parameters(), lr=ppo.value_learning_rate, weight_decay=0.0),
    ]
    kl_ctl: Any = (ppo_math.AdaptiveKLController(ppo.kl_coef, ppo.kl_target, ppo.kl_horizon) if ppo.adaptive_kl
                   else ppo_math.FixedKLController(ppo.kl_coef))
    start = load_checkpoint(resume_from, models, optimizers, kl_ctl) if resume_from else 0

    log_path = stage_dir / LOG
    kept = [e for _, e in iter_jsonl(log_path)] if start and log_path.is_file() else []
    log = [e for e in kept if e["step"] <= start]
    writer = SummaryWriter(str(stage_dir / "tensorboard"), purge_step=start + 1 if start else None)
    started = time.perf_counter()
    # The reward's executability sandbox, when it has one, lives as long as the loop.
    with reward_terms(run.rl, run.execution, run.layout, device) as terms, \
            rollout_log(stage_dir / ROLLOUTS, start) as rollouts, log_path.open("w", encoding="utf-8") as handle:
        for entry in log:
            handle.write(json_line(entry))
        for step in range(start, ppo.steps):
            generator = torch.Generator(device=device).manual_seed(step_seed(run.seed, step))
            picked = pick_prompts(prompts, ppo.prompts_per_step, run.seed, step)
            batch = rollout(models, [p for p in picked for _ in range(ppo.responses_per_prompt)], ppo, generator)
            totals, values = combine(terms, batch.prompts, batch.texts)
            rollouts.write(step + 1, batch.prompts, batch.texts, values, {t.name: t.weight for t in terms},
                           batch.ended.tolist())
            scores = torch.tensor(totals, dtype=torch.float32, device=device)
            stats = ppo_step(models, batch, scores, ppo, kl_ctl, optimizers, generator)
            if len(terms) > 1:
                stats.update({f"reward_{name}": value for name, value in term_means(values).items()})
            entry = {"step": step + 1, **{k: round(v, 6) for k, v in stats.items()}}
            log.append(entry)
            handle.write(json_line(entry))
            handle.flush()
            for key, value in stats.items():
                writer.add_scalar(f"ppo/{key}", value, step + 1)
            if (step + 1) % ppo.save_steps == 0 and step + 1 < ppo.steps:
                save_checkpoint(checkpoints / f"checkpoint-{step + 1}", step + 1, models, optimizers, kl_ctl)
            if on_step is not None:
                on_step(step + 1)
    writer.close()

    save_final_model(models.policy, models.tokenizer, stage_dir / MODEL_DIR, run.rl.method == "lora")
    torch.save(models.value_head.state_dict(), stage_dir / "value_head.pt")
    summary = {
        "algorithm": "ppo", "policy": policy_source(run).spec, "reward": reward_summary(run),
        "method": run.rl.method,
        "steps": len(log), "resumed_from": resume_from.name if resume_from else None,
        # PPO's log says `score` and `reward_<term>` (the latter only with more than one term).
        **progress_summary(log, reward="score", kl="kl", length="response_length",
                           terms={term.name: f"reward_{term.name}" for term in terms}),
        "final_kl_coef": kl_ctl.coef,
        "train_seconds_this_run": round(time.perf_counter() - started, 1),
        "precision": "fp32",  # PPO has no bf16 option yet
    }
    write_summary(stage_dir, summary)
    shutil.rmtree(checkpoints)
    return summary


def run_ppo(ppo: PpoConfig, run: RlRun, *, resume: bool = False, force: bool = False,
            on_step: StepHook | None = None) -> StageResult[dict[str, Any]]:
    """The PPO stage (`runs/<name>/ppo/`): trains unless an identical run finished."""

    def train(directory: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return train_ppo(ppo, run, directory, resume=resume, on_step=on_step, fingerprint=fingerprint)

    return run_rl_stage(run, ppo, online_inputs(run), train, force=force)
