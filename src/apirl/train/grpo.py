"""GRPO and RLOO through TRL: the policy samples a group of `num_generations` completions per train prompt, the
reward of `[rl]` scores them (`apirl.train.rewards`: reward model, tools judge, executability, each a TRL reward
function with its weight), and each completion's advantage is its reward against the rest of its group: the
group mean, divided by a standard deviation (GRPO, `[grpo]`), or the mean of the *other* completions (RLOO,
`[rloo]`). No value function, unlike PPO.

Both sample from plain-format prompts (`###Instruction: ...\\n###Output:`), so a completion ends at M_SFT's EOS
or at `max_completion_length`: GRPO through apirl's engine (`apirl.models.engine.decode`, given to TRL as its
`rollout_func`; each completion seeded by the run's seed, the step and its place in the batch, so a resumed run
draws the same), RLOO with TRL's `model.generate` (TRL 1.16's RLOOTrainer takes no rollout function). With LoRA
(`rl.method = "lora"`) the reference of the KL term is the policy with its adapters disabled; with `beta = 0`
there is no reference at all.

Outputs in `runs/<name>/<grpo|rloo>/`: `log.jsonl` (the Trainer's log history: reward per term, KL, entropy,
clip ratio, completion length...), `rollouts.jsonl` (every scored completion: its text, each reward term),
`tensorboard/`, `summary.json`, `model/` (LoRA merged). Checkpoints every
`save_steps` in `checkpoints/`; `--resume` continues from the last one (the Trainer restores the optimizer,
scheduler and RNG states).
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apirl.rundir import StageResult
from apirl.train.checkpoints import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    base_trainer_kwargs,
    checkpoint_step,
    checkpoint_to_resume,
    save_final_model,
    trained_precision,
    write_log,
    write_summary,
)
from apirl.train.common import (
    RlRun,
    load_policy,
    online_inputs,
    progress_summary,
    reward_summary,
    run_rl_stage,
    train_prompts,
)
from apirl.train.config import GroupFields, GrpoConfig, RlooConfig, lora_config
from apirl.train.rewards import ROLLOUTS, reward_terms, rollout_log, trl_reward_funcs


def trainer_args(table: GroupFields, seed: int, stage_dir: Path) -> Any:
    """TRL's GRPOConfig (a `[grpo]` table) or RLOOConfig (an `[rloo]` table). One optimizer step =
    `prompts_per_step * num_generations` completions, split into `gradient_accumulation_steps` micro-batches."""
    completions = table.prompts_per_step * table.num_generations
    common = dict(
        **base_trainer_kwargs(stage_dir, seed, table.precision),
        max_steps=table.steps,
        per_device_train_batch_size=completions // table.gradient_accumulation_steps,
        gradient_accumulation_steps=table.gradient_accumulation_steps,
        num_generations=table.num_generations,
        max_completion_length=table.max_completion_length,
        temperature=table.temperature,
        top_p=table.top_p,
        learning_rate=table.learning_rate,
        lr_scheduler_type=table.lr_scheduler,
        warmup_ratio=table.warmup_ratio,
        max_grad_norm=table.max_grad_norm,
        beta=table.beta,
        epsilon=table.epsilon,
        num_iterations=table.num_iterations,
        mask_truncated_completions=table.mask_truncated_completions,
        logging_steps=table.logging_steps,
        save_strategy="steps",
        save_steps=table.save_steps,
        save_total_limit=table.save_total_limit,
        gradient_checkpointing=table.gradient_checkpointing,
    )
    if isinstance(table, GrpoConfig):
        from trl import GRPOConfig

        return GRPOConfig(**common, scale_rewards=table.scale_rewards, loss_type=table.loss_type)
    assert isinstance(table, RlooConfig)
    from trl import RLOOConfig

    return RLOOConfig(**common, normalize_advantages=table.normalize_advantages)


def engine_rollouts(seed: int) -> Any:
    """TRL's `rollout_func` for GRPO: one completion per prompt of the batch (TRL has already repeated each prompt
    `num_generations` times), sampled by apirl's engine at the trainer's temperature, top-p and
    `max_completion_length`, ending at the ids TRL ends a completion at. The old log-probabilities are left to
    TRL (`logprobs: None`): it computes them with the same forward it trains with."""

    def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
        from apirl.models.engine import Sampling, decode, eos_token_ids
        from apirl.models.generation import row_seed

        tokenizer, args = trainer.processing_class, trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        prompt_ids = tokenizer(text=prompts)["input_ids"]
        step = trainer.state.global_step
        seeds = [row_seed(seed, f"grpo:{step}:{i}") for i in range(len(prompts))]
        completions = decode(model, prompt_ids, max_new_tokens=args.max_completion_length,
                             eos_ids=getattr(trainer, "eos_token_ids", None) or eos_token_ids(model, tokenizer),
                             batch_size=len(prompts),
                             sampling=Sampling(True, args.temperature, args.top_p), seeds=seeds,
                             pad_id=tokenizer.pad_token_id)
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "logprobs": None}

    return rollout


def train_group(table: GroupFields, run: RlRun, stage_dir: Path, *, resume: bool = False,
                callbacks: Sequence[Any] = (), fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run GRPO or RLOO and save the final policy into `stage_dir/model`; returns the summary (also
    `summary.json`)."""
    from datasets import Dataset

    from apirl.models.load import default_device

    algorithm = run.algorithm
    prompts = train_prompts(run.layout)
    checkpoints = stage_dir / CHECKPOINTS_DIR
    resume_from = checkpoint_to_resume(checkpoints, resume, fingerprint)
    policy, tokenizer, source = load_policy(run)  # left padding, as TRL requires for sampling
    extra: dict[str, Any] = {}
    if algorithm == "grpo":
        from trl import GRPOTrainer as Trainer

        extra["rollout_func"] = engine_rollouts(run.seed)
    else:
        from trl import RLOOTrainer as Trainer

    started = time.perf_counter()
    from apirl.models.engine import eos_token_ids

    with reward_terms(run.rl, run.execution, run.layout, default_device()) as terms, \
            rollout_log(stage_dir / ROLLOUTS, checkpoint_step(resume_from)) as rollouts:
        funcs, weights = trl_reward_funcs(terms, rollouts, eos_token_ids(policy, tokenizer))
        args = trainer_args(table, run.seed, stage_dir)
        args.reward_weights = weights
        with warnings.catch_warnings():  # rollout_func is "experimental" in TRL: pinned by constraints.txt, tested
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            trainer = Trainer(
                model=policy,
                reward_funcs=funcs,
                args=args,
                train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                processing_class=tokenizer,
                peft_config=lora_config(run.rl),
                callbacks=list(callbacks),
                **extra,
            )
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    save_final_model(trainer.model, tokenizer, stage_dir / MODEL_DIR, run.rl.method == "lora")
    write_log(stage_dir, trainer.state.log_history)
    log = [entry for entry in trainer.state.log_history if "reward" in entry]
    summary = {
        "algorithm": algorithm, "policy": source.spec, "reward": reward_summary(run), "method": run.rl.method,
        "steps": trainer.state.global_step, "resumed_from": resume_from.name if resume_from else None,
        **progress_summary(log, reward="reward", kl="kl", length="completions/mean_length",
                           terms={term.name: f"rewards/{term.name}/mean" for term in terms}),
        "train_seconds_this_run": round(time.perf_counter() - started, 1), "precision": trained_precision(trainer),
    }
    write_summary(stage_dir, summary)
    shutil.rmtree(checkpoints)
    return summary


def run_group(table: GroupFields, run: RlRun, *, resume: bool = False, force: bool = False,
              callbacks: Sequence[Any] = ()) -> StageResult[dict[str, Any]]:
    """The GRPO or RLOO stage (`runs/<name>/<grpo|rloo>/`, `run.algorithm`): trains unless an identical run
    finished."""

    def train(directory: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return train_group(table, run, directory, resume=resume, callbacks=callbacks, fingerprint=fingerprint)

    return run_rl_stage(run, table, online_inputs(run), train, force=force)
