"""The openai judge against a real OpenAI-compatible server: llama.cpp's, on loopback, serving the shipped GGUF.

CI installs llama-cpp-python (`make setup`), so there this test must run; elsewhere it is skipped when the package
is missing. The server is started, asked real yes/no questions, and stopped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apirl.feedback.openai_judge import JudgeUnavailable, OpenAIJudge
from apirl.feedback.questions import question
from apirl.feedback.types import Sample
from apirl.models.load import smollm2_gguf_path

GOOD = """<<<code>>>: from transformers import pipeline
classifier = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')
print(classifier('I love this phone'))"""
BROKEN = """<<<code>>>: from transformers import pipeline
classifier = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english'
print(classifier('I love this phone')"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"llama.cpp server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"llama.cpp server not up after {timeout_s} s: {log.read_text()[-2000:]}")


@pytest.mark.integration
def test_llama_cpp_server_judges_through_the_openai_api(tmp_path: Path) -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python[server] must be installed in CI (make setup installs it)")
        pytest.skip("llama-cpp-python[server] is not installed")
    gguf = smollm2_gguf_path()
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_threads", "2", "--n_ctx", "2048"],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        _wait_until_up(f"{base_url}/models", server, log)
        judge = OpenAIJudge(base_url, model=gguf.name, api_key="none", concurrency=2, max_retries=4)
        items = [(Sample(name, "Classify the sentiment of a review.", text), question(key))
                 for name, text in (("good", GOOD), ("broken", BROKEN)) for key in ("syntax", "imports")]
        try:
            judged = judge.answer_many(items)
        except JudgeUnavailable as exc:  # say whether the server died, and why (a CI run once ended here)
            state = "running" if server.poll() is None else f"exited with {server.returncode}"
            raise AssertionError(f"{exc}\nserver {state}; its log ends:\n{log.read_text()[-3000:]}") from exc
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert len(judged) == len(items)
    for item, result in zip(items, judged, strict=True):
        answer = result.answer
        assert answer.question == item[1].key and answer.judge == "openai"
        # A 135M judge is weak, so no claim about which answer is right; but the server must give logprobs,
        # so every answer has a probability (an unparseable one would have p_yes None).
        assert answer.p_yes is not None and 0.0 <= answer.p_yes <= 1.0, json.dumps(answer.__dict__)
        assert result.prompt_tokens > 0
