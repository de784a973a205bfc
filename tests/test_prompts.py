from apirl.data.prompts import (
    TaggedOutput,
    code_section,
    format_prompt,
    format_target,
    parse_completion,
    parse_tagged,
    unescape,
)


def test_prompt_format_with_and_without_input():
    assert format_prompt("Do X.") == "###Instruction: Do X.\n###Output:"
    assert format_prompt(" Do X. ", "some input") == "###Instruction: Do X.\n###Input: some input\n###Output:"


def test_target_round_trips_through_the_completion_parser():
    output = TaggedOutput(domain="NLP Fill-Mask", api_call="pipeline('fill-mask', model='bert-base-uncased')",
                          api_provider="Hugging Face Transformers", explanation="1. Import. 2. Load.",
                          code="from transformers import pipeline\nunmasker = pipeline('fill-mask')")
    prompt = format_prompt("Fill the blank.")
    assert parse_completion(format_target(output)) == output
    # A completion that repeats the prompt parses the same.
    assert parse_completion(prompt + format_target(output)) == output


def test_missing_tags_are_none_and_listed():
    parsed = parse_tagged("<<<domain>>>: Audio\n<<<api_call>>>: f('x')")
    assert parsed.domain == "Audio" and parsed.api_call == "f('x')"
    assert parsed.missing == ("api_provider", "explanation", "code")


def test_escaped_gorilla_text_is_decoded():
    raw = "<<<api_call>>>: f('a')\\n<<<code>>>: import os\\nprint(\\\"caf\\u00e9 \\ud83d\\ude00\\\")\\n\""
    parsed = parse_completion(raw)
    assert parsed.api_call == "f('a')"
    assert parsed.code == 'import os\nprint("café 😀")'


def test_code_section_falls_back_to_fence_then_whole_text():
    assert code_section("Here:\n```python\nx = 1\n```\nDone") == "x = 1"
    assert code_section("x = 2") == "x = 2"
    assert code_section("<<<code>>>: ```python\ny = 3\n```") == "y = 3"


def test_unescape_leaves_plain_text_alone():
    assert unescape("naïve") == "naïve"
    assert unescape("a\\tb") == "a\tb"
