"""The judgment cache: round trips, persistence, one row per key, and the cost statistics."""

from __future__ import annotations

import math
import sqlite3

import pytest

from apirl.errors import InputError
from apirl.feedback.cache import JudgmentCache, sha
from apirl.feedback.types import Answer

PROMPT = "###Instruction: Tell me whether this review is positive.\n###Output:"
COMPLETION = "<<<code>>>: from transformers import pipeline"


def test_sha_is_sha256_hex() -> None:
    assert sha("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert len(sha("é")) == 64


def test_put_get_round_trip_keeps_unknowns_and_probabilities(tmp_path) -> None:
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        assert cache.get("tools", "", "syntax", PROMPT, COMPLETION) is None
        yes = Answer("syntax", True, 1.0, "tools", "parses")
        unknown = Answer("task", None, None, "tools", "needs an LLM")
        assert cache.put(yes, "", PROMPT, COMPLETION)
        assert cache.put(unknown, "", PROMPT, COMPLETION)
        assert cache.get("tools", "", "syntax", PROMPT, COMPLETION) == yes
        assert cache.get("tools", "", "task", PROMPT, COMPLETION) == unknown
        # Every part of the key matters.
        assert cache.get("openai", "", "syntax", PROMPT, COMPLETION) is None
        assert cache.get("tools", "gpt", "syntax", PROMPT, COMPLETION) is None
        assert cache.get("tools", "", "syntax", PROMPT + " ", COMPLETION) is None
        assert cache.get("tools", "", "syntax", PROMPT, COMPLETION + " ") is None
        llm = Answer("logic", False, 0.125, "openai")
        cache.put(llm, "gpt-4o-mini", PROMPT, COMPLETION, prompt_tokens=100, completion_tokens=1)
        assert cache.get("openai", "gpt-4o-mini", "logic", PROMPT, COMPLETION) == llm


def test_get_many_returns_the_answered_questions_of_one_sample(tmp_path) -> None:
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        for key, value in (("imports", True), ("syntax", False)):
            cache.put(Answer(key, value, None, "tools"), "", PROMPT, COMPLETION)
        cache.put(Answer("logic", True, None, "tools"), "", PROMPT, "other completion")
        found = cache.get_many("tools", "", ["imports", "syntax", "logic", "imports"], PROMPT, COMPLETION)
        assert found == {"imports": Answer("imports", True, None, "tools"),
                         "syntax": Answer("syntax", False, None, "tools")}
        assert cache.get_many("tools", "", [], PROMPT, COMPLETION) == {}


def test_answers_persist_across_reopening(tmp_path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"
    cache = JudgmentCache(path)
    cache.put(Answer("syntax", False, 0.0, "tools", "SyntaxError: x (line 1)"), "", PROMPT, COMPLETION)
    # No close, no explicit commit: a run killed here has already stored the answer.
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT COUNT(*) FROM judgments").fetchone() == (1,)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.close()
    cache.close()
    with JudgmentCache(path) as reopened:
        assert reopened.get("tools", "", "syntax", PROMPT, COMPLETION) == Answer(
            "syntax", False, 0.0, "tools", "SyntaxError: x (line 1)")


def test_second_put_of_a_key_keeps_the_first_answer(tmp_path) -> None:
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        first = Answer("logic", True, 0.9, "openai", "first")
        assert cache.put(first, "m", PROMPT, COMPLETION, prompt_tokens=10, completion_tokens=1)
        assert not cache.put(Answer("logic", False, 0.1, "openai", "second"), "m", PROMPT, COMPLETION,
                             prompt_tokens=10, completion_tokens=1)
        assert cache.get("openai", "m", "logic", PROMPT, COMPLETION) == first
        assert cache.stats()["calls"] == 1


def test_stats_count_calls_and_tokens_per_judge(tmp_path) -> None:
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        assert cache.stats() == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0,
                                 "per_judge": {}}
        cache.put(Answer("task", True, 0.8, "openai"), "m", PROMPT, COMPLETION, prompt_tokens=120,
                  completion_tokens=2)
        cache.put(Answer("logic", True, 0.7, "openai"), "m", PROMPT, COMPLETION, prompt_tokens=130,
                  completion_tokens=3)
        cache.put(Answer("syntax", True, 1.0, "tools"), "", PROMPT, COMPLETION)
        stats = cache.stats()
    assert stats["calls"] == 3
    assert stats["prompt_tokens"] == 250
    assert stats["completion_tokens"] == 5
    assert stats["tokens"] == 255
    assert stats["per_judge"] == {
        "openai": {"calls": 2, "prompt_tokens": 250, "completion_tokens": 5, "tokens": 255},
        "tools": {"calls": 1, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0},
    }


def test_a_corrupt_cache_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "judgments.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(InputError, match="not a usable judgment cache") as caught:
        JudgmentCache(path)
    assert caught.value.path == str(path)


@pytest.mark.parametrize("p_yes", [math.nan, math.inf, -0.5, 1.5])
def test_a_probability_that_is_none_is_the_same_before_and_after_the_cache(tmp_path, p_yes: float) -> None:
    answer = Answer("imports", True, p_yes, "openai", "odd")
    assert answer.p_yes is None  # the run that judged it and a resumed run weigh it alike
    with JudgmentCache(tmp_path / "c.sqlite") as cache:
        cache.put(answer, "m", "prompt", "completion")
        assert cache.get("openai", "m", "imports", "prompt", "completion") == answer
