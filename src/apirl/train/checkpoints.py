"""What every training stage shares: finding the checkpoint to resume, guarding it, the precision flags, the
Trainer arguments that mean the same in every stage, and the outputs every stage leaves the same way (`model/`,
`log.jsonl`, `summary.json`).

A stage keeps its Trainer checkpoints in `<stage>/checkpoints/` with the stage's fingerprint (config, seed, input
hashes) stamped beside them. A rerun refuses to continue checkpoints that another config wrote, and refuses to
silently discard an interrupted run: `--resume` continues it, `--force` starts over.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.hardware import resolve_precision
from apirl.jsonl import json_line
from apirl.rundir import SUMMARY, StageOutput, StageResult, run_stage, weight_files
from apirl.train.config import TrainerFields

FINGERPRINT = "apirl-fingerprint.json"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
LOG = "log.jsonl"  # one line per logged step, in every training stage


def checkpoint_step(checkpoint: Path | None) -> int:
    """N of `checkpoint-N`, the steps it holds; 0 for no checkpoint."""
    return int(checkpoint.name.split("-")[-1]) if checkpoint is not None else 0


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete `checkpoint-N` (one with trainer_state.json, which the Trainer writes last)."""
    found = [p for p in checkpoints.glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found, key=checkpoint_step, default=None)


def checkpoint_to_resume(checkpoints: Path, resume: bool, fingerprint: dict[str, Any] | None) -> Path | None:
    """The checkpoint to continue from (None: start afresh); stamps `fingerprint` beside the checkpoints."""
    stamp = checkpoints / FINGERPRINT
    resume_from = last_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if resume_from is not None:
        if fingerprint is not None and (not stamp.is_file() or json.loads(stamp.read_text()) != fingerprint):
            raise InputError(f"{checkpoints} holds checkpoints of an interrupted run with a different config or "
                             "data: pass --force to discard them", field="--force")
        if not resume:
            raise InputError(f"{checkpoints} holds checkpoints of an interrupted run: pass --resume to continue "
                             "it, or --force to start over", field="--resume")
    elif checkpoints.is_dir():
        shutil.rmtree(checkpoints)  # leftovers without a complete checkpoint: nothing to resume from
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(fingerprint, sort_keys=True) + "\n", encoding="utf-8")
    return resume_from


def precision_kwargs(choice: str) -> dict[str, bool]:
    """`bf16` for a TRL/Trainer config, always said explicitly: TRL's configs turn bf16 on when it is left unset,
    which on a CPU means bf16 autocast even when fp32 was asked for. `auto` = bf16 where the device computes it
    natively (`apirl.hardware.resolve_precision`)."""
    from apirl.models.load import default_device

    return {"bf16": resolve_precision(choice, default_device()) == "bf16"}


def trained_precision(trainer: Any) -> str:
    """What a Trainer ran in, for the stage's summary: "bf16" (autocast) or "fp32"."""
    return "bf16" if trainer.args.bf16 else "fp32"


def base_trainer_kwargs(stage_dir: Path, seed: int, precision: str) -> dict[str, Any]:
    """The TrainingArguments every Trainer-run stage sets the same way: checkpoints in `<stage>/checkpoints`,
    TensorBoard in `<stage>/tensorboard`, the run's seed for the model and the data order, the CPU when there is
    no GPU, and the precision said explicitly (see `precision_kwargs`)."""
    import torch

    return dict(
        output_dir=str(stage_dir / CHECKPOINTS_DIR),
        logging_dir=str(stage_dir / "tensorboard"),
        report_to=["tensorboard"],
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        **precision_kwargs(precision),
    )


def trainer_kwargs(table: TrainerFields, stage_dir: Path, seed: int, has_eval: bool) -> dict[str, Any]:
    """`base_trainer_kwargs` plus the optimizer, schedule, logging and checkpoint keys of a `TrainerFields`
    table (`[sft]`, `[reward]`, `[dpo]`), which mean the same thing in each."""
    return dict(
        **base_trainer_kwargs(stage_dir, seed, table.precision),
        num_train_epochs=table.epochs,
        max_steps=table.max_steps,
        per_device_train_batch_size=table.batch_size,
        per_device_eval_batch_size=table.batch_size,
        gradient_accumulation_steps=table.gradient_accumulation_steps,
        learning_rate=table.learning_rate,
        lr_scheduler_type=table.lr_scheduler,
        warmup_ratio=table.warmup_ratio,
        weight_decay=table.weight_decay,
        max_grad_norm=table.max_grad_norm,
        logging_steps=table.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=table.eval_steps,
        save_strategy="steps",
        save_steps=table.save_steps,
        save_total_limit=table.save_total_limit,
        gradient_checkpointing=table.gradient_checkpointing,
    )


def save_final_model(model: Any, tokenizer: Any, model_dir: Path, merge_lora: bool,
                     padding_side: str = "left") -> None:
    """The trained model as a plain checkpoint any stage loads (`apirl generate --model DIR`): LoRA adapters
    merged into the weights, the tokenizer beside it with generation's (left) padding; the reward model keeps
    the right padding it was trained with."""
    final = model.merge_and_unload() if merge_lora else model
    if model_dir.exists():
        shutil.rmtree(model_dir)
    final.save_pretrained(model_dir)
    tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(model_dir)


def write_log(stage_dir: Path, log_history: list[dict[str, Any]]) -> None:
    """A Trainer's `state.log_history` as `<stage>/log.jsonl`, one JSON line per logged step."""
    with (stage_dir / LOG).open("w", encoding="utf-8") as handle:
        for entry in log_history:
            handle.write(json_line(entry))


def write_summary(stage_dir: Path, summary: dict[str, Any]) -> None:
    """A stage's summary as `<stage>/summary.json` (what its entry point returns, and the CLI and report read)."""
    (stage_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def run_training_stage(stage_dir: Path, *, config: dict[str, Any], seed: int, inputs: list[Path],
                       train: Callable[[Path, dict[str, Any]], dict[str, Any]], force: bool
                       ) -> StageResult[dict[str, Any]]:
    """A training stage through `run_stage`: skipped when an identical run finished, else `train(stage_dir,
    fingerprint)`, which writes `model/`, `log.jsonl` and `summary.json` and returns the summary (the fingerprint
    stamps its checkpoints, see `checkpoint_to_resume`). `force` discards an interrupted run's checkpoints."""
    if force and (stage_dir / CHECKPOINTS_DIR).is_dir():
        shutil.rmtree(stage_dir / CHECKPOINTS_DIR)

    def work(directory: Path, fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        summary = train(directory, fingerprint)
        return StageOutput([directory / SUMMARY, directory / LOG, *weight_files(directory / MODEL_DIR)], summary)

    return run_stage(stage_dir, config=config, seed=seed, inputs=inputs, work=work, force=force)
