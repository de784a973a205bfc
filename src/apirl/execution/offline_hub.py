"""An offline Hugging Face hub: a tiny random checkpoint for every model id of the API database.

Generated code is judged by running it, and Gorilla-style code loads hub models (`pipeline(task, model=ID)`,
`XForY.from_pretrained(ID)`, `SentenceTransformer(ID)`, `DiffusionPipeline.from_pretrained(ID)`,
`hf_hub_download(ID, FILE)`). No hub is reachable here and nobody wants 900 real models, so for each id we
write a randomly initialised checkpoint of a compatible architecture, a few hundred kilobytes to a few
megabytes, into a normal Hugging Face cache directory (`<root>/hub/models--org--name/snapshots/<rev>/`). The
code under test then runs the real, unmodified loading code of transformers, diffusers and
sentence-transformers with `HF_HUB_OFFLINE=1` and `HF_HOME=<root>`: an id that is not in the database is not in
the cache, and loading it fails the way a missing repository fails offline (an OSError that the sandbox
classifies as `unknown_model_id`).

The architecture of an id is chosen from evidence, most specific first: concrete classes named with the id in
the database row's `api_call`, then in the row's `example_code` and in the eval answers that use the row (a
checkpoint is whatever its users load it with), then tokenizer/processor classes, then the pipeline task or
Auto class (its model types, picked by the id's name, e.g. `distilbert-base-...` -> distilbert), then a default
per task. Sizes are shrunk (hidden size 32, two layers); vocabularies and image/audio preprocessing keep their
real sizes, so special-token ids and processor/config pairs stay consistent.

Built lazily (only the ids a run uses), once: `<root>/built/<id>.json` records each id's plan and outcome, and
the version of this builder (`BUILDER_VERSION`) invalidates old builds.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import pickle
import re
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from apirl.code_facts import pipeline_tasks
from apirl.data.apidb import ApiDatabase, ApiRow, as_text

BUILDER_VERSION = 2
TINY = {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128}

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


def _transformers() -> Any:
    import transformers  # heavy: imported only when a checkpoint has to be planned or built

    return transformers


def _auto_types(auto_class_name: str) -> list[str]:
    transformers = _transformers()
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
    transformers = _transformers()
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
        mapping = getattr(_transformers(), auto_name)._model_mapping._model_mapping
        model_class = mapping.get(model_type)
        model_class = model_class[0] if isinstance(model_class, (list, tuple)) else model_class
    return CheckpointPlan(model_id, "transformers", model_type, model_class, task=task,
                          evidence=f"{task or auto_name}: {model_type}", tokenizer_classes=_tokenizer_classes(texts))


def _tokenizer_classes(texts: list[str]) -> list[str]:
    names = {m.group(1) for text in texts for m in re.finditer(r"\b([A-Z]\w*Tokenizer)(?:Fast)?\b", text)}
    return sorted(n for n in names if not n.startswith("Auto"))


# ------------------------------------------------------------------------------------------------------------
# Tiny configs.

_SIZE_KEYS = {
    "hidden": ("hidden_size", "d_model", "pooler_hidden_size", "n_embd", "embed_dim", "dim", "projection_dim",
               "text_embed_dim",
               "vision_embed_dim", "d_embed", "word_embed_proj_dim", "hidden_dim", "encoder_hidden_size"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers", "decoder_layers", "n_layers",
               "num_decoder_layers", "num_encoder_layers", "decoder_num_layers", "num_hidden_layers_decoder"),
    "heads": ("num_attention_heads", "n_head", "encoder_attention_heads", "decoder_attention_heads", "num_heads",
              "decoder_num_attention_heads", "n_heads"),
    "intermediate": ("intermediate_size", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "n_inner", "d_ff",
                     "decoder_ffn_dim", "decoder_intermediate_size", "mlp_dim"),
}


def shrink_config(config: Any, factor: int = 1) -> None:
    """Make `config` (and its sub-configs) tiny in place: width, depth, heads and MLP size.

    Lists of per-stage sizes (ResNet/Swin/ConvNeXt `hidden_sizes`, `depths`) shrink too; anything else stays,
    including vocabulary and image/audio sizes, so the preprocessing files keep matching the model.
    """
    from transformers import PretrainedConfig

    values = {"hidden": TINY["hidden"] * factor, "layers": TINY["layers"], "heads": TINY["heads"],
              "intermediate": TINY["intermediate"] * factor}
    for kind, keys in _SIZE_KEYS.items():
        for key in keys:
            current = getattr(config, key, None)
            if isinstance(current, int) and not isinstance(current, bool) and current > values[kind]:
                setattr(config, key, values[kind])
    for key in ("num_key_value_heads", "num_kv_heads"):
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, 1)
    if isinstance(getattr(config, "embedding_size", None), int) and config.embedding_size > values["hidden"]:
        config.embedding_size = values["hidden"]
    if getattr(config, "use_timm_backbone", False):  # DETR-like: the transformers ResNet, not timm's
        config.use_timm_backbone, config.backbone, config.use_pretrained_backbone = False, None, False
        config.backbone_kwargs = None
        from transformers import ResNetConfig

        config.backbone_config = ResNetConfig(out_features=["stage4"], hidden_sizes=[16, 32, 48, 64],
                                              depths=[1, 1, 1, 1], embedding_size=16)
    if isinstance(getattr(config, "rotary_dim", None), int):
        config.rotary_dim = min(config.rotary_dim, values["hidden"] // values["heads"])
    if isinstance(getattr(config, "d_kv", None), int):
        config.d_kv = values["hidden"] // values["heads"]
    if isinstance(getattr(config, "backbone_out_indices", None), list):  # DPT: one hidden state per neck stage
        config.num_hidden_layers = len(config.backbone_out_indices)
        config.backbone_out_indices = list(range(len(config.backbone_out_indices)))
    if isinstance(getattr(config, "head_dim", None), int):
        config.head_dim = values["hidden"] // values["heads"]
    for key in ("depths", "num_layers_per_stage"):
        if isinstance(getattr(config, key, None), list):
            setattr(config, key, [1] * len(getattr(config, key)))
    for key in ("hidden_sizes", "embed_dims", "block_out_channels"):
        value = getattr(config, key, None)
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            setattr(config, key, [16 * factor * (i + 1) for i in range(len(value))])
    for key in _SIZE_KEYS["heads"]:
        if isinstance(getattr(config, key, None), list):
            setattr(config, key, [values["heads"]] * len(getattr(config, key)))
    for name in list(vars(config)):
        value = getattr(config, name)
        if isinstance(value, PretrainedConfig):
            shrink_config(value, factor)


# ------------------------------------------------------------------------------------------------------------
# Tokenizer files: written in the slow formats, so both slow and fast classes load them.

_CORPUS = ("the quick brown fox jumps over the lazy dog . hello world ! this is a test of the model . "
           "what is the answer to the question ? a photo of a cat and a dog on a table , with 3 people . "
           "translate english to french : how are you today ? summarize the text about the weather in paris .")


def _special_defaults(cls: type) -> list[str]:
    """The default special-token strings of a tokenizer class (its `*_token` keyword defaults)."""
    specials: list[str] = []
    with contextlib.suppress(TypeError, ValueError):
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name.endswith("_token") and isinstance(param.default, str) and param.default not in specials:
                specials.append(param.default)
    return specials


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte-to-printable-character table (every byte gets a visible character)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _sentencepiece_model(specials: list[str]) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    user_symbols = [s for s in specials if s not in ("<unk>", "<s>", "</s>", "<pad>")]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS.split(" . ") * 20), model_writer=model, vocab_size=120,
        model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=3,
        user_defined_symbols=user_symbols, minloglevel=2, hard_vocab_limit=False)
    return model.getvalue()


def _byte_level_bpe(specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*specials, *_bytes_to_unicode()]))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def write_tokenizer_files(cls: type, directory: Path) -> None:
    """Write the vocabulary files `cls.vocab_files_names` asks for, in the format its name implies."""
    specials = _special_defaults(cls)
    words = sorted(set(_CORPUS.split()))
    chars = sorted(set(_CORPUS.replace(" ", "")) | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    files = dict(getattr(cls, "vocab_files_names", {}))
    bpe = "merges_file" in files
    for key, filename in files.items():
        path = directory / filename
        if key in ("tokenizer_file", "tokenizer_config_file", "normalizer_file", "target_vocab_file"):
            continue
        if filename.endswith((".model", ".spm")) or key in ("source_spm", "target_spm"):
            path.write_bytes(_sentencepiece_model(specials))
        elif key == "merges_file":
            path.write_text("#version: 0.2\n")
        elif filename.endswith(".json") and bpe:
            base = _bytes_to_unicode()
            vocab = [*specials, *base, *(c + "</w>" for c in base)]
            path.write_text(json.dumps({tok: i for i, tok in enumerate(dict.fromkeys(vocab))}))
        elif filename.endswith(".json"):  # character vocabularies (CTC) and Marian's piece -> id map
            vocab = [*specials, "|", *chars, *("▁" + w for w in words), "▁", *words]
            path.write_text(json.dumps({tok: i for i, tok in enumerate(dict.fromkeys(vocab))}))
        else:  # WordPiece vocab.txt
            vocab = [*specials, "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars),
                     *words]
            path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")


def save_tokenizer(model_type: str, directory: Path) -> Any | None:
    """Save a small tokenizer of the model type's classes (slow files, then the fast one converted from them)."""
    from transformers.models.auto import tokenization_auto

    names = tokenization_auto.TOKENIZER_MAPPING_NAMES.get(model_type)
    if not names:
        return None
    transformers = _transformers()
    slow_name, fast_name = names if isinstance(names, tuple) else (names, None)
    tokenizer = None
    if slow_name and (slow := getattr(transformers, slow_name, None)) is not None:
        scratch = directory / ".tok"
        scratch.mkdir(exist_ok=True)
        write_tokenizer_files(slow, scratch)
        tokenizer = slow.from_pretrained(str(scratch))
        tokenizer.save_pretrained(str(directory))
        shutil.rmtree(scratch)
    if fast_name and (fast := getattr(transformers, fast_name, None)) is not None:
        if tokenizer is None:  # fast-only classes (BLOOM, GPT-NeoX...): a byte-level BPE built in memory
            tokenizer = fast(tokenizer_object=_byte_level_bpe(_special_defaults(fast)))
            tokenizer.save_pretrained(str(directory))
            return tokenizer
        with contextlib.suppress(Exception):  # a fast tokenizer that cannot convert tiny slow files: slow stays
            fast.from_pretrained(str(directory)).save_pretrained(str(directory))
    return tokenizer


def save_preprocessors(model_type: str, directory: Path, tokenizer: Any | None) -> None:
    """Image processor, feature extractor and processor of the model type, with their default settings."""
    transformers = _transformers()
    from transformers.models.auto import feature_extraction_auto, image_processing_auto, processing_auto

    parts: dict[str, Any] = {}
    names = image_processing_auto.IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if names:
        slow_name = names[0] if isinstance(names, tuple) else names
        if slow_name and (cls := getattr(transformers, slow_name, None)) is not None:
            parts["image_processor"] = cls()
            parts["image_processor"].save_pretrained(str(directory))
    name = feature_extraction_auto.FEATURE_EXTRACTOR_MAPPING_NAMES.get(model_type)
    if name and "image_processor" not in parts and (cls := getattr(transformers, name, None)) is not None:
        parts["feature_extractor"] = cls()
        parts["feature_extractor"].save_pretrained(str(directory))
    name = processing_auto.PROCESSOR_MAPPING_NAMES.get(model_type)
    if name and (cls := getattr(transformers, name, None)) is not None:
        if tokenizer is not None:
            parts["tokenizer"] = tokenizer
        with contextlib.suppress(Exception):  # a processor with parts we do not build (e.g. video) is skipped
            kwargs = {attr: parts[attr] for attr in cls.attributes if attr in parts}
            if len(kwargs) == len(cls.attributes):
                cls(**kwargs).save_pretrained(str(directory))


# ------------------------------------------------------------------------------------------------------------
# Builders per library.


def _quiet() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("transformers", "diffusers", "sentence_transformers"):
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, level)
    return stack


_TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id",
                  "cls_token_id", "mask_token_id", "unk_token_id", "forced_bos_token_id", "forced_eos_token_id",
                  "decoder_bos_token_id", "image_token_index", "image_token_id")


def _vocab_files(cls: type) -> list[str]:
    skip = ("tokenizer_file", "tokenizer_config_file", "normalizer_file", "target_vocab_file")
    return [f for k, f in getattr(cls, "vocab_files_names", {}).items() if k not in skip]


def vocabulary_size(tokenizer: Any) -> int:
    """Ids a tokenizer can emit: more than len() when ids are offset (CamemBERT's fairseq tokens)."""
    return max(len(tokenizer), max(tokenizer.get_vocab().values(), default=0) + 1)


def fit_vocabulary(config: Any, tokenizer: Any, size: int) -> None:
    """Make the model's vocabulary exactly the tokenizer's, and every special-token id point inside it.

    A model larger than its tokenizer generates ids the tokenizer cannot decode; ids of the real vocabulary
    (GPT-2's 50256) would index past a small one. Encoder-decoders also get a decoder start token.
    """
    from transformers import PretrainedConfig

    def first(*ids: int | None) -> int | None:  # not `or`: id 0 is a real id
        return next((i for i in ids if i is not None), None)

    fallback = {"pad_token_id": tokenizer.pad_token_id,
                "bos_token_id": first(tokenizer.bos_token_id, tokenizer.cls_token_id),
                "eos_token_id": first(tokenizer.eos_token_id, tokenizer.sep_token_id)}
    default = next((v for v in (*fallback.values(), tokenizer.unk_token_id) if v is not None), 0)
    configs = [config, *(v for v in vars(config).values() if isinstance(v, PretrainedConfig))]
    for cfg in configs:
        if isinstance(getattr(cfg, "vocab_size", None), int):
            cfg.vocab_size = size
        for key in _TOKEN_ID_KEYS:
            value = getattr(cfg, key, None)
            if isinstance(value, int) and not 0 <= value < size:
                setattr(cfg, key, fallback.get(key) if fallback.get(key) is not None else default)
            elif isinstance(value, list):
                setattr(cfg, key, [v if 0 <= v < size else default for v in value if isinstance(v, int)])
        if getattr(cfg, "is_encoder_decoder", False) and getattr(cfg, "decoder_start_token_id", None) is None:
            cfg.decoder_start_token_id = fallback["pad_token_id"] if fallback["pad_token_id"] is not None else default
        if getattr(cfg, "pad_token_id", None) is None and fallback["pad_token_id"] is not None:
            cfg.pad_token_id = fallback["pad_token_id"]


def build_transformers(plan: CheckpointPlan, directory: Path) -> None:
    import torch

    transformers = _transformers()
    if plan.model_type is None:
        raise ValueError(f"no transformers architecture fits {plan.model_id!r} ({plan.evidence})")
    tokenizer = save_tokenizer(plan.model_type, directory)
    sizes = [vocabulary_size(tokenizer)] if tokenizer is not None else []
    if tokenizer is not None:
        with contextlib.suppress(Exception):  # the fast tokenizer may number added tokens differently
            sizes.append(vocabulary_size(transformers.AutoTokenizer.from_pretrained(str(directory))))
    for name in plan.tokenizer_classes:  # e.g. BertTokenizer on an ALBERT repo: its vocab.txt too
        cls = getattr(transformers, name, None)
        if cls is not None and all((directory / f).exists() for f in _vocab_files(cls)):
            with contextlib.suppress(Exception):
                sizes.append(vocabulary_size(cls.from_pretrained(str(directory))))
        elif cls is not None:
            with contextlib.suppress(Exception):
                scratch = directory / ".tok-extra"
                scratch.mkdir(exist_ok=True)
                write_tokenizer_files(cls, scratch)
                sizes.append(vocabulary_size(cls.from_pretrained(str(scratch))))
                for file in _vocab_files(cls):
                    if not (directory / file).exists():
                        shutil.move(str(scratch / file), directory / file)
                shutil.rmtree(scratch, ignore_errors=True)
                tokenizer = tokenizer or cls.from_pretrained(str(directory))
    config = transformers.AutoConfig.for_model(plan.model_type)
    shrink_config(config)
    if tokenizer is not None:
        fit_vocabulary(config, tokenizer, max(sizes))
        limit = getattr(config, "max_position_embeddings", None) or 512
        if tokenizer.model_max_length > 10**6:  # no real limit recorded: the model's own
            tokenizer.model_max_length = limit
            tokenizer.save_pretrained(str(directory))
    cls = getattr(transformers, plan.model_class or "", None) or transformers.AutoModel
    torch.manual_seed(0)
    model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls(config)
    model.save_pretrained(str(directory), safe_serialization=True)
    save_preprocessors(plan.model_type, directory, tokenizer)


def build_diffusers(plan: CheckpointPlan, directory: Path) -> None:
    """Tiny diffusers repos: DDPM (UNet2DModel + scheduler), Stable Diffusion (UNet, VAE, CLIP text encoder,
    tokenizer, scheduler, no safety checker) and ControlNet, the shapes diffusers' own tests use."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    if plan.diffusers_kind == "ddpm":
        unet = diffusers.UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                                     block_out_channels=(16, 32), norm_num_groups=8,
                                     down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                     up_block_types=("AttnUpBlock2D", "UpBlock2D"))
        diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(str(directory))
        return
    unet_kwargs = dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
                       out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                       norm_num_groups=8, attention_head_dim=4)
    if plan.diffusers_kind == "controlnet":
        kwargs = {k: v for k, v in unet_kwargs.items() if k not in ("sample_size", "out_channels", "up_block_types")}
        diffusers.ControlNetModel(**kwargs, conditioning_embedding_out_channels=(8, 16)) \
            .save_pretrained(str(directory))
        return
    vae = diffusers.AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, norm_num_groups=8,
                                  up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    if plan.diffusers_kind == "vae":
        vae.save_pretrained(str(directory))
        return
    unet = diffusers.UNet2DConditionModel(**unet_kwargs)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                                num_hidden_layers=2, vocab_size=1000, projection_dim=32))
    scratch = directory / ".tok"
    scratch.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(CLIPTokenizer, scratch)
    tokenizer = CLIPTokenizer.from_pretrained(str(scratch), model_max_length=77)
    shutil.rmtree(scratch)
    pipe = diffusers.StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=diffusers.PNDMScheduler(skip_prk_steps=True), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(str(directory))


def build_files(plan: CheckpointPlan, directory: Path) -> None:
    """Repos of pickled estimators (the tabular rows): every file the row's code downloads, plus a config."""
    from apirl.execution.dummies import PermissiveEstimator

    for name in plan.files:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".json"):
            path.write_text(json.dumps({"features": ["feat_0", "feat_1", "feat_2", "feat_3"]}))
        else:
            path.write_bytes(pickle.dumps(PermissiveEstimator()))


BUILDERS: dict[str, Callable[[CheckpointPlan, Path], None]] = {
    # sentence-transformers wraps a plain transformers checkpoint with mean pooling: the same builder.
    "transformers": build_transformers, "sentence-transformers": build_transformers,
    "diffusers": build_diffusers, "files": build_files}


# ------------------------------------------------------------------------------------------------------------
# The cache directory.


def _revision(model_id: str) -> str:
    return hashlib.sha1(f"apirl-offline-hub-{BUILDER_VERSION}-{model_id}".encode()).hexdigest()


@dataclass
class BuildRecord:
    model_id: str
    status: str  # built | failed
    plan: dict[str, Any]
    error: str = ""


class OfflineHub:
    """A Hugging Face cache directory (`HF_HOME`) filled lazily with tiny checkpoints of database model ids."""

    def __init__(self, root: str | Path, api_db: ApiDatabase, evidence: dict[str, list[str]] | None = None) -> None:
        self.root = Path(root)
        self.known = set(api_db.model_ids)
        self.evidence = evidence or {}
        self.rows: dict[str, ApiRow] = {}
        for row in api_db.rows:  # the first row of an id, as the AST matcher picks it
            if row.model_id:
                self.rows.setdefault(row.model_id, row)

    @property
    def env(self) -> dict[str, str]:
        """Environment for processes that load from this hub."""
        return {"HF_HOME": str(self.root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1", "DIFFUSERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}

    def repo_dir(self, model_id: str) -> Path:
        return self.root / "hub" / ("models--" + model_id.replace("/", "--"))

    def _record_path(self, model_id: str) -> Path:
        return self.root / "built" / (model_id.replace("/", "--") + ".json")

    def record(self, model_id: str) -> BuildRecord | None:
        path = self._record_path(model_id)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("builder_version") != BUILDER_VERSION:
            return None
        return BuildRecord(data["model_id"], data["status"], data["plan"], data.get("error", ""))

    def plan(self, model_id: str) -> CheckpointPlan:
        return plan_checkpoint(model_id, self.rows.get(model_id), self.evidence.get(model_id, ()))

    def ensure(self, model_ids: Iterable[str], on_built: Callable[[BuildRecord], None] | None = None
               ) -> dict[str, BuildRecord]:
        """Build every known id of `model_ids` that is not built yet; unknown ids are left out (absent from the
        hub, as on the real one). Failures are recorded, not raised: the snippet then fails to load."""
        records: dict[str, BuildRecord] = {}
        for model_id in dict.fromkeys(model_ids):
            if model_id not in self.known:
                continue
            record = self.record(model_id)
            if record is None:
                record = self.build(model_id)
                if on_built is not None:
                    on_built(record)
            records[model_id] = record
        return records

    def build(self, model_id: str) -> BuildRecord:
        """Write the repo of one id (into a scratch dir, moved into place when complete) and its record."""
        plan = self.plan(model_id)
        revision = _revision(model_id)
        repo = self.repo_dir(model_id)
        scratch = repo / "snapshots" / (revision + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            with _quiet():
                BUILDERS[plan.library](plan, scratch)
            final = repo / "snapshots" / revision
            shutil.rmtree(final, ignore_errors=True)
            scratch.rename(final)
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / "main").write_text(revision)
            record = BuildRecord(model_id, "built", asdict(plan))
        except Exception as exc:  # recorded: the id then behaves as a repo whose files cannot be loaded
            shutil.rmtree(scratch, ignore_errors=True)
            record = BuildRecord(model_id, "failed", asdict(plan), f"{type(exc).__name__}: {exc}"[:500])
        path = self._record_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**asdict(record), "builder_version": BUILDER_VERSION}, indent=1))
        return record
