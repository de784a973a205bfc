"""`apirl report RUN_DIR`: one page per run, report.md (numbers) and a self-contained report.html (numbers and plots).

Reading top to bottom: `collect` reads what the run directory holds (a stage that has not run is "not run", a
malformed file an InputError naming it), `render` turns it into sections and writes them as Markdown and HTML,
`plots` draws the figures (matplotlib, Agg) that the HTML embeds as base64 PNG. Every number shown comes from a
file of the run, except the executability intervals, computed from rate and n (`apirl.stats.wilson_interval`).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from apirl.report.collect import RunData, collect_run
from apirl.report.render import build_sections, render_html, render_markdown
from apirl.rundir import RunLayout, StageResult

__all__ = ["ReportFiles", "RunData", "collect_run", "run_report", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path


def _machine(run: RunData) -> str:
    """Where the report is written (the run's files do not record the machine) and the run's torch version."""
    versions = (run.pipeline or {}).get("versions") or next(
        (m["versions"] for m in run.manifests.values() if m.get("versions", {}).get("torch")), {})
    torch = versions.get("torch")
    if torch:
        torch_text = f"torch {torch} (the run's)"
    else:
        try:
            torch_text = f"torch {metadata.version('torch')} (installed here; the run records none)"
        except metadata.PackageNotFoundError:
            torch_text = "torch not recorded"
    return f"{platform.platform()}, {os.cpu_count()} CPUs (where this report was written); {torch_text}"


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, command: str | None = None
                 ) -> ReportFiles:
    """Write report.md and report.html for the run into `out_dir` (default: the run directory). `command` is
    shown in the header; by default the command line of this process (`apirl report ...` or `apirl run ...`)."""
    run = collect_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    sections = build_sections(run, command=command, written_at=datetime.now(UTC).isoformat(timespec="seconds"),
                              machine=_machine(run))
    layout = RunLayout(out)
    files = ReportFiles(markdown=layout.report_markdown, html=layout.report_html)
    files.markdown.write_text(render_markdown(sections), encoding="utf-8")
    files.html.write_text(render_html(sections), encoding="utf-8")
    return files


def run_report(layout: RunLayout, *, command: str | None = None) -> StageResult[dict[str, str]]:
    """The report stage of `apirl run`: report.md and report.html from what the run directory holds. Always
    written again (it reads every stage's files and takes seconds), so it keeps no manifest; its summary names
    the two files."""
    files = write_report(layout.root, command=command)
    return StageResult(layout.root, {}, skipped=False,
                       summary={"markdown": str(files.markdown), "html": str(files.html)})
