"""The one place that words what an LLM judge reads: the chat messages for one (sample, question).

Every LLM judge (a server through the OpenAI API, an in-process model) asks with these messages, so their
answers differ by the model only. The question comes last, followed by "Answer Yes or No.", so the judge's
next token is the answer and its probability is P(yes).

Grounding (optional) adds the API database row of the model the code loads: a judge that has never seen
`impira/layoutlm-invoices` can still tell whether the code calls it the way the database says. The cache keys
an answer on the sample and question, not on these messages: after editing the wording (or switching grounding
on), the cached LLM answers are stale.
"""

from __future__ import annotations

import ast
import re

from apirl.code_facts import api_calls
from apirl.data.apidb import ApiDatabase, ApiRow, as_text
from apirl.feedback.questions import Question
from apirl.feedback.types import Sample

SYSTEM = ("You are a strict reviewer of Python code that uses Hugging Face APIs. You read a user's instruction, "
          "the code written for it and one yes/no question about the code. Answer only Yes or No.")
NO_MODEL = "The code names no model from the API database."
# At most this many database rows in a grounding (code that loads several models, a model with several rows).
MAX_GROUNDING_ROWS = 3
_MAX_FIELD_CHARS = 400
_MAX_EXAMPLE_CHARS = 600
_QUOTED_RE = re.compile(r"""['"]([^'"\s]{1,200})['"]""")


def _short(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def _model_ids(code: str) -> list[str]:
    """The ids the code may load, most telling first: the models its API calls load (the API itself, then
    tokenizers/processors), then any other string literal. Code that does not parse still names ids in
    quotes, and grounding it helps the judge all the same."""
    try:
        tree = ast.parse(code)
        calls = api_calls(tree)
    except Exception:  # SyntaxError, null bytes, absurd nesting: fall back to the quoted strings
        return list(dict.fromkeys(_QUOTED_RE.findall(code)))
    ids = [call.model_id for call in calls if call.model_id and not call.auxiliary]
    ids += [call.model_id for call in calls if call.model_id and call.auxiliary]
    ids += [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    return list(dict.fromkeys(ids))


def format_row(row: ApiRow) -> str:
    """One database row as the judge reads it (long fields shortened: the prompt is paid per token)."""
    lines = [
        f"name: {row.api_name}",
        f"api_call: {row.api_call}",
        f"domain: {row.domain}",
        f"framework: {row.framework}",
        f"functionality: {row.functionality}",
    ]
    for label, value, limit in (("description", row.description, _MAX_FIELD_CHARS),
                                ("api_arguments", row.api_arguments, _MAX_FIELD_CHARS),
                                ("example_code", row.example_code, _MAX_EXAMPLE_CHARS)):
        text = as_text(value)
        if text:
            lines.append(f"{label}: {_short(text, limit)}")
    return "\n".join(lines)


def grounding_for(code: str, api_db: ApiDatabase | None) -> str | None:
    """The grounding text for a sample's code: the database rows of the models it loads, or NO_MODEL when it
    names none. None only without a database (no grounding at all)."""
    if api_db is None:
        return None
    rows: list[ApiRow] = []
    for model_id in _model_ids(code):
        for row in api_db.by_model_id(model_id):
            if row not in rows:
                rows.append(row)
    if not rows:
        return NO_MODEL
    rows = rows[:MAX_GROUNDING_ROWS]
    heading = ("API database entry for the model the code loads:" if len(rows) == 1
               else "API database entries for the models the code loads:")
    return heading + "\n\n" + "\n\n".join(format_row(row) for row in rows)


def judge_messages(sample: Sample, question: Question, grounding: str | None) -> list[dict[str, str]]:
    """The chat messages that ask one question about one sample: a system message, then the instruction, the
    code (the sample's code section), the grounding when given, the question and "Answer Yes or No."."""
    parts = [f"Instruction:\n{sample.instruction.strip()}", f"Code:\n```python\n{sample.code.strip()}\n```"]
    if grounding is not None:
        parts.append(grounding.strip())
    parts.append(f"Question: {question.text}\nAnswer Yes or No.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]
