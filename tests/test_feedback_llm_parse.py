"""Reading a judge's yes/no: P(yes) from top logprobs (hand-computed values) and the text parser; the prompt."""

from __future__ import annotations

import math

import pytest

from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.feedback.parse import normalize_token, p_yes_from_logprobs, parse_yes_no, token_class
from apirl.feedback.prompts import NO_MODEL, SYSTEM, grounding_for, judge_messages
from apirl.feedback.questions import question
from apirl.feedback.types import Sample


def top(*pairs: tuple[str, float]) -> list[dict]:
    """Top alternatives as the OpenAI API writes them, from (token, probability) pairs."""
    return [{"token": token, "logprob": math.log(p)} for token, p in pairs]


# --- tokens -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["Yes", " yes", "YES", "y", "Y", "ĠYes", "▁yes", "Yes.", "**Yes", " yeah"])
def test_yes_like_tokens(token: str) -> None:
    assert token_class(token) is True


@pytest.mark.parametrize("token", ["No", " no", "NO", "n", "ĠNo", "▁NO", "No,", " nope"])
def test_no_like_tokens(token: str) -> None:
    assert token_class(token) is False


@pytest.mark.parametrize("token", ["**", " ", "The", "Not", "None", "yess", "nobody", "", "Ye"])
def test_other_tokens(token: str) -> None:
    assert token_class(token) is None


def test_normalize_token() -> None:
    assert normalize_token("\u0120Yes") == "yes"
    assert normalize_token(" NO.\n") == "no"


# --- logprobs -----------------------------------------------------------------------------------------------


def test_p_yes_sums_variants_over_yes_and_no() -> None:
    # yes: 0.5 + 0.1 + 0.05 = 0.65; no: 0.2 + 0.05 = 0.25; the rest ("**", "The") is ignored.
    p = p_yes_from_logprobs(top(("Yes", 0.5), (" yes", 0.1), ("YES", 0.05), ("No", 0.2), (" no", 0.05),
                                ("**", 0.07), ("The", 0.03)))
    assert p == pytest.approx(0.65 / 0.90, abs=1e-12)


def test_p_yes_only_yes_or_only_no() -> None:
    assert p_yes_from_logprobs(top(("Yes", 0.9), ("The", 0.1))) == pytest.approx(1.0)
    assert p_yes_from_logprobs(top(("No", 0.3), ("**", 0.7))) == pytest.approx(0.0)


def test_p_yes_none_without_answer_tokens() -> None:
    assert p_yes_from_logprobs(top(("**", 0.6), ("The", 0.4))) is None
    assert p_yes_from_logprobs([]) is None


def test_p_yes_accepts_objects_and_skips_missing_logprobs() -> None:
    class Entry:
        def __init__(self, token: str, logprob: float | None) -> None:
            self.token, self.logprob = token, logprob

    p = p_yes_from_logprobs([Entry("Yes", math.log(0.3)), Entry("No", math.log(0.1)), Entry("yes", None),
                             Entry("no", float("nan"))])
    assert p == pytest.approx(0.75)


def test_p_yes_tiny_probabilities() -> None:
    # exp(-50) underflows nothing in float64, and the ratio is still right: e^-50 / (e^-50 + e^-51).
    p = p_yes_from_logprobs([{"token": "Yes", "logprob": -50.0}, {"token": "No", "logprob": -51.0}])
    assert p == pytest.approx(1 / (1 + math.exp(-1)))


# --- text ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Yes", "yes", "YES", "Yes.", " \n Yes", "**Yes**", "*yes*", "`Yes`", "# Yes",
                                  "> Yes", "- yes", '"Yes"', "Yes, because the code imports everything.",
                                  "yes - the call is right", "The answer is yes.", "Answer: **Yes**",
                                  "After checking, the final answer is: Yes", "Yes\n\nThe code has no errors."])
def test_parse_yes(text: str) -> None:
    assert parse_yes_no(text) is True


@pytest.mark.parametrize("text", ["No", "no", "NO.", "**No**", "No, `foo` is never defined.", "\tno",
                                  "The answer is no", "Answer: No", "answer - no", "No. Yes would be wrong."])
def test_parse_no(text: str) -> None:
    assert parse_yes_no(text) is False


@pytest.mark.parametrize("text", ["", None, "   ", "**", "Maybe", "Yes or no?", "yes/no", "Yes and no.",
                                  "There are no errors in the code.", "Nobody knows", "Not sure",
                                  "The answer is yes. Actually the answer is no.", "yesterday", "Note: fine"])
def test_parse_unknown(text: str | None) -> None:
    assert parse_yes_no(text) is None


# --- the prompt ---------------------------------------------------------------------------------------------


def _db() -> ApiDatabase:
    from conftest import API_ROWS

    return ApiDatabase([ApiRow.from_json(i, row) for i, row in enumerate(API_ROWS)])


SENTIMENT_CODE = ("from transformers import pipeline\n"
                  "clf = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')\n")


def test_judge_messages_without_grounding() -> None:
    sample = Sample("s1", "Tell me whether a review is positive.", f"<<<code>>>: {SENTIMENT_CODE}")
    messages = judge_messages(sample, question("imports"), None)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM
    user = messages[1]["content"]
    assert "Tell me whether a review is positive." in user
    assert "clf = pipeline(" in user
    assert "<<<code>>>" not in user  # the code section only
    assert user.endswith(f"Question: {question('imports').text}\nAnswer Yes or No.")
    assert "API database" not in user


def test_grounding_names_the_row_of_the_loaded_model() -> None:
    grounding = grounding_for(SENTIMENT_CODE, _db())
    assert grounding is not None
    assert "api_call: pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')" \
        in grounding
    assert "domain: Natural Language Processing Text Classification" in grounding
    assert "functionality: Sentiment Analysis" in grounding
    assert "example_code: classifier('I love it')" in grounding
    assert "google/vit" not in grounding
    sample = Sample("s1", "Classify.", SENTIMENT_CODE)
    assert grounding in judge_messages(sample, question("api_exists"), grounding)[1]["content"]


def test_grounding_without_a_known_model_and_without_a_database() -> None:
    assert grounding_for("from transformers import pipeline\np = pipeline('fill-mask', model='nobody/x')",
                         _db()) == NO_MODEL
    assert grounding_for("print(1)", _db()) == NO_MODEL
    assert grounding_for(SENTIMENT_CODE, None) is None


def test_grounding_of_code_that_does_not_parse_and_of_several_models() -> None:
    broken = "model = ViTForImageClassification.from_pretrained('google/vit-base-patch16-224'\n"
    assert "name: google/vit-base-patch16-224" in (grounding_for(broken, _db()) or "")
    both = SENTIMENT_CODE + "m = pipeline('fill-mask', model='bert-base-uncased')\n"
    grounding = grounding_for(both, _db()) or ""
    assert grounding.startswith("API database entries")
    assert grounding.index("name: distilbert") < grounding.index("name: bert-base-uncased")
