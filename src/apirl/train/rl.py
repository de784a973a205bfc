"""`apirl rl`: one config key (`rl.algorithm`) picks the recipe: PPO (ours, `apirl.train.ppo`), GRPO or RLOO (TRL,
`apirl.train.grpo`) or DPO (TRL, `apirl.train.dpo`). What the recipes share lives in `apirl.train.common`.

Each algorithm writes its own stage directory, `runs/<name>/<algorithm>/`, with `model/` (the final policy as
a plain checkpoint: `apirl generate --model runs/<name>/<algorithm>/model`), `log.jsonl` (one line per logged
step) and `summary.json` (the online algorithms report the same keys: `first_reward`, `last_reward`, `last_kl`,
`mean_completion_length`, and the first and last mean of each reward term).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from apirl.config import RunConfig
from apirl.rundir import StageResult
from apirl.train.common import RlRun
from apirl.train.dpo import run_dpo
from apirl.train.grpo import run_group
from apirl.train.ppo import run_ppo

# algorithm -> the recipe's entry point, `(its table, RlRun, resume=, force=, hooks) -> StageResult`.
RECIPES = {"ppo": run_ppo, "grpo": run_group, "rloo": run_group, "dpo": run_dpo}


def rl_run(config: RunConfig, algorithm: str) -> RlRun:
    """What the recipe of `algorithm` reads of the run config besides its own table."""
    return RlRun(algorithm, config.rl, config.model, config.execution, config.layout, config.seed)


def run_rl(config: RunConfig, algorithm: str | None = None, *, resume: bool = False, force: bool = False,
           **hooks: Any) -> StageResult[dict[str, Any]]:
    """Run `algorithm` (default `rl.algorithm`) as its own stage (`runs/<name>/<algorithm>/`), with its own table
    (`[ppo]`, `[grpo]`, `[rloo]`, `[dpo]`): the one entry point of `apirl rl` and of the pipeline."""
    algorithm = algorithm or config.rl.algorithm
    recipe = partial(RECIPES[algorithm], getattr(config, algorithm), rl_run(config, algorithm))
    return recipe(resume=resume, force=force, **hooks)
