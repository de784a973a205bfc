"""Config of the feedback stage (`apirl feedback`, `apirl feedback calibrate`): the `[feedback]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from apirl.config_base import StrictModel
from apirl.feedback.questions import QUESTIONS, question


class FeedbackConfig(StrictModel):
    """How samples are drawn from the policy and who judges them.

    `judge`: `tools` (program analysis, no LLM), `local` (an in-process LLM, `local_model`), `openai` (an
    OpenAI-compatible server: `openai_base_url` / `openai_model`, empty = APIRL_JUDGE_BASE_URL /
    APIRL_JUDGE_MODEL), or `hybrid` (the tools answer what they can decide, `hybrid_llm` the rest).
    `grounding` adds the API database row of the model the code loads to an LLM judge's prompt. `execute` runs
    every sample's code in the executability harness (`[execution]`, its mode) before judging: the tools judge
    (alone or in `hybrid`) then answers `logic` from the verdict and fills its abstentions on imports and
    arguments; an LLM judge does not see the verdict.

    `policy` empty means M_SFT (`runs/<name>/sft/model`); any model spec of `apirl.models.load` works.
    `samples_per_prompt` completions are sampled per train prompt (`prompts_limit` > 0: a seeded subset of the
    prompts). A sample is labelled good when its score S (sum of P(yes) over `questions`) is at least
    `threshold` (`label_rule = "threshold"`, the paper's rule; `label_quantile` unused), or when it is in the top
    1 - `label_quantile` of this run's scores, as near as ties allow (`"quantile"`: both classes whatever the
    policy's level; `threshold` unused; see `types.quantile_threshold`). `calibrate_*` pick the examples of
    `apirl feedback calibrate` (`calibrate_limit` > 0: the first N).
    """

    judge: Literal["tools", "local", "openai", "hybrid"] = "hybrid"
    hybrid_llm: Literal["local", "openai"] = "local"
    grounding: bool = False
    execute: bool = False
    local_model: str = "smollm2-135m"
    local_batch_size: int = Field(8, ge=1)
    openai_base_url: str = ""
    openai_model: str = ""
    concurrency: int = Field(8, ge=1)
    openai_timeout_s: float = Field(60.0, gt=0)
    openai_max_retries: int = Field(6, ge=0)
    policy: str = ""
    samples_per_prompt: int = Field(4, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(64, ge=1)  # samples decoded together (see GenerateConfig.batch_size)
    # "catalog": the samples are decoded against the API database, as `generate.grounding` (not the judge's
    # `grounding` above, which puts the database row into an LLM judge's prompt).
    sample_grounding: Literal["none", "catalog"] = "none"
    prompts_limit: int = Field(0, ge=0)
    threshold: float = 6.0
    label_rule: Literal["threshold", "quantile"] = "threshold"
    label_quantile: float = Field(0.5, gt=0, lt=1)
    questions: list[str] = Field(default_factory=lambda: [q.key for q in QUESTIONS])
    calibrate_split: Literal["train", "val", "test"] = "val"
    calibrate_limit: int = Field(0, ge=0)

    @field_validator("questions")
    @classmethod
    def _known_questions(cls, keys: list[str]) -> list[str]:
        if not keys:
            raise ValueError("at least one question")
        for key in keys:
            try:
                question(key)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        if len(set(keys)) != len(keys):
            raise ValueError("a question is listed twice")
        return keys

    @model_validator(mode="after")
    def _reachable_threshold(self) -> FeedbackConfig:
        # S is at most the number of questions: a higher threshold would label every sample bad.
        if self.label_rule == "threshold" and self.threshold > len(self.questions):
            raise ValueError(f"threshold {self.threshold} is above the highest score, {len(self.questions)} "
                             f"(one per question)")
        return self
