"""Run directories: `runs/<name>/<stage>/` with the stage's outputs and a `manifest.json`.

`RunLayout` names every path of a run directory, once: the stages write and read through it, and so does the
report. A stage reads only files of earlier stages, never their code.

The manifest records what a stage was run with (resolved config, seed, package versions, git commit, input file
hashes) and what it produced (output file hashes, wall time, peak memory). It is written last, so its presence
means the stage finished. A rerun whose fingerprint (config + seed + input hashes) matches a finished manifest
whose outputs are intact is skipped; `force` redoes it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from apirl.errors import InputError

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
_TRACKED_PACKAGES = ("apirl", "torch", "transformers", "trl", "peft", "accelerate", "tree-sitter",
                     "tree-sitter-python", "codebleu", "rouge-score", "numpy", "scipy", "scikit-learn", "pydantic")
# The command that writes each stage's files: what a missing input tells the user to run first.
_WRITTEN_BY = {"data": "apirl data prepare", "sft": "apirl sft", "feedback": "apirl feedback",
               "reward": "apirl reward", "generate": "apirl generate"}


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run directory (`runs/<name>/`), named once, for the stages that write them and the stages
    and report that read them. A training stage's directory holds `model/`, `log.jsonl`, `summary.json` and,
    while it runs, `checkpoints/`."""

    root: Path

    def stage(self, name: str) -> Path:
        """A stage's directory: data, sft, feedback, calibration, reward, ppo, grpo, rloo, dpo, eval, or
        `generate/<label>`."""
        return self.root / name

    # data
    def split(self, name: str) -> Path:
        """The data stage's examples of a split (train, val, test)."""
        return self.root / "data" / f"{name}.jsonl"

    @property
    def catalog(self) -> Path:
        """The API database as the data stage copied it."""
        return self.root / "data" / "api.jsonl"

    @property
    def hub_evidence(self) -> Path:
        """Per model id, the eval answers' code that loads it: the offline hub's evidence."""
        return self.root / "data" / "hub_evidence.json"

    # training stages (sft, reward, ppo, grpo, rloo, dpo); their checkpoints/ and tensorboard/ are the recipes'
    def model(self, stage: str) -> Path:
        return self.root / stage / "model"

    def log(self, stage: str) -> Path:
        return self.root / stage / "log.jsonl"

    def summary(self, stage: str) -> Path:
        return self.root / stage / SUMMARY

    # feedback and calibration
    def feedback(self, name: str) -> Path:
        """A file of the feedback stage: samples.jsonl, executions.jsonl, judgments.sqlite (the judges' cache,
        shared with calibration), summary.json."""
        return self.root / "feedback" / name

    @property
    def feedback_rows(self) -> Path:
        """Per sample its answers, score and label: what the classifier reward model trains on."""
        return self.root / "feedback" / "feedback.jsonl"

    @property
    def pairs(self) -> Path:
        """Per prompt a higher- and a lower-scored completion: what DPO and the pairwise reward model read."""
        return self.root / "feedback" / "pairs.jsonl"

    def calibration(self, judge: str) -> Path:
        """A judge's calibration report; each judge label is a stage of its own (`calibration/<judge>/`), so
        calibrating another judge keeps this one's report and manifest."""
        return self.root / "calibration" / judge / "calibration.json"

    def calibrations(self) -> list[Path]:
        """Every judge's calibration report in the run, by judge label."""
        return sorted(self.root.glob("calibration/*/calibration.json"))

    # generation and evaluation
    def responses(self, label: str) -> Path:
        return self.root / "generate" / label / "responses.jsonl"

    def labels(self) -> list[str]:
        """The labels of every model whose responses the run holds."""
        return sorted(path.parent.name for path in self.root.glob("generate/*/responses.jsonl"))

    def eval_summary(self, label: str) -> Path:
        return self.root / "eval" / f"{label}.json"

    def eval_details(self, label: str) -> Path:
        """Per-question verdicts of a model (spaces and other odd characters of the label as `_`)."""
        return self.root / "eval" / "details" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}.jsonl"

    @property
    def eval_scored(self) -> Path:
        """Each scored label's key and scores, for the eval stage to keep what did not change (beside the
        details: `eval/*.json` are the models' summaries)."""
        return self.root / "eval" / "details" / "scored.json"

    @property
    def gorilla_summaries(self) -> Path:
        """Gorilla-7B's published answers scored on the same questions: [[label, summary], ...]."""
        return self.root / "eval" / "gorilla.json"

    # the pipeline and the report
    @property
    def pipeline_record(self) -> Path:
        return self.root / "pipeline.json"

    @property
    def pipeline_log(self) -> Path:
        return self.root / "pipeline.log"

    @property
    def report_markdown(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"


def weight_files(model_dir: str | Path) -> list[Path]:
    """The weight files of a local checkpoint, sharded or not (`*.safetensors`, else `*.bin`): what a stage
    that reads the model hashes into its fingerprint. Empty for a directory without weights."""
    model_dir = Path(model_dir)
    return sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current commit, with '+dirty' when tracked files have uncommitted changes; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def peak_memory_mb() -> float:
    """Peak resident memory of this process and its waited-for children, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)
    return round(max(own, children) * scale, 1)


def fingerprint(config: dict[str, Any], seed: int, inputs: Iterable[str | Path]) -> dict[str, Any]:
    """What decides a stage's result: its config, its seed and the content of its input files."""
    paths = sorted(map(str, inputs))
    missing = [Path(path) for path in paths if not Path(path).is_file()]
    if missing:
        stage = next((part for part in reversed(missing[0].parts[:-1]) if part in _WRITTEN_BY), None)
        first = f"`{_WRITTEN_BY[stage]}`" if stage else "the stage that writes it"
        raise InputError(f"an input of this stage is missing: run {first} first", path=missing[0])
    return {
        "config": json.loads(json.dumps(config, default=str)),
        "seed": seed,
        "inputs": {path: file_sha256(path) for path in paths},
    }


S = TypeVar("S")


@dataclass
class StageResult(Generic[S]):
    """What a stage's entry point returns: where it ran, its manifest, whether it was skipped, and its summary
    (also in the manifest, so a skipped stage returns the summary of the run that made its outputs; None for a
    manifest written before summaries were recorded)."""

    stage_dir: Path
    manifest: dict[str, Any]
    skipped: bool
    summary: S | None = None


@dataclass(frozen=True)
class StageOutput(Generic[S]):
    """What a stage's work returns: the files it wrote (hashed into the manifest) and its summary."""

    files: list[Path]
    summary: S


def read_manifest(stage_dir: str | Path) -> dict[str, Any] | None:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def is_up_to_date(stage_dir: Path, expected: dict[str, Any]) -> bool:
    manifest = read_manifest(stage_dir)
    if manifest is None:
        return False
    if {key: manifest.get(key) for key in expected} != expected:
        return False
    for name, digest in manifest.get("outputs", {}).items():
        path = stage_dir / name
        if not path.is_file() or file_sha256(path) != digest:
            return False
    return True


def run_stage(stage_dir: str | Path, *, config: dict[str, Any], seed: int, inputs: Iterable[str | Path],
              work: Callable[[Path, dict[str, Any]], StageOutput[S]], force: bool = False) -> StageResult[S]:
    """Run `work(stage_dir, fingerprint)` unless an identical finished run is already there; write the manifest
    last.

    The fingerprint (config, seed, input hashes) is what decides the result: `work` gets it so that a resumable
    stage can tell its own checkpoints from another run's. `work` returns the files it wrote (absolute inside the
    stage dir, or relative to it), hashed into the manifest so a damaged output makes the next run redo the
    stage, and its summary, kept in the manifest and returned by a later skipped run. An output of the previous
    run that this run did not write again (the eval file of a baseline since dropped from the config) is removed
    once the work succeeds: readers of the stage dir (the report) would otherwise take it for a current result.
    """
    # Absolute, so that the paths `work` builds from it are absolute too (a relative runs_dir, the default "runs",
    # would otherwise make them relative to the working directory and be read as relative to the stage dir).
    stage_dir = Path(stage_dir).absolute()
    expected = fingerprint(config, seed, inputs)
    if not force and is_up_to_date(stage_dir, expected):
        manifest = read_manifest(stage_dir) or {}
        return StageResult(stage_dir, manifest, skipped=True, summary=manifest.get("summary"))
    try:
        stage_dir.mkdir(parents=True, exist_ok=True)
        probe = stage_dir / ".apirl-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:  # before any work: a read-only run directory costs nothing
        raise InputError(f"cannot write the stage directory ({exc.strerror or exc})", path=stage_dir) from exc
    previous_outputs = set((read_manifest(stage_dir) or {}).get("outputs") or {})
    (stage_dir / MANIFEST).unlink(missing_ok=True)
    started = time.perf_counter()
    commit = git_commit(Path(__file__).parent)  # the code that runs: a long stage may end after a new commit
    output = work(stage_dir, expected)
    outputs = [Path(p) if Path(p).is_absolute() else stage_dir / p for p in output.files]
    for stale in previous_outputs - {str(p.relative_to(stage_dir)) for p in outputs}:
        (stage_dir / stale).unlink(missing_ok=True)
    manifest = {
        **expected,
        "stage": stage_dir.name,
        "versions": package_versions(),
        "git_commit": commit,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "outputs": {str(p.relative_to(stage_dir)): file_sha256(p) for p in outputs},
        "wall_time_s": round(time.perf_counter() - started, 3),
        "peak_memory_mb": peak_memory_mb(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": json.loads(json.dumps(output.summary, default=str)),
    }
    tmp = stage_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(stage_dir / MANIFEST)
    return StageResult(stage_dir, manifest, skipped=False, summary=output.summary)
