"""Markdown tables of evaluation summaries, shared by the CLI and the report."""

from __future__ import annotations

import math
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("ast_accuracy", "AST acc"),
    ("hallucination", "halluc."),
    ("error", "error"),
    ("strict_accuracy", "strict acc"),
    ("api_call_exact", "call exact"),
    ("model_id_match", "model id"),
    ("rouge_l", "ROUGE-L"),
    ("codebleu", "CodeBLEU"),
)


def format_value(value: float | None, ci: list[float] | None = None) -> str:
    """A rate as a percentage with one decimal, with its 95% interval when known."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{100 * value:.1f}"
    if ci and not any(math.isnan(bound) for bound in ci) and ci[0] != ci[1]:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(results: list[tuple[str, dict[str, Any]]], *, with_ci: bool = True) -> str:
    """One row per model: every headline metric in percent, with its bootstrap 95% interval."""
    header = ["model", "n", *(label for _, label in COLUMNS)]
    rows = []
    for name, summary in results:
        ci = summary.get("ci95", {}) if with_ci else {}
        cells = [format_value(summary.get(key), ci.get(key)) for key, _ in COLUMNS]
        rows.append([name, str(summary.get("n", "")), *cells])
    return markdown_table(header, rows)


def per_domain_table(summary: dict[str, Any]) -> str:
    header = ["domain", "n", "AST acc", "halluc.", "strict acc", "ROUGE-L"]
    rows = [[domain, str(values["n"]), *(format_value(values[key]) for key in
                                         ("ast_accuracy", "hallucination", "strict_accuracy", "rouge_l"))]
            for domain, values in summary.get("per_domain", {}).items()]
    return markdown_table(header, rows)
