"""Training examples synthesized from API database rows, for when Gorilla's training file is absent.

Gorilla's own training set (about 8k examples) was generated from the same 936 API rows, so one example per
row, written from the row's description, functionality and domain, is the closest offline stand-in. The
instruction never mentions the model id: the model must learn which API fits which request. Every example is
marked `synthetic-apidb` so it can be filtered or weighed differently.
"""

from __future__ import annotations

import hashlib
import re

from apirl.data.apidb import ApiRow, as_text
from apirl.data.prompts import TaggedOutput

_TEMPLATES = (
    "I need a model for {task} ({domain}). {detail}",
    "Our team is building a product that needs {task}. {detail} Which model should we use, and how?",
    "Help me with a {domain_lower} problem: {task}. {detail}",
    "Write code that loads a pre-trained model suited to {task} in the area of {domain_lower}. {detail}",
)
_TRANSFORMERS_HEAD_RE = re.compile(
    r"^(pipeline|Auto\w+|\w+(For\w+|Model|Tokenizer\w*|Processor|FeatureExtractor|ImageProcessor|Config))$")
_KNOWN_IMPORTS = {
    "SentenceTransformer": "from sentence_transformers import SentenceTransformer",
    "StableDiffusionPipeline": "from diffusers import StableDiffusionPipeline",
    "DiffusionPipeline": "from diffusers import DiffusionPipeline",
    "DDPMPipeline": "from diffusers import DDPMPipeline",
    "load_from_hub": "from rl_zoo3 import load_from_hub",
    "hf_hub_download": "from huggingface_hub import hf_hub_download",
}


def _first_sentences(text: str, limit: int = 2) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return " ".join(sentences[:limit]).strip()


def _stable_choice(key: str, options: tuple[str, ...]) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return options[digest[0] % len(options)]


def _import_for(call: str) -> str | None:
    head = call.split("(", 1)[0].strip()
    name = head.split(".", 1)[0]
    if name in _KNOWN_IMPORTS:
        return _KNOWN_IMPORTS[name]
    if _TRANSFORMERS_HEAD_RE.match(name):
        return f"from transformers import {name}"
    return None


def synthesize_code(row: ApiRow) -> str:
    """The row's example code when it has usable code, else an import plus the row's call."""
    example = as_text(row.example_code).strip()
    if example and ("(" in example or "import" in example):
        return example
    lines = [line for line in (_import_for(row.api_call),) if line]
    lines.append(f"model = {row.api_call}")
    return "\n".join(lines)


def synthesize_instruction(row: ApiRow) -> str:
    task = (row.functionality or row.domain).strip().rstrip(".").lower()
    description = _first_sentences(as_text(row.description))
    # The description often names the model; keep the request about the task, not the answer. The full id goes
    # first: replacing its short name first would leave "org/the model" (and a set's order varies by process).
    for name in dict.fromkeys((row.api_name, row.api_name.split("/")[-1])):
        description = description.replace(name, "the model")
    template = _stable_choice(row.api_name + row.api_call, _TEMPLATES)
    return " ".join(template.format(task=task, domain=row.domain, domain_lower=row.domain.lower(),
                                    detail=description).split())


def synthesize_output(row: ApiRow) -> TaggedOutput:
    description = _first_sentences(as_text(row.description), limit=3) or f"A model for {row.functionality}."
    explanation = (f"1. Import the needed classes. 2. Load the pre-trained model '{row.api_name}' with "
                   f"{row.api_call.split('(', 1)[0]}. 3. {description}")
    return TaggedOutput(
        domain=row.domain,
        api_call=row.api_call,
        api_provider=row.framework,
        explanation=explanation,
        code=synthesize_code(row),
    )
