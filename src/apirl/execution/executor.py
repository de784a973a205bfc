"""Executability: does a snippet run to its last line against real libraries and the offline hub?

One entry point, `Executor`, joins the three parts: the offline hub (`offline_hub.py`: tiny checkpoints of the
model ids the snippets name), the binding of free inputs (`binding.py`, `bound` mode only) and the sandbox
(`sandbox.py`: isolated, limited child processes forked from preloaded workers). Modes:

- `strict`: the code as written. A snippet that reads a variable it never defines, opens a file it never
  wrote or fetches a URL fails.
- `bound` (the headline): free variables get typed dummy values chosen from their names, file paths written as
  literals get dummy files, and HTTP(S) requests through requests/urllib get a fixed offline answer; only the
  API usage is left to be judged.

A snippet counts as executable when its last statement returns (`ok`). Every other outcome has a class
(`failures.STATUSES`); two of them are the harness's gaps, not the snippet's fault, and are reported apart:
`unsupported_library` (a library we know but do not install) and `hub_gap` (a database model id whose tiny
checkpoint could not be built, e.g. LayoutLMv2 needs detectron2).
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apirl.code_facts import literal_strings, loaded_ids, model_ids_in_code
from apirl.data.apidb import ApiDatabase
from apirl.data.prompts import code_section
from apirl.execution.binding import bind
from apirl.execution.failures import STATUSES
from apirl.execution.installed import install_roots
from apirl.execution.offline_hub import OfflineHub
from apirl.execution.sandbox import Sandbox
from apirl.execution.torchvision_shim import MISSING_OPS_MESSAGE

MODES = ("bound", "strict")
GAP_STATUSES = ("unsupported_library", "hub_gap")
EXEC_STATUSES = (*STATUSES, "hub_gap")

# Imported once per worker, so each forked snippet starts with them loaded (seconds saved per snippet).
PRELOAD = ("torch", "numpy", "PIL.Image", "requests", "pandas", "sklearn", "soundfile", "transformers",
           "transformers.pipelines", "sentence_transformers", "diffusers", "apirl.execution.dummies")
# Run in each worker after the preloads: keywords that libraries silently drop become TypeErrors.
SETUP = ("apirl.execution.kwarg_audit:install",)
# Run before them: torchvision (and timm) importable beside the CPU torch, without torchvision's C++ operators;
# transformers imports torchvision when it can, so this comes first.
PREPARE = ("apirl.execution.torchvision_shim:install",)
# Libraries that only the sandbox's workers see: `make setup` installs torchvision and timm here (--no-deps),
# because outside the workers, without the shim, their presence would break `import transformers.pipelines`.
EXEC_SITE = Path(sys.prefix) / "exec-site"

# Failures that are this machine's gaps, not the snippet's: a system tool we lack, a hub dataset we do not serve.
# A gap message counts only when the library it belongs to raised it (any code can print the words):
# (words of the message, the packages whose files may raise it, the class it is).
_ENVIRONMENT_GAPS = (("ffmpeg was not found", ("transformers",), "unsupported_library"),
                     ("on the Hub (OfflineModeIsEnabled)", ("datasets", "huggingface_hub"), "hub_gap"),
                     (MISSING_OPS_MESSAGE, ("torchvision",), "unsupported_library"))
# Where a "no such repository" raised for a repository that the offline hub has comes from.
_HUB_CLIENTS = ("transformers", "huggingface_hub", "diffusers", "sentence_transformers")
_FENCE_RE = re.compile(r"^\s*```[\w+-]*\s*$")
_SHELL_RE = re.compile(r"^(\s*)([!%].*)$")


def runnable_code(text: str) -> str:
    """The code of a response, ready to run: its `<<<code>>>` section (else a fenced block, else the whole
    text), without Markdown fence lines, and with notebook shell/magic lines (`!pip install x`, `%time`)
    turned into comments, as Jupyter would not pass them to Python either."""
    lines = []
    for line in code_section(text).splitlines():
        if _FENCE_RE.match(line):
            continue
        lines.append(_SHELL_RE.sub(r"\1# \2", line))
    return "\n".join(lines).strip("\n") + "\n"


def raised_by(origin: str | None, packages: Sequence[str]) -> bool:
    """Whether the code that raised lives in one of `packages`, installed (site-packages, or EXEC_SITE for the
    workers), not in the snippet: a gap message ("ffmpeg was not found") is the harness's gap only when that
    library said it; the snippet raising it, or making the standard library say it, is its own error."""
    if not origin or origin.startswith("<"):
        return False
    path = Path(origin)
    if not path.is_file():
        return False
    path = path.resolve()
    return any(path.is_relative_to(root / package) for root in (*install_roots(), EXEC_SITE.resolve())
               for package in packages)


@dataclass(frozen=True)
class ExecVerdict:
    """The outcome of one snippet in one mode."""

    key: str
    mode: str
    status: str
    error_type: str | None
    message: str
    seconds: float
    model_ids: tuple[str, ...]
    loaded: tuple[str, ...] = ()  # of a snippet that ran: the database models it loaded from the hub

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExecVerdict:
        """Back from `to_json` (JSON has lists where the verdict has tuples)."""
        return cls(**{**raw, "model_ids": tuple(raw.get("model_ids") or ()), "loaded": tuple(raw.get("loaded") or ())})


class Executor:
    """A sandbox whose workers load models from an offline hub. Use as a context manager.

    with Executor(hub_dir, api_db) as executor:
        verdicts = executor.check({"q1": code1, "q2": code2}, mode="bound")
    """

    def __init__(self, hub_dir: str | Path, api_db: ApiDatabase, *, workers: int = 2, timeout_s: float = 60.0,
                 memory_mb: int = 4096, evidence: dict[str, list[str]] | None = None,
                 preload: Sequence[str] = PRELOAD) -> None:
        self.hub = OfflineHub(hub_dir, api_db, evidence)
        self._by_folder = {known.replace("/", "--").lower(): known for known in self.hub.known}
        self.sandbox = Sandbox(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb, preload=preload,
                               setup=SETUP, prepare=PREPARE,
                               site_dirs=[EXEC_SITE] if EXEC_SITE.is_dir() else [],
                               env=self.hub.env, max_processes=256, max_open_files=1024)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sandbox.close()

    @property
    def info(self) -> dict[str, Any]:
        """What the verdicts are worth: the isolation the kernel allowed and the modules preloaded."""
        return {"isolation": self.sandbox.isolation, "preloaded": self.sandbox.preloaded}

    def check(self, codes: dict[str, str], mode: str = "bound",
              on_hub_build: Callable[[str], None] | None = None,
              on_result: Callable[[], None] | None = None) -> list[ExecVerdict]:
        """Run every snippet (already extracted code) in `mode`; verdicts in the order of `codes`."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        keys = list(codes)
        ids = {key: tuple(model_ids_in_code(codes[key], self.hub.known)) for key in keys}
        records = self.hub.ensure([i for key in keys for i in ids[key]],
                                  on_built=(lambda r: on_hub_build(r.model_id)) if on_hub_build else None)
        failed = {model_id for model_id, record in records.items() if record.status != "built"}
        prepared = [bind(codes[key]) if mode == "bound" else codes[key] for key in keys]
        results = self.sandbox.run_many(prepared, on_result=on_result)
        verdicts = []
        for key, result in zip(keys, results, strict=True):
            status, message = result.status, result.message
            strings = literal_strings(codes[key])
            gaps = [i for i in ids[key] if i in failed and i in strings]  # an id in a comment is no use of it
            environment = next((gap for words, packages, gap in _ENVIRONMENT_GAPS
                                if words in message and raised_by(result.origin, packages)), None)
            if not result.ok and gaps and status in ("unknown_model_id", "runtime_error", "unknown_attribute"):
                status = "hub_gap"
                message = f"offline hub could not build {', '.join(gaps)}: " \
                          f"{records[gaps[0]].error[:200]} | {message}"
            elif environment is not None:
                status = environment
            elif status == "unknown_model_id" and ids[key] and raised_by(result.origin, _HUB_CLIENTS) and \
                    not [n for n in loaded_ids(codes[key]) if n not in self.hub.known]:
                # Every repository the code names exists here: a file of a tiny repo is missing, not the repo.
                status = "hub_gap"
                message = f"a file is missing from the offline hub's tiny repo | {message}"
            verdicts.append(ExecVerdict(key, mode, status, result.error_type, message[:2000],
                                        round(result.seconds, 3), ids[key], self._database_ids(result.loaded)))
        return verdicts

    def _database_ids(self, loaded: Sequence[str]) -> tuple[str, ...]:
        """The database ids of the repositories a snippet loaded, matched by their cache folder name (the sandbox
        turns `org--name` back into `org/name`; an id with `--` in it only matches this way)."""
        found = (self._by_folder.get(name.replace("/", "--").lower()) for name in loaded)
        return tuple(dict.fromkeys(known for known in found if known))


def summarize(verdicts: Sequence[ExecVerdict], domains: dict[str, str] | None = None) -> dict[str, Any]:
    """Rates over all snippets (the headline: gaps count as failures) and over supported ones, failure
    counts per class, and the rate per domain."""
    n = len(verdicts)
    ok = sum(v.ok for v in verdicts)
    gaps = sum(v.status in GAP_STATUSES for v in verdicts)
    failures = Counter(v.status for v in verdicts if not v.ok)
    per_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for verdict in verdicts:
        domain = (domains or {}).get(verdict.key, "unknown")
        per_domain[domain][0] += verdict.ok
        per_domain[domain][1] += 1
    return {
        "n": n,
        "ok": ok,
        "executability": ok / n if n else 0.0,
        "supported": n - gaps,
        "executability_supported": ok / (n - gaps) if n - gaps else 0.0,
        "failures": {status: failures[status] for status in EXEC_STATUSES if failures[status]},
        "per_domain": {domain: {"n": total, "executability": good / total}
                       for domain, (good, total) in sorted(per_domain.items())},
        "seconds_median": sorted(v.seconds for v in verdicts)[n // 2] if n else 0.0,
    }
