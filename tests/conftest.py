"""Shared fixtures: a tiny hand-made Gorilla directory for unit tests, the real one for integration tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    raw = os.environ.get("APIRL_DATA_DIR") or str(REPO.parent / "shared" / "data" / "gorilla")
    path = Path(raw)
    return path if (path / "apibench" / "huggingface_eval.json").is_file() else None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Gorilla data; CI must have it (a skip there would hide a broken setup)."""
    path = _real_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("APIRL_DATA_DIR does not point at the Gorilla data in CI")
        pytest.skip("real Gorilla data not available (set APIRL_DATA_DIR)")
    return path


API_ROWS = [
    {"domain": "Natural Language Processing Text Classification", "framework": "Hugging Face Transformers",
     "functionality": "Sentiment Analysis", "api_name": "distilbert-base-uncased-finetuned-sst-2-english",
     "api_call": "pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')",
     "api_arguments": ["text"], "python_environment_requirements": ["transformers"],
     "example_code": "classifier('I love it')", "performance": {"dataset": "sst2", "accuracy": 0.91},
     "description": "DistilBERT fine-tuned on SST-2 for sentiment analysis."},
    {"domain": "Computer Vision Image Classification", "framework": "Hugging Face Transformers",
     "functionality": "Image Classification", "api_name": "google/vit-base-patch16-224",
     "api_call": "ViTForImageClassification.from_pretrained('google/vit-base-patch16-224')",
     "api_arguments": None, "python_environment_requirements": "transformers", "example_code": "N/A",
     "performance": None, "description": "Vision Transformer (ViT) for image classification."},
    {"domain": "Natural Language Processing Fill-Mask", "framework": "Hugging Face Transformers",
     "functionality": ["Fill-Mask", "Masked Language Modeling"], "api_name": "bert-base-uncased",
     "api_call": "pipeline('fill-mask', model='bert-base-uncased')", "api_arguments": {"text": "str"},
     "python_environment_requirements": [], "example_code": "", "performance": {},
     "description": "BERT base model (uncased) for masked language modeling."},
    {"domain": "Tabular Tabular Regression", "framework": "Scikit-learn", "functionality": "Regression",
     "api_name": "rf-regressor", "api_call": "RandomForestRegressor()", "api_arguments": None,
     "python_environment_requirements": None, "example_code": None, "performance": None,
     "description": "A random forest regressor."},
]


def _record(instruction: str, row: dict, code: str, explanation: str = "Load the model.") -> dict:
    text = (f"###Instruction: {instruction}\n###Output: <<<domain>>>: {row['domain']}\n"
            f"<<<api_call>>>: {row['api_call']}\n<<<api_provider>>>: {row['framework']}\n"
            f"<<<explanation>>>: {explanation}\n<<<code>>>: {code}\n")
    return {"code": text, "api_call": row["api_call"], "provider": row["framework"], "api_data": row}


EVAL_RECORDS = [
    _record("Tell me whether this review is positive.", API_ROWS[0],
            "from transformers import pipeline\nclassifier = pipeline('sentiment-analysis', "
            "model='distilbert-base-uncased-finetuned-sst-2-english')\nresult = classifier('Great film')"),
    _record("Classify the animal in my photo.", API_ROWS[1],
            "from transformers import ViTForImageClassification\n"
            "model = ViTForImageClassification.from_pretrained('google/vit-base-patch16-224')"),
    {"code": "###Instruction: A record with no output section.", "api_call": "x", "provider": "y",
     "api_data": API_ROWS[0]},
    _record("Complete the sentence with the missing word.", API_ROWS[2],
            "from transformers import pipeline\nunmasker = pipeline('fill-mask', model='bert-base-uncased')"),
]


def write_gorilla_dir(root: Path, records: list[dict] | None = None, rows: list[dict] | None = None) -> Path:
    """A directory in Gorilla's layout with the given (or default tiny) records and API rows."""
    records = EVAL_RECORDS if records is None else records
    rows = API_ROWS if rows is None else rows
    (root / "apibench").mkdir(parents=True, exist_ok=True)
    (root / "api").mkdir(parents=True, exist_ok=True)
    (root / "apibench" / "huggingface_eval.json").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (root / "api" / "huggingface_api.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                                         encoding="utf-8")
    return root


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    return write_gorilla_dir(tmp_path / "gorilla")


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside every sandbox, world-writable so that only the sandbox can protect it."""
    root = tmp_path / "canary"
    root.mkdir()
    (root / "keep.txt").write_text("original\n")
    root.chmod(0o777)
    (root / "keep.txt").chmod(0o666)
    return root
