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
