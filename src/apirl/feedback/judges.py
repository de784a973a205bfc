"""The four judges of a feedback run behind the judgment cache: tools, local, openai and hybrid.

Every judge answers the same way: `judge(samples)` gives one answer per configured question for each sample,
in QUESTIONS order. Each (judge, model, question, prompt, completion) is looked up in the cache first and only
the misses are asked; each new answer is stored the moment it arrives, so a run killed halfway (or a server
that dies) loses nothing already judged, and the rerun asks only for the rest.

The cache key is the answering judge's own ("tools" with model "", "local"/"openai" with their `cache_model`),
not the run's judge kind: the hybrid judge's answers are the tools' and the LLM's answers, so a hybrid run
after a tools run (or an openai run) reuses them. What a row of `feedback.jsonl` shows is the kind that
answered in this run: "hybrid:tools" or "hybrid:openai" for the hybrid judge.

`JudgeCounts` tells what a judge did: judgments made (asked), found in the cache (or repeated in the same
batch: identical completions are judged once), the seconds spent making them (the cost per 1,000 judgments
of the calibration table) and the tokens they used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from apirl.data.apidb import ApiDatabase
from apirl.execution.executor import ExecVerdict
from apirl.feedback.cache import JudgmentCache
from apirl.feedback.config import FeedbackConfig
from apirl.feedback.local_judge import LocalJudge
from apirl.feedback.openai_judge import ENV_BASE_URL, ENV_MODEL, OpenAIJudge
from apirl.feedback.questions import QUESTIONS, Question, question
from apirl.feedback.tools import ToolsJudge
from apirl.feedback.types import Answer, JudgedAnswer, Sample

TOOLS = "tools"


@dataclass
class JudgeCounts:
    """What a judge did: judgments asked of it, judgments found in the cache, seconds spent asking, and the
    tokens the asked ones used (prompt + completion, as an OpenAI-compatible server reports them)."""

    made: int = 0
    cached: int = 0
    seconds: float = 0.0
    tokens: int = 0

    def __add__(self, other: JudgeCounts) -> JudgeCounts:
        return JudgeCounts(self.made + other.made, self.cached + other.cached, self.seconds + other.seconds,
                           self.tokens + other.tokens)


class Judge(Protocol):
    """A judge of one kind behind the cache (see the module docstring)."""

    name: str
    model: str  # the LLM's cache model ("" for the tools alone)

    @property
    def counts(self) -> JudgeCounts: ...

    def judge(self, samples: Sequence[Sample]) -> list[list[Answer]]: ...


class LLMJudge(Protocol):
    """What `CachedLLM` asks of an LLM judge (`LocalJudge`, `OpenAIJudge`), and what their tests call too."""

    name: str

    @property
    def cache_model(self) -> str: ...

    def answer_many(self, items: Sequence[tuple[Sample, Question]],
                    on_answer: Callable[[int, JudgedAnswer], None] | None = None) -> list[JudgedAnswer]:
        """The answers to these (sample, question) pairs, in their order; each also handed to
        `on_answer(position, answer)` as soon as it is known, so the cache keeps it if the rest fails."""
        ...


def questions_of(config: FeedbackConfig) -> tuple[Question, ...]:
    """The configured questions in QUESTIONS order (the order of every answer list)."""
    keys = set(config.questions)
    return tuple(q for q in QUESTIONS if q.key in keys)


def judge_label(config: FeedbackConfig) -> str:
    """A judge setting as a short name for reports and file names: tools, local, openai, hybrid-local,
    hybrid-openai, with "-grounded" when an LLM judge reads the API database (the tools judge ignores it) and
    "-exec" when the tools read the executability harness's verdicts."""
    label = f"hybrid-{config.hybrid_llm}" if config.judge == "hybrid" else config.judge
    label += "-grounded" if config.grounding and config.judge != TOOLS else ""
    return label + ("-exec" if uses_execution(config) else "")


def uses_execution(config: FeedbackConfig) -> bool:
    """Whether the harness's verdicts reach the answers: `execute` with a judge that includes the tools."""
    return config.execute and config.judge in (TOOLS, "hybrid")


class CachedTools:
    """The tools judge with every answer cached (cheap, but cached too so all judges behave alike)."""

    name = TOOLS

    def __init__(self, tools: ToolsJudge, cache: JudgmentCache, questions: Sequence[Question]) -> None:
        # The verdicts change the answers: cached apart ("exec:<mode>") from the static answers ("").
        modes = sorted({verdict.mode for verdict in tools.exec_verdicts.values()})
        self.model = f"exec:{','.join(modes)}" if modes else ""
        self.tools = tools
        self.cache = cache
        self.questions = tuple(questions)
        self.counts = JudgeCounts()

    def judge(self, samples: Sequence[Sample]) -> list[list[Answer]]:
        keys = [q.key for q in self.questions]
        out = []
        for sample in samples:
            found = self.cache.get_many(TOOLS, self.model, keys, sample.instruction, sample.completion)
            answers = []
            for q in self.questions:
                answer = found.get(q.key)
                if answer is None:
                    started = time.perf_counter()
                    answer = self.tools.answer(sample, q)
                    self.counts.seconds += time.perf_counter() - started
                    self.cache.put(answer, self.model, sample.instruction, sample.completion)
                    self.counts.made += 1
                else:
                    self.counts.cached += 1
                answers.append(answer)
            out.append(answers)
        return out


class CachedLLM:
    """An LLM judge (in-process or behind an OpenAI-compatible server) with every answer cached."""

    def __init__(self, llm: LLMJudge, cache: JudgmentCache, questions: Sequence[Question]) -> None:
        self.llm = llm
        self.name: str = llm.name
        self.model: str = llm.cache_model
        self.cache = cache
        self.questions = tuple(questions)
        self.counts = JudgeCounts()

    def judge(self, samples: Sequence[Sample]) -> list[list[Answer]]:
        answers = self.answer_items([(sample, q) for sample in samples for q in self.questions])
        n = len(self.questions)
        return [answers[i * n:(i + 1) * n] for i in range(len(samples))]

    def answer_items(self, items: Sequence[tuple[Sample, Question]]) -> list[Answer]:
        """The answers to these (sample, question) pairs, in their order: cached ones read, the rest asked."""
        model = self.model
        out: list[Answer | None] = [None] * len(items)
        by_text: dict[tuple[str, str], list[int]] = {}
        for index, (sample, _q) in enumerate(items):
            by_text.setdefault((sample.instruction, sample.completion), []).append(index)
        for (instruction, completion), indices in by_text.items():
            found = self.cache.get_many(self.name, model, [items[i][1].key for i in indices], instruction, completion)
            for index in indices:
                out[index] = found.get(items[index][1].key)
        # Sampled completions repeat (a fine-tuned model often gives the same answer twice): each distinct
        # (prompt, completion, question) is asked once and its answer copied to the repeats.
        repeats: dict[tuple[str, str, str], list[int]] = {}
        for index, answer in enumerate(out):
            if answer is None:
                sample, q = items[index]
                repeats.setdefault((sample.instruction, sample.completion, q.key), []).append(index)
        misses = [indices[0] for indices in repeats.values()]
        self.counts.cached += len(items) - len(misses)

        def store(position: int, judged: JudgedAnswer) -> None:
            sample, q = items[misses[position]]
            self.cache.put(judged.answer, model, sample.instruction, sample.completion,
                           prompt_tokens=judged.prompt_tokens, completion_tokens=judged.completion_tokens)
            for same in repeats[(sample.instruction, sample.completion, q.key)]:
                out[same] = judged.answer
            self.counts.made += 1
            self.counts.tokens += judged.prompt_tokens + judged.completion_tokens

        if not misses:
            return [answer for answer in out if answer is not None]
        started = time.perf_counter()
        try:
            self.llm.answer_many([items[i] for i in misses], on_answer=store)  # stored as they arrive
        finally:
            self.counts.seconds += time.perf_counter() - started
        answers = [answer for answer in out if answer is not None]
        assert len(answers) == len(items)  # every miss was asked, or the asking raised
        return answers


class HybridJudge:
    """The tools answer what they can decide; the LLM answers the questions where they abstain."""

    name = "hybrid"

    def __init__(self, tools: CachedTools, llm: CachedLLM) -> None:
        self.tools = tools
        self.llm = llm
        self.model = llm.model

    @property
    def counts(self) -> JudgeCounts:
        return self.tools.counts + self.llm.counts

    def judge(self, samples: Sequence[Sample]) -> list[list[Answer]]:
        decided = self.tools.judge(samples)
        asked = [(sample, question(answer.question)) for sample, answers in zip(samples, decided, strict=True)
                 for answer in answers if answer.value is None]
        from_llm = iter(self.llm.answer_items(asked))
        out = []
        for answers in decided:
            row = []
            for answer in answers:
                if answer.value is None:
                    llm_answer = next(from_llm)
                    row.append(replace(llm_answer, judge=f"hybrid:{llm_answer.judge}",
                                       detail=f"{llm_answer.detail}; tools abstained: {answer.detail}"[:500]))
                else:
                    row.append(replace(answer, judge=f"hybrid:{answer.judge}"))
            out.append(row)
        return out


def _llm(config: FeedbackConfig, kind: str, api_db: ApiDatabase, device: str | None) -> LocalJudge | OpenAIJudge:
    if kind == "local":
        return LocalJudge(config.local_model, grounding=config.grounding, api_db=api_db,
                          batch_size=config.local_batch_size, device=device)
    environ = dict(os.environ)
    if config.openai_base_url:
        environ[ENV_BASE_URL] = config.openai_base_url
    if config.openai_model:
        environ[ENV_MODEL] = config.openai_model
    return OpenAIJudge.from_env(environ, concurrency=config.concurrency, timeout_s=config.openai_timeout_s,
                                max_retries=config.openai_max_retries, grounding=config.grounding, api_db=api_db)


def make_judge(config: FeedbackConfig, api_db: ApiDatabase, cache: JudgmentCache, *,
               device: str | None = None, exec_verdicts: dict[str, ExecVerdict] | None = None) -> Judge:
    """The judge `config.judge` names, answering `config.questions` through `cache`. `device` places the local
    LLM (None: cuda when available); `exec_verdicts` (by sample id) reach the tools judge."""
    questions = questions_of(config)
    tools = ToolsJudge(api_db, exec_verdicts)
    if config.judge == TOOLS:
        return CachedTools(tools, cache, questions)
    if config.judge in ("local", "openai"):
        return CachedLLM(_llm(config, config.judge, api_db, device), cache, questions)
    return HybridJudge(CachedTools(tools, cache, questions),
                       CachedLLM(_llm(config, config.hybrid_llm, api_db, device), cache, questions))
