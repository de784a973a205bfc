"""The generate stage (`apirl generate`): a model's responses to one split of the data stage, in Gorilla's
responses format, in `runs/<name>/generate/<label>/responses.jsonl`.

The output is JSONL with `question_id` (null for examples that are not eval questions), `example_id` and `text`
(the completion after `###Output:`), so `apirl eval responses FILE` scores it unchanged. Beside it,
`FILE.meta.json` records the model, the config, the seed, versions and throughput.

Resumable: finished answers are appended to `FILE.partial` as they complete, with the run's fingerprint in
`FILE.partial.meta.json`; a rerun with the same fingerprint generates only what is missing, a different one
starts over. The final file is written atomically and the partial files removed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from apirl.data.apidb import ApiDatabase
from apirl.data.dataset import Example
from apirl.data.stage import read_catalog, read_examples
from apirl.errors import InputError
from apirl.jsonl import json_line, rows_written_under, write_jsonl
from apirl.models.config import GROUNDED, GenerateConfig, ModelConfig
from apirl.models.generation import build_prompt, generate_batches, pick_shots
from apirl.models.load import load_model, load_tokenizer, resolve_model
from apirl.rundir import (
    RunLayout,
    StageOutput,
    StageResult,
    git_commit,
    package_versions,
    peak_memory_mb,
    run_stage,
    weight_files,
)


def _fingerprint(generate: GenerateConfig, model: ModelConfig, seed: int, prompts: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256("\x00".join(prompts).encode()).hexdigest()
    return {"model": model.name, "generate": generate.model_dump(mode="json"), "seed": seed,
            "prompts_sha256": digest}


def generate_responses(generate: GenerateConfig, model: ModelConfig, seed: int, examples: Sequence[Example],
                       train: Sequence[Example], out: str | Path, console: Console | None = None,
                       catalog: ApiDatabase | None = None) -> dict[str, Any]:
    """Generate responses to `examples` (few-shot prompts draw from `train`) with `model`; returns the summary
    (also saved as `<out>.meta.json`). `catalog` is the API database that `generate.grounding = "catalog"`
    decodes against."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    gen = generate
    if gen.limit:
        examples = examples[: gen.limit]
    source = resolve_model(model.name, Path(model.cache_dir) if model.cache_dir else None)
    tokenizer = load_tokenizer(source)
    shots = pick_shots(train, gen.shots, gen.shots_seed)
    prompts = [build_prompt(ex, gen.prompt_style, shots, tokenizer) for ex in examples]
    partial, partial_meta = out.with_name(out.name + ".partial"), out.with_name(out.name + ".partial.meta.json")
    fingerprint = _fingerprint(gen, model, seed, prompts)
    done = rows_written_under(partial, partial_meta, fingerprint, "example_id")
    if not done:
        partial.unlink(missing_ok=True)
    partial_meta.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
    todo = [i for i, ex in enumerate(examples) if ex.example_id not in done]
    started = time.perf_counter()
    policy = load_model(source, model.dtype, model.device or None)
    load_seconds = time.perf_counter() - started

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[rate]}"))
    with Progress(*columns, console=console, transient=False) as progress, \
            partial.open("a", encoding="utf-8") as sink:
        task = progress.add_task(f"generate {model.name} on {gen.split}", total=len(examples),
                                 completed=len(done), rate="")
        tokens = 0
        batch_started = time.perf_counter()

        def on_batch(indices: list[int], texts: list[str], new_tokens: int) -> None:
            nonlocal tokens
            for index, text in zip(indices, texts, strict=True):
                example = examples[todo[index]]
                row = {"question_id": example.question_id, "example_id": example.example_id, "text": text}
                sink.write(json_line(row))
                done[example.example_id] = row
            sink.flush()
            tokens += new_tokens
            rate = tokens / max(time.perf_counter() - batch_started, 1e-9)
            progress.update(task, advance=len(indices), rate=f"{rate:.0f} tok/s")

        stats = generate_batches(policy, tokenizer, [prompts[i] for i in todo], gen, seed=seed,
                                 keys=[examples[i].example_id for i in todo],
                                 add_special_tokens=gen.prompt_style == "plain", catalog=catalog,
                                 on_batch=on_batch)
    write_jsonl(out, (done[ex.example_id] for ex in examples))
    summary = {
        "file": str(out), "model": model.name, "model_location": source.location,
        "split": gen.split, "n": len(examples), "resumed": len(examples) - len(todo),
        "generated": stats.prompts, "new_tokens": stats.new_tokens,
        "tokens_per_s": round(stats.tokens_per_s, 1), "generate_seconds": round(stats.seconds, 1),
        "load_seconds": round(load_seconds, 1), "peak_memory_mb": peak_memory_mb(),
        "seed": seed, "generate": gen.model_dump(mode="json"), "shots": [s.example_id for s in shots],
        "versions": package_versions(), "commit": git_commit(),
    }
    out.with_name(out.name + ".meta.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    partial.unlink(missing_ok=True)
    partial_meta.unlink(missing_ok=True)
    return summary


def default_label(spec: str, layout: RunLayout, grounding: str = "none") -> str:
    """The label of a model's responses when none is given: the stage of a model inside the run (`sft`, `ppo`),
    else the spec with every character but letters, digits, '.', '_' and '-' as '_'; `-catalog` added when the
    answers are grounded in the catalog (`sft-catalog`)."""
    path = Path(spec).absolute()
    if path.name == "model" and path.parent.parent == layout.root:
        label = path.parent.name
    else:
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.removeprefix("hf:")).strip("_") or "model"
    return f"{label}{GROUNDED}" if grounding == "catalog" else label


def run_generate(generate: GenerateConfig, model: ModelConfig, layout: RunLayout, seed: int, label: str, *,
                 force: bool = False, console: Console | None = None) -> StageResult[dict[str, Any]]:
    """The generate stage of one model (`runs/<name>/generate/<label>/`): its responses to `generate.split` of
    the data stage, skipped when the model's weights, the examples and the settings are unchanged."""
    if "/" in model.name and not Path(model.name).is_dir() and not model.name.startswith("hf:"):
        raise InputError(f"no model at {model.name} for the {label!r} responses: its stage has not run",
                         field="model.name")
    weights = weight_files(model.name) if Path(model.name).is_dir() else []
    inputs = [layout.split(generate.split), layout.split("train"), *weights]
    if generate.grounding == "catalog":
        inputs.append(layout.catalog)
    responses = layout.responses(label)

    def work(directory: Path, _fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        examples, train = read_examples(layout, generate.split), read_examples(layout, "train")
        catalog = read_catalog(layout) if generate.grounding == "catalog" else None
        summary = generate_responses(generate, model, seed, examples, train, responses, console, catalog)
        return StageOutput([responses, responses.with_name(responses.name + ".meta.json")], summary)

    stage_config = {"model": model.model_dump(mode="json"), "generate": generate.model_dump(mode="json")}
    return run_stage(responses.parent, config=stage_config, seed=seed, inputs=inputs, work=work, force=force)
