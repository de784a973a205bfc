"""Run directories: `runs/<name>/<stage>/` with the stage's outputs and a `manifest.json`.

The manifest records what a stage was run with (resolved config, seed, package versions, git commit, input file
hashes) and what it produced (output file hashes, wall time, peak memory). It is written last, so its presence
means the stage finished. A rerun whose fingerprint (config + seed + input hashes) matches a finished manifest
whose outputs are intact is skipped; `force` redoes it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from apirl.errors import InputError

MANIFEST = "manifest.json"
_TRACKED_PACKAGES = ("apirl", "torch", "transformers", "trl", "peft", "accelerate", "tree-sitter",
                     "tree-sitter-python", "codebleu", "rouge-score", "numpy", "pydantic")


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
    return {
        "config": json.loads(json.dumps(config, default=str)),
        "seed": seed,
        "inputs": {str(path): file_sha256(path) for path in sorted(map(str, inputs))},
    }


@dataclass
class StageResult:
    stage_dir: Path
    manifest: dict[str, Any]
    skipped: bool


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
              work: Callable[[Path], Iterable[str | Path]], force: bool = False,
              extra: dict[str, Any] | None = None) -> StageResult:
    """Run `work(stage_dir)` unless an identical finished run is already there; write the manifest last.

    `work` returns the paths of the files it wrote (relative to the stage dir or absolute inside it); they are
    hashed into the manifest so a damaged output makes the next run redo the stage. An output of the previous run
    that this run did not write again (the eval file of a baseline since dropped from the config) is removed once
    the work succeeds: readers of the stage dir (the report) would otherwise take it for a current result.
    """
    # Absolute, so that the paths `work` builds from it are absolute too (a relative runs_dir, the default "runs",
    # would otherwise make them relative to the working directory and be read as relative to the stage dir).
    stage_dir = Path(stage_dir).absolute()
    expected = fingerprint(config, seed, inputs)
    if not force and is_up_to_date(stage_dir, expected):
        return StageResult(stage_dir, read_manifest(stage_dir) or {}, skipped=True)
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
    outputs = [Path(p) if Path(p).is_absolute() else stage_dir / p for p in work(stage_dir)]
    for stale in previous_outputs - {str(p.relative_to(stage_dir)) for p in outputs}:
        (stage_dir / stale).unlink(missing_ok=True)
    manifest = {
        **expected,
        "stage": stage_dir.name,
        "versions": package_versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "outputs": {str(p.relative_to(stage_dir)): file_sha256(p) for p in outputs},
        "wall_time_s": round(time.perf_counter() - started, 3),
        "peak_memory_mb": peak_memory_mb(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    tmp = stage_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(stage_dir / MANIFEST)
    return StageResult(stage_dir, manifest, skipped=False)
