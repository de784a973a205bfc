"""The AST matcher on hand-made responses with known outcomes, in both modes."""

import pytest

from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.evaluate.ast_match import AstMatcher, extract_api_call, parse_python, reference_call, subtrees


def _db(*rows):
    return ApiDatabase([ApiRow.from_json(i, raw) for i, raw in enumerate(rows)])


NLP = "Natural Language Processing Text Classification"
CV = "Computer Vision Image Classification"
DB = _db(
    {"domain": NLP, "api_name": "distilbert-sst2",
     "api_call": "pipeline('sentiment-analysis', model='distilbert-sst2')"},
    {"domain": CV, "api_name": "google/vit-base", "api_call": "ViTModel.from_pretrained('google/vit-base')"},
    {"domain": NLP, "api_name": "no-args", "api_call": "SentimentModel()"},
    {"domain": CV, "api_name": "org/vit-base-large", "api_call": "ViTModel.from_pretrained('org/vit-base-large')"},
)
MATCHER = AstMatcher(DB)


def judge(text, gold=NLP, gold_name="distilbert-sst2", mode="gorilla"):
    return MATCHER.judge(text, gold_domain=gold, gold_api_name=gold_name, mode=mode)


def test_extraction_follows_gorilla():
    text = "<<<domain>>>: x\n<<<api_call>>>: pipeline('a', model='b')\n<<<api_provider>>>: HF"
    assert extract_api_call(text) == "pipeline('a', model='b')"
    assert extract_api_call("no tag at all f(x)") == "no tag at all f(x)"
    # No ':' after api_call: starts 2 characters in; no ')': ends one character before the section's end.
    assert extract_api_call("api_call abc def api_provider") == "bc def"


def test_reference_arguments_and_rows_without_arguments():
    ref = reference_call(0, "pipeline('sentiment-analysis', model='distilbert-sst2')")
    assert ref.api_name == b"pipeline" and ref.gorilla_args == ("sentiment-analysis", "distilbert-sst2")
    assert reference_call(0, "SentimentModel()") is None
    assert reference_call(0, "model = AutoModel.from_pretrained('x')") is None  # an assignment: no call head


def test_subtree_walk_is_root_first_depth_first():
    nodes = subtrees(parse_python("f(g(1))"))
    assert nodes[0].type == "module"
    assert all(node.child_count for node in nodes[1:])


def test_correct_response():
    text = "<<<api_call>>>: pipeline('sentiment-analysis', model='distilbert-sst2')\n<<<api_provider>>>: HF"
    assert judge(text).outcome == "correct"
    assert judge(text, mode="strict").outcome == "correct"


def test_wrong_domain_is_an_error():
    text = "<<<api_call>>>: ViTModel.from_pretrained('google/vit-base')\n<<<api_provider>>>: HF"
    verdict = judge(text)
    assert verdict.outcome == "error" and verdict.row_index == 1


def test_unknown_api_is_a_hallucination():
    text = "<<<api_call>>>: ViTModel.from_pretrained('made-up/model')\n<<<api_provider>>>: HF"
    assert judge(text).outcome == "hallucination"
    assert judge(text, mode="strict").outcome == "hallucination"


def test_fall_through_quirk_matches_gorilla_but_not_strict():
    # No sub-tree is headed by `ViTModel.from_pretrained`, so Gorilla falls through to the walk's last
    # sub-tree, whose text still contains the argument string: a match in gorilla mode only.
    text = "<<<api_call>>>: load('google/vit-base')\n<<<api_provider>>>: HF"
    assert judge(text, gold=CV).outcome == "correct"
    assert judge(text, gold=CV, gold_name="google/vit-base", mode="strict").outcome == "hallucination"


def test_substring_arguments_match_in_gorilla_mode_exact_in_strict():
    text = "<<<api_call>>>: ViTModel.from_pretrained('org/vit-base-large')\n<<<api_provider>>>: HF"
    # 'google/vit-base' is not a substring, but row 3 matches exactly.
    assert judge(text, gold=CV).row_index == 3
    strict = judge(text, gold=CV, gold_name="google/vit-base", mode="strict")
    assert strict.outcome == "error" and strict.row_index == 3


def test_strict_mode_requires_the_gold_api_not_just_its_domain():
    text = "<<<api_call>>>: ViTModel.from_pretrained('google/vit-base')\n<<<api_provider>>>: HF"
    assert judge(text, gold=CV, gold_name="org/vit-base-large").outcome == "correct"
    assert judge(text, gold=CV, gold_name="org/vit-base-large", mode="strict").outcome == "error"


@pytest.mark.parametrize("text", ["", "   ", "<<<api_call>>>: ((( not python", "\x00\xff garbage )))",
                                  "<<<api_call>>>:"])
def test_malformed_or_empty_text_is_a_hallucination_not_a_crash(text):
    assert judge(text).outcome == "hallucination"
    assert judge(text, mode="strict").outcome == "hallucination"


def test_escaped_newlines_are_used_as_they_are():
    text = "<<<api_call>>>: pipeline('sentiment-analysis', model='distilbert-sst2')\\n<<<api_provider>>>: HF"
    assert judge(text).outcome == "correct"
