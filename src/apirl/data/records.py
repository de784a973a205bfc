"""APIBench records (the Hugging Face part), parsed into typed records.

A raw record is `{"code": "###Instruction: ...\\n###Output: <<<domain>>>: ...", "api_call", "provider",
"api_data"}`. Some records lack tags (kept, with the missing tags listed); a few have no instruction or no
output at all (skipped and reported with file, line and reason, or fatal with `strict`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from apirl.data.apidb import ApiRow
from apirl.data.prompts import TaggedOutput, format_prompt, format_target, parse_tagged
from apirl.errors import InputError

_SECTION_RE = re.compile(r"###\s*(Instruction|Input|Output)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class ApiBenchRecord:
    """One instruction and its tagged answer.

    `question_id` is the 1-based line number in the file, which is how Gorilla's questions and responses
    refer to eval records. `gold_domain` is the API database row's domain, the one Gorilla's evaluator uses.
    """

    question_id: int
    instruction: str
    input: str | None
    output: TaggedOutput
    api_data: ApiRow
    provider: str
    source: str

    @property
    def prompt(self) -> str:
        return format_prompt(self.instruction, self.input)

    @property
    def target(self) -> str:
        return format_target(self.output)

    @property
    def gold_domain(self) -> str:
        return self.api_data.domain

    @property
    def gold_api_name(self) -> str:
        return self.api_data.api_name

    @property
    def missing_tags(self) -> tuple[str, ...]:
        return self.output.missing

    @property
    def is_complete(self) -> bool:
        """Every tag present and non-empty: fit to be a training target."""
        return not self.missing_tags and bool(self.output.code) and bool(self.output.api_call)


@dataclass(frozen=True)
class ParseIssue:
    """A record that could not be parsed: where and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class LoadResult:
    records: list[ApiBenchRecord]
    skipped: list[ParseIssue]


def split_sections(code: str) -> dict[str, str]:
    """`###Instruction:` / `###Input:` / `###Output:` sections of a record's text (first occurrence wins)."""
    matches = list(_SECTION_RE.finditer(code))
    sections: dict[str, str] = {}
    for index, match in enumerate(matches):
        name = match.group(1).lower()
        end = matches[index + 1].start() if index + 1 < len(matches) else len(code)
        if name not in sections:
            sections[name] = code[match.end():end].strip()
        if name == "output":
            # Everything after the first output belongs to it, even a stray second "###Instruction:".
            sections[name] = code[match.end():].strip()
            break
    return sections


def parse_record(raw: object, *, question_id: int, path: str = "<record>", source: str = "eval") -> ApiBenchRecord:
    """Parse one raw APIBench record; raises InputError (with path, line and field) when it cannot."""
    line = question_id
    if not isinstance(raw, dict):
        raise InputError(f"expected a JSON object, got {type(raw).__name__}", path=path, line=line)
    code = raw.get("code")
    if not isinstance(code, str):
        raise InputError("missing or non-string value", path=path, line=line, field="code")
    sections = split_sections(code)
    instruction = sections.get("instruction", "")
    if not instruction:
        raise InputError("no '###Instruction:' section", path=path, line=line, field="code")
    if "output" not in sections:
        raise InputError("no '###Output:' section", path=path, line=line, field="code")
    if "api_data" not in raw:
        raise InputError("missing value", path=path, line=line, field="api_data")
    api_row = ApiRow.from_json(-1, raw["api_data"], path=path, line=line)
    provider = raw.get("provider") or api_row.framework
    return ApiBenchRecord(
        question_id=question_id,
        instruction=instruction,
        input=sections.get("input") or None,
        output=parse_tagged(sections["output"]),
        api_data=api_row,
        provider=str(provider),
        source=source,
    )


def load_apibench(path: str | Path, *, strict: bool = False, source: str = "eval") -> LoadResult:
    """Read an APIBench JSONL file. Unparseable records are skipped and listed, or fatal when `strict`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("APIBench file not found", path=path)
    records: list[ApiBenchRecord] = []
    skipped: list[ParseIssue] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                if not line.strip():
                    raise InputError("empty line", path=path, line=line_number)
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"invalid JSON: {exc.msg}", path=path, line=line_number) from exc
                records.append(parse_record(raw, question_id=line_number, path=str(path), source=source))
            except InputError as exc:
                if strict:
                    raise
                reason = exc.reason if exc.field is None else f"{exc.field}: {exc.reason}"
                skipped.append(ParseIssue(str(path), line_number, reason))
    return LoadResult(records, skipped)
