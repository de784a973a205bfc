"""Configuration: one pydantic model per stage, composed into one run config, loaded from TOML.

A config file has top-level run keys (`name`, `seed`, `runs_dir`) and one table per stage (`[data]`,
`[eval]`, ...). Every model forbids unknown keys, so a typo is an error that names the file, the line and the
key instead of a silently ignored setting. `--set key=value` overrides use dotted keys (`data.seed=3`); the
value is read as a TOML value when it parses as one (numbers, booleans, quoted strings, arrays) and as a bare
string otherwise.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError, field_validator

from apirl.config_base import StrictModel
from apirl.data.config import DataConfig
from apirl.errors import InputError
from apirl.evaluate.config import EvalConfig
from apirl.execution.config import ExecConfig
from apirl.feedback.config import FeedbackConfig
from apirl.models.config import GenerateConfig, ModelConfig
from apirl.pipeline.config import PipelineConfig
from apirl.rundir import RunLayout
from apirl.train.config import DpoConfig, GrpoConfig, PpoConfig, RewardModelConfig, RlConfig, RlooConfig, SftConfig

_RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RunConfig(StrictModel):
    """Everything one run needs. Stages receive only their own table plus the run-level seed."""

    name: str = "default"
    seed: int = 0
    runs_dir: Path = Path("runs")
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    execution: ExecConfig = ExecConfig()
    model: ModelConfig = ModelConfig()
    generate: GenerateConfig = GenerateConfig()
    sft: SftConfig = SftConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    reward: RewardModelConfig = RewardModelConfig()
    rl: RlConfig = RlConfig()
    ppo: PpoConfig = PpoConfig()
    grpo: GrpoConfig = GrpoConfig()
    rloo: RlooConfig = RlooConfig()
    dpo: DpoConfig = DpoConfig()
    pipeline: PipelineConfig = PipelineConfig()

    @field_validator("name")
    @classmethod
    def _a_name_not_a_path(cls, name: str) -> str:
        # `--set name="/etc"` or "../x" would otherwise put the run directory anywhere.
        if not _RUN_NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not a run name: letters, digits, '.', '_' and '-', starting with a "
                             "letter or digit (a name, not a path)")
        return name

    @property
    def run_dir(self) -> Path:
        """`runs_dir/name`, absolute (a relative `runs_dir` is taken from the working directory), so that every
        path a stage builds from it means the same file wherever it is joined or compared."""
        return (self.runs_dir / self.name).absolute()

    @property
    def layout(self) -> RunLayout:
        """Every path of the run directory (`apirl.rundir.RunLayout`)."""
        return RunLayout(self.run_dir)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b=value` into (["a", "b"], value), reading the value as TOML when it is valid TOML."""
    if "=" not in text:
        raise InputError(f"override {text!r} must look like key=value", field="--set")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not all(part.isidentifier() for part in key.split(".")):
        raise InputError(f"override key {key!r} must be dotted identifiers, e.g. data.seed", field="--set")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def _set_dotted(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for part in keys[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"cannot set {'.'.join(keys)}: {part} is not a table", field="--set")
        node = child
    node[keys[-1]] = value


def _line_of_key(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a dotted key in a TOML text (tomllib gives none for semantic errors)."""
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    section = ".".join(keys[:-1])
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[([^\[\]]+)\]", stripped)
        if header:
            current = header.group(1).strip()
            continue
        if current == section and re.match(rf"{re.escape(keys[-1])}\s*=", stripped):
            return number
        if current == "" and section and re.match(rf"{re.escape(section)}\.{re.escape(keys[-1])}\s*=", stripped):
            return number
    if section:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() == f"[{section}]":
                return number
    return None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config from TOML (or defaults when path is None) and apply `key=value` overrides."""
    tree: dict[str, Any] = {}
    text = ""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("config file not found", path=path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[:exc.start].count(b"\n") + 1
            raise InputError(f"not UTF-8 text (TOML files are UTF-8): byte {exc.start + 1}", path=path,
                             line=line) from exc
        try:
            tree = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None)
            raise InputError(f"invalid TOML: {exc}", path=path, line=line) from exc
    from_cli: set[tuple[str, ...]] = set()
    for override in overrides or []:
        keys, value = parse_override(override)
        _set_dotted(tree, keys, value)
        from_cli.add(tuple(keys))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(k) for k in loc)
        message = first["msg"] + ("" if first["type"] != "extra_forbidden" else " (unknown key)")
        if tuple(str(k) for k in loc) in from_cli:
            raise InputError(message, field=f"--set {field}") from exc
        if path is None:
            raise InputError(message, field=field) from exc
        raise InputError(message, path=path, line=_line_of_key(text, loc), field=field) from exc
