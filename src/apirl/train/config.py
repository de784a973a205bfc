"""Config of supervised fine-tuning (`apirl sft`, the `[sft]` table) and of the reward model (`apirl reward`,
the `[reward]` table), and of RL (`apirl rl`, the `[rl]` and `[ppo]` tables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from apirl.config_base import StrictModel


class SftConfig(StrictModel):
    """How M_SFT is trained from `[model]` on the data stage's train split (loss on the answer only).

    One optimizer step sees `batch_size * gradient_accumulation_steps` examples. `max_steps` > 0 overrides
    `epochs`. `train_limit` / `val_limit` > 0 train / validate on a seeded random subset (the quick presets).
    `precision = "auto"` is bf16 autocast on a GPU that supports it, fp32 otherwise.
    """

    method: Literal["full", "lora"] = "full"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    learning_rate: float = Field(5e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    max_grad_norm: float = Field(1.0, gt=0)
    logging_steps: int = Field(5, ge=1)
    eval_steps: int = Field(50, ge=1)
    save_steps: int = Field(50, ge=1)
    save_total_limit: int = Field(2, ge=1)
    train_limit: int = Field(0, ge=0)
    val_limit: int = Field(0, ge=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _check(self) -> SftConfig:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return self


class RewardModelConfig(StrictModel):
    """How the reward model is trained from the feedback stage's output (`apirl reward`): the `[reward]` table.

    Named so as not to clash with TRL's `RewardConfig`. `kind`:

    - `classifier` (the paper): a sequence classifier with one logit, trained with binary cross-entropy on the
      "acceptable" labels of `feedback.jsonl`; the logit is the reward.
    - `pairwise`: Bradley-Terry on `pairs.jsonl` (TRL's `RewardTrainer`): -log sigmoid(r(chosen) - r(rejected)).

    `base` empty means M_SFT (`runs/<name>/sft/model`); any model spec of `apirl.models.load` works. A causal
    LM gets a fresh, seeded score head. `heldout_fraction` of the feedback's prompts (a seeded split by
    example_id, so all samples of a prompt fall on one side) are held out of training for the accuracy and the
    AUC. `gold_vs_mutants_limit` > 0 checks only the first N examples of `feedback.calibrate_split` for the rate
    at which gold code outscores its mutants (0 = all). Texts longer than `max_length` tokens keep their last
    `max_length` tokens (the reward is read at the last one). The other keys mean what they mean in `[sft]`.
    """

    kind: Literal["classifier", "pairwise"] = "classifier"
    base: str = ""
    method: Literal["full", "lora"] = "full"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    learning_rate: float = Field(2e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=16)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_grad_norm: float = Field(1.0, gt=0)
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
    logging_steps: int = Field(5, ge=1)
    eval_steps: int = Field(50, ge=1)
    save_steps: int = Field(50, ge=1)
    save_total_limit: int = Field(2, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    gold_vs_mutants_limit: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> RewardModelConfig:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return self


class PpoConfig(StrictModel):
    """PPO fine-tuning of the policy against the reward model (`apirl rl`, the `[ppo]` table; Dutta et al. 2024).

    `policy` empty means M_SFT (`runs/<name>/sft/model`); any model spec of `apirl.models.load` works. `reward_model`
    empty means `runs/<name>/reward/model`; `rule:<name>` picks a built-in rule reward instead (`rule:short`,
    `rule:long`, `rule:contains:<text>`: cheap, for tests). One step samples `prompts_per_step` train prompts, one
    response each of at most `response_length` tokens, then runs `ppo_epochs` passes of shuffled minibatches of
    `minibatch_size` responses. The reward's KL penalty uses the `kl_kind` estimator with coefficient `kl_coef`
    (adapted towards `kl_target` over `kl_horizon` samples when `adaptive_kl`); a response cut off by the length
    limit loses `eos_missing_penalty`. Prompts longer than `max_prompt_length` tokens keep their last tokens.
    Training runs in fp32 (no bf16 option yet). The seed is the run's `seed`.
    """

    policy: str = ""
    reward_model: str = ""
    method: Literal["full", "lora"] = "full"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    steps: int = Field(100, ge=1)
    prompts_per_step: int = Field(16, ge=2)
    response_length: int = Field(128, ge=1)
    max_prompt_length: int = Field(512, ge=8)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    ppo_epochs: int = Field(4, ge=1)
    minibatch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-5, gt=0)
    value_learning_rate: float = Field(1e-4, gt=0)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    clip_eps: float = Field(0.2, gt=0, lt=1)
    value_clip: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    kl_kind: Literal["k1", "k2", "k3"] = "k1"
    kl_coef: float = Field(0.05, ge=0)
    adaptive_kl: bool = False
    kl_target: float = Field(6.0, gt=0)
    kl_horizon: float = Field(10000.0, gt=0)
    eos_missing_penalty: float = Field(1.0, ge=0)
    whiten_rewards: bool = False
    max_grad_norm: float = Field(1.0, gt=0)
    save_steps: int = Field(20, ge=1)
    reward_batch_size: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _check(self) -> PpoConfig:
        if self.minibatch_size > self.prompts_per_step:
            raise ValueError(f"minibatch_size ({self.minibatch_size}) exceeds prompts_per_step "
                             f"({self.prompts_per_step})")
        return self


class RlConfig(StrictModel):
    """Which RL algorithm `apirl rl` runs (the `[rl]` table). Only `ppo` exists so far; the others are reserved."""

    algorithm: Literal["ppo", "grpo", "rloo", "dpo"] = "ppo"
