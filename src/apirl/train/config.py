"""Config of supervised fine-tuning (`apirl sft`, the `[sft]` table) and of the reward model (`apirl reward`,
the `[reward]` table)."""

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
