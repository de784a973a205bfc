"""DPO through TRL: the policy learns straight from the feedback stage's preference pairs (`pairs.jsonl`: per
prompt, the judges' higher- and lower-scored completion), with no reward model and no sampling during training.

The loss (`loss_type = "sigmoid"`, Rafailov et al. 2023) is -log sigmoid(beta * (log-ratio of the chosen
completion - log-ratio of the rejected one)), each log-ratio taken against the frozen reference, M_SFT (with LoRA
the same weights with the adapters off). A seeded `heldout_fraction` of the prompts is kept out of training; the
Trainer's evaluation on them gives the preference accuracy (`eval_rewards/accuracies`: how often the policy's
implicit reward ranks the judges' choice first) and margin.

Outputs in `runs/<name>/dpo/`: `log.jsonl`, `tensorboard/`, `summary.json`, `model/` (LoRA merged).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.rundir import StageResult
from apirl.train.checkpoints import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    checkpoint_to_resume,
    save_final_model,
    trained_precision,
    trainer_kwargs,
    write_log,
    write_summary,
)
from apirl.train.common import RlRun, load_policy, policy_inputs, run_rl_stage
from apirl.train.config import DpoConfig, lora_config
from apirl.train.reward import heldout_examples, load_preferences


def train_dpo(dpo: DpoConfig, run: RlRun, stage_dir: Path, *, resume: bool = False, callbacks: Sequence[Any] = (),
              fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the policy with DPO on the preference pairs; returns the summary (also `summary.json`)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    pairs_path = run.layout.pairs
    pairs = load_preferences(pairs_path)
    heldout = heldout_examples([p["example_id"] for p in pairs], dpo.heldout_fraction, run.seed)
    train_pairs = [p for p in pairs if p["example_id"] not in heldout]
    heldout_pairs = [p for p in pairs if p["example_id"] in heldout]
    if not train_pairs:
        raise InputError(f"no preference pairs left to train on in {pairs_path} after holding out "
                         f"{len(heldout)} prompts", field="dpo.heldout_fraction")

    checkpoints = stage_dir / CHECKPOINTS_DIR
    resume_from = checkpoint_to_resume(checkpoints, resume, fingerprint)
    policy, tokenizer, source = load_policy(run)

    def dataset(rows: Sequence[dict[str, str]]) -> Any:
        return Dataset.from_list([{key: row[key] for key in ("prompt", "chosen", "rejected")} for row in rows])

    args = DPOConfig(**trainer_kwargs(dpo, stage_dir, run.seed, has_eval=bool(heldout_pairs)),
                     beta=dpo.beta, loss_type=[dpo.loss_type], max_length=dpo.max_length)
    trainer = DPOTrainer(
        model=policy,
        args=args,
        train_dataset=dataset(train_pairs),
        eval_dataset=dataset(heldout_pairs) if heldout_pairs else None,
        processing_class=tokenizer,
        peft_config=lora_config(run.rl),
        callbacks=list(callbacks),
    )
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_eval = trainer.evaluate() if heldout_pairs else {}

    save_final_model(trainer.model, tokenizer, stage_dir / MODEL_DIR, run.rl.method == "lora")
    write_log(stage_dir, trainer.state.log_history)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    summary = {
        "algorithm": "dpo", "policy": source.spec, "method": run.rl.method,
        "train_pairs": len(train_pairs), "heldout_pairs": len(heldout_pairs),
        "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0.0, 3),
        "resumed_from": resume_from.name if resume_from else None,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss, "eval_loss": final_eval.get("eval_loss"),
        "heldout_preference_accuracy": final_eval.get("eval_rewards/accuracies"),
        "heldout_reward_margin": final_eval.get("eval_rewards/margins"),
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1),
        "precision": trained_precision(trainer),
    }
    write_summary(stage_dir, summary)
    shutil.rmtree(checkpoints)
    return summary


def run_dpo(dpo: DpoConfig, run: RlRun, *, resume: bool = False, force: bool = False,
            callbacks: Sequence[Any] = ()) -> StageResult[dict[str, Any]]:
    """The DPO stage (`runs/<name>/dpo/`): trains unless an identical run finished on the same pairs."""
    pairs = run.layout.pairs
    if not pairs.is_file():
        raise InputError(f"no preference pairs at {pairs}: run `apirl feedback` first", path=pairs)

    def train(directory: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return train_dpo(dpo, run, directory, resume=resume, callbacks=callbacks, fingerprint=fingerprint)

    return run_rl_stage(run, dpo, [pairs, *policy_inputs(run)], train, force=force)
