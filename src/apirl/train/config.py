"""Config of supervised fine-tuning (`apirl sft`): the `[sft]` table."""

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
