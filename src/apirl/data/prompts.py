"""The one place that knows the text format: prompts, tagged targets, and parsing completions back.

Gorilla's APIBench writes an example as

    ###Instruction: <request>
    ###Input: <optional input>
    ###Output: <<<domain>>>: ...
    <<<api_call>>>: ...
    <<<api_provider>>>: ...
    <<<explanation>>>: ...
    <<<code>>>: <python>

SFT trains on `prompt + target`, generation feeds `prompt` and parses the completion, feedback and evaluation
read the parsed sections. Keeping both directions here guarantees they agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

TAGS: tuple[str, ...] = ("domain", "api_call", "api_provider", "explanation", "code")
_TAG_RE = re.compile(r"<<<\s*(domain|api_call|api_provider|explanation|code)\s*>>>\s*:?[ \t]*")
_FENCE_RE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|[nrt\"'\\])")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "'": "'", "\\": "\\"}

PROMPT_INSTRUCTION = "###Instruction:"
PROMPT_INPUT = "###Input:"
PROMPT_OUTPUT = "###Output:"


@dataclass(frozen=True)
class TaggedOutput:
    """The five sections of an answer; None when the tag is absent."""

    domain: str | None = None
    api_call: str | None = None
    api_provider: str | None = None
    explanation: str | None = None
    code: str | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is None)


def format_prompt(instruction: str, input_text: str | None = None) -> str:
    """The prompt a model sees: instruction, optional input, and the `###Output:` cue."""
    prompt = f"{PROMPT_INSTRUCTION} {instruction.strip()}\n"
    if input_text is not None and input_text.strip():
        prompt += f"{PROMPT_INPUT} {input_text.strip()}\n"
    return prompt + PROMPT_OUTPUT


def format_target(output: TaggedOutput) -> str:
    """The training target that follows the prompt: ` <<<domain>>>: ...` through `<<<code>>>: ...`."""
    parts = [f"<<<{tag}>>>: {value.strip()}" for tag in TAGS if (value := getattr(output, tag)) is not None]
    return " " + "\n".join(parts)


def parse_tagged(text: str) -> TaggedOutput:
    """Split a text into its `<<<tag>>>:` sections. A tag seen twice keeps its first section.

    Each section runs from its tag to the next tag. Text before the first tag is ignored. Sections are
    stripped; an empty section is "" (present but empty), an absent tag is None.
    """
    matches = list(_TAG_RE.finditer(text))
    sections: dict[str, str] = {}
    for index, match in enumerate(matches):
        tag = match.group(1)
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        if tag not in sections:
            sections[tag] = text[match.end():end].strip()
    return TaggedOutput(**sections)


def looks_escaped(text: str) -> bool:
    """True for texts stored with their newlines escaped as a literal backslash-n (Gorilla's files)."""
    return text.count("\\n") > text.count("\n")


def unescape(text: str) -> str:
    """Undo one level of string escaping (\\n, \\t, \\", \\', \\\\, \\uXXXX) without touching other bytes.

    `codecs.decode(..., "unicode_escape")` would also mangle non-ASCII characters, which the data has.
    """

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES[code]

    decoded = _ESCAPE_RE.sub(replace, text)
    # \ud83d\ude00-style pairs decode to two surrogates: join them, and replace any lone one.
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def normalize_text(text: str) -> str:
    """Readable text: unescaped when the whole text was stored escaped, unchanged otherwise."""
    return unescape(text) if looks_escaped(text) else text


def parse_completion(text: str) -> TaggedOutput:
    """Parse a model's completion (or a published response) into sections, tolerating escaped storage.

    Whatever follows `###Output:` is parsed when the completion repeats the prompt. When no `<<<code>>>` tag
    is present, a fenced code block (```python ... ```) is taken as the code section.
    """
    text = normalize_text(text)
    if PROMPT_OUTPUT in text:
        text = text.split(PROMPT_OUTPUT, 1)[1]
    parsed = parse_tagged(text)
    code = parsed.code
    if code is None:
        fence = _FENCE_RE.search(text)
        if fence:
            code = fence.group(1)
    if code is not None:
        code = clean_code(code)
    return TaggedOutput(parsed.domain, parsed.api_call, parsed.api_provider, parsed.explanation, code)


def clean_code(code: str) -> str:
    """Strip code fences and the stray closing quote that Gorilla's escaped responses end with."""
    fence = _FENCE_RE.search(code)
    if fence and code.lstrip().startswith("```"):
        code = fence.group(1)
    code = code.strip()
    if code.endswith("```"):
        code = code[:-3].rstrip()
    lines = code.split("\n")
    if len(lines) > 1 and lines[-1].strip() == '"':
        code = "\n".join(lines[:-1]).rstrip()
    return code


def code_section(text: str) -> str:
    """The code to score or run: the `<<<code>>>` section, else a fenced block, else the whole text."""
    code = parse_completion(text).code
    return code if code is not None else clean_code(normalize_text(text))
