"""Configs of the policy model and of generation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apirl.config_base import StrictModel

# The label suffix of answers decoded with `grounding = "catalog"` (`sft-catalog`): results, report rows, pairs.
GROUNDED = "-catalog"


class ModelConfig(StrictModel):
    """Which policy model to start from (see `apirl.models.load` for the specs) and how to hold it.

    `cache_dir` keeps converted checkpoints (SmolLM2 from its GGUF, the tiny random model); empty means
    $APIRL_MODEL_CACHE or ~/.cache/apirl/models. `device` empty means cuda when available, else cpu.
    """

    name: str = "smollm2-135m"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cache_dir: str = ""
    device: str = ""


class GenerateConfig(StrictModel):
    """How responses are generated for a split (`apirl generate`).

    `prompt_style`: `plain` is the training format (`###Instruction: ... ###Output:`), what an SFT model
    expects; `chat` wraps the request in the tokenizer's chat template with a system message that describes the
    tagged answer, the fair zero-shot setting for an instruct model. `shots` > 0 prepends that many solved
    examples drawn from the train split (seeded), the few-shot setting for a model that was not fine-tuned.
    `grounding = "catalog"` decodes against the run's API database (`apirl.models.grounding`): the domain and
    the call come from it, and so does every hub id the code passes to a loader.
    """

    split: Literal["train", "val", "test"] = "test"
    limit: int = Field(0, ge=0, description="Only the first N examples of the split (0: all).")
    batch_size: int = Field(64, ge=1, description="Rows decoded together (the engine refills a finished row's "
                            "place from the queue); 64 measured fastest on 2 CPU cores.")
    max_new_tokens: int = Field(256, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    prompt_style: Literal["plain", "chat"] = "plain"
    shots: int = Field(0, ge=0)
    shots_seed: int = 0
    grounding: Literal["none", "catalog"] = "none"
