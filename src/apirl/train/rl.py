"""`apirl rl`: one config key (`rl.algorithm`) picks the recipe: PPO (ours, `apirl.train.ppo`), GRPO or RLOO (TRL,
`apirl.train.grpo`) or DPO (TRL, `apirl.train.dpo`). What the recipes share lives in `apirl.train.common`.

Each algorithm writes its own stage directory, `runs/<name>/<algorithm>/`, with `model/` (the final policy as
a plain checkpoint: `apirl generate --model runs/<name>/<algorithm>/model`), `log.jsonl` (one line per logged
step) and `summary.json` (the online algorithms report the same keys: `first_reward`, `last_reward`, `last_kl`,
`mean_completion_length`, and the first and last mean of each reward term).
"""

from __future__ import annotations

from typing import Any

from apirl.config_base import StrictModel
from apirl.rundir import StageResult
from apirl.train.common import RlRun
from apirl.train.dpo import run_dpo
from apirl.train.grpo import run_group
from apirl.train.ppo import run_ppo

# algorithm -> the recipe's entry point, `(its table, RlRun, resume=, force=, hooks) -> StageResult`.
RECIPES = {"ppo": run_ppo, "grpo": run_group, "rloo": run_group, "dpo": run_dpo}


def run_rl(table: StrictModel, run: RlRun, *, resume: bool = False, force: bool = False, **hooks: Any
           ) -> StageResult[dict[str, Any]]:
    """Run `run.algorithm` with its table (`[ppo]`, `[grpo]`, `[rloo]` or `[dpo]`) as its own stage
    (`runs/<name>/<algorithm>/`): the one entry point of `apirl rl` and of the pipeline."""
    return RECIPES[run.algorithm](table, run, resume=resume, force=force, **hooks)
