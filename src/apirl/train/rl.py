"""`apirl rl`: one config key (`rl.algorithm`) picks the recipe: PPO (ours, `apirl.train.ppo`), GRPO or RLOO (TRL,
`apirl.train.grpo`) or DPO (TRL, `apirl.train.dpo`). What the recipes share lives in `apirl.train.common`.

Each algorithm writes its own stage directory, `runs/<name>/<algorithm>/`, with `model/` (the final policy as
a plain checkpoint: `apirl generate --model runs/<name>/<algorithm>/model`), `log.jsonl` (one line per logged
step) and `summary.json` (the online algorithms report the same keys: `first_reward`, `last_reward`, `last_kl`,
`mean_completion_length`, and the first and last mean of each reward term).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apirl.config import RunConfig
from apirl.rundir import StageResult
from apirl.train.dpo import run_dpo
from apirl.train.grpo import run_group
from apirl.train.ppo import run_ppo

# rl.algorithm -> the recipe's entry point, which runs it as its own stage.
RECIPES: dict[str, Callable[..., StageResult]] = {"ppo": run_ppo, "grpo": run_group, "rloo": run_group,
                                                  "dpo": run_dpo}


def run_rl(config: RunConfig, *, resume: bool = False, force: bool = False, **kwargs: Any) -> StageResult:
    """Run the algorithm of `rl.algorithm` as its own stage (`runs/<name>/<algorithm>/`)."""
    return RECIPES[config.rl.algorithm](config, resume=resume, force=force, **kwargs)
