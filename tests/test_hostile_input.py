"""Hostile input to run files and the CLI: a one-line error naming the file, line and field, never a traceback, and
nothing already done lost. Each case raised a raw exception (UnicodeDecodeError, ValueError, RecursionError,
UnicodeEncodeError, AttributeError...) before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apirl.cli import app
from apirl.config import load_config
from apirl.errors import InputError
from apirl.evaluate.responses import load_responses
from apirl.execution.sandbox import Sandbox
from apirl.jsonl import iter_jsonl, json_line, write_jsonl
from apirl.report import collect_run
from apirl.rundir import run_stage

RUNNER = CliRunner()


# ------------------------------------------------------------------------------------------------------------
# Reading JSON Lines.


@pytest.mark.parametrize(("data", "line", "reason"), [
    (b'{"question_id": 1, "text": "a"}\n{"question_id": 2, "text": "\xff\xfe"}\n', 2, "not UTF-8"),
    (b"\x00\x01\x02binary" * 10, 1, "invalid JSON"),
    (b'{"question_id": 1}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2, "nested too deeply"),
    (b'{"question_id": "\xc2\xb2", "text": "x"}\n', 1, "non-integer"),  # "²": isdigit() but not int()
])
def test_bad_responses_files_name_the_line(tmp_path: Path, data: bytes, line: int, reason: str) -> None:
    path = tmp_path / "responses.jsonl"
    path.write_bytes(data)
    with pytest.raises(InputError, match=reason) as caught:
        load_responses(path)
    assert (caught.value.path, caught.value.line) == (str(path), line)


def test_a_deep_json_line_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"a": ' * 50_000 + "1" + "}" * 50_000 + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="nested too deeply"):
        list(iter_jsonl(path))


def test_a_config_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "ok"\nseed = 1\n# caf\xe9\n')
    with pytest.raises(InputError, match="not UTF-8") as caught:
        load_config(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)


@pytest.mark.parametrize("name", ["/etc", "../up", "a/b", "", ".hidden", "x" * 200])
def test_a_run_name_is_a_name_not_a_path(name: str) -> None:
    with pytest.raises(InputError, match="not a run name") as caught:
        load_config(overrides=[f"name={json.dumps(name)}"])
    assert caught.value.field == "--set name"


# ------------------------------------------------------------------------------------------------------------
# Writing: any string, a destination checked before the work.


def test_jsonl_writers_take_any_string(tmp_path: Path) -> None:
    rows = [{"message": "ValueError(" + chr(0xDC80) + ")", "text": "naïve café 数据"}]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    assert [row for _, row in iter_jsonl(path)] == rows
    assert "naïve café 数据" in path.read_text(encoding="utf-8")  # other text is kept readable
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads(json_line(rows[0])) == rows[0]


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    def rows():
        yield {"a": 1}
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "rows.jsonl", rows())
    assert list(tmp_path.iterdir()) == []


def test_a_surrogate_in_a_snippet_s_message_reaches_the_verdicts_file(tmp_path: Path) -> None:
    with Sandbox(workers=1, timeout_s=5) as box:
        result = box.run("raise ValueError(chr(0xDC80) + ' and ' + chr(0x1F600))\n")
    assert result.status == "runtime_error" and result.message == "\udc80 and \U0001f600", result
    path = write_jsonl(tmp_path / "verdicts.jsonl", [{"message": result.message}])
    assert next(iter_jsonl(path))[1]["message"] == result.message


@pytest.mark.parametrize("destination", ["missing-dir/details.jsonl", "."])
def test_details_destination_is_checked_before_scoring(tmp_path: Path, destination: str) -> None:
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"question_id": 1, "text": "x"}\n', encoding="utf-8")
    target = tmp_path / destination
    for command in (["eval", "responses", str(responses)], ["exec", "check", str(responses)]):
        result = RUNNER.invoke(app, [*command, "--details", str(target)])
        assert result.exit_code == 2, result.output
        assert "--details" in result.output and "Traceback" not in result.output


def test_a_run_directory_that_cannot_be_written_is_an_error_before_the_work(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs directory should be")
    ran = []
    with pytest.raises(InputError, match="cannot write the stage directory"):
        run_stage(blocker / "x" / "data", config={}, seed=0, inputs=[], work=lambda d: ran.append(d) or [])
    assert ran == []


# ------------------------------------------------------------------------------------------------------------
# The report over a run directory with wrong types in it.


def _eval_summary(**changes: object) -> dict[str, object]:
    return {"split": "test", "n": 4, "ast_accuracy": 0.5, "hallucination": 0.25, "ci95": {"ast_accuracy": [0.1, 0.9]},
            **changes}


@pytest.mark.parametrize(("file", "payload", "field"), [
    ("pipeline.json", {"config": ["not", "a", "table"]}, "config"),
    ("eval/sft.json", _eval_summary(ast_accuracy="high"), "ast_accuracy"),
    ("eval/sft.json", _eval_summary(ci95={"ast_accuracy": "narrow"}), "ci95.ast_accuracy"),
    ("eval/sft.json", _eval_summary(exec_failures=["timeout"]), "exec_failures"),
    ("eval/sft.json", _eval_summary(per_domain={"Audio": 0.5}), "per_domain.Audio"),
])
def test_report_inputs_of_the_wrong_type_name_file_and_field(tmp_path: Path, file: str, payload: object,
                                                            field: str) -> None:
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        collect_run(tmp_path)
    assert caught.value.path == str(path) and caught.value.field == field, caught.value
    result = RUNNER.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
