"""The data stage: write every split's examples and the statistics into `runs/<name>/data/`."""

from __future__ import annotations

import json
from pathlib import Path

from apirl.config import RunConfig
from apirl.data.dataset import build_examples, data_stats, load_gorilla
from apirl.data.paths import resolve_data_dir
from apirl.data.splits import SPLITS
from apirl.jsonl import write_jsonl
from apirl.rundir import StageResult, run_stage

STAGE = "data"


def data_inputs(config: RunConfig) -> list[Path]:
    """The files whose content decides the stage's output (hashed into the manifest)."""
    paths = resolve_data_dir(config.data.data_dir)
    inputs = [paths.eval, paths.api_db]
    if paths.questions().is_file():
        inputs.append(paths.questions())
    if paths.has_train():
        inputs.append(paths.train)
    else:
        inputs += [Path(config.data.split_dir) / f"{name}.txt" for name in SPLITS]
    return inputs


def prepare_data(config: RunConfig, *, force: bool = False) -> StageResult:
    def work(stage_dir: Path) -> list[Path]:
        data = load_gorilla(config.data)
        splits = build_examples(data, config.data)
        outputs = [write_jsonl(stage_dir / f"{name}.jsonl", (ex.to_json() for ex in splits[name]))
                   for name in SPLITS]
        stats_path = stage_dir / "stats.json"
        stats_path.write_text(json.dumps(data_stats(data, splits), indent=2) + "\n", encoding="utf-8")
        return [*outputs, stats_path]

    return run_stage(config.run_dir / STAGE, config=config.data.model_dump(mode="json"), seed=config.seed,
                     inputs=data_inputs(config), work=work, force=force)
