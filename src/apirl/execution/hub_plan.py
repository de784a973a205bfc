"""What the offline hub builds for a model id (`plan_checkpoint` -> `CheckpointPlan`): the library and the
architecture, chosen from evidence, most specific first (see `apirl.execution.offline_hub`). Pure text analysis
plus lookups in transformers' auto mappings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from apirl.code_facts import pipeline_tasks
from apirl.data.apidb import ApiRow, as_text

# Library of a row, from its call: everything else is transformers (or unsupported, see below).
_DIFFUSERS_CALLS = re.compile(r"\b(\w*Pipeline|ControlNetModel|UNet2D\w*|AutoencoderKL|DDPMScheduler)\.from_pretrained")
_ST_CALLS = re.compile(r"\b(SentenceTransformer|CrossEncoder)\s*\(")
_FILE_CALLS = re.compile(r"\b(joblib\.load|hf_hub_download|cached_download|hf_hub_url|load_from_hub)\b")
_CLASS_FROM_PRETRAINED = re.compile(r"\b([A-Z]\w+)\.from_pretrained\s*\(")
_NAMED_CLASS = re.compile(
    r"\b([A-Z][A-Za-z0-9]+(?:Tokenizer|TokenizerFast|Processor|ImageProcessor|FeatureExtractor))\b")
_HUB_FILENAME = re.compile(r"""(?:filename\s*=\s*|hf_hub_download\([^,]+,\s*)['"]([\w./-]+\.\w+)['"]""")

# Preferred model types when the evidence leaves a choice (first one the task supports wins).
_DEFAULT_TYPES = ("bert", "distilbert", "roberta", "t5", "bart", "gpt2", "vit", "wav2vec2", "whisper", "detr",
                  "segformer", "layoutlmv2", "layoutlm", "tapas", "videomae", "clip", "dpt", "blip",
                  "vision-encoder-decoder",
                  "speecht5", "mask2former", "owlvit", "vilt", "donut-swin", "table-transformer")
_TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
                 "text-to-speech": "text-to-audio", "conversational": "text-generation"}


@dataclass
class CheckpointPlan:
    """What to write for one model id (JSON-able: stored with the build)."""

    model_id: str
    library: str  # transformers | diffusers | sentence-transformers | files
    model_type: str | None = None
    model_class: str | None = None
    diffusers_kind: str | None = None  # ddpm | stable-diffusion | controlnet
    task: str | None = None
    files: list[str] = field(default_factory=list)
    evidence: str = ""
    tokenizer_classes: list[str] = field(default_factory=list)  # named by users of the id: their files too


# ------------------------------------------------------------------------------------------------------------
# Planning: pure text analysis plus lookups in transformers' auto mappings.


def transformers_module() -> Any:
    import transformers  # heavy: imported only when a checkpoint has to be planned or built

    return transformers


def _auto_types(auto_class_name: str) -> list[str]:
    transformers = transformers_module()
    auto = getattr(transformers, auto_class_name, None)
    mapping = getattr(auto, "_model_mapping", None)
    return list(mapping._model_mapping) if mapping is not None else []


def _pipeline_types(task: str) -> tuple[list[str], str | None]:
    """Model types a pipeline task accepts, and its first Auto class."""
    from transformers.pipelines import SUPPORTED_TASKS

    task = _TASK_ALIASES.get(task, task)
    if task.startswith("translation"):
        task = "translation"
    entry = SUPPORTED_TASKS.get(task)
    if entry is None:
        return [], None
    types: list[str] = []
    for auto in entry.get("pt", ()):
        types += [t for t in _auto_types(auto.__name__) if t not in types]
    first = entry["pt"][0].__name__ if entry.get("pt") else None
    return types, first


def _type_of_class(name: str) -> str | None:
    """The model type a transformers class belongs to (model, tokenizer, processor or image processor)."""
    transformers = transformers_module()
    cls = getattr(transformers, name, None)
    prefix = re.sub(r"(TokenizerFast|Tokenizer|ImageProcessor|FeatureExtractor|Processor)$", "", name).lower()
    if prefix != name.lower() and prefix in transformers.CONFIG_MAPPING:  # BertTokenizer -> bert, not align
        return prefix
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and getattr(config_class, "model_type", ""):
        return config_class.model_type
    from transformers.models.auto import (
        feature_extraction_auto,
        image_processing_auto,
        processing_auto,
        tokenization_auto,
    )
    for mapping in (tokenization_auto.TOKENIZER_MAPPING_NAMES, image_processing_auto.IMAGE_PROCESSOR_MAPPING_NAMES,
                    processing_auto.PROCESSOR_MAPPING_NAMES, feature_extraction_auto.FEATURE_EXTRACTOR_MAPPING_NAMES):
        for model_type, names in mapping.items():
            if name in (names if isinstance(names, tuple) else (names,)):
                return model_type
    return None


def _by_name(model_id: str, candidates: Iterable[str]) -> str | None:
    """The candidate model type that the id's name spells (longest wins): 'distilbert-base' -> distilbert."""
    name = model_id.lower().replace("_", "-")
    best = None
    for model_type in candidates:
        spelled = model_type.replace("_", "-")
        spelled_here = re.search(rf"(^|[/\-.]){re.escape(spelled)}($|[/\-.\d])", name)
        if spelled_here and (best is None or len(spelled) > len(best)):
            best = model_type
    return best


def _pick(model_id: str, candidates: list[str]) -> str | None:
    if not candidates:
        return None
    return _by_name(model_id, candidates) or next((t for t in _DEFAULT_TYPES if t in candidates), candidates[0])


def plan_checkpoint(model_id: str, row: ApiRow | None, evidence_code: Iterable[str] = ()) -> CheckpointPlan:
    """Decide the library, architecture and files of `model_id` from its database row and code that uses it."""
    call = row.api_call if row else ""
    examples = [as_text(row.example_code)] if row and row.example_code else []
    texts = [call, *examples, *evidence_code]
    joined = "\n".join(texts)
    framework = (row.framework if row else "").lower()
    if _ST_CALLS.search(call) or "sentence-transformers" in framework or "sentence_transformers" in call:
        cross = "CrossEncoder" in call
        return CheckpointPlan(model_id, "sentence-transformers", "bert",
                              "BertForSequenceClassification" if cross else "BertModel", evidence=call)
    if _DIFFUSERS_CALLS.search(call) or "diffusers" in framework:
        lowered = (call + model_id).lower()
        kind = ("controlnet" if "controlnet" in lowered else "vae" if "AutoencoderKL" in call else
                "ddpm" if re.search(r"ddpm|ddim|unconditional|church|cifar|celeba|butterfl|pokemon|anime", lowered)
                and "stable" not in lowered else "stable-diffusion")
        return CheckpointPlan(model_id, "diffusers", diffusers_kind=kind, evidence=call)
    if _FILE_CALLS.search(call) or framework in ("joblib", "scikit-learn", "keras"):
        files = sorted({m.group(1) for text in texts for m in _HUB_FILENAME.finditer(text)}
                       | {"model.joblib", "sklearn_model.joblib", "config.json"})
        return CheckpointPlan(model_id, "files", files=files, evidence=call)
    # transformers: concrete classes first (the call, then examples and answers), then tasks and Auto classes.
    for text in texts:
        for match in _CLASS_FROM_PRETRAINED.finditer(text):
            name = match.group(1)
            if name.startswith("Auto") or (name == "VisionEncoderDecoderModel" and "VisionEncoderDecoder" not in call):
                continue
            model_type = _type_of_class(name)
            if model_type and not name.endswith(("Tokenizer", "TokenizerFast", "Processor", "FeatureExtractor",
                                                   "ImageProcessor")):
                return CheckpointPlan(model_id, "transformers", model_type, name, evidence=name,
                                      tokenizer_classes=_tokenizer_classes(texts))
    tokenizer_types = [t for text in texts for m in _NAMED_CLASS.finditer(text)
                       if not m.group(1).startswith("Auto") and (t := _type_of_class(m.group(1)))]
    tasks = pipeline_tasks(call) or pipeline_tasks(joined)
    auto_match = re.search(r"\b(AutoModel\w*)\.from_pretrained", joined)
    if tasks:
        task = tasks[0]
        candidates, auto_name = _pipeline_types(task)
    elif auto_match:
        auto_name = auto_match.group(1)
        candidates, task = _auto_types(auto_name), None
    else:
        candidates, auto_name, task = _auto_types("AutoModel"), "AutoModel", None
    if not candidates:  # an unknown pipeline task: the snippet fails on the task, the checkpoint is a fallback
        candidates, auto_name = _auto_types("AutoModel"), "AutoModel"
    preferred = [t for t in tokenizer_types if t in candidates]
    model_type = preferred[0] if preferred else _pick(model_id, candidates)
    if model_type is None:
        return CheckpointPlan(model_id, "transformers", None, None, task=task, evidence="no architecture fits")
    model_class = None
    if auto_name:
        mapping = getattr(transformers_module(), auto_name)._model_mapping._model_mapping
        model_class = mapping.get(model_type)
        model_class = model_class[0] if isinstance(model_class, (list, tuple)) else model_class
    return CheckpointPlan(model_id, "transformers", model_type, model_class, task=task,
                          evidence=f"{task or auto_name}: {model_type}", tokenizer_classes=_tokenizer_classes(texts))


def _tokenizer_classes(texts: list[str]) -> list[str]:
    names = {m.group(1) for text in texts for m in re.finditer(r"\b([A-Z]\w*Tokenizer)(?:Fast)?\b", text)}
    return sorted(n for n in names if not n.startswith("Auto"))


