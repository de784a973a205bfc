"""A run's results as committed evidence: the text every figure of the README was computed from.

`apirl export RUN_DIR --out results/<preset>` copies, for every model the run scored, its responses
(`<label>.responses.jsonl`: `question_id`, `text`), its per-question verdicts (`<label>.details.jsonl`), its
summary (`<label>.summary.json`) and its generation's meta (`<label>.generate.json`); Gorilla-7B's scores on the
same questions (`gorilla.json`, and the details of its FT and RT 0-shot files for the paired comparison); the
training stages' summaries, logs, SFT's learning curve and the RL stages' rollouts (`sft.training.json`,
`sft.training-log.jsonl`, `sft.curve.jsonl`, `grpo.rollouts.jsonl`...) when the run has them; and `meta.json`:
the commit, every stage's config, seed, command, commit and wall time (from its manifest), the resolved config of
the run and the export's own command.
Text only: weights never leave the run directory. `apirl eval responses` and `apirl eval compare` re-score the
files without the run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.rundir import MANIFEST, RunLayout, git_commit

GORILLA_PAIRED = ("Gorilla-7B FT 0_shot", "Gorilla-7B RT 0_shot")
# The training stages' own files, named apart from the models' evaluation files: what each stage logged (an RL
# stage's `rollouts.jsonl` holds every scored rollout: what its reward paid for; the feedback stage's
# `feedback.jsonl` every judged sample and its label; the reward stage's `scores.jsonl` the scores behind its AUC
# and gold-vs-mutant rate).
TRAINING_FILES = {"summary.json": "training.json", "log.jsonl": "training-log.jsonl", "curve.jsonl": "curve.jsonl",
                  "rollouts.jsonl": "rollouts.jsonl", "feedback.jsonl": "judged.jsonl", "scores.jsonl": "scores.jsonl"}
TRAINING_STAGES = ("sft", "feedback", "reward", "ppo", "grpo", "rloo", "dpo")


def _copy(source: Path, target: Path, copied: list[str]) -> None:
    if source.is_file():
        shutil.copyfile(source, target)
        copied.append(target.name)


def _stage_record(manifest_path: Path) -> dict[str, Any]:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return {key: manifest.get(key) for key in ("config", "seed", "command", "git_commit", "wall_time_s",
                                               "finished_at", "peak_memory_mb")}


def export_results(layout: RunLayout, out: Path, *, config: dict[str, Any], labels: list[str] | None = None
                   ) -> dict[str, Any]:
    """Copy the run's scored results into `out` and write `out/meta.json`; returns the meta."""
    not_models = {layout.gorilla_summaries.name, MANIFEST}
    labels = labels or sorted(p.stem for p in (layout.root / "eval").glob("*.json") if p.name not in not_models)
    if not labels:
        raise InputError("no scored models in the run: run the eval stage first", path=layout.root / "eval")
    out.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    for label in labels:
        if not layout.eval_summary(label).is_file():
            raise InputError(f"no eval summary for {label!r}", path=layout.eval_summary(label))
        responses = layout.responses(label)
        _copy(responses, out / f"{label}.responses.jsonl", copied)
        _copy(responses.with_name(responses.name + ".meta.json"), out / f"{label}.generate.json", copied)
        _copy(layout.eval_details(label), out / f"{label}.details.jsonl", copied)
        _copy(layout.eval_summary(label), out / f"{label}.summary.json", copied)
    _copy(layout.gorilla_summaries, out / "gorilla.json", copied)
    for label in GORILLA_PAIRED:
        _copy(layout.eval_details(label), out / layout.eval_details(label).name, copied)
    for stage in TRAINING_STAGES:
        for name, target in TRAINING_FILES.items():
            _copy(layout.stage(stage) / name, out / f"{stage}.{target}", copied)
    stages = {path.parent.relative_to(layout.root).as_posix(): _stage_record(path)
              for path in sorted(layout.root.glob(f"**/{MANIFEST}"))}
    meta = {"commit": git_commit(), "run_dir": str(layout.root), "models": labels, "files": sorted(copied),
            "stages": stages, "config": config, "export_command": " ".join(["apirl", *sys.argv[1:]])}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
