"""Keywords that libraries silently drop are reported as bad arguments inside the sandbox."""

from __future__ import annotations

from typing import Any

from apirl.execution.kwarg_audit import ignored_pipeline_kwargs, install


class FakePipeline:
    """Reads `top_k` (postprocess) and `max_length` (forward), like a real pipeline's _sanitize_parameters."""

    def __init__(self, model: Any = None, device: Any = None, **kwargs: Any) -> None:
        self.model = model

    def _sanitize_parameters(self, top_k: int | None = None, max_length: int | None = None,
                             **kwargs: Any) -> tuple[dict, dict, dict]:
        forward = {"max_length": max_length} if max_length is not None else {}
        post = {"top_k": top_k} if top_k is not None else {}
        return {}, forward, post


class StrictPipeline(FakePipeline):
    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        if "bad_value" in kwargs:
            raise ValueError("bad value")
        return super()._sanitize_parameters(**kwargs)


def test_keywords_the_pipeline_reads_are_accepted() -> None:
    assert ignored_pipeline_kwargs(FakePipeline(), {"top_k": 3, "max_length": 9}, {"task", "model"}) == []


def test_keywords_nothing_reads_are_reported() -> None:
    kwargs = {"top_k": 3, "use_cache_dir": True, "model": "m"}
    assert ignored_pipeline_kwargs(FakePipeline(), kwargs, {"task", "model"}) == ["use_cache_dir"]


def test_keywords_consumed_by_pipeline_or_init_are_not_reported() -> None:
    kwargs = {"batch_size": 4, "torch_dtype": "float32", "device": "cpu"}
    assert ignored_pipeline_kwargs(FakePipeline(), kwargs, {"task", "model"}) == []


def test_a_probe_that_raises_counts_as_read() -> None:
    assert ignored_pipeline_kwargs(StrictPipeline(), {"bad_value": 1}, set()) == []


def test_install_wraps_transformers_pipeline_once() -> None:
    import transformers
    import transformers.pipelines

    original = transformers.pipelines.pipeline
    try:
        install()
        install()
        wrapped = transformers.pipeline
        assert getattr(wrapped, "_apirl_audited", False)
        assert getattr(wrapped, "__wrapped__", None) is original
    finally:
        transformers.pipelines.pipeline = original
        transformers.pipeline = original
