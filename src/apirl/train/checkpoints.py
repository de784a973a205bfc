"""What every training stage shares: finding the checkpoint to resume, guarding it, and the precision flags.

A stage keeps its Trainer checkpoints in `<stage>/checkpoints/` with the stage's fingerprint (config, seed, input
hashes) stamped beside them. A rerun refuses to continue checkpoints that another config wrote, and refuses to
silently discard an interrupted run: `--resume` continues it, `--force` starts over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from apirl.errors import InputError

FINGERPRINT = "apirl-fingerprint.json"


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete `checkpoint-N` (one with trainer_state.json, which the Trainer writes last)."""
    found = [p for p in checkpoints.glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


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
    which on a CPU means bf16 autocast even when fp32 was asked for. `auto` = bf16 on a GPU that supports it."""
    import torch

    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return {"bf16": choice == "bf16" or (choice == "auto" and gpu_bf16)}
