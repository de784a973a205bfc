"""Config of the executability harness: the `[execution]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apirl.config_base import StrictModel


class ExecConfig(StrictModel):
    """How snippets are executed (`apirl exec`, `apirl eval responses --exec`).

    `hub_dir` holds the offline hub's tiny checkpoints (built lazily, reused across runs); empty means
    $APIRL_HUB_DIR or ~/.cache/apirl/offline-hub.
    """

    mode: Literal["bound", "strict"] = "bound"
    workers: int = Field(2, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    memory_mb: int = Field(4096, ge=256)
    hub_dir: str = ""
    mutant_seed: int = 0
