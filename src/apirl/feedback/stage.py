"""`apirl feedback`: sample K completions per train prompt from the policy, judge them, label them, pair them.

The stage writes into `runs/<name>/feedback/`:

- `samples.jsonl`: one row per completion (sample_id = "<example_id>:<k>", example_id, k, prompt, completion).
  Resumable like `apirl generate`: finished samples are appended to `samples.jsonl.partial` under the
  sampling fingerprint (policy and its weights' hash, sampling settings, seed, prompts); a rerun generates
  only what is missing. The finished file is reused by later runs with the same fingerprint, so changing the
  judge re-judges the same samples instead of drawing new ones.
- `executions.jsonl` (with `execute`): each sample's executability verdict, reused by a rerun.
- `judgments.sqlite`: the judgment cache (see `cache.py`); a killed run resumes without judging anything twice.
- `feedback.jsonl`: per sample its answers (question, value, p_yes, judge, detail), its score S (the sum of
  answer weights, see `types.score`) and its label (S at or above the threshold: `threshold`, or the
  `label_quantile` rule's).
- `pairs.jsonl`: per prompt, the highest- and the lowest-scored completion (prompt, chosen, rejected,
  chosen_score, rejected_score, example_id: what TRL's DPO and reward trainers read); prompts whose
  completions all score the same are dropped (a tie teaches no preference).
- `summary.json`: counts, label rate, mean S, pairs, what the judging cost this run (judgments made and read
  from the cache, tokens, seconds per 1,000 judgments made) and the cache file's totals (`cache`: calls and
  tokens per judge, calibration runs included).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from apirl.data.apidb import ApiDatabase
from apirl.data.stage import read_catalog, read_hub_evidence, read_prompts
from apirl.execution.config import ExecConfig
from apirl.execution.executor import ExecVerdict, runnable_code
from apirl.feedback.cache import JudgmentCache
from apirl.feedback.config import FeedbackConfig
from apirl.feedback.judges import Judge, judge_label, make_judge, questions_of, uses_execution
from apirl.feedback.openai_judge import ENV_BASE_URL, ENV_MODEL
from apirl.feedback.types import Answer, Sample, label, quantile_threshold, score
from apirl.jsonl import iter_jsonl, json_line, rows_written_under, write_jsonl
from apirl.models.config import GenerateConfig, ModelConfig
from apirl.models.generation import generate_batches, request_of
from apirl.models.load import ModelSource, load_model, load_tokenizer, resolve_or_sft
from apirl.rundir import RunLayout, StageOutput, StageResult, file_sha256, run_stage, weight_files

STAGE = "feedback"
SAMPLES = "samples.jsonl"
CACHE = "judgments.sqlite"
EXECUTIONS = "executions.jsonl"
# Samples per judge call: the step of the progress bar, and of an LLM server's request queue.
JUDGE_CHUNK = 32
_CALIBRATE_FIELDS = {"calibrate_split", "calibrate_limit"}


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def sampling_policy(feedback: FeedbackConfig, model: ModelConfig, layout: RunLayout) -> ModelSource:
    """The policy to sample from: `feedback.policy`, else M_SFT in `runs/<name>/sft/model`."""
    return resolve_or_sft(feedback.policy, layout, model.cache_dir, "feedback.policy")


def policy_weights(source: ModelSource) -> list[Path]:
    """The policy's weight files when it is local (a hub id is its own version)."""
    return weight_files(source.location) if source.local else []


def prompt_subset(prompts: list[dict[str, str]], limit: int, seed: int) -> list[dict[str, str]]:
    """`limit` > 0 keeps a seeded random subset of the prompts, still in file order."""
    if limit and limit < len(prompts):
        keep = set(random.Random(f"apirl-feedback-subset:{seed}").sample(range(len(prompts)), limit))
        prompts = [row for index, row in enumerate(prompts) if index in keep]
    return prompts


# ------------------------------------------------------------------------------------------------------------
# Sampling.


def _sampling_fingerprint(fb: FeedbackConfig, model: ModelConfig, seed: int, source: ModelSource,
                          prompts: list[dict[str, str]], catalog_sha: str | None = None) -> dict[str, Any]:
    weights = policy_weights(source)
    digest = hashlib.sha256("\x00".join(f"{p['example_id']}\x01{p['prompt']}" for p in prompts).encode())
    # One weight file is hashed alone (what earlier runs recorded, so their samples stay reusable), shards together.
    weights_sha = (file_sha256(weights[0]) if len(weights) == 1 else
                   hashlib.sha256("".join(file_sha256(w) for w in weights).encode()).hexdigest() if weights else None)
    return {"policy": source.spec, "policy_sha256": weights_sha,
            "dtype": model.dtype, "seed": seed,
            "sampling": {"samples_per_prompt": fb.samples_per_prompt, "temperature": fb.temperature,
                         "top_p": fb.top_p, "max_new_tokens": fb.max_new_tokens, "batch_size": fb.batch_size,
                         # only when on, so samples drawn before the option existed stay reusable
                         **({"grounding": fb.sample_grounding, "catalog_sha256": catalog_sha}
                            if fb.sample_grounding != "none" else {})},
            "prompts_sha256": digest.hexdigest()}


def sample_completions(fb: FeedbackConfig, model: ModelConfig, seed: int, source: ModelSource,
                       prompts: list[dict[str, str]], stage_dir: Path, console: Console,
                       catalog: ApiDatabase | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the sample rows in prompt-then-k order, generation stats): reuses a finished `samples.jsonl` of the
    same fingerprint, resumes a partial one, generates the rest. `catalog` grounds the samples when
    `fb.sample_grounding` asks for it."""
    out, meta = stage_dir / SAMPLES, stage_dir / "samples.meta.json"
    partial, partial_meta = stage_dir / (SAMPLES + ".partial"), stage_dir / (SAMPLES + ".partial.meta.json")
    fingerprint = _sampling_fingerprint(fb, model, seed, source, prompts,
                                        catalog.fingerprint() if catalog is not None else None)
    wanted = [(prompt, k) for prompt in prompts for k in range(fb.samples_per_prompt)]
    done = rows_written_under(out, meta, fingerprint, "sample_id")
    finished = len(done) == len(wanted)
    if not finished:
        done = rows_written_under(partial, partial_meta, fingerprint, "sample_id")
    if not done:
        partial.unlink(missing_ok=True)
    todo = [(prompt, k) for prompt, k in wanted if f"{prompt['example_id']}:{k}" not in done]
    stats: dict[str, Any] = {"generated": len(todo), "resumed": len(wanted) - len(todo), "new_tokens": 0,
                             "generate_seconds": 0.0}
    if todo:
        partial_meta.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
        tokenizer = load_tokenizer(source)
        policy = load_model(source, model.dtype, model.device or None)
        generate = GenerateConfig(split="train", batch_size=fb.batch_size, max_new_tokens=fb.max_new_tokens,
                                  do_sample=True, temperature=fb.temperature, top_p=fb.top_p, prompt_style="plain",
                                  grounding=fb.sample_grounding)
        with _progress(console) as progress, partial.open("a", encoding="utf-8") as sink:
            task = progress.add_task(f"sample {source.spec}", total=len(wanted), completed=len(done))

            def on_batch(indices: list[int], texts: list[str], new_tokens: int) -> None:
                for index, text in zip(indices, texts, strict=True):
                    prompt, k = todo[index]
                    row = {"sample_id": f"{prompt['example_id']}:{k}", "example_id": prompt["example_id"], "k": k,
                           "prompt": prompt["prompt"], "completion": text}
                    sink.write(json_line(row))
                    done[row["sample_id"]] = row
                sink.flush()
                progress.update(task, advance=len(indices))

            generated = generate_batches(policy, tokenizer, [prompt["prompt"] for prompt, _k in todo], generate,
                                         seed=seed, keys=[f"{prompt['example_id']}:{k}" for prompt, k in todo],
                                         catalog=catalog, on_batch=on_batch)
        stats.update(new_tokens=generated.new_tokens, generate_seconds=round(generated.seconds, 1),
                     tokens_per_s=round(generated.tokens_per_s, 1))
        del policy
        gc.collect()  # the judge may load an LLM next
    rows = [done[f"{prompt['example_id']}:{k}"] for prompt, k in wanted]
    if not finished:
        write_jsonl(out, rows)
        meta.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
    partial.unlink(missing_ok=True)
    partial_meta.unlink(missing_ok=True)
    return rows, stats


# ------------------------------------------------------------------------------------------------------------
# Execution (`feedback.execute`): the harness's verdict per sample, for the tools judge.


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()[:16]


def execute_samples(execution: ExecConfig, api_db: ApiDatabase, evidence: dict[str, list[str]],
                    samples: Sequence[Sample], path: Path) -> dict[str, ExecVerdict]:
    """Each sample's executability verdict (in `execution.mode`), by sample id. Verdicts are kept in `path`
    (JSONL, with the code's hash and the mode): a rerun runs only the snippets it has no verdict for."""
    from apirl.execution.stage import open_executor, run_checks

    mode = execution.mode
    codes = {sample.sample_id: runnable_code(sample.completion) for sample in samples}
    kept: dict[str, ExecVerdict] = {}
    if path.is_file():
        for _line, raw in iter_jsonl(path, what="executability verdicts"):
            verdict = ExecVerdict.from_json(raw["verdict"])
            if "loaded" not in raw["verdict"] and verdict.ok:
                continue  # kept before the sandbox recorded loads: run again, or its loads would read as none
            if verdict.key in codes and verdict.mode == mode and raw.get("code_sha") == _code_hash(codes[verdict.key]):
                kept[verdict.key] = verdict
    missing = {key: code for key, code in codes.items() if key not in kept}
    if missing:
        with open_executor(execution, api_db, evidence) as executor:
            for verdict in run_checks(executor, missing, mode, "execute samples"):
                kept[verdict.key] = verdict
    write_jsonl(path, [{"code_sha": _code_hash(codes[key]), "verdict": kept[key].to_json()} for key in codes])
    return kept


# ------------------------------------------------------------------------------------------------------------
# Judging, labels and pairs.


def judge_samples(judge: Judge, samples: Sequence[Sample], console: Console, what: str = "judge") -> list[list[Answer]]:
    """Every sample's answers, JUDGE_CHUNK samples per judge call, with a progress bar."""
    answers: list[list[Answer]] = []
    with _progress(console) as progress:
        task = progress.add_task(f"{what} ({judge.name})", total=len(samples))
        for start in range(0, len(samples), JUDGE_CHUNK):
            chunk = samples[start:start + JUDGE_CHUNK]
            answers += judge.judge(chunk)
            progress.update(task, advance=len(chunk))
    return answers


def feedback_row(sample: dict[str, Any], answers: Sequence[Answer], threshold: float) -> dict[str, Any]:
    """One line of feedback.jsonl: the sample, its answers, its score S and its label."""
    s = round(score(answers), 6)  # the label agrees with the score as written
    return {"sample_id": sample["sample_id"], "example_id": sample["example_id"], "k": sample["k"],
            "prompt": sample["prompt"], "completion": sample["completion"],
            "answers": [asdict(answer) for answer in answers], "score": s, "label": label(s, threshold)}


def label_threshold(fb: FeedbackConfig, scores: Sequence[float]) -> float:
    """The score a sample needs to be labelled good: `threshold`, or the quantile rule's over these scores
    (rounded as the rows write their scores, so that the label agrees with the score as written)."""
    if fb.label_rule == "threshold" or not scores:
        return fb.threshold
    return quantile_threshold([round(s, 6) for s in scores], fb.label_quantile)


def make_pairs(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(pairs, prompts dropped for a tie): per example, its highest- and lowest-scored completion (the first
    such in k order) when their scores differ. Rows are feedback rows (example_id, prompt, completion, score)."""
    by_example: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_example.setdefault(row["example_id"], []).append(row)
    pairs, ties = [], 0
    for example_id, group in by_example.items():
        best = max(group, key=lambda r: r["score"])  # max/min keep the first of equals
        worst = min(group, key=lambda r: r["score"])
        if math.isclose(best["score"], worst["score"], rel_tol=0.0, abs_tol=1e-9):
            ties += 1
            continue
        pairs.append({"example_id": example_id, "prompt": best["prompt"], "chosen": best["completion"],
                      "rejected": worst["completion"], "chosen_score": best["score"],
                      "rejected_score": worst["score"], "chosen_id": best["sample_id"],
                      "rejected_id": worst["sample_id"]})
    return pairs, ties


def per_1000(seconds: float, judgments: int) -> float | None:
    """Seconds per 1,000 judgments made (None when none was made: everything came from the cache)."""
    return round(1000 * seconds / judgments, 3) if judgments else None


def answer_stats(answers: Sequence[Sequence[Answer]]) -> dict[str, Any]:
    """How often each question was left unknown, and which judge gave how many answers."""
    unknown: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    by_judge: Counter[str] = Counter()
    for row in answers:
        for answer in row:
            asked[answer.question] += 1
            unknown[answer.question] += answer.value is None
            by_judge[answer.judge] += 1
    return {"unknown_rate": {key: round(unknown[key] / asked[key], 4) for key in asked},
            "answered_by": dict(sorted(by_judge.items()))}


def judge_settings(fb: FeedbackConfig) -> dict[str, Any]:
    """What decides the answers besides the config: the OpenAI-compatible server and model taken from the
    environment when the config leaves them empty (another model must not count as up to date)."""
    if not (fb.judge == "openai" or (fb.judge == "hybrid" and fb.hybrid_llm == "openai")):
        return {}
    return {"openai_base_url": fb.openai_base_url or os.environ.get(ENV_BASE_URL, ""),
            "openai_model": fb.openai_model or os.environ.get(ENV_MODEL, "")}


def write_feedback(fb: FeedbackConfig, model: ModelConfig, execution: ExecConfig, layout: RunLayout, seed: int,
                   console: Console) -> dict[str, Any]:
    """Sample, judge and write the stage's files; returns the summary (also `summary.json`)."""
    started = time.perf_counter()
    stage_dir = layout.stage(STAGE)
    source = sampling_policy(fb, model, layout)
    prompts = prompt_subset(read_prompts(layout, "train"), fb.prompts_limit, seed)
    api_db = read_catalog(layout)
    sample_rows, generation = sample_completions(fb, model, seed, source, prompts, stage_dir, console, api_db)
    samples = [Sample(row["sample_id"], request_of(row["prompt"]), row["completion"]) for row in sample_rows]

    verdicts = (execute_samples(execution, api_db, read_hub_evidence(layout), samples, stage_dir / EXECUTIONS)
                if uses_execution(fb) else None)
    with JudgmentCache(stage_dir / CACHE) as cache:
        judge = make_judge(fb, api_db, cache, device=model.device or None, exec_verdicts=verdicts)
        answers = judge_samples(judge, samples, console)
        cache_stats = cache.stats()
    threshold = label_threshold(fb, [score(row_answers) for row_answers in answers])
    rows = [feedback_row(row, row_answers, threshold) for row, row_answers in zip(sample_rows, answers, strict=True)]
    pairs, ties = make_pairs(rows)
    write_jsonl(layout.feedback_rows, rows)
    write_jsonl(layout.pairs, pairs)

    counts = judge.counts
    summary = {
        "policy": source.spec, "judge": judge_label(fb), "judge_model": judge.model,
        "questions": [q.key for q in questions_of(fb)], "label_rule": fb.label_rule,
        "label_quantile": fb.label_quantile if fb.label_rule == "quantile" else None, "threshold": threshold,
        "prompts": len(prompts), "samples_per_prompt": fb.samples_per_prompt, "samples": len(rows),
        "samples_generated": generation["generated"], "samples_resumed": generation["resumed"],
        "new_tokens": generation["new_tokens"], "generate_seconds": generation["generate_seconds"],
        "judgments": sum(len(row) for row in answers), "judgments_made": counts.made, "cache_hits": counts.cached,
        "judge_tokens": counts.tokens,
        "judge_seconds": round(counts.seconds, 3), "seconds_per_1000_judgments": per_1000(counts.seconds, counts.made),
        "label_rate": round(sum(row["label"] for row in rows) / len(rows), 4) if rows else None,
        "mean_score": round(sum(row["score"] for row in rows) / len(rows), 4) if rows else None,
        "pairs": len(pairs), "prompts_tied": ties,
        "executable_rate": (round(sum(v.ok for v in verdicts.values()) / len(verdicts), 4) if verdicts else None),
        **answer_stats(answers),
        "cache": cache_stats, "wall_seconds": round(time.perf_counter() - started, 1),
    }
    layout.summary(STAGE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def run_feedback(feedback: FeedbackConfig, model: ModelConfig, execution: ExecConfig, layout: RunLayout, seed: int,
                 *, force: bool = False, console: Console | None = None) -> StageResult[dict[str, Any]]:
    """The feedback stage (`apirl feedback`): samples and judges unless an identical run finished (`force` redoes
    it; the samples and the cached judgments are reused all the same). Reads the data stage's train split."""
    console = console or Console(stderr=True)
    source = sampling_policy(feedback, model, layout)
    executes = uses_execution(feedback)
    inputs = [layout.split("train"), layout.catalog, *([layout.hub_evidence] if executes else []),
              *policy_weights(source)]
    # With executability verdicts the harness's settings decide answers too.
    stage_config = {"feedback": feedback.model_dump(mode="json", exclude=_CALIBRATE_FIELDS),
                    "policy": source.spec, "dtype": model.dtype, **judge_settings(feedback),
                    **({"execution": execution.model_dump(mode="json")} if executes else {})}

    def work(directory: Path, _fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        summary = write_feedback(feedback, model, execution, layout, seed, console)
        return StageOutput([directory / SAMPLES, layout.feedback_rows, layout.pairs, layout.summary(STAGE)], summary)

    return run_stage(layout.stage(STAGE), config=stage_config, seed=seed, inputs=inputs, work=work, force=force)
