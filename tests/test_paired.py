"""Paired comparison of two models' per-question details: the counts of questions gained and lost, what counts for
which metric, mismatched question sets refused, bad files named, and `apirl eval compare` (the paired bootstrap
and McNemar's test by hand: tests/test_stats.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from apirl.cli import app
from apirl.errors import InputError
from apirl.evaluate.paired import (
    compare,
    comparison_row,
    load_details,
)
from apirl.rundir import RunLayout

RUNNER = CliRunner()


def _row(qid: int, outcome: str, rouge: float = 0.5, *, reference: bool = True,
         executes: bool | None = None) -> dict[str, Any]:
    row = {"question_id": qid, "gorilla_outcome": outcome, "strict_outcome": "hallucination",
           "has_reference_code": reference, "rouge_l": rouge, "codebleu_sentence": rouge / 2}
    if executes is not None:
        row["executes"] = executes
    return row


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_compare_counts_gains_losses_and_what_counts() -> None:
    a = {1: _row(1, "correct", 0.2, executes=True), 2: _row(2, "hallucination", 0.4, executes=False),
         3: _row(3, "error", reference=False, executes=False), 4: _row(4, "correct", 0.6)}
    b = {1: _row(1, "hallucination", 0.4, executes=True), 2: _row(2, "correct", 0.6, executes=True),
         3: _row(3, "correct", reference=False, executes=True), 4: _row(4, "correct", 0.8)}
    by_key = {d.key: d for d in compare(a, b, samples=200)}
    ast = by_key["ast_accuracy"]
    assert (ast.n, ast.a, ast.b, ast.diff, ast.better, ast.worse, ast.p_value) == (4, 0.5, 0.75, 0.25, 2, 1, 1.0)
    assert ast.low <= ast.diff <= ast.high
    hallucination = by_key["hallucination"]
    assert (hallucination.diff, hallucination.better, hallucination.worse) == (0.0, 1, 1)
    rouge = by_key["rouge_l"]  # question 3 has no reference code: 3 pairs, each +0.2
    assert rouge.n == 3 and rouge.diff == pytest.approx(0.2) and rouge.better is None and rouge.p_value is None
    assert by_key["codebleu_sentence"].diff == pytest.approx(0.1)
    executes = by_key["executability"]  # question 4 was not run for either: 3 pairs
    assert (executes.n, executes.diff, executes.better, executes.worse) == (3, pytest.approx(2 / 3), 2, 0)
    row = comparison_row("ppo", "sft", list(by_key.values()))
    assert row[:3] == ["ppo", "sft", "4"] and row[3].startswith("+25.0 [") and row[3].endswith("(+2/-1, p=1)")
    # Strict mode reads the strict outcomes: all hallucinations here, so no accuracy difference.
    strict = {d.key: d for d in compare(a, b, mode="strict", samples=50)}
    assert strict["ast_accuracy"].diff == 0.0 and strict["ast_accuracy"].better == 0
    # Without executions on either side there is no executability row, and the table cell says so.
    no_exec = compare({1: _row(1, "correct")}, {1: _row(1, "error")})
    assert "executability" not in {d.key for d in no_exec}
    assert comparison_row("b", "a", no_exec)[-1] == "–"


def test_executability_with_the_api_is_paired_apart() -> None:
    """Code that runs without loading the API counts for exec bound, not for exec API."""
    a = {1: {**_row(1, "correct", executes=True), "executes_api": False},
         2: {**_row(2, "correct", executes=True), "executes_api": True}}
    b = {1: {**_row(1, "correct", executes=True), "executes_api": True},
         2: {**_row(2, "correct", executes=True), "executes_api": True}}
    by_key = {d.key: d for d in compare(a, b, samples=50)}
    assert by_key["executability"].diff == 0.0
    api = by_key["executability_api"]
    assert (api.a, api.b, api.better, api.worse) == (0.5, 1.0, 1, 0)
    assert "executability_api" not in {d.key for d in compare({1: _row(1, "correct", executes=True)},
                                                              {1: _row(1, "correct", executes=True)})}


def test_compare_refuses_different_questions() -> None:
    with pytest.raises(InputError, match=r"sft and ppo score different questions: 1 only in sft \(e.g. \[2\]\)"):
        compare({1: _row(1, "correct"), 2: _row(2, "error")}, {1: _row(1, "correct")}, names=("sft", "ppo"))
    with pytest.raises(InputError, match="mode must be"):
        compare({}, {}, mode="loose")


def test_load_details_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [_row(1, "correct"), {k: v for k, v in _row(2, "error").items()
                                                               if k != "rouge_l"}])
    with pytest.raises(InputError, match=r"d\.jsonl:2 \[rouge_l\]: missing 'rouge_l'"):
        load_details(path)
    _write(path, [_row(1, "correct"), _row(1, "error")])
    with pytest.raises(InputError, match=r"d\.jsonl:2 \[question_id\]: question 1 appears twice"):
        load_details(path)
    _write(path, [{**_row(1, "correct"), "question_id": "1"}])
    with pytest.raises(InputError, match="question_id must be an integer"):
        load_details(path)
    expected = tmp_path / "eval" / "details" / "Gorilla-7B_FT_0_shot.jsonl"
    assert RunLayout(tmp_path).eval_details("Gorilla-7B FT 0_shot") == expected


def test_cli_compare(tmp_path: Path) -> None:
    base = _write(tmp_path / "sft.jsonl", [_row(q, "hallucination", 0.2) for q in range(10)])
    better = _write(tmp_path / "ppo.jsonl", [_row(q, "correct" if q < 5 else "hallucination", 0.3)
                                            for q in range(10)])
    result = RUNNER.invoke(app, ["eval", "compare", str(base), str(better), "--samples", "500"])
    assert result.exit_code == 0, result.output
    assert "| ppo | sft | 10 | +50.0 [" in result.output and "(+5/-0, p=0.062)" in result.output
    assert "| -50.0 [" in result.output  # hallucination fell by the same five questions
    result = RUNNER.invoke(app, ["eval", "compare", str(base), str(better), "--json"])
    payload = json.loads(result.output)
    ast = payload["differences"][str(better)][0]
    assert ast["key"] == "ast_accuracy" and ast["diff"] == pytest.approx(0.5) and ast["better"] == 5
    short = _write(tmp_path / "short.jsonl", [_row(q, "correct") for q in range(9)])
    result = RUNNER.invoke(app, ["eval", "compare", str(base), str(short)])
    assert result.exit_code != 0 and "score different questions" in result.output
