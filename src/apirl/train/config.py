"""Config of the training stages: supervised fine-tuning (`[sft]`), the reward model (`[reward]`) and RL
(`[rl]`: what is trained against what; `[ppo]`, `[grpo]`, `[rloo]`, `[dpo]`: each algorithm's own knobs).

Shared keys live in small bases (`LoraFields`, `TrainerFields`) so that a key means the same thing in every
table; a table only redeclares a field to change its default."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from apirl.config_base import StrictModel


class LoraFields(StrictModel):
    """Full fine-tuning or LoRA (peft), the same keys in every training table: `method`, `lora_r`,
    `lora_alpha`, `lora_dropout`, `lora_target_modules` ("all-linear" or module names)."""

    method: Literal["full", "lora"] = "full"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"


def lora_config(table: LoraFields, task_type: str = "CAUSAL_LM") -> Any:
    """The peft `LoraConfig` of a table whose method is "lora", else None (full fine-tuning). With task_type
    SEQ_CLS (the reward model) peft trains the fresh score head in full as well."""
    if table.method != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(r=table.lora_r, lora_alpha=table.lora_alpha, lora_dropout=table.lora_dropout,
                      target_modules=table.lora_target_modules, task_type=task_type)


class HfTrainerFields(StrictModel):
    """The optimizer, logging and checkpoint keys of every stage run by a Hugging Face (TRL) Trainer: SFT, the
    reward model, DPO, GRPO, RLOO. `precision = "auto"` is bf16 autocast where the device computes bf16 natively
    (a GPU that supports it, a CPU with AVX-512 BF16 or AMX: `apirl.hardware`), fp32 otherwise; checkpoints
    every `save_steps` optimizer steps, the last `save_total_limit` kept."""

    learning_rate: float = Field(5e-5, gt=0)
    gradient_accumulation_steps: int = Field(1, ge=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1)
    save_total_limit: int = Field(2, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False


class TrainerFields(HfTrainerFields):
    """The keys of the stages that train on a fixed dataset (SFT, reward model, DPO): one optimizer step sees
    `batch_size * gradient_accumulation_steps` examples; `max_steps` > 0 overrides `epochs`."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(512, ge=16)
    weight_decay: float = Field(0.0, ge=0)
    eval_steps: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _check_steps(self) -> TrainerFields:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return self


class SftConfig(TrainerFields, LoraFields):
    """How M_SFT is trained from `[model]` on the data stage's train split (loss on the answer only).
    `train_limit` / `val_limit` > 0 train / validate on a seeded random subset (the quick presets).

    `batching`: `length_grouped` draws each batch from examples of similar length (the Trainer's
    `group_by_length`), so little of a padded batch is padding; `packed` is TRL's best-fit-decreasing packing,
    padding-free: examples share rows of `max_length` tokens and a batch is one flattened sequence, each example
    attending only to itself (transformers masks by the position ids; on a CPU's SDPA that mask is applied to
    the whole flattened square, so attention costs more than in a padded batch); `padded` is random batches.
    With `packed`, `batch_size` counts rows of `max_length` tokens, not examples. `benchmarks/throughput.py`
    measures the three.

    `curve_steps` > 0 draws the learning curve (`apirl.train.curve`): before the first step and every
    `curve_steps` steps, greedy answers to the val questions (the first `curve_limit`; 0 = all, decoded up to
    `curve_max_new_tokens` tokens) scored for AST accuracy, hallucination and strict accuracy."""

    train_limit: int = Field(0, ge=0)
    val_limit: int = Field(0, ge=0)
    batching: Literal["length_grouped", "packed", "padded"] = "length_grouped"
    curve_steps: int = Field(0, ge=0)
    curve_limit: int = Field(0, ge=0)
    curve_max_new_tokens: int = Field(96, ge=8)
    curve_batch_size: int = Field(64, ge=1)


class RewardModelConfig(TrainerFields, LoraFields):
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
    `max_length` tokens (the reward is read at the last one). `mutant_negatives` > 0 adds, for each acceptable
    training sample, up to that many mutants of its own code as unacceptable samples (classifier) or as rejected
    against it (pairwise); the held-out feedback and the gold-vs-mutants check stay as they are.
    """

    kind: Literal["classifier", "pairwise"] = "classifier"
    base: str = ""
    learning_rate: float = Field(2e-5, gt=0)
    max_length: int = Field(1024, ge=16)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
    gold_vs_mutants_limit: int = Field(0, ge=0)
    mutant_negatives: int = Field(0, ge=0)


class RlConfig(LoraFields):
    """What RL trains and against what, whichever the algorithm (`apirl rl`, the `[rl]` table).

    `algorithm`: `ppo` (ours, `[ppo]`), `grpo` / `rloo` (TRL, `[grpo]` / `[rloo]`) or `dpo` (TRL on the feedback
    stage's `pairs.jsonl`, `[dpo]`). `policy` empty means M_SFT (`runs/<name>/sft/model`); any model spec of
    `apirl.models.load` works; `method` / `lora_*`: full fine-tuning or LoRA of the policy (with LoRA the
    reference is the same weights with the adapters off).

    The reward of the online algorithms (ppo, grpo, rloo) is a weighted sum of terms in [0, 1] or logits:
    `reward_model_weight` * the reward model's logit (`reward_model` empty = `runs/<name>/reward/model`;
    `rule:<name>` = a built-in rule reward, cheap, for tests) + `tools_weight` * the share of the program-analysis
    questions the tools judge answers yes (unknown counts half) + `exec_weight` * 1 if the code runs in the
    executability harness (bound mode), else 0. A weight of 0 leaves its term out (nothing loaded, nothing run).
    """

    algorithm: Literal["ppo", "grpo", "rloo", "dpo"] = "ppo"
    policy: str = ""
    reward_model: str = ""
    reward_model_weight: float = Field(1.0, ge=0)
    tools_weight: float = Field(0.0, ge=0)
    exec_weight: float = Field(0.0, ge=0)
    reward_batch_size: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _some_reward(self) -> RlConfig:
        if self.algorithm != "dpo" and not (self.reward_model_weight or self.tools_weight or self.exec_weight):
            raise ValueError(f"{self.algorithm} needs a reward: every reward weight is 0")
        return self


class PpoConfig(StrictModel):
    """PPO fine-tuning of the policy against the reward model (`apirl rl`, the `[ppo]` table; Dutta et al. 2024).

    The policy, its LoRA and the reward are the `[rl]` table's. One step samples `prompts_per_step` train prompts,
    `responses_per_prompt` responses each of at most `response_length` tokens, then runs `ppo_epochs` passes of
    shuffled minibatches of `minibatch_size` responses. `score_baseline = "leave_one_out"` (with two or more
    responses per prompt) pays each response its score less the mean of its prompt's other responses. The
    reward's KL penalty uses the `kl_kind` estimator with coefficient `kl_coef` (adapted towards `kl_target` over
    `kl_horizon` samples when `adaptive_kl`); a response cut off by the length limit loses `eos_missing_penalty`.
    Prompts longer than `max_prompt_length` tokens keep their last tokens. Training runs in fp32 (no bf16 option
    yet). The seed is the run's `seed`.
    """

    steps: int = Field(100, ge=1)
    prompts_per_step: int = Field(16, ge=1)
    responses_per_prompt: int = Field(1, ge=1)
    score_baseline: Literal["none", "leave_one_out"] = "none"
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

    @model_validator(mode="after")
    def _check(self) -> PpoConfig:
        rollouts = self.prompts_per_step * self.responses_per_prompt
        if rollouts < 2:
            raise ValueError("a step needs at least 2 rollouts (prompts_per_step x responses_per_prompt)")
        if self.minibatch_size > rollouts:
            raise ValueError(f"minibatch_size ({self.minibatch_size}) exceeds the rollouts of a step "
                             f"(prompts_per_step x responses_per_prompt = {rollouts})")
        if self.score_baseline == "leave_one_out" and self.responses_per_prompt < 2:
            raise ValueError("score_baseline = \"leave_one_out\" needs responses_per_prompt >= 2")
        return self


class GroupFields(HfTrainerFields):
    """What GRPO and RLOO share (TRL's trainers; `[grpo]` and `[rloo]`): per optimizer step, `prompts_per_step`
    train prompts, `num_generations` sampled completions each (the group whose mean is the baseline), at most
    `max_completion_length` new tokens. `beta` is the KL coefficient against the reference (0: no reference
    model at all), `epsilon` the clipping range, `num_iterations` the passes over each batch of completions.
    `mask_truncated_completions` drops completions cut off by the length limit from the loss."""

    steps: int = Field(50, ge=1)
    prompts_per_step: int = Field(4, ge=1)
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(256, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    learning_rate: float = Field(1e-6, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "constant"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    beta: float = Field(0.04, ge=0)
    epsilon: float = Field(0.2, gt=0, lt=1)
    num_iterations: int = Field(1, ge=1)
    mask_truncated_completions: bool = False
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _check_batch(self) -> GroupFields:
        completions = self.prompts_per_step * self.num_generations
        if completions % self.gradient_accumulation_steps:
            raise ValueError(f"prompts_per_step * num_generations ({completions}) must be divisible by "
                             f"gradient_accumulation_steps ({self.gradient_accumulation_steps})")
        return self


class GrpoConfig(GroupFields):
    """GRPO (Shao et al. 2024) through TRL's `GRPOTrainer`: the `[grpo]` table. `scale_rewards`: divide the
    group-centred rewards by the group's (`group`) or the batch's (`batch`) standard deviation, or not (`none`,
    Dr. GRPO); `loss_type` as in TRL (`dapo` normalises by the batch's tokens, `grpo` per sequence)."""

    scale_rewards: Literal["group", "batch", "none"] = "group"
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"


class RlooConfig(GroupFields):
    """RLOO (Ahmadian et al. 2024) through TRL's `RLOOTrainer`: the `[rloo]` table; each completion's baseline is
    the mean reward of the other completions of its prompt. `normalize_advantages` whitens them over the batch."""

    beta: float = Field(0.05, ge=0)
    normalize_advantages: bool = False


class DpoConfig(TrainerFields):
    """DPO (Rafailov et al. 2023) through TRL's `DPOTrainer` on the feedback stage's `pairs.jsonl` (per prompt a
    higher- and a lower-scored completion): the `[dpo]` table. The policy and its LoRA are the `[rl]` table's.
    `beta` is the strength of the implicit KL constraint; `loss_type` as in TRL (`sigmoid` = the paper's).
    `heldout_fraction` of the prompts (seeded, by example id) are held out for the preference accuracy.
    `max_length` caps prompt + completion tokens."""

    beta: float = Field(0.1, gt=0)
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    learning_rate: float = Field(1e-6, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_length: int = Field(1024, ge=16)
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
