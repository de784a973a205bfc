"""An LLM judge behind any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp's server, Ollama...).

One request per (sample, question), `temperature=0` and `max_tokens` small: the answer is one word. P(yes) comes
from the first answer token's top alternatives when the server returns logprobs (see `parse.py`), else the
text is parsed; an answer that says neither is recorded as unknown, never raised, so that one odd reply costs
one answer, not the run.

Failures are another matter. Our own retry loop (the client's is switched off, so the policy is one place and
testable) retries what a wait can fix: 408, 429, 5xx, timeouts and connection errors, with exponential backoff
and full jitter (a server's Retry-After is honoured up to `max_backoff_s`). When one request still fails after
`max_retries` retries, the server is taken to be down and `JudgeUnavailable` stops the run with the URL, the
last error and what to check: judging on with a dead judge would only fill the cache with nothing. Any other
4xx (bad model name, bad key, a parameter the server rejects) will not fix itself: `JudgeRequestError` at once.

Token usage is reported per answer (`JudgedAnswer.prompt_tokens` / `completion_tokens` from `response.usage`,
0 when the server sends none) so that the caller can store it beside the answer in the judgment cache.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apirl.data.apidb import ApiDatabase
from apirl.errors import InputError
from apirl.feedback.parse import p_yes_from_logprobs, parse_yes_no, token_class
from apirl.feedback.prompts import grounding_for, judge_messages
from apirl.feedback.questions import Question
from apirl.feedback.types import Answer, JudgedAnswer, Sample

JUDGE = "openai"
ENV_BASE_URL = "APIRL_JUDGE_BASE_URL"
ENV_MODEL = "APIRL_JUDGE_MODEL"
ENV_API_KEY = "APIRL_JUDGE_API_KEY"
TOP_LOGPROBS = 20
_RETRY_STATUSES = frozenset({408, 429})  # and every 5xx


class JudgeUnavailable(RuntimeError):
    """The judge server did not answer one request after every retry: the run cannot go on without it."""


class JudgeRequestError(RuntimeError):
    """The server refused a request in a way that retrying cannot fix (a 4xx other than 408/429)."""


class OpenAIJudge:
    """Asks an OpenAI-compatible chat server the yes/no questions, `concurrency` requests at a time."""

    name = JUDGE

    def __init__(self, base_url: str, model: str, api_key: str, *, concurrency: int = 8, timeout_s: float = 60,
                 max_retries: int = 6, backoff_s: float = 0.5, max_backoff_s: float = 20, grounding: bool = False,
                 api_db: ApiDatabase | None = None, max_tokens: int = 3) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        if grounding and api_db is None:
            raise ValueError("grounding needs the API database (api_db)")
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.grounding = grounding
        self.api_db = api_db
        self.max_tokens = max_tokens

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> OpenAIJudge:
        """A judge configured by APIRL_JUDGE_BASE_URL and APIRL_JUDGE_MODEL (both required) and
        APIRL_JUDGE_API_KEY (else OPENAI_API_KEY, else "none": local servers want a key but check none).
        `options` are the keyword arguments of the constructor."""
        env = os.environ if environ is None else environ
        missing = [name for name in (ENV_BASE_URL, ENV_MODEL) if not env.get(name, "").strip()]
        if missing:
            raise InputError(f"set {' and '.join(missing)} to use the OpenAI-compatible judge "
                             f"(e.g. {ENV_BASE_URL}=http://127.0.0.1:8000/v1 {ENV_MODEL}=<served model name>)")
        api_key = env.get(ENV_API_KEY, "").strip() or env.get("OPENAI_API_KEY", "").strip() or "none"
        return cls(env[ENV_BASE_URL].strip(), env[ENV_MODEL].strip(), api_key, **options)

    @property
    def cache_model(self) -> str:
        """The model name to key cached answers on: grounded answers are other answers."""
        return f"{self.model}+grounding" if self.grounding else self.model

    def messages(self, sample: Sample, question: Question) -> list[dict[str, str]]:
        """The chat messages this judge sends for one (sample, question)."""
        grounding = grounding_for(sample.code, self.api_db) if self.grounding else None
        return judge_messages(sample, question, grounding)

    def answer_many(self, items: Sequence[tuple[Sample, Question]],
                    on_answer: Callable[[int, JudgedAnswer], None] | None = None) -> list[JudgedAnswer]:
        """The answers to these (sample, question) pairs, in their order, each also handed to
        `on_answer(position, answer)` the moment it arrives (a server dying at 90% loses none of the 90%).
        The requests run `concurrency` at a time in an event loop of their own. Raises JudgeUnavailable or
        JudgeRequestError (after cancelling the requests still running) when the server fails."""
        return asyncio.run(self._answer_many(items, on_answer))

    async def _answer_many(self, items: Sequence[tuple[Sample, Question]],
                           on_answer: Callable[[int, JudgedAnswer], None] | None) -> list[JudgedAnswer]:
        from openai import AsyncOpenAI

        # max_retries=0: the retry policy is ours (see the module docstring), not the client's.
        async with AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s,
                               max_retries=0) as client:
            semaphore = asyncio.Semaphore(self.concurrency)

            async def one(position: int, sample: Sample, question: Question) -> JudgedAnswer:
                async with semaphore:
                    judged = await self._answer(client, sample, question)
                if on_answer is not None:
                    on_answer(position, judged)
                return judged

            tasks = [asyncio.create_task(one(position, sample, question))
                     for position, (sample, question) in enumerate(items)]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _answer(self, client: Any, sample: Sample, question: Question) -> JudgedAnswer:
        response = await self._create(client, self.messages(sample, question))
        if isinstance(response, _Unusable):
            return JudgedAnswer(Answer(question.key, None, None, JUDGE, f"unusable response: {response.why}"))
        usage = getattr(response, "usage", None)
        try:
            answer = read_answer(response, question.key)
        except Exception as exc:  # a reply of the wrong shape is one unknown answer, not the end of the run
            answer = Answer(question.key, None, None, JUDGE, f"unparseable: {_describe(exc)}")
        return JudgedAnswer(answer, prompt_tokens=token_count(getattr(usage, "prompt_tokens", 0)),
                            completion_tokens=token_count(getattr(usage, "completion_tokens", 0)))

    async def _create(self, client: Any, messages: list[dict[str, str]]) -> Any:
        """One chat completion, retried as the module docstring says."""
        import openai

        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, last))
            try:
                # The client's timeout bounds each read; wait_for bounds the whole request, so a server that
                # drips a byte at a time cannot hold a slot past timeout_s.
                return await asyncio.wait_for(client.chat.completions.create(
                    model=self.model, messages=messages, temperature=0, max_tokens=self.max_tokens,
                    logprobs=True, top_logprobs=TOP_LOGPROBS), timeout=self.timeout_s)
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRY_STATUSES and exc.status_code < 500:
                    raise JudgeRequestError(self._refusal(exc)) from exc
                last = exc
            except openai.APIConnectionError as exc:  # refused, reset, DNS, and APITimeoutError
                last = exc
            except TimeoutError as exc:
                last = exc
            except (openai.APIResponseValidationError, ValueError) as exc:  # a 200 that is not a completion
                # (an HTML page, broken JSON): the server answered, so waiting will not change the answer
                return _Unusable(_describe(exc))
        raise JudgeUnavailable(
            f"the judge server at {self.base_url} did not answer after {self.max_retries + 1} attempts; last error: "
            f"{_describe(last)}. Check that the server is running and reachable at that URL (an OpenAI-compatible "
            f"base URL usually ends in /v1), that it serves the model {self.model!r}, and that it is not "
            f"overloaded (lower the judge's concurrency).") from last

    def _delay(self, attempt: int, error: Exception | None) -> float:
        """Full jitter: uniform in [0, min(max_backoff_s, backoff_s * 2**(attempt-1))]; at least the server's
        Retry-After when it sends one (capped at max_backoff_s)."""
        delay = random.uniform(0.0, min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
        return max(delay, min(self.max_backoff_s, _retry_after(error)))

    def _refusal(self, exc: Any) -> str:
        hints = {400: f"the server rejected the request; check that it serves {self.model!r} and supports "
                      "chat completions with logprobs",
                 401: "check the API key (APIRL_JUDGE_API_KEY or OPENAI_API_KEY)",
                 403: "check the API key's permissions",
                 404: f"check the base URL (it usually ends in /v1) and the model name {self.model!r}",
                 422: "the server rejected the request's parameters"}
        hint = hints.get(exc.status_code, "retrying will not help")
        return f"the judge server at {self.base_url} refused the request: {_describe(exc)}; {hint}"


@dataclass(frozen=True)
class _Unusable:
    """A reply with status 200 that is no chat completion."""

    why: str


_MAX_TOKEN_COUNT = 2**62  # SQLite's INTEGER is 64-bit: a larger "count" is no count


def token_count(value: Any) -> int:
    """A usage count as the server sent it, or 0 when it is not a count (a string, negative, absurdly large)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value < _MAX_TOKEN_COUNT else 0


def _retry_after(error: Exception | None) -> float:
    """The seconds a 429/503 response asks us to wait (Retry-After), 0 when it says none or an HTTP date."""
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _describe(exc: Exception | None) -> str:
    if exc is None:
        return "none"
    status = getattr(exc, "status_code", None)
    message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{type(exc).__name__}: {message}" if message else f"{prefix}{type(exc).__name__}"


def _answer_position(content: Sequence[Any]) -> Any | None:
    """The first generated position that is not markdown, whitespace or punctuation ("**", "\\n"): the one
    whose alternatives are the answer."""
    for position in content:
        token = str(getattr(position, "token", "") or "")
        if token_class(token) is not None or any(c.isalnum() for c in token):
            return position
    return None


def read_answer(response: Any, question: str) -> Answer:
    """The Answer in a chat completion: P(yes) from the logprobs when there are any, else the parsed text."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        return Answer(question, None, None, JUDGE, "unparseable: the response has no choices")
    message = getattr(choices[0], "message", None)
    text = (getattr(message, "content", None) or "").strip()
    logprobs = getattr(choices[0], "logprobs", None)
    position = _answer_position(getattr(logprobs, "content", None) or [])
    p_yes = p_yes_from_logprobs(getattr(position, "top_logprobs", None) or []) if position is not None else None
    if p_yes is not None:
        return Answer(question, p_yes >= 0.5, p_yes, JUDGE, f"P(yes)={p_yes:.3f}; text {text[:80]!r}")
    value = parse_yes_no(text)
    if value is None:
        return Answer(question, None, None, JUDGE, f"unparseable: {text[:200]!r}")
    return Answer(question, value, None, JUDGE, f"text {text[:80]!r}")
