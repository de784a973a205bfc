"""Config of the evaluation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apirl.config_base import StrictModel


class EvalConfig(StrictModel):
    """How responses are scored. `mode` picks the AST matcher; both modes are always reported. `limit` > 0
    scores only the first N questions of the split (the ones `generate.limit = N` answers)."""

    split: Literal["test", "all"] = "test"
    limit: int = Field(0, ge=0)
    mode: Literal["gorilla", "strict"] = "gorilla"
    bootstrap_samples: int = Field(1000, ge=0)
    bootstrap_seed: int = 0
    codebleu: bool = True
