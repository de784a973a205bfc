"""What every `apirl` command shares: the typer apps, the common options, config loading, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from apirl.config import RunConfig, load_config
from apirl.errors import InputError
from apirl.jsonl import check_writable
from apirl.rundir import SUMMARY

# No rich markup in help texts: they name config tables in brackets (`[rl]`), which markup would swallow.
PLAIN_HELP = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(help="apirl: RL from AI feedback for API-calling code LLMs.", pretty_exceptions_enable=False,
                  **PLAIN_HELP)
data_app = typer.Typer(help="The Gorilla data: statistics, splits, prepared examples.", **PLAIN_HELP)
eval_app = typer.Typer(help="Score responses files (AST match, ROUGE, CodeBLEU).", **PLAIN_HELP)
exec_app = typer.Typer(help="Executability: run code in the sandbox against the offline hub.", **PLAIN_HELP)
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
feedback_app = typer.Typer(help="AI feedback: sample from the policy, judge, label, pair; calibrate the judges.",
                            invoke_without_command=True, rich_markup_mode=None)
app.add_typer(exec_app, name="exec")
app.add_typer(feedback_app, name="feedback")

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file (configs/*.toml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set data.seed=3.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Train again even if an identical run finished; discards "
                                                        "checkpoints.")]
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn InputError into a one-line message and exit code 2 instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc

    return wrapper  # type: ignore[return-value]


def writable_details(path: Path | None) -> Path | None:
    """--details is checked before any scoring runs, so a bad destination costs nothing."""
    if path is not None:
        try:
            check_writable(path, what="details file")
        except InputError as exc:
            raise typer.BadParameter(str(exc)) from exc
    return path


def run_config(config: Path | None, overrides: list[str] | None) -> RunConfig:
    return load_config(config, overrides or [])


def prepare_data_stage(cfg: RunConfig) -> Any:
    """The data stage, which every later stage reads (skipped when up to date)."""
    from apirl.data.stage import prepare_data

    return prepare_data(cfg.data, cfg.layout, cfg.seed)


def stage_summary(result: Any) -> dict[str, Any]:
    """A stage's summary: the manifest's, else (a manifest from before summaries were recorded) its summary file,
    else {}."""
    if result.summary is not None:
        return result.summary
    path = result.stage_dir / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
