"""Writing tiny random checkpoints for the offline hub: configs shrunk to `TINY`, tokenizer files in the slow
formats (so slow and fast classes load them), preprocessors, and one builder per library (transformers,
diffusers, plain files)."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apirl.execution.hub_plan import CheckpointPlan, transformers_module

TINY = {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128}

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
    transformers = transformers_module()
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
    transformers = transformers_module()
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


def quiet() -> contextlib.ExitStack:
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

    transformers = transformers_module()
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


