"""The OpenAI-compatible judge against a fake chat server on 127.0.0.1: answers, retries, the stop when the
server stays down, the concurrency bound and the grounding in what the server receives. No network."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.errors import InputError
from apirl.feedback.openai_judge import JudgeRequestError, JudgeUnavailable, OpenAIJudge
from apirl.feedback.questions import QUESTIONS, question
from apirl.feedback.types import JudgedAnswer, Sample

SAMPLE = Sample("s1", "Tell me whether this review is positive.",
                "<<<code>>>: from transformers import pipeline\n"
                "clf = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')\n"
                "print(clf('Great film'))")
IMPORTS = question("imports")


@dataclass
class Reply:
    """What the fake server answers to one request."""

    status: int = 200
    content: str | None = "Yes"
    top: list[tuple[str, float]] | None = None  # the first token's alternatives as (token, probability)
    positions: list[tuple[str, list[tuple[str, float]]]] | None = None  # several generated positions
    usage: tuple[int, int] | None = (50, 1)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as it is (as application/json) instead of body()
    drip_s: float = 0.0  # seconds between the bytes of the body

    def payload(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.body()).encode()

    def body(self) -> dict[str, Any]:
        if self.status != 200:
            return {"error": {"message": f"fake error {self.status}", "type": "fake", "code": None}}
        positions = self.positions
        if positions is None and self.top is not None:
            positions = [(self.top[0][0], self.top)]
        logprobs = None
        if positions is not None:
            logprobs = {"content": [
                {"token": token, "logprob": math.log(dict(top).get(token, 1.0)), "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top]}
                for token, top in positions]}
        body: dict[str, Any] = {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake-judge",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                         "message": {"role": "assistant", "content": self.content}}]}
        if self.usage is not None:
            body["usage"] = {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1],
                             "total_tokens": sum(self.usage)}
        return body


class FakeServer:
    """A ThreadingHTTPServer answering POST /v1/chat/completions: the replies of `script` in order (the last
    one repeats), or `script(request_body)` when it is a function. Counts requests and concurrent ones."""

    def __init__(self, script: list[Reply] | Callable[[dict[str, Any]], Reply]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                reply = server.record(self.path, body)
                try:
                    time.sleep(reply.delay)
                    payload = reply.payload()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if reply.drip_s:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.drip_s)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def record(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            assert path == "/v1/chat/completions"
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if callable(self.script):
                return self.script(body)
            return self.script[min(len(self.requests), len(self.script)) - 1]

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(script: list[Reply] | Callable[[dict[str, Any]], Reply]) -> FakeServer:
        server = FakeServer(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def judge_for(url: str, **options: Any) -> OpenAIJudge:
    options = {"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 5, **options}
    return OpenAIJudge(url, "fake-judge", "test-key", **options)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def user_message(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


# --- answers ------------------------------------------------------------------------------------------------


def test_logprobs_give_p_yes_and_usage(serve) -> None:
    server = serve([Reply(content="Yes", top=[("Yes", 0.6), ("No", 0.2), (" yes", 0.1), ("**", 0.1)],
                          usage=(42, 1))])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert isinstance(judged, JudgedAnswer)
    assert judged.answer.p_yes == pytest.approx(0.7 / 0.9)
    assert judged.answer.value is True
    assert (judged.answer.question, judged.answer.judge) == ("imports", "openai")
    assert (judged.prompt_tokens, judged.completion_tokens) == (42, 1)
    [request] = server.requests
    assert request["model"] == "fake-judge"
    assert request["logprobs"] is True and request["top_logprobs"] == 20
    assert request["temperature"] == 0 and request["max_tokens"] == 3
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert user_message(request).endswith(f"Question: {IMPORTS.text}\nAnswer Yes or No.")
    assert "API database" not in user_message(request)


def test_logprobs_after_markdown_read_the_answer_position(serve) -> None:
    server = serve([Reply(content="**No**", positions=[("**", [("**", 0.9), ("The", 0.1)]),
                                                        ("No", [("No", 0.75), ("Yes", 0.25)])])])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert judged.answer.p_yes == pytest.approx(0.25)
    assert judged.answer.value is False


def test_without_logprobs_the_text_is_parsed(serve) -> None:
    server = serve([Reply(content="No, `clf` is fine but nothing prints.", top=None, usage=None)])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert (judged.answer.value, judged.answer.p_yes) == (False, None)
    assert (judged.prompt_tokens, judged.completion_tokens) == (0, 0)


def test_logprobs_without_answer_tokens_fall_back_to_the_text(serve) -> None:
    server = serve([Reply(content="The answer is yes", top=[("The", 0.9), ("**", 0.1)])])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert (judged.answer.value, judged.answer.p_yes) == (True, None)


@pytest.mark.parametrize("content", ["Maybe", "", None])
def test_unparseable_answer_is_unknown_not_an_error(serve, content: str | None) -> None:
    server = serve([Reply(content=content, top=None)])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert (judged.answer.value, judged.answer.p_yes) == (None, None)
    assert judged.answer.detail.startswith("unparseable:")
    assert len(server.requests) == 1  # an odd answer is not retried


def test_answers_keep_the_order_of_the_items(serve) -> None:
    def by_question(body: dict[str, Any]) -> Reply:
        yes = "syntax" in user_message(body).lower() or "defined" in user_message(body)
        return Reply(content="Yes" if yes else "No", delay=0.01)

    server = serve(by_question)
    items = [(SAMPLE, q) for q in QUESTIONS]
    judged = judge_for(server.url, concurrency=4).answer_many(items)
    assert [j.answer.question for j in judged] == [q.key for q in QUESTIONS]
    assert [j.answer.value for j in judged] == [q.key in ("syntax", "defined_names") for q in QUESTIONS]
    assert judge_for(server.url).answer_many([]) == []


# --- retries and failures -----------------------------------------------------------------------------------


def test_429_twice_then_ok(serve) -> None:
    server = serve([Reply(status=429), Reply(status=429), Reply(content="Yes")])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert judged.answer.value is True
    assert len(server.requests) == 3


def test_500_then_ok(serve) -> None:
    server = serve([Reply(status=500), Reply(content="No")])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert judged.answer.value is False
    assert len(server.requests) == 2


def test_a_timeout_is_retried(serve) -> None:
    server = serve([Reply(content="Yes", delay=2.0), Reply(content="No")])
    [judged] = judge_for(server.url, timeout_s=0.3).answer_many([(SAMPLE, IMPORTS)])
    assert judged.answer.value is False
    assert len(server.requests) == 2


def test_server_down_stops_with_a_clear_error() -> None:
    url = closed_port_url()
    items = [(SAMPLE, q) for q in QUESTIONS]
    start = time.monotonic()
    with pytest.raises(JudgeUnavailable) as caught:
        judge_for(url, max_retries=2).answer_many(items)
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert url in message
    assert "3 attempts" in message
    assert "Connection" in message  # the last error
    assert "running" in message  # what to check
    assert isinstance(caught.value, RuntimeError)


def test_a_server_that_keeps_failing_is_unavailable_after_the_retries(serve) -> None:
    server = serve([Reply(status=503)])
    with pytest.raises(JudgeUnavailable, match="HTTP 503"):
        judge_for(server.url, max_retries=3).answer_many([(SAMPLE, IMPORTS)])
    assert len(server.requests) == 4


@pytest.mark.parametrize(("status", "hint"), [(400, "logprobs"), (401, "API key"), (404, "/v1")])
def test_other_4xx_are_not_retried(serve, status: int, hint: str) -> None:
    server = serve([Reply(status=status), Reply(content="Yes")])
    with pytest.raises(JudgeRequestError) as caught:
        judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert len(server.requests) == 1
    assert server.url in str(caught.value) and f"HTTP {status}" in str(caught.value)
    assert hint in str(caught.value)


def test_each_answer_is_handed_over_as_it_arrives_before_a_failure(serve) -> None:
    server = serve([Reply(content="Yes"), Reply(content="No"), Reply(status=401)])
    arrived: list[tuple[int, JudgedAnswer]] = []
    items = [(SAMPLE, q) for q in QUESTIONS[:3]]
    with pytest.raises(JudgeRequestError):
        judge_for(server.url, concurrency=1).answer_many(items, on_answer=lambda i, j: arrived.append((i, j)))
    assert [(i, j.answer.question, j.answer.value) for i, j in arrived] == [(0, QUESTIONS[0].key, True),
                                                                          (1, QUESTIONS[1].key, False)]
    assert all(j.prompt_tokens == 50 for _, j in arrived)


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    judge = OpenAIJudge("http://x/v1", "m", "k", backoff_s=1.0, max_backoff_s=4.0)
    delays = [judge._delay(attempt, None) for attempt in range(1, 8) for _ in range(20)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1

    limited = Exception("429")
    limited.response = SimpleNamespace(headers={"retry-after": "3"})  # as an APIStatusError carries it
    assert 3.0 <= judge._delay(1, limited) <= 4.0
    limited.response = SimpleNamespace(headers={"retry-after": "60"})
    assert judge._delay(1, limited) == 4.0


# --- concurrency and grounding ------------------------------------------------------------------------------


def test_concurrency_is_bounded(serve) -> None:
    server = serve(lambda body: Reply(content="Yes", delay=0.2))
    judged = judge_for(server.url, concurrency=3).answer_many([(SAMPLE, q) for q in QUESTIONS[:7]])
    assert len(judged) == 7 and len(server.requests) == 7
    assert server.max_in_flight == 3


def test_grounding_puts_the_api_row_into_the_prompt(serve) -> None:
    from conftest import API_ROWS

    api_db = ApiDatabase([ApiRow.from_json(i, row) for i, row in enumerate(API_ROWS)])
    server = serve([Reply(content="Yes")])
    judge = judge_for(server.url, grounding=True, api_db=api_db)
    judge.answer_many([(SAMPLE, question("api_exists"))])
    prompt = user_message(server.requests[0])
    assert f"api_call: {API_ROWS[0]['api_call']}" in prompt
    assert "description: DistilBERT fine-tuned on SST-2" in prompt
    assert prompt.index("Code:") < prompt.index("api_call:") < prompt.index("Question:")
    assert judge.cache_model == "fake-judge+grounding"
    with pytest.raises(ValueError, match="api_db"):
        OpenAIJudge(server.url, "m", "k", grounding=True)


# --- configuration ------------------------------------------------------------------------------------------


def test_from_env() -> None:
    env = {"APIRL_JUDGE_BASE_URL": "http://127.0.0.1:8000/v1", "APIRL_JUDGE_MODEL": "qwen"}
    judge = OpenAIJudge.from_env(env, concurrency=2)
    assert (judge.base_url, judge.model, judge.api_key, judge.concurrency) == (
        "http://127.0.0.1:8000/v1", "qwen", "none", 2)
    assert OpenAIJudge.from_env({**env, "OPENAI_API_KEY": "sk-a"}).api_key == "sk-a"
    assert OpenAIJudge.from_env({**env, "OPENAI_API_KEY": "sk-a", "APIRL_JUDGE_API_KEY": "sk-b"}).api_key == "sk-b"
    with pytest.raises(InputError, match="APIRL_JUDGE_MODEL"):
        OpenAIJudge.from_env({"APIRL_JUDGE_BASE_URL": "http://x/v1"})


# --- hostile servers: every answer that cannot be used is one unknown answer, never a traceback --------------


def completion(content: str, *, top: list[tuple[str, Any]] | None = None, usage: dict[str, Any] | None = None
               ) -> bytes:
    """A chat completion body with raw logprob values (which Reply.body computes from probabilities)."""
    logprobs = None if top is None else {"content": [
        {"token": top[0][0], "logprob": top[0][1], "bytes": None,
         "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]}]}
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "fake-judge",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                         "message": {"role": "assistant", "content": content}}],
            "usage": usage or {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    return json.dumps(body).encode()


@pytest.mark.parametrize(("raw", "value", "tokens"), [
    (completion("Yes", top=[("Yes", 1000.0), ("No", -0.1)]), True, 5),  # a positive logprob: the text decides
    (completion("No", top=[("Yes", "high"), ("No", None)]), False, 5),  # logprobs that are not numbers
    (completion("Yes", usage={"prompt_tokens": "lots", "completion_tokens": 1}), True, 0),
    (completion("Yes", usage={"prompt_tokens": 2**70, "completion_tokens": -3}), True, 0),
    (b"<html><body>502 Bad Gateway</body></html>", None, 0),  # an error page with status 200
    (b'{"choices": [{"message": "not an object"}]}', None, 0),
    (completion("answer:" + " " * 20_000), None, 5),  # was quadratic in the length
])
def test_hostile_replies_are_answers_or_unknowns(serve, tmp_path, raw: bytes, value: bool | None,
                                                 tokens: int) -> None:
    from apirl.feedback.cache import JudgmentCache

    server = serve([Reply(raw=raw)])
    [judged] = judge_for(server.url).answer_many([(SAMPLE, IMPORTS)])
    assert judged.answer.value is value, judged
    assert judged.prompt_tokens == tokens
    assert judged.answer.p_yes is None or 0.0 <= judged.answer.p_yes <= 1.0
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:  # and the cache takes what the judge returned
        assert cache.put(judged.answer, "fake-judge", SAMPLE.instruction, SAMPLE.completion,
                         prompt_tokens=judged.prompt_tokens, completion_tokens=judged.completion_tokens)
        assert cache.get("openai", "fake-judge", IMPORTS.key, SAMPLE.instruction, SAMPLE.completion) == judged.answer


def test_a_dripping_server_is_cut_at_the_total_timeout(serve) -> None:
    # One byte every 50 ms: each read is quick, the whole reply takes minutes. timeout_s bounds the request.
    server = serve([Reply(raw=completion("Yes") + b" " * 2000, drip_s=0.05)])
    started = time.monotonic()
    with pytest.raises(JudgeUnavailable, match="TimeoutError"):
        judge_for(server.url, timeout_s=1, max_retries=1).answer_many([(SAMPLE, IMPORTS)])
    assert time.monotonic() - started < 10  # two attempts of 1 s, not 2000 bytes x 50 ms
