"""Config of the evaluation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apirl.config_base import StrictModel


class EvalConfig(StrictModel):
    """How responses are scored. `mode` picks the AST matcher; both modes are always reported."""

    split: Literal["test", "all"] = "test"
    mode: Literal["gorilla", "strict"] = "gorilla"
    bootstrap_samples: int = Field(1000, ge=0)
    bootstrap_seed: int = 0
    codebleu: bool = True
