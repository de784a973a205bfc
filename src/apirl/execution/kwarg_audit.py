"""Keyword arguments that a library accepts and then silently drops become errors inside the sandbox.

`pipeline("fill-mask", model=m, use_cache_dir=True)` and `DDPMPipeline.from_pretrained(m, use_cache_dir=True)`
run without complaint: a transformers pipeline's `_sanitize_parameters` keeps only the names it knows, and
diffusers' loaders drop what no `__init__` takes (the pipeline loader logs a warning, the model loader says
nothing). A snippet whose argument nothing reads has not called the API "with arguments it accepts", and a
hallucinated keyword is exactly what the harness must catch, so inside the sandbox these calls raise the
TypeError a plain Python function would raise (classified as `bad_arguments`).

`install()` runs once in each sandbox worker after the preloads, so every forked snippet inherits the patches.
Only arguments the *caller* passed are judged: a library's internal keywords are never flagged.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any

# pipeline() and Pipeline.__init__ consume these from **kwargs themselves.
_PIPELINE_CONSUMED = frozenset({"code_revision", "_commit_hash", "torch_dtype", "dtype", "use_auth_token",
                                "batch_size", "num_workers", "args_parser"})
# diffusers' from_config takes these out of the unused keywords after extract_init_dict.
_DIFFUSERS_CONSUMED = frozenset({"dtype", "torch_dtype"})

_state = threading.local()


def _init_parameter_names(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            names |= set(inspect.signature(init).parameters)
        except (TypeError, ValueError):
            continue
    return names


def ignored_pipeline_kwargs(pipe: Any, kwargs: dict[str, Any], signature_names: set[str]) -> list[str]:
    """The caller's keywords that neither `pipeline()`, the pipeline class's `__init__` nor its
    `_sanitize_parameters` uses: probing one name at a time, a keyword is used when it changes what
    `_sanitize_parameters` returns. A probe that raises counts as used (the keyword was read)."""
    candidates = [k for k in kwargs if k not in signature_names and k not in _PIPELINE_CONSUMED]
    if not candidates or not hasattr(pipe, "_sanitize_parameters"):
        return []
    candidates = [k for k in candidates if k not in _init_parameter_names(type(pipe))]
    try:
        baseline = pipe._sanitize_parameters()
    except Exception:
        return []
    ignored = []
    for name in candidates:
        try:
            used = pipe._sanitize_parameters(**{name: kwargs[name]}) != baseline
        except Exception:
            used = True
        if not used:
            ignored.append(name)
    return ignored


def _audit_transformers_pipeline() -> None:
    import transformers
    import transformers.pipelines

    original = transformers.pipelines.pipeline
    if getattr(original, "_apirl_audited", False):
        return
    signature_names = set(inspect.signature(original).parameters) - {"kwargs"}

    @functools.wraps(original)
    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        ignored = ignored_pipeline_kwargs(pipe, kwargs, signature_names)
        if ignored:
            raise TypeError(f"pipeline() got an unexpected keyword argument {ignored[0]!r} "
                            f"({type(pipe).__name__} ignores it)")
        return pipe

    pipeline._apirl_audited = True  # type: ignore[attr-defined]
    transformers.pipelines.pipeline = pipeline
    transformers.pipeline = pipeline


def _audit_diffusers() -> None:
    from diffusers import DiffusionPipeline, ModelMixin
    from diffusers.configuration_utils import ConfigMixin

    extract = ConfigMixin.__dict__["extract_init_dict"].__func__
    if getattr(extract, "_apirl_audited", False):
        return

    @functools.wraps(extract)
    def extract_init_dict(cls: type, config_dict: Any, **kwargs: Any) -> Any:
        init_dict, unused, hidden = extract(cls, config_dict, **kwargs)
        if getattr(_state, "depth", 0):
            _state.unused |= set(unused)
        return init_dict, unused, hidden

    extract_init_dict._apirl_audited = True  # type: ignore[attr-defined]
    ConfigMixin.extract_init_dict = classmethod(extract_init_dict)  # type: ignore[assignment]

    for owner in (DiffusionPipeline, ModelMixin):
        loader = owner.__dict__["from_pretrained"].__func__

        def audited(cls: type, *args: Any, _loader: Any = loader, **kwargs: Any) -> Any:
            if getattr(_state, "depth", 0):
                return _loader(cls, *args, **kwargs)
            _state.depth, _state.unused = 1, set()
            try:
                result = _loader(cls, *args, **kwargs)
                ignored = sorted((set(kwargs) & _state.unused) - _DIFFUSERS_CONSUMED
                                 - set(getattr(cls, "_deprecated_kwargs", ())) - _init_parameter_names(cls))
            finally:
                _state.depth = 0
            if ignored:
                raise TypeError(f"{cls.__name__}.from_pretrained() got an unexpected keyword argument "
                                f"{ignored[0]!r} (diffusers ignores it)")
            return result

        owner.from_pretrained = classmethod(functools.wraps(loader)(audited))  # type: ignore[assignment]


def install() -> None:
    """Patch the libraries that are importable; a missing one is skipped (its snippets are unsupported)."""
    for patch in (_audit_transformers_pipeline, _audit_diffusers):
        try:
            patch()
        except ImportError:
            continue
