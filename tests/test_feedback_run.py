"""The feedback run: cached judges (a rerun judges nothing twice, a dead server loses nothing judged), the
hybrid split between tools and LLM, unknown answers, labels and pairs, the calibration AUC, and the whole
stage on the smoke preset. The LLM server is a fake on 127.0.0.1 that counts the answers it sends."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from apirl.data.apidb import ApiDatabase, ApiRow, load_api_database
from apirl.feedback.cache import JudgmentCache
from apirl.feedback.calibrate import calibration_report, calibration_samples, with_code
from apirl.feedback.config import FeedbackConfig
from apirl.feedback.judges import judge_label, make_judge
from apirl.feedback.openai_judge import JudgeUnavailable
from apirl.feedback.questions import QUESTIONS
from apirl.feedback.stage import feedback_row, judge_samples, make_pairs
from apirl.feedback.types import Answer, Sample
from apirl.jsonl import write_jsonl

QUIET = Console(quiet=True)
TEXT_TO_KEY = {q.text: q.key for q in QUESTIONS}


@pytest.fixture(scope="module")
def api_db() -> ApiDatabase:
    from conftest import API_ROWS

    return ApiDatabase([ApiRow.from_json(i, row) for i, row in enumerate(API_ROWS)])


def make_samples(n: int) -> list[Sample]:
    """n distinct samples: a sentiment pipeline that prints a different review each time (sample 0 also
    calls an undefined name, so that the tools judge says no somewhere)."""
    samples = []
    for i in range(n):
        extra = "\nshow(result)" if i == 0 else ""
        samples.append(Sample(f"s{i}", "Tell me whether this review is positive.",
                              "<<<code>>>: from transformers import pipeline\n"
                              "clf = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-"
                              f"english')\nresult = clf('review number {i}')\nprint(result){extra}"))
    return samples


# ------------------------------------------------------------------------------------------------------------
# Pure parts: labels, pairs (the AUC itself: tests/test_stats.py).


def test_feedback_row_scores_labels_and_counts_unknown_as_half() -> None:
    answers = [Answer(q.key, True, 1.0, "tools") for q in QUESTIONS[:5]]
    answers += [Answer("task", None, None, "openai", "unparseable: 'maybe'"),
                Answer("complete", True, 0.9, "openai"), Answer("logic", False, None, "openai")]
    sample = {"sample_id": "e:0", "example_id": "e", "k": 0, "prompt": "p", "completion": "c"}
    row = feedback_row(sample, answers, threshold=6.0)
    assert row["score"] == pytest.approx(5 + 0.5 + 0.9 + 0.0)
    assert row["label"] is True
    assert row["answers"][5] == {"question": "task", "value": None, "p_yes": None, "judge": "openai",
                                 "detail": "unparseable: 'maybe'"}
    assert feedback_row(sample, answers, threshold=6.5)["label"] is False


def test_pairs_take_the_highest_and_lowest_and_drop_ties() -> None:
    def row(example: str, k: int, score: float) -> dict[str, Any]:
        return {"sample_id": f"{example}:{k}", "example_id": example, "k": k, "prompt": f"P{example}",
                "completion": f"{example}{k}", "score": score}

    rows = [row("a", 0, 5.0), row("a", 1, 7.5), row("a", 2, 3.0), row("a", 3, 7.5),
            row("b", 0, 4.0), row("b", 1, 4.0),
            row("c", 0, 2.0), row("c", 1, 6.0)]
    pairs, ties = make_pairs(rows)
    assert ties == 1
    assert [p["example_id"] for p in pairs] == ["a", "c"]
    assert pairs[0] == {"example_id": "a", "prompt": "Pa", "chosen": "a1", "rejected": "a2", "chosen_score": 7.5,
                        "rejected_score": 3.0, "chosen_id": "a:1", "rejected_id": "a:2"}
    assert (pairs[1]["chosen"], pairs[1]["rejected"]) == ("c1", "c0")


def test_config_rejects_unknown_questions_and_labels_judges() -> None:
    with pytest.raises(ValueError, match="unknown question 'styel'"):
        FeedbackConfig(questions=["syntax", "styel"])
    with pytest.raises(ValueError, match="above the highest score"):
        FeedbackConfig(questions=["syntax", "task"])  # threshold 6 of 2 questions
    assert FeedbackConfig(questions=["syntax", "task"], threshold=1.5).threshold == 1.5
    assert FeedbackConfig(questions=["syntax", "task"], label_rule="quantile").label_quantile == 0.5
    assert judge_label(FeedbackConfig(judge="tools", grounding=True)) == "tools"
    assert judge_label(FeedbackConfig(judge="hybrid", hybrid_llm="openai", grounding=True)) == "hybrid-openai-grounded"
    assert judge_label(FeedbackConfig(judge="local")) == "local"


def test_the_quantile_rule_gives_both_classes_whatever_the_level() -> None:
    from apirl.feedback.stage import label_threshold
    from apirl.feedback.types import quantile_threshold

    # Half of 1, 2, 3, 4 good: from 3.
    assert quantile_threshold([4.0, 1.0, 3.0, 2.0], 0.5) == 3.0
    # A policy that does well everywhere: the threshold rule (6) calls all good, the quantile rule the top part.
    scores = [7.0, 7.5, 7.5, 8.0]
    assert quantile_threshold(scores, 0.25) == 7.5 and quantile_threshold(scores, 0.5) == 8.0
    assert quantile_threshold([1.0, 1.0, 1.0, 5.0], 0.5) == 5.0  # ties below: only the one above
    assert quantile_threshold([1.0, 5.0, 5.0, 5.0], 0.5) == 5.0  # ties above: three good, one bad
    assert quantile_threshold([1.0, 2.0, 2.0, 2.0, 2.0, 3.0], 0.3) == 2.0  # 5 of 6 good is nearest to 70%
    assert quantile_threshold([3.0, 3.0], 0.5) == 3.0  # every sample ties: all good, as with a threshold
    assert label_threshold(FeedbackConfig(judge="tools", threshold=6.0), scores) == 6.0
    assert label_threshold(FeedbackConfig(judge="tools", label_rule="quantile"), scores) == 8.0


def test_sampling_resumes_a_killed_run_and_reuses_a_finished_one(tmp_path: Path, monkeypatch) -> None:
    """A fake generator (no model): the first run dies after one batch, the rerun generates only the rest,
    a third run generates nothing, and other sampling settings start over."""
    from apirl.feedback import stage as run
    from apirl.feedback.config import FeedbackConfig
    from apirl.models.config import ModelConfig
    from apirl.models.generation import GenerationStats
    from apirl.models.load import ModelSource

    calls: list[list[str]] = []
    groundings: list[tuple[str, object]] = []
    kill = {"after": 1}

    def fake_generate(model, tokenizer, prompts, config, *, seed, on_batch, **kwargs):
        assert config.do_sample and config.top_p == 0.95 and config.max_new_tokens == 512
        groundings.append((config.grounding, kwargs.get("catalog")))
        for number, start in enumerate(range(0, len(prompts), config.batch_size)):
            if number == kill["after"]:
                raise KeyboardInterrupt("killed")
            indices = list(range(start, min(start + config.batch_size, len(prompts))))
            calls.append([prompts[i] for i in indices])
            on_batch(indices, [f"answer {len(calls)}.{i}" for i in indices], 2 * len(indices))
        return GenerationStats(len(prompts), 2 * len(prompts), 1.0)

    monkeypatch.setattr(run, "generate_batches", fake_generate)
    monkeypatch.setattr(run, "load_model", lambda *args: object())
    monkeypatch.setattr(run, "load_tokenizer", lambda *args: object())
    source = ModelSource("fake", str(tmp_path / "model"), local=True)
    prompts = [{"example_id": f"e{i}", "prompt": f"###Instruction: task {i}\n###Output:"} for i in range(3)]
    feedback, model = FeedbackConfig(samples_per_prompt=2, batch_size=4), ModelConfig()

    def sample(table: FeedbackConfig):
        return run.sample_completions(table, model, 0, source, prompts, tmp_path, QUIET)

    with pytest.raises(KeyboardInterrupt):
        sample(feedback)
    assert not (tmp_path / "samples.jsonl").exists() and len(calls) == 1
    kill["after"] = None
    rows, stats = sample(feedback)
    assert (stats["generated"], stats["resumed"]) == (2, 4) and len(calls) == 2
    assert [row["sample_id"] for row in rows] == ["e0:0", "e0:1", "e1:0", "e1:1", "e2:0", "e2:1"]
    assert rows == [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert not (tmp_path / "samples.jsonl.partial").exists()
    again, stats = sample(feedback)
    assert again == rows and stats["generated"] == 0 and len(calls) == 2
    _rows, stats = sample(feedback.model_copy(update={"temperature": 0.9}))
    assert (stats["generated"], stats["resumed"]) == (6, 0)  # another temperature: new samples
    # Grounded samples are other samples, decoded against the catalog the stage passes.
    from conftest import API_ROWS

    write_jsonl(tmp_path / "api.jsonl", API_ROWS)
    catalog = load_api_database(tmp_path / "api.jsonl")
    sample(feedback)
    grounded = feedback.model_copy(update={"sample_grounding": "catalog"})
    _rows, stats = run.sample_completions(grounded, model, 0, source, prompts, tmp_path, QUIET, catalog)
    assert (stats["generated"], stats["resumed"]) == (6, 0) and groundings[-1] == ("catalog", catalog)
    assert groundings[0][0] == "none"


# ------------------------------------------------------------------------------------------------------------
# Calibration samples and report.


def test_calibration_negatives_differ_from_their_positive_in_the_code_only() -> None:
    from apirl.data.dataset import Example

    target = (" <<<domain>>>: NLP\n<<<api_call>>>: pipeline('sentiment-analysis')\n<<<explanation>>>: Load it.\n"
              "<<<code>>>: from transformers import pipeline\nclf = pipeline('sentiment-analysis', "
              "model='distilbert-base-uncased-finetuned-sst-2-english')\nprint(clf('Great film'))")
    assert with_code(" <<<domain>>>: x\n<<<code>>>: old()", "new()\n") == " <<<domain>>>: x\n<<<code>>>: new()"
    assert with_code(" <<<domain>>>: x", "new()") is None
    examples = [Example("eval-1", "val", "apibench-eval", 1, "###Instruction: Is this review positive?\n###Output:",
                        target, "NLP", "x", None, True),
                Example("eval-2", "val", "apibench-eval", 2, "###Instruction: No code.\n###Output:",
                        " <<<domain>>>: NLP", "NLP", "x", None, False)]
    items = calibration_samples(examples, {"distilbert-base-uncased-finetuned-sst-2-english"}, seed=0)
    kinds = [kind for _sample, kind in items]
    assert kinds[0] == "gold" and kinds.count("gold") == 1 and len(kinds) >= 4
    gold = items[0][0]
    assert gold.sample_id == "eval-1:gold" and gold.instruction == "Is this review positive?"
    head = target[:target.index("<<<code>>>")]
    for sample, kind in items:
        assert sample.completion.startswith(head + "<<<code>>>: ")
        assert (sample.completion == gold.completion) is (kind == "gold")


def test_calibration_report_aucs_per_question_and_kind() -> None:
    def row(values: list[bool | None]) -> list[Answer]:
        return [Answer(key, v, None if v is None else float(v), "tools") for key, v in zip(("syntax", "task"), values,
                                                                                            strict=True)]

    kinds = ["gold", "gold", "syntax_error", "unknown_name"]
    answers = [row([True, None]), row([True, True]), row([False, None]), row([True, None])]
    report = calibration_report(kinds, answers)
    # S: gold 1.5, 2.0; syntax_error 0.5; unknown_name 1.5 -> pairs: 1, 1/2, 1, 1 -> 3.5 / 4.
    assert report["auc"] == pytest.approx(0.875)
    assert report["per_question"]["syntax"]["auc"] == pytest.approx(0.75)  # gold 1,1 vs 0,1
    assert report["per_question"]["task"]["abstain_rate"] == 0.75
    assert report["per_kind"]["syntax_error"] == {"n": 1, "auc": 1.0, "mean_score": 0.5}
    assert report["per_kind"]["missing_import"]["auc"] is None
    assert (report["positives"], report["negatives"]) == (2, 2)


# ------------------------------------------------------------------------------------------------------------
# The tools judge behind the cache.


def test_tools_judge_second_run_makes_no_judgment(api_db: ApiDatabase, tmp_path: Path) -> None:
    samples = make_samples(2)
    config = FeedbackConfig(judge="tools")
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        judge = make_judge(config, api_db, cache)
        first = judge.judge(samples)
        assert (judge.counts.made, judge.counts.cached) == (16, 0)
    assert [a.question for a in first[0]] == [q.key for q in QUESTIONS]
    assert first[0][2].value is False and first[1][2].value is True  # defined_names: `show` is undefined
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        again = make_judge(config, api_db, cache)
        assert again.judge(samples) == first
        assert (again.counts.made, again.counts.cached) == (0, 16)
        subset = make_judge(FeedbackConfig(judge="tools", questions=["task", "syntax"], threshold=2), api_db, cache)
        assert [[a.question for a in row] for row in subset.judge(samples)] == [["syntax", "task"]] * 2


# ------------------------------------------------------------------------------------------------------------
# A fake OpenAI-compatible server.


class FakeJudgeServer:
    """Answers chat completions with `reply(question_key)` ("Yes" by default), counting per request content
    (one (sample, question)) the answers it actually sent. `too_many` first requests get a 429. After
    `kill_after` answers it plays dead: every request waits a moment and the connection is dropped without a
    response, as a killed server does. `restart()` brings it back."""

    def __init__(self) -> None:
        self.answered: Counter[str] = Counter()
        self.requests = 0
        self.too_many = 0
        self.kill_after: int | None = None
        self.dead = False
        self.reply: Callable[[str], str] = lambda key: "Yes"
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                content = body["messages"][-1]["content"]
                key = TEXT_TO_KEY[content.split("Question: ", 1)[1].split("\n", 1)[0]]
                status, text = server.decide(content, key)
                if status == 0:
                    time.sleep(0.2)  # the answers sent before the kill reach the client first
                    self.close_connection = True
                    return
                payload = json.dumps(_completion(text) if status == 200 else {"error": {"message": "slow down"}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def decide(self, content: str, key: str) -> tuple[int, str]:
        """(status, answer text); status 0 means: drop the connection."""
        with self.lock:
            self.requests += 1
            if self.kill_after is not None and sum(self.answered.values()) >= self.kill_after:
                self.dead = True
            if self.dead:
                return 0, ""
            if self.too_many:
                self.too_many -= 1
                return 429, ""
            self.answered[content] += 1
            return 200, self.reply(key)

    def restart(self) -> None:
        with self.lock:
            self.dead, self.kill_after = False, None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake-judge",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}}


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    fake = FakeJudgeServer()
    yield fake
    fake.close()


def openai_config(server: FakeJudgeServer, **options: Any) -> FeedbackConfig:
    return FeedbackConfig(**{"judge": "openai", "openai_base_url": server.url, "openai_model": "fake-judge",
                             "concurrency": 4, "openai_max_retries": 1, **options})


def test_a_server_killed_mid_run_loses_nothing_and_the_rerun_asks_only_the_rest(
        api_db: ApiDatabase, server: FakeJudgeServer, tmp_path: Path) -> None:
    samples = make_samples(6)
    config = openai_config(server)
    server.kill_after = 20
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        judge = make_judge(config, api_db, cache)
        with pytest.raises(JudgeUnavailable, match="did not answer"):
            judge_samples(judge, samples, QUIET)
        assert judge.counts.made == 20
        assert cache.stats()["calls"] == 20 and cache.stats()["tokens"] == 20 * 41
    server.restart()
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        judge = make_judge(config, api_db, cache)
        answers = judge_samples(judge, samples, QUIET)
        assert (judge.counts.made, judge.counts.cached, judge.counts.tokens) == (48 - 20, 20, 28 * 41)
        assert cache.stats()["calls"] == 48
    assert len(server.answered) == 48 and set(server.answered.values()) == {1}  # none answered twice
    assert all(a.value is True and a.judge == "openai" for row in answers for a in row)


def test_a_server_that_answers_429_then_recovers(api_db: ApiDatabase, server: FakeJudgeServer, tmp_path: Path) -> None:
    server.too_many = 3
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        answers = judge_samples(make_judge(openai_config(server, openai_max_retries=6), api_db, cache),
                                make_samples(2), QUIET)
    assert server.requests == 16 + 3
    assert len(server.answered) == 16 and set(server.answered.values()) == {1}
    assert all(a.value is True for row in answers for a in row)


def test_identical_completions_are_judged_once(api_db: ApiDatabase, server: FakeJudgeServer, tmp_path: Path) -> None:
    first, second = make_samples(2)
    twin = Sample("twin", first.instruction, first.completion)
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        judge = make_judge(openai_config(server), api_db, cache)
        answers = judge.judge([first, second, twin])
    assert answers[0] == answers[2] and server.requests == 16
    assert (judge.counts.made, judge.counts.cached) == (16, 8)


def test_unparseable_answers_are_unknown_and_cached_never_a_crash(api_db: ApiDatabase, server: FakeJudgeServer,
                                                                   tmp_path: Path) -> None:
    server.reply = lambda key: "Well, it depends." if key == "task" else "No"
    samples = make_samples(2)
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        answers = make_judge(openai_config(server), api_db, cache).judge(samples)
        again = make_judge(openai_config(server), api_db, cache)
        assert again.judge(samples) == answers and again.counts.made == 0
    task = [row[5] for row in answers]
    assert all(a.question == "task" and a.value is None and a.detail.startswith("unparseable") for a in task)
    row = feedback_row({"sample_id": "s0", "example_id": "e", "k": 0, "prompt": "p", "completion": "c"}, answers[0],
                       threshold=6.0)
    assert row["answers"][5]["value"] is None and row["score"] == 0.5


def test_hybrid_asks_the_llm_only_where_the_tools_abstain(api_db: ApiDatabase, server: FakeJudgeServer,
                                                          tmp_path: Path) -> None:
    samples = make_samples(3)
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        tools = make_judge(FeedbackConfig(judge="tools"), api_db, cache).judge(samples)
        hybrid = make_judge(openai_config(server, judge="hybrid", hybrid_llm="openai"), api_db, cache)
        answers = hybrid.judge(samples)
        assert hybrid.counts.cached == 24  # the tools' answers, judged above
    abstained = {(s.sample_id, a.question) for s, row in zip(samples, tools, strict=True) for a in row
                 if a.value is None}
    assert ("s0", "task") in abstained and len(abstained) < 24
    sent = {(next(s.sample_id for s in samples if s.code in content), TEXT_TO_KEY[content.split("Question: ")[1]
                                                                                  .split("\n")[0]])
            for content in server.answered}
    assert sent == abstained and server.requests == len(abstained)
    for sample, tool_row, row in zip(samples, tools, answers, strict=True):
        for tool_answer, answer in zip(tool_row, row, strict=True):
            if (sample.sample_id, answer.question) in abstained:
                assert (answer.judge, answer.value) == ("hybrid:openai", True)
            else:
                assert (answer.judge, answer.value) == ("hybrid:tools", tool_answer.value)


def test_local_judge_is_cached_too(api_db: ApiDatabase, tmp_path: Path) -> None:
    samples = make_samples(2)
    config = FeedbackConfig(judge="local", local_model="tiny-random", questions=["task", "logic"],
                            threshold=2)
    with JudgmentCache(tmp_path / "j.sqlite") as cache:
        judge = make_judge(config, api_db, cache, device="cpu")
        first = judge.judge(samples)
        assert judge.counts.made == 4 and judge.model == "tiny-random"
        assert all(a.judge == "local" and 0.0 <= a.p_yes <= 1.0 for row in first for a in row)
        again = make_judge(config, api_db, cache, device="cpu")
        assert again.judge(samples) == first and (again.counts.made, again.counts.cached) == (0, 4)


# ------------------------------------------------------------------------------------------------------------
# The stage and the calibration on the smoke preset (tiny-random policy, real data).


def smoke(real_data_dir: Path, runs: Path, *overrides: str) -> list[str]:
    return ["--config", str(Path(__file__).parents[1] / "configs" / "smoke.toml"),
            "--set", f'data.data_dir="{real_data_dir}"', "--set", f'runs_dir="{runs}"',
            "--set", 'feedback.policy="tiny-random"', *[arg for o in overrides for arg in ("--set", o)]]


def invoke(args: list[str]) -> dict[str, Any]:
    from typer.testing import CliRunner

    from apirl.cli import app

    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


@pytest.mark.integration
def test_smoke_feedback_stage_then_hybrid_resumes_after_a_killed_server_then_calibration(
        real_data_dir: Path, tmp_path: Path, server: FakeJudgeServer) -> None:
    runs = tmp_path / "runs"
    summary = invoke(["feedback", *smoke(real_data_dir, runs)])
    stage = runs / "smoke" / "feedback"
    assert summary["skipped"] is False and summary["judge"] == "tools"
    assert (summary["prompts"], summary["samples"], summary["samples_generated"]) == (3, 6, 6)
    assert summary["judgments"] == summary["judgments_made"] == 48
    samples = [json.loads(line) for line in (stage / "samples.jsonl").read_text().splitlines()]
    assert [s["sample_id"] for s in samples[:2]] == [f"{samples[0]['example_id']}:0", f"{samples[0]['example_id']}:1"]
    rows = [json.loads(line) for line in (stage / "feedback.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["answers"]) == 8 and r["label"] == (r["score"] >= 6.0) for r in rows)
    pairs = [json.loads(line) for line in (stage / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) + summary["prompts_tied"] == 3
    assert all(p["chosen_score"] > p["rejected_score"] and p["prompt"].startswith("###Instruction:") for p in pairs)
    assert (stage / "manifest.json").is_file()
    assert invoke(["feedback", *smoke(real_data_dir, runs)])["skipped"] is True

    # The hybrid judge with the server killed midway: the stage fails, no manifest; the rerun completes.
    hybrid = smoke(real_data_dir, runs, 'feedback.judge="hybrid"', 'feedback.hybrid_llm="openai"',
                   f'feedback.openai_base_url="{server.url}"', 'feedback.openai_model="fake-judge"',
                   "feedback.openai_max_retries=1", "feedback.concurrency=2")
    server.kill_after = 3
    from typer.testing import CliRunner

    from apirl.cli import app

    failed = CliRunner().invoke(app, ["feedback", *hybrid])
    assert failed.exit_code == 2 and "did not answer" in failed.stderr and "resumes" in failed.stderr
    assert not (stage / "manifest.json").exists()
    server.restart()
    summary = invoke(["feedback", *hybrid])
    assert summary["samples_generated"] == 0 and summary["judge"] == "hybrid-openai"
    assert summary["judgments_made"] == len(server.answered) - 3 and set(server.answered.values()) == {1}
    assert summary["answered_by"]["hybrid:openai"] == len(server.answered) >= 6  # "task" at least
    with sqlite3.connect(stage / "judgments.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM judgments WHERE judge = 'openai'").fetchone()[0] == len(server.answered)

    report = invoke(["feedback", "calibrate", "--judge", "tools", "--limit", "5", *smoke(real_data_dir, runs)])
    assert report["examples"] == 5 and report["positives"] >= 4 and report["negatives"] >= report["positives"]
    assert report["auc"] is not None and report["auc"] > 0.5
    assert report["per_question"]["task"]["abstain_rate"] == 1.0
    assert report["judgments_made"] == report["judgments"] and report["seconds_per_1000_judgments"] > 0
    assert json.loads((stage.parent / "calibration" / "tools" / "calibration.json").read_text())["auc"] == report["auc"]


def test_calibration_with_execution_answers_logic_and_reuses_its_verdicts(
        real_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`feedback.execute`: the harness runs every sample once; the tools judge answers "logic" from the verdict
    (statically it always abstains) and the answers are cached apart from the static ones."""
    runs = tmp_path / "runs"
    args = ["feedback", "calibrate", "--judge", "tools", "--limit", "3",
            *smoke(real_data_dir, runs, "feedback.execute=true", f'execution.hub_dir="{tmp_path / "hub"}"')]
    report = invoke(args)
    stage = runs / "smoke" / "feedback"
    assert report["judge"] == "tools-exec" and report["execute"] is True
    executions_file = stage.parent / "calibration" / "tools-exec" / "executions-val.jsonl"
    executions = [json.loads(line) for line in executions_file.read_text().splitlines()]
    assert len(executions) == report["positives"] + report["negatives"]
    assert report["per_question"]["logic"]["abstain_rate"] < 1.0
    statuses = {row["verdict"]["status"] for row in executions}
    from apirl.execution.executor import EXEC_STATUSES

    assert len(statuses) > 1 and statuses <= set(EXEC_STATUSES)  # gold and mutants do not all end alike

    import apirl.execution.stage as exec_run

    def no_executor(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the rerun must reuse the verdicts")

    monkeypatch.setattr(exec_run, "open_executor", no_executor)
    assert invoke(args) == report  # a stage: up to date, skipped, the same report
    again = invoke([*args, "--force"])  # redone: the verdicts and the judgments are reused
    assert again["judgments_made"] == 0 and again["auc"] == report["auc"]
    static = invoke(["feedback", "calibrate", "--judge", "tools", "--limit", "3", *smoke(real_data_dir, runs)])
    assert static["judge"] == "tools" and static["per_question"]["logic"]["abstain_rate"] == 1.0
    assert static["judgments_made"] == static["judgments"]  # not read from the exec-informed answers
