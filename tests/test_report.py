"""`apirl report`: a report built from a small synthetic run directory (its numbers in report.md, nothing external
in report.html), missing stages shown as "not run", malformed files named, the CLI, and report.html rendered by
headless Chromium with every image loaded. The Wilson interval by hand is in tests/test_stats.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from apirl.cli import app
from apirl.errors import InputError
from apirl.report import collect_run, write_report

CHROMIUM = Path("/usr/bin/chromium")
DOMAINS = ("Audio Audio Classification", "Natural Language Processing Translation")


def _summary(n: int, ast: float, *, executability: float | None = None, failures: dict[str, int] | None = None,
             per_domain: tuple[float, float] = (0.0, 0.5)) -> dict[str, Any]:
    """An eval summary of the shape `apirl eval responses --split test --exec --json` prints (no question text)."""
    summary: dict[str, Any] = {
        "split": "test", "n": n, "mode": "gorilla", "ast_accuracy": ast, "hallucination": 0.5, "error": 0.25,
        "strict_accuracy": 0.125, "api_call_exact": 0.1, "model_id_match": 0.1, "rouge_l": 0.3, "codebleu": 0.2,
        "ci95": {"ast_accuracy": [max(0.0, ast - 0.05), ast + 0.05], "hallucination": [0.4, 0.6],
                 "strict_accuracy": [0.05, 0.2], "rouge_l": [0.25, 0.35], "codebleu_sentence_mean": [0.1, 0.3]},
        "per_domain": {domain: {"n": n // 2, "ast_accuracy": rate, "hallucination": 0.5, "strict_accuracy": 0.0,
                                "rouge_l": 0.3} for domain, rate in zip(DOMAINS, per_domain, strict=True)},
        "missing_responses": 0,
    }
    if executability is not None:
        summary.update({"executability": executability, "executability_api": executability / 2,
                        "executability_strict": 0.0, "exec_failures": failures})
    return summary


def _write(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _manifest(stage: str, wall: float, memory: float) -> dict[str, Any]:
    return {"stage": stage, "config": {stage: {"learning_rate": 0.0001}}, "seed": 0, "git_commit": "abc123",
            "versions": {"torch": "2.13.0+cpu", "transformers": "4.57.6"}, "wall_time_s": wall,
            "peak_memory_mb": memory, "finished_at": "2026-01-02T03:04:05+00:00"}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run with two evaluated models, Gorilla anchors, SFT, feedback, a reward model, PPO, GRPO and DPO."""
    run = tmp_path / "runs" / "tiny"
    _write(run / "eval" / "sft.json", _summary(40, 0.25, executability=0.1, per_domain=(0.5, 0.0),
                                                failures={"syntax_error": 20, "unknown_model_id": 16}))
    _write(run / "eval" / "base-chat.json", _summary(40, 0.0, executability=0.0, failures={"syntax_error": 40}))
    _write(run / "eval" / "gorilla.json", [["Gorilla-7B FT 0_shot", _summary(40, 0.75)],
                                           ["Gorilla-7B RT bm25", _summary(40, 0.5)]])
    _write(run / "eval" / "manifest.json", _manifest("eval", 60.0, 900.0))
    # Per-question details: M_SFT right on questions 0-9, base-chat on none, Gorilla on 0-29; only the run's
    # models were executed (M_SFT's first four run).
    for label, right, runs in (("sft", 10, 4), ("base-chat", 0, 0), ("Gorilla-7B FT 0_shot", 30, None)):
        _write_lines(run / "eval" / "details" / f"{label.replace(' ', '_')}.jsonl", [
            {"question_id": q, "gorilla_outcome": "correct" if q < right else "hallucination",
             "strict_outcome": "hallucination", "has_reference_code": True, "rouge_l": 0.3, "codebleu_sentence": 0.2,
             **({"executes": q < runs} if runs is not None else {})} for q in range(40)])
    _write_lines(run / "sft" / "log.jsonl", [
        {"loss": 2.0, "step": 4, "epoch": 0.1}, {"loss": 1.5, "step": 8, "epoch": 0.2},
        {"eval_loss": 1.7, "step": 8, "epoch": 0.2}, {"train_runtime": 10.0, "step": 8}])
    _write(run / "sft" / "summary.json", {"steps": 8, "first_loss": 2.0, "last_loss": 1.5, "eval_loss": 1.7})
    _write(run / "sft" / "manifest.json", _manifest("sft", 1555.25, 13151.9))
    _write(run / "feedback" / "summary.json", {"judge": "tools", "label_rate": 0.375, "mean_score": 4.5,
                                               "pairs": 12, "seconds_per_1000_judgments": 1.2})
    _write(run / "calibration" / "tools" / "calibration.json", {
        "judge": "tools", "split": "val", "examples": 20, "auc": 0.8399, "seconds_per_1000_judgments": 1.155,
        "per_question": {"imports": {"auc": 0.74, "abstain_rate": 0.28}},
        "per_kind": {"syntax_error": {"n": 20, "auc": 1.0}, "unknown_kwarg": {"n": 20, "auc": 0.6362}}})
    _write(run / "calibration" / "local" / "calibration.json", {
        "judge": "local", "split": "val", "examples": 20, "auc": 0.5157, "seconds_per_1000_judgments": None,
        "per_kind": {"syntax_error": {"n": 20, "auc": 0.5025}}})
    _write(run / "reward" / "summary.json", {
        "kind": "classifier", "heldout_accuracy": 0.8125, "heldout_auc": 0.9, "gold_vs_mutant": {
            "split": "val", "examples": 10, "pairs": 40, "rate": 0.7,
            "per_kind": {"syntax_error": {"pairs": 20, "rate": 0.95}, "unknown_kwarg": {"pairs": 20, "rate": 0.45}}}})
    _write_lines(run / "reward" / "log.jsonl", [{"loss": 0.7, "step": 1}, {"loss": 0.5, "step": 2}])
    _write_lines(run / "ppo" / "log.jsonl", [
        {"step": s, "score": 0.1 * s, "kl": 0.01 * s, "entropy": 1.0, "clip_fraction": 0.1, "value_loss": 0.2,
         "response_length": 30 + s} for s in range(1, 5)])
    _write(run / "ppo" / "summary.json", {"algorithm": "ppo", "steps": 4, "first_reward": 0.1, "last_reward": 0.4})
    _write_lines(run / "grpo" / "log.jsonl", [
        {"step": s, "reward": 0.2 * s, "kl": 0.02 * s, "completions/mean_length": 40.0, "rewards/tools/mean": 0.3}
        for s in range(1, 4)] + [{"train_runtime": 5.0, "step": 3}])
    _write_lines(run / "grpo" / "rollouts.jsonl", [
        {"step": s, "prompt": "p", "completion": f"answer {s}-{r} " + ("x" * 500 + " <<<code>>>: end") * (r == 3),
         "terms": {"tools": r / 4}, "reward": r / 4, **({"ended": r < 3} if s < 5 else {})}
        for s in range(1, 6) for r in range(4)])
    _write_lines(run / "dpo" / "log.jsonl", [
        {"step": 1, "loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.0},
        {"step": 2, "eval_loss": 0.6, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.3}])
    _write(run / "pipeline.json", {
        "config": {"name": "tiny", "seed": 0, "sft": {"learning_rate": 0.0001}}, "versions": {"torch": "2.13.0+cpu"},
        "commit": "abc123", "started_at": "2026-01-02T03:00:00+00:00", "finished_at": "2026-01-02T04:00:00+00:00",
        "stages": [{"name": "sft", "status": "ran", "seconds": 1555.3}, {"name": "reward", "status": "skipped",
                                                                         "seconds": 0.1}]})
    return run


def test_report_of_a_run_has_its_rows_and_numbers(run_dir: Path) -> None:
    files = write_report(run_dir, command="apirl report runs/tiny")
    markdown = files.markdown.read_text(encoding="utf-8")
    # Results: run models first (report order), then the anchors; bootstrap intervals from the file, Wilson ones
    # for executability: 4/40 -> [4.0, 23.1], 2/40 -> [1.4, 16.5], 0/40 -> [0.0, 8.8] (tests/test_stats.py's
    # Wilson interval by hand); the columns: exec bound, exec API, exec strict.
    assert ("| base-chat | 40 | 0.0 [0.0, 5.0] | 50.0 [40.0, 60.0] | 12.5 [5.0, 20.0] | 30.0 [25.0, 35.0] | 20.0 "
            "| 0.0 [0.0, 8.8] | 0.0 [0.0, 8.8] | 0.0 [0.0, 8.8] |") in markdown
    assert ("| sft | 40 | 25.0 [20.0, 30.0] | 50.0 [40.0, 60.0] | 12.5 [5.0, 20.0] | 30.0 [25.0, 35.0] | 20.0 "
            "| 10.0 [4.0, 23.1] | 5.0 [1.4, 16.5] | 0.0 [0.0, 8.8] |") in markdown
    assert "| Gorilla-7B FT 0_shot | 40 | 75.0 [70.0, 80.0] |" in markdown
    assert markdown.index("| base-chat |") < markdown.index("| sft |") < markdown.index("| Gorilla-7B RT bm25 |")
    assert "Every row scores the same split (test, n = 40)." in markdown
    # Paired: base-chat minus M_SFT loses M_SFT's ten right answers and four runs; each model minus Gorilla's
    # zero-shot row; no executability pairs with Gorilla (not run), and no row for the anchor without details.
    assert "| base-chat | sft | 40 | -25.0 [" in markdown and "(+0/-10, p=0.002)" in markdown
    assert "(+0/-4, p=0.12)" in markdown
    assert "| sft | Gorilla-7B FT 0_shot | 40 | -50.0 [" in markdown and "(+0/-20, p=1.9e-06)" in markdown
    assert "| +0.0 | +0.0 | – |" in markdown  # equal ROUGE-L and CodeBLEU: no spread, no executability pair
    assert "Gorilla-7B RT bm25 |" not in markdown.split("## Paired differences")[1].split("##")[0]
    assert "| sft | 40 | 4 | 20 | 16 |" in markdown  # ran = 0.1 × 40, then syntax_error, unknown_model_id
    # Per domain: the run's models and the zero-shot anchor only (RT bm25 retrieves: not comparable).
    assert "| domain | n | base-chat | sft | Gorilla-7B FT 0_shot |" in markdown
    assert "| Audio Audio Classification | 20 | 0.0 | 50.0 | 0.0 |" in markdown
    assert "| tools | 0.8399 | 1 | 0.6362 | 1.155 | 20 | val |" in markdown
    assert "| local | 0.5157 | 0.5025 | – | – (all cached) | 20 | val |" in markdown
    assert "| syntax_error | 20 | 0.95 |" in markdown and "| heldout_auc | 0.9 |" in markdown
    assert "| last_reward | 0.4 |" in markdown and "rloo: not run" in markdown
    # GRPO's top rollouts: the two best of steps 1, 3 and 5, best first, long texts cut.
    rows = re.findall(r"^\| (\d) \| ([\d.]+) \| tools [\d.]+ \| (yes|no|–) \| answer (\d-\d)", markdown,
                      re.MULTILINE)
    assert rows == [("1", "0.75", "no", "1-3"), ("1", "0.5", "yes", "1-2"), ("3", "0.75", "no", "3-3"),
                    ("3", "0.5", "yes", "3-2"), ("5", "0.75", "–", "5-3"), ("5", "0.5", "–", "5-2")]
    # A long completion: its head and its tail (where the code is), model text not read as HTML.
    assert "x" * 180 + " … " + "x" * 184 + " &lt;&lt;&lt;code>>>: end |" in markdown and "x" * 450 not in markdown
    assert "| sft | 2026-01-02T03:04:05+00:00 | 1,555 | 13,152 |" in markdown
    assert "| reward | skipped | 0.1 |  |" in markdown
    assert "**Commit:** `abc123`" in markdown and "`apirl report runs/tiny`" in markdown
    assert "see report.html for the plots" in markdown and "<img" not in markdown and "](" not in markdown

    page = files.html.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page and "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    # headline, executability, per domain, SFT loss, calibration, reward bars, reward loss, PPO, GRPO, DPO, cost
    assert page.count("<img") == len(sources) == 11
    assert "<details>" in page and "25.0 [20.0, 30.0]" in page and "&quot;learning_rate&quot;: 0.0001" in page


@pytest.mark.parametrize(("row", "field"), [
    ({"step": True, "reward": 1.0, "terms": {}}, "step"),
    ({"step": 1, "reward": float("nan"), "terms": {}}, "reward"),
    ({"step": 1, "reward": 1.0, "terms": [1.0]}, "terms"),
])
def test_a_malformed_rollouts_file_names_its_line_and_field(run_dir: Path, row: dict[str, Any], field: str) -> None:
    path = run_dir / "grpo" / "rollouts.jsonl"
    path.write_text(path.read_text(encoding="utf-8") + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"rollouts.jsonl:21.*{field}"):
        write_report(run_dir, command="apirl report runs/tiny")


def test_paired_rows_on_different_questions_say_so(run_dir: Path) -> None:
    path = run_dir / "eval" / "details" / "base-chat.jsonl"
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:30]), encoding="utf-8")
    markdown = write_report(run_dir, command="apirl report runs/tiny").markdown.read_text(encoding="utf-8")
    assert "| base-chat | sft | – | sft and base-chat score different questions: 10 only in sft" in markdown
    assert "| sft | Gorilla-7B FT 0_shot | 40 | -50.0 [" in markdown  # the other pairs are still there


def test_missing_pieces_are_not_run(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    files = write_report(run, tmp_path / "out", command="apirl report empty")
    assert files.markdown.parent == tmp_path / "out" and not (run / "report.md").exists()
    markdown = files.markdown.read_text(encoding="utf-8")
    for phrase in ("Evaluation: not run", "Paired differences: not run", "SFT: not run", "Feedback stage: not run",
                   "Judge calibration: not run",
                   "Reward model: not run", "ppo, grpo, rloo, dpo: not run", "| sft | not run | – | – |"):
        assert phrase in markdown
    assert "<img" not in files.html.read_text(encoding="utf-8")


def test_a_malformed_log_line_names_the_file_and_line(run_dir: Path) -> None:
    log = run_dir / "ppo" / "log.jsonl"
    log.write_text('{"step": 1, "score": 0.1}\n{"step": 2, "score": \n', encoding="utf-8")
    with pytest.raises(InputError) as caught:
        collect_run(run_dir)
    assert caught.value.path == str(log) and caught.value.line == 2 and f"{log}:2" in str(caught.value)


def test_a_malformed_eval_file_names_the_file(run_dir: Path) -> None:
    _write(run_dir / "eval" / "sft.json", {"ast_accuracy": 0.5})
    with pytest.raises(InputError, match=r"sft\.json.*'n'"):
        collect_run(run_dir)
    (run_dir / "eval" / "gorilla.json").write_text("[1, 2", encoding="utf-8")
    (run_dir / "eval" / "sft.json").unlink()
    with pytest.raises(InputError, match=r"gorilla\.json:1"):
        collect_run(run_dir)


def test_gorilla_rows_as_printed_by_the_cli_are_read_too(run_dir: Path) -> None:
    _write(run_dir / "eval" / "gorilla.json", {"Gorilla-7B RT 0_shot": _summary(40, 0.875)})
    assert [label for label, _ in collect_run(run_dir).anchors] == ["Gorilla-7B RT 0_shot"]


def test_cli_report_json_and_errors(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)
    assert Path(paths["html"]).is_file() and Path(paths["markdown"]) == tmp_path / "out" / "report.md"
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "run directory not found" in missing.output


# The report has no script of its own; this copy gets one that writes, once the page has loaded, how many images
# there are and how many decoded to a real bitmap, where --dump-dom can read it.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.setAttribute("data-probe", `images=${images.length} loaded=${loaded}`);
});
</script>"""


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; CI must have it (`make setup` installs it), a local machine may skip."""
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: `make setup` installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    return CHROMIUM


def test_report_renders_in_headless_chromium_with_its_images(run_dir: Path, tmp_path: Path, chromium: Path) -> None:
    files = write_report(run_dir, command="apirl report runs/tiny")
    probed = tmp_path / "probed.html"
    probed.write_text(files.html.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"),
                      encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    command = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
               "--dump-dom", probed.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = re.search(r'data-probe="images=(\d+) loaded=(\d+)"', result.stdout)
    assert probe, result.stdout[:2000]
    images, loaded = map(int, probe.groups())
    assert images == loaded == 11
    assert "apirl report: tiny" in result.stdout


def test_a_grounded_row_follows_its_model_and_is_paired_with_m_sft_grounded_and_free(run_dir: Path) -> None:
    """`sft-catalog` (apirl.models.config.GROUNDED) sits right after `sft`, is paired with `sft` (what grounding
    changes), and a grounded RL row with `sft-catalog`, not with the free M_SFT."""
    eval_dir = run_dir / "eval"
    for label, right in (("sft-catalog", 20), ("ppo-catalog", 25)):
        _write(eval_dir / f"{label}.json", _summary(40, right / 40))
        _write_lines(eval_dir / "details" / f"{label}.jsonl", [
            {"question_id": q, "gorilla_outcome": "correct" if q < right else "error", "strict_outcome": "error",
             "has_reference_code": True, "rouge_l": 0.3, "codebleu_sentence": 0.2} for q in range(40)])
    markdown = write_report(run_dir, command="apirl report runs/tiny").markdown.read_text(encoding="utf-8")
    results = markdown.split("## Paired differences")[0]
    assert results.index("| sft |") < results.index("| sft-catalog |") < results.index("| ppo-catalog |")
    paired = markdown.split("## Paired differences")[1].split("\n## ")[0]
    assert "| sft-catalog | sft | 40 | +25.0 [" in paired
    assert "| ppo-catalog | sft-catalog | 40 | +12.5 [" in paired and "| ppo-catalog | sft | " not in paired
