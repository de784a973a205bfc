"""Shared by the tests: the smoke preset on the real data, a callback that kills a run, host processes by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMOKE_TOML = Path(__file__).parents[1] / "configs" / "smoke.toml"


def smoke_config(real_data_dir: Path, runs: Path, name: str, *overrides: str) -> Any:
    """configs/smoke.toml (tiny-random model) on the real data, in its own runs dir, with `key=value` overrides."""
    from apirl.config import load_config

    return load_config(SMOKE_TOML, [f'data.data_dir="{real_data_dir}"', f'runs_dir="{runs}"', f'name="{name}"',
                                    *overrides])


class KillAtStep:
    """A TrainerCallback that dies after `step` optimizer steps, as a kill would (no checkpoint of that step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


def host_processes_named(comm: str) -> list[int]:
    """The host's processes whose name (/proc/<pid>/comm) is `comm`: what a sandbox must not leave running."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# The training stages as the CLI runs them: the data stage first, then the stage with its own tables.
def stage_sft(config: Any, **kwargs: Any) -> Any:
    from apirl.data.stage import prepare_data
    from apirl.train.sft import run_sft

    prepare_data(config.data, config.layout, config.seed)
    return run_sft(config.sft, config.model, config.layout, config.seed, **kwargs)


def stage_reward(config: Any, **kwargs: Any) -> Any:
    from apirl.data.stage import prepare_data
    from apirl.train.reward import run_reward

    prepare_data(config.data, config.layout, config.seed)
    return run_reward(config.reward, config.model, config.layout, config.seed,
                      calibrate_split=config.feedback.calibrate_split, mutant_seed=config.execution.mutant_seed,
                      **kwargs)


def stage_rl(config: Any, algorithm: str | None = None, **kwargs: Any) -> Any:
    from apirl.data.stage import prepare_data
    from apirl.pipeline.run import rl_stage

    prepare_data(config.data, config.layout, config.seed)
    return rl_stage(config, algorithm, **kwargs)
