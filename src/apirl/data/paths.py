"""Where the Gorilla data lives: a directory in Gorilla's layout, given by APIRL_DATA_DIR or the config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from apirl.errors import InputError

ENV_VAR = "APIRL_DATA_DIR"
ZERO_SHOT = "0_shot"
RETRIEVERS: tuple[str, ...] = ("0_shot", "bm25", "gpt_index", "oracle")


@dataclass(frozen=True)
class GorillaPaths:
    """The files of Gorilla's Hugging Face part under one root directory."""

    root: Path

    @property
    def train(self) -> Path:
        return self.root / "apibench" / "huggingface_train.json"

    @property
    def eval(self) -> Path:
        return self.root / "apibench" / "huggingface_eval.json"

    @property
    def api_db(self) -> Path:
        return self.root / "api" / "huggingface_api.jsonl"

    def questions(self, retriever: str = ZERO_SHOT) -> Path:
        return self.root / "eval-data" / "questions" / "huggingface" / f"questions_huggingface_{retriever}.jsonl"

    @property
    def responses_dir(self) -> Path:
        return self.root / "eval-data" / "responses" / "huggingface"

    def has_train(self) -> bool:
        return self.train.is_file()


def resolve_data_dir(configured: str | Path | None = None) -> GorillaPaths:
    """The data directory from the config, else from APIRL_DATA_DIR; checked for the files every run needs."""
    raw = configured if configured is not None else os.environ.get(ENV_VAR)
    if not raw:
        raise InputError(
            f"no data directory: set {ENV_VAR} (or data.data_dir in the config) to a directory in Gorilla's "
            "layout (apibench/huggingface_eval.json, api/huggingface_api.jsonl)"
        )
    paths = GorillaPaths(Path(raw).expanduser())
    for required in (paths.eval, paths.api_db):
        if not required.is_file():
            raise InputError("required Gorilla file is missing", path=required)
    return paths
