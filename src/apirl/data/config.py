"""Config of the data stage."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from apirl.config_base import StrictModel


class DataConfig(StrictModel):
    """Where the Gorilla data is and how the splits are made.

    `data_dir` defaults to the `APIRL_DATA_DIR` environment variable. The split fractions only matter when the
    split files are (re)generated with `apirl data split`; every run reads the committed id lists.
    """

    data_dir: Path | None = None
    split_dir: Path = Path("data/splits")
    split_seed: int = 0
    val_fraction: float = Field(0.10, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.30, gt=0.0, lt=1.0)
    synthesize_from_api_db: bool = True
    strict: bool = False

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self
