"""The API database (936 Hugging Face APIs) and the lookups every stage shares.

Field types vary across rows (string, list, dict or null), so the raw values are kept as they are and the
derived facts (does the call parse, does it take arguments, which model id it names) are computed once here.
The evaluator, the tools judge and the offline hub use these lookups; nobody else re-parses the file.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.jsonl import iter_jsonl

_FIELDS = ("domain", "framework", "functionality", "api_name", "api_call", "api_arguments",
           "python_environment_requirements", "example_code", "performance", "description")
_HUB_ID_RE = re.compile(r"""(?<![\w./])['"]?([A-Za-z0-9][\w.\-]*/[\w.\-]+)['"]?""")
_EMPTY_MARKERS = {"", "n/a", "none", "null", "[]", "{}"}


def as_text(value: Any) -> str:
    """A field value as plain text (lists joined by newlines, dicts as JSON); "" for null/N/A markers."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "" if value.strip().lower() in _EMPTY_MARKERS else value
    if isinstance(value, list):
        return "\n".join(as_text(item) for item in value if as_text(item))
    return json.dumps(value, ensure_ascii=False)


def normalize_call(call: str) -> str:
    """A call with whitespace removed and double quotes made single, for exact comparisons."""
    return re.sub(r"\s+", "", call).replace('"', "'")


@dataclass(frozen=True)
class ApiRow:
    """One row of the API database, plus its position (0-based) in the file."""

    index: int
    domain: str
    framework: str
    functionality: str
    api_name: str
    api_call: str
    api_arguments: Any = None
    python_environment_requirements: Any = None
    example_code: Any = None
    performance: Any = None
    description: Any = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def call_parses(self) -> bool:
        """Whether `api_call` is valid Python (15 of the 936 are not)."""
        try:
            ast.parse(self.api_call)
        except SyntaxError:
            return False
        return True

    @cached_property
    def call_has_arguments(self) -> bool:
        """Whether `api_call` passes any argument (8 do not; Gorilla's matcher never matches those)."""
        try:
            tree = ast.parse(self.api_call)
        except SyntaxError:
            return "()" not in self.api_call.replace(" ", "")
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
        return any(node.args or node.keywords for node in calls)

    @cached_property
    def model_id(self) -> str:
        """The hub id the row's call loads, e.g. 'impira/layoutlm-invoices'.

        `api_name` when it is an `org/name` the call uses; else the first `org/name` in the call (220 rows
        have an `api_name` without the organisation, e.g. 'layoutlm-invoices'); else `api_name`.
        """
        if "/" in self.api_name and self.api_name in self.api_call:
            return self.api_name
        match = _HUB_ID_RE.search(self.api_call)
        return match.group(1) if match else self.api_name

    @property
    def flags(self) -> tuple[str, ...]:
        out = []
        if not self.call_parses:
            out.append("call_does_not_parse")
        if not self.call_has_arguments:
            out.append("call_has_no_arguments")
        return tuple(out)

    @classmethod
    def from_json(cls, index: int, raw: dict[str, Any], *, path: Path | str = "<api_data>",
                  line: int | None = None) -> ApiRow:
        if not isinstance(raw, dict):
            raise InputError(f"expected a JSON object, got {type(raw).__name__}", path=path, line=line)
        values: dict[str, Any] = {}
        for name in ("domain", "api_name", "api_call"):
            value = raw.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InputError("missing or non-string value", path=path, line=line, field=name)
            values[name] = value.strip()
        for name in ("framework", "functionality"):  # one row has a list of functionalities
            value = raw.get(name)
            values[name] = ", ".join(map(str, value)) if isinstance(value, list) else as_text(value).strip()
        for name in _FIELDS[5:]:
            values[name] = raw.get(name)
        extra = {key: value for key, value in raw.items() if key not in _FIELDS}
        return cls(index=index, extra=extra, **values)


class ApiDatabase:
    """The rows in file order (Gorilla's matcher depends on that order), lookups by model id and call, every hub id
    the database has (`model_ids`: the offline hub's universe) and its domains in first-seen order."""

    def __init__(self, rows: list[ApiRow], path: Path | None = None) -> None:
        self.rows = rows
        self.path = path
        self._by_model_id: dict[str, list[ApiRow]] = {}
        self._by_call: dict[str, list[ApiRow]] = {}
        self._ids_by_domain: dict[str, set[str]] = {}
        for row in rows:
            for name in {row.model_id.lower(), row.api_name.lower()}:
                self._by_model_id.setdefault(name, []).append(row)
            self._by_call.setdefault(normalize_call(row.api_call), []).append(row)
            if row.model_id:
                self._ids_by_domain.setdefault(row.domain, set()).add(row.model_id.lower())
        self.model_ids = frozenset(row.model_id for row in rows if row.model_id)
        self.domains = tuple(dict.fromkeys(row.domain for row in rows))

    def __len__(self) -> int:
        return len(self.rows)

    def fingerprint(self) -> str:
        """A hash of the rows as loaded (whatever file, or none, they came from)."""
        text = json.dumps([[row.domain, row.api_name, row.api_call] for row in self.rows], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def __iter__(self):
        return iter(self.rows)

    def by_model_id(self, model_id: str) -> list[ApiRow]:
        """Rows whose hub id or `api_name` is this id (case-insensitive, as the hub is)."""
        return self._by_model_id.get(model_id.strip().lower(), [])

    def domain_model_ids(self, domain: str) -> frozenset[str]:
        """The hub ids (lower case) of the rows of `domain`; empty for a domain the database lacks."""
        return frozenset(self._ids_by_domain.get(domain, ()))

    def by_call(self, call: str) -> list[ApiRow]:
        """Rows whose `api_call` equals this call up to whitespace and quote style."""
        return self._by_call.get(normalize_call(call), [])


def load_api_database(path: str | Path) -> ApiDatabase:
    """Read the API database JSONL. Every row must parse: a bad row is an error naming its line."""
    path = Path(path)
    rows: list[ApiRow] = []
    for line_number, raw in iter_jsonl(path, what="API database"):
        rows.append(ApiRow.from_json(len(rows), raw, path=path, line=line_number))
    if not rows:
        raise InputError("API database is empty", path=path)
    return ApiDatabase(rows, path)
