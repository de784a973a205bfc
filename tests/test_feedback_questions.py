"""The eight questions, samples and the score: fixed data and pure functions."""

from __future__ import annotations

import dataclasses

import pytest

from apirl.feedback.questions import QUESTIONS, Question, question
from apirl.feedback.types import UNKNOWN_WEIGHT, Answer, Sample, label, score


def test_eight_questions_in_the_papers_order() -> None:
    assert [q.key for q in QUESTIONS] == ["imports", "syntax", "defined_names", "api_exists", "arguments", "task",
                                          "complete", "logic"]
    assert QUESTIONS[0].text == "Does the code import every module, class and function it uses?"
    assert QUESTIONS[4].text == "Are the API call's arguments correct?"
    assert all(q.text.endswith("?") for q in QUESTIONS)


def test_question_by_key_and_a_typo_lists_the_valid_keys() -> None:
    assert question("syntax") is QUESTIONS[1]
    with pytest.raises(KeyError, match="valid keys: imports, syntax"):
        question("sintax")


def test_questions_and_answers_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QUESTIONS[0].key = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Answer("syntax", True, 1.0, "tools").value = False  # type: ignore[misc]
    assert isinstance(QUESTIONS[0], Question)


def test_sample_code_is_the_code_section() -> None:
    sample = Sample("s1", "Classify it.", "<<<domain>>>: NLP\n<<<code>>>: import os\nprint(os.sep)\n")
    assert sample.code == "import os\nprint(os.sep)"
    fenced = Sample("s2", "x", "Here:\n```python\nx = 1\n```\n")
    assert fenced.code == "x = 1"


def test_score_sums_p_yes_then_values_and_unknowns_count_half() -> None:
    answers = [
        Answer("imports", True, None, "tools"),  # 1
        Answer("syntax", False, None, "tools"),  # 0
        Answer("task", True, 0.75, "openai"),  # p_yes wins over the value
        Answer("logic", None, None, "tools"),  # unknown
    ]
    assert score(answers) == pytest.approx(1 + 0 + 0.75 + UNKNOWN_WEIGHT)
    assert UNKNOWN_WEIGHT == 0.5
    assert score([]) == 0.0
    assert score([Answer(q.key, True, None, "tools") for q in QUESTIONS]) == 8.0


def test_label_is_score_at_or_above_the_threshold() -> None:
    assert label(6.0, 6.0)
    assert label(7.5, 6.0)
    assert not label(5.99, 6.0)
