"""The in-process LLM judge on `tiny-random` (a 2-layer random Llama with SmolLM2's tokenizer): the yes/no token
ids, P(yes) from the next-token distribution, and batching that changes nothing. The answers of a random model
mean nothing; the plumbing is what is tested. The first run builds the model (~10 s, then cached)."""

from __future__ import annotations

import pytest

from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.feedback.local_judge import LocalJudge, answer_token_ids
from apirl.feedback.questions import QUESTIONS, question
from apirl.feedback.types import Answer, JudgedAnswer, Sample

SAMPLES = [
    Sample("short", "Classify a review.", "<<<code>>>: from transformers import pipeline"),
    Sample("sentiment", "Tell me whether this review is positive.",
           "<<<code>>>: from transformers import pipeline\n"
           "clf = pipeline('sentiment-analysis', model='distilbert-base-uncased-finetuned-sst-2-english')\n"
           "result = clf('Great film, I would watch it again and again.')\nprint(result)"),
    Sample("vit", "Classify the animal in my photo.",
           "<<<code>>>: from transformers import ViTForImageClassification\n"
           "model = ViTForImageClassification.from_pretrained('google/vit-base-patch16-224')"),
]


@pytest.fixture(scope="module")
def api_db() -> ApiDatabase:
    from conftest import API_ROWS

    return ApiDatabase([ApiRow.from_json(i, row) for i, row in enumerate(API_ROWS)])


@pytest.fixture(scope="module")
def judge() -> LocalJudge:
    return LocalJudge("tiny-random", batch_size=4, device="cpu")


def test_yes_and_no_token_ids(judge: LocalJudge) -> None:
    yes, no = answer_token_ids(judge.tokenizer)
    assert yes and no and not yes & no
    assert (yes, no) == (judge.yes_ids, judge.no_ids)
    decode = judge.tokenizer.decode
    assert {decode([i]) for i in yes} >= {"Yes", " Yes", "yes", " yes"}
    assert {decode([i]) for i in no} >= {"No", " No", "no", " no", "NO"}
    assert all("yes".startswith(decode([i]).strip().lower()) for i in yes)
    assert all("no".startswith(decode([i]).strip().lower()) for i in no)


def test_p_yes_for_each_item(judge: LocalJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [(sample, q) for sample in SAMPLES for q in QUESTIONS[:3]]
    monkeypatch.setattr(judge, "batch_size", 1)  # chunks of 4 items: 9 items are 3 chunks
    arrived: list[tuple[int, JudgedAnswer]] = []
    judged = judge.answer_many(items, on_answer=lambda i, j: arrived.append((i, j)))
    assert arrived == list(enumerate(judged))  # each handed over once, in order
    assert len(judged) == len(items)
    for result, (_, q) in zip(judged, items, strict=True):
        answer = result.answer
        assert isinstance(answer, Answer) and (result.prompt_tokens, result.completion_tokens) == (0, 0)
        assert (answer.question, answer.judge) == (q.key, "local")
        assert answer.p_yes is not None and 0.0 <= answer.p_yes <= 1.0
        assert answer.value is (answer.p_yes >= 0.5)
    assert judge.answer_many([]) == []


def test_batching_changes_nothing(judge: LocalJudge) -> None:
    items = [(sample, q) for sample in SAMPLES for q in (question("imports"), question("task"))]
    batched = [j.answer.p_yes for j in judge.answer_many(items)]  # batches of 4 prompts of different lengths
    alone = [judge.answer_many([item])[0].answer.p_yes for item in items]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(batched)) > 1  # different prompts, different answers: the positions were not mixed up


def test_prompt_goes_through_the_chat_template(judge: LocalJudge) -> None:
    text = judge.prompt_text(SAMPLES[1], question("imports"))
    assert text.startswith("<|im_start|>system\nYou are a strict reviewer")
    assert text.endswith("Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n")
    assert "API database" not in text
    assert judge.cache_model == "tiny-random"


def test_plain_prompt_without_a_chat_template(judge: LocalJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judge.tokenizer, "chat_template", None)
    text = judge.prompt_text(SAMPLES[0], question("syntax"))
    assert text.startswith("System: You are a strict reviewer")
    assert "\n\nUser: Instruction:\nClassify a review." in text
    assert text.endswith("Answer Yes or No.\n\nAnswer:")
    [judged] = judge.answer_many([(SAMPLES[0], question("syntax"))])
    assert judged.answer.p_yes is not None and 0.0 <= judged.answer.p_yes <= 1.0


def test_grounding(api_db: ApiDatabase) -> None:
    judge = LocalJudge("tiny-random", grounding=True, api_db=api_db, device="cpu")
    text = judge.prompt_text(SAMPLES[2], question("api_exists"))
    assert "api_call: ViTForImageClassification.from_pretrained('google/vit-base-patch16-224')" in text
    assert "The code names no model" in judge.prompt_text(SAMPLES[0], question("api_exists"))
    assert judge.cache_model == "tiny-random+grounding"
    with pytest.raises(ValueError, match="api_db"):
        LocalJudge("tiny-random", grounding=True)
