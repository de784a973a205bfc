"""Config of the data stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from apirl.config_base import StrictModel
from apirl.data.splits import NEAR_DUPLICATE_OVERLAP


class DataConfig(StrictModel):
    """Where the Gorilla data is and how the splits are made.

    `data_dir` defaults to the `APIRL_DATA_DIR` environment variable. The split fractions only matter when the
    split files are (re)generated with `apirl data split`; every run reads the committed id lists.

    `synthesized_per_api` distinct requests are written per API database row (`apirl.data.synth`, seeded by
    `synthesis_seed`) when `synthesize_from_api_db` is on, with `full`, `compact` (one sentence of explanation,
    short code), `call` (the import and the call as code) or `mixed` answers (the first request per row compact,
    the others call: `apirl.data.synth.synthesize_output`, `apirl.data.dataset.synthesized_examples`).
    A training or val request whose word trigrams have a Jaccard similarity of `near_duplicate_overlap` or more
    with a test request's (`apirl.data.splits.NEAR_DUPLICATE_OVERLAP`) is dropped,
    and the build asserts that none is left.
    """

    data_dir: Path | None = None
    split_dir: Path = Path("data/splits")
    split_seed: int = 0
    val_fraction: float = Field(0.10, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.30, gt=0.0, lt=1.0)
    synthesize_from_api_db: bool = True
    synthesized_per_api: int = Field(1, ge=1, le=50)
    synthesized_answer: Literal["full", "compact", "call", "mixed"] = "full"
    synthesis_seed: int = 0
    near_duplicate_overlap: float = Field(NEAR_DUPLICATE_OVERLAP, gt=0.0, le=1.0)
    strict: bool = False

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self
