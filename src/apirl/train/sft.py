"""Supervised fine-tuning: M_SFT from the policy model on the data stage's train split.

TRL's `SFTTrainer` on prompt/completion pairs (`prompt` = `###Instruction: ...\\n###Output:`, `completion` = the
tagged answer + EOS), so the loss covers the answer only. Full fine-tuning or LoRA; validation loss on the val
split; checkpoints (weights, optimizer, scheduler, RNG states) every `save_steps` under
`runs/<name>/sft/checkpoints/`; TensorBoard logs in `runs/<name>/sft/tensorboard/`.

`resume=True` continues an interrupted run from its last checkpoint and ends with the same weights an
uninterrupted run would have (the Trainer restores the RNG states and skips the batches already seen). The final
model (LoRA adapters merged) is saved as a plain checkpoint in `runs/<name>/sft/model/`, loadable by
`apirl generate --set model.name=runs/<name>/sft/model`; the Trainer's log history goes to `log.jsonl`.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apirl.data.stage import read_catalog, read_examples
from apirl.errors import InputError
from apirl.jsonl import iter_jsonl
from apirl.models.config import ModelConfig
from apirl.models.load import load_model, load_tokenizer, resolve_model
from apirl.rundir import RunLayout, StageResult
from apirl.train.checkpoints import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    checkpoint_to_resume,
    run_training_stage,
    save_final_model,
    trained_precision,
    trainer_kwargs,
    write_log,
    write_summary,
)
from apirl.train.config import SftConfig, lora_config

if TYPE_CHECKING:
    from apirl.train.curve import ValCurve

STAGE = "sft"


def load_pairs(path: Path, limit: int, seed: int) -> tuple[list[dict[str, str]], int]:
    """(prompt/completion pairs, number skipped) from a data-stage JSONL. Examples flagged incomplete (a
    missing section, e.g. no code) are skipped: training on them teaches the model to leave sections out.
    `limit` > 0 keeps a seeded random subset."""
    rows, skipped = [], 0
    for line, raw in iter_jsonl(path, what="data-stage examples"):
        prompt, target = raw.get("prompt"), raw.get("target")
        for field, value in (("prompt", prompt), ("target", target)):
            if not isinstance(value, str):
                raise InputError(f"expected a string, got {type(value).__name__}", path=path, line=line,
                                 field=field)
        if raw.get("complete") is False or not target.strip():
            skipped += 1
            continue
        rows.append({"prompt": prompt, "completion": target})
    if limit and limit < len(rows):
        rows = random.Random(f"apirl-sft-subset:{seed}").sample(rows, limit)
    return rows, skipped


def _trainer_args(sft: SftConfig, seed: int, stage_dir: Path, has_eval: bool) -> Any:
    from trl import SFTConfig

    return SFTConfig(**trainer_kwargs(sft, stage_dir, seed, has_eval), max_length=sft.max_length,
                     completion_only_loss=True, group_by_length=sft.batching == "length_grouped",
                     packing=sft.batching == "packed", include_num_input_tokens_seen="non_padding")


def _val_curve(sft: SftConfig, layout: RunLayout, tokenizer: Any, stage_dir: Path) -> ValCurve | None:
    """The learning curve's callback, when `curve_steps` asks for one and val has eval questions to score."""
    if not sft.curve_steps:
        return None
    from apirl.train.curve import CURVE_FILE, ValCurve

    examples = [ex for ex in read_examples(layout, "val") if ex.question_id is not None]
    examples = examples[: sft.curve_limit] if sft.curve_limit else examples
    if not examples:
        return None
    stage_dir.mkdir(parents=True, exist_ok=True)
    return ValCurve(examples, read_catalog(layout), tokenizer, stage_dir / CURVE_FILE, every=sft.curve_steps,
                    max_new_tokens=sft.curve_max_new_tokens, batch_size=sft.curve_batch_size)


def train_sft(sft: SftConfig, model_table: ModelConfig, layout: RunLayout, seed: int, stage_dir: Path, *,
              resume: bool = False, callbacks: Sequence[Any] = (), fingerprint: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """Train and save M_SFT into `stage_dir`; returns the summary (also written as `summary.json`).

    `fingerprint` (config, seed, input hashes) is kept beside the checkpoints, so a resume never continues
    checkpoints that another config wrote. The checkpoints are deleted once the final model is saved."""
    from datasets import Dataset
    from trl import SFTTrainer

    train_rows, train_skipped = load_pairs(layout.split("train"), sft.train_limit, seed)
    val_rows, _ = load_pairs(layout.split("val"), sft.val_limit, seed)
    checkpoints = stage_dir / CHECKPOINTS_DIR
    resume_from = checkpoint_to_resume(checkpoints, resume, fingerprint)

    source = resolve_model(model_table.name, Path(model_table.cache_dir) if model_table.cache_dir else None)
    tokenizer = load_tokenizer(source)
    tokenizer.padding_side = "right"
    model = load_model(source)  # fp32; an error loading it names `model.name`
    curve = _val_curve(sft, layout, tokenizer, stage_dir)
    trainer = SFTTrainer(
        model=model,
        args=_trainer_args(sft, seed, stage_dir, has_eval=bool(val_rows)),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(sft),
        callbacks=[*callbacks, *([curve] if curve else [])],
    )
    if curve:
        curve.attach(trainer)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_eval = trainer.evaluate() if val_rows else {}

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    save_final_model(trainer.model, tokenizer, stage_dir / MODEL_DIR, sft.method == "lora")
    write_log(stage_dir, trainer.state.log_history)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    summary = {
        "model": model_table.name, "method": sft.method, "train_examples": len(train_rows),
        "train_skipped_incomplete": train_skipped,
        "val_examples": len(val_rows), "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 3), "resumed_from": resume_from.name if resume_from else None,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss, "eval_loss": final_eval.get("eval_loss"),
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        # Real (non-padding) tokens, prompts included: what the forward and backward passes were spent on.
        "train_tokens": trainer.state.num_input_tokens_seen,
        "train_tokens_per_s": round(trainer.state.num_input_tokens_seen
                                    / max(result.metrics.get("train_runtime", 0.0), 1e-9), 1),
        "batching": sft.batching,
        "trainable_parameters": trainable,
        "precision": trained_precision(trainer),
        "curve": curve.rows() if curve else None,
    }
    write_summary(stage_dir, summary)
    shutil.rmtree(checkpoints)  # ~3x the model's size each (optimizer states); the final model is what stays
    return summary


def run_sft(sft: SftConfig, model: ModelConfig, layout: RunLayout, seed: int, *, resume: bool = False,
            force: bool = False, callbacks: Sequence[Any] = ()) -> StageResult[dict[str, Any]]:
    """The SFT stage (`apirl sft`): trains `model` on the data stage's train split (validating on val) unless
    an identical run finished."""
    inputs = [layout.split("train"), layout.split("val")]
    stage_config = {"model": model.model_dump(mode="json"), "sft": sft.model_dump(mode="json")}

    def train(directory: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return train_sft(sft, model, layout, seed, directory, resume=resume, callbacks=callbacks,
                         fingerprint=fingerprint)

    return run_training_stage(layout.stage(STAGE), config=stage_config, seed=seed, inputs=inputs, train=train,
                              force=force)
