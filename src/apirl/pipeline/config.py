"""Config of `apirl run` (the `[pipeline]` table): which models the run trains, generates with and scores."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from apirl.config_base import StrictModel

# How the untuned policy model is prompted for its baseline rows.
BASELINES = ("chat", "fewshot")


class PipelineConfig(StrictModel):
    """`algorithms`: the RL algorithms to train from M_SFT, each in its own stage (`runs/<name>/<algorithm>/`).
    `baselines`: rows for the untuned model: `chat` (zero-shot through its chat template) and `fewshot`
    (`fewshot_shots` solved train examples before the question, plain format). `gorilla_exec`: also run
    Gorilla-7B's FT and RT 0-shot answers in the executability harness for the anchor rows (minutes).
    `calibrate`: after the feedback, calibrate its judge (`apirl feedback calibrate`: gold answers of the
    calibration split against their mutants, `feedback.calibrate_limit` examples) for the report."""

    algorithms: list[Literal["ppo", "grpo", "rloo", "dpo"]] = Field(default_factory=lambda: ["ppo"])
    baselines: list[Literal["chat", "fewshot"]] = Field(default_factory=lambda: ["chat"])
    fewshot_shots: int = Field(2, ge=1)
    gorilla_exec: bool = True
    calibrate: bool = True

    @field_validator("algorithms", "baselines")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("an entry is listed twice")
        return values
