"""The data stage: every split's examples, the API database and the statistics, in `runs/<name>/data/`.

Later stages read these files (`read_examples`, `read_catalog`, `read_hub_evidence`), never the Gorilla data
directory: the data stage is the one place that parses it, so a stage's inputs are files of the run whose hashes
its manifest records.

- `{train,val,test}.jsonl`: the examples (`Example`), one per line.
- `api.jsonl`: the API database as read (a copy of the source file), for the judges, rewards and the harness.
- `hub_evidence.json`: per model id, the eval answers' code that loads it (which classes its users load it
  with), for the offline hub's choice of architecture.
- `stats.json`: counts per split, domain and provenance; the stage's summary.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from apirl.data.apidb import ApiDatabase, load_api_database
from apirl.data.config import DataConfig
from apirl.data.dataset import Example, GorillaData, build_examples, data_stats, load_gorilla
from apirl.data.paths import resolve_data_dir
from apirl.data.splits import SPLITS
from apirl.errors import InputError
from apirl.jsonl import iter_jsonl, write_jsonl
from apirl.rundir import RunLayout, StageOutput, StageResult, run_stage

STAGE = "data"
STATS = "stats.json"


def data_inputs(table: DataConfig) -> list[Path]:
    """The files whose content decides the stage's output (hashed into the manifest)."""
    paths = resolve_data_dir(table.data_dir)
    inputs = [paths.eval, paths.api_db]
    if paths.questions().is_file():
        inputs.append(paths.questions())
    if paths.has_train():
        inputs.append(paths.train)
    else:
        inputs += [Path(table.split_dir) / f"{name}.txt" for name in SPLITS]
    return inputs


def hub_evidence(data: GorillaData) -> dict[str, list[str]]:
    """Code that loads each model id (the eval answers of its row): tells the hub which classes users load it
    with, as a real checkpoint's model card would."""
    evidence: dict[str, list[str]] = defaultdict(list)
    for record in data.records.values():
        if record.api_data.model_id and record.output.code:
            evidence[record.api_data.model_id].append(record.output.code)
    return dict(evidence)


def prepare_data(table: DataConfig, layout: RunLayout, seed: int, *, force: bool = False
                 ) -> StageResult[dict[str, Any]]:
    """The data stage (`apirl data prepare`); its summary is `stats.json`."""

    def work(stage_dir: Path, _fingerprint: dict[str, Any]) -> StageOutput[dict[str, Any]]:
        data = load_gorilla(table)
        splits = build_examples(data, table)
        outputs = [write_jsonl(layout.split(name), (ex.to_json() for ex in splits[name])) for name in SPLITS]
        shutil.copyfile(data.paths.api_db, layout.catalog)
        layout.hub_evidence.write_text(json.dumps(hub_evidence(data), indent=1) + "\n", encoding="utf-8")
        stats = data_stats(data, splits)
        (stage_dir / STATS).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        return StageOutput([*outputs, layout.catalog, layout.hub_evidence, stage_dir / STATS], stats)

    return run_stage(layout.stage(STAGE), config=table.model_dump(mode="json"), seed=seed,
                     inputs=data_inputs(table), work=work, force=force)


def _stage_file(path: Path) -> Path:
    if not path.is_file():
        raise InputError("the data stage has not written this file: run `apirl data prepare` first", path=path)
    return path


def read_examples(layout: RunLayout, split: str) -> list[Example]:
    """A split's examples as the data stage wrote them."""
    path = _stage_file(layout.split(split))
    examples = []
    for line, raw in iter_jsonl(path, what="data-stage examples"):
        try:
            examples.append(Example(**raw))
        except TypeError as exc:
            raise InputError(f"not an example: {exc}", path=path, line=line) from exc
    return examples


def read_prompts(layout: RunLayout, split: str) -> list[dict[str, str]]:
    """A split's prompts ({example_id, prompt}) as the data stage wrote them, in file order: what feedback
    sampling and the RL recipes read."""
    path = _stage_file(layout.split(split))
    rows = []
    for line, raw in iter_jsonl(path, what="data-stage examples"):
        for field in ("example_id", "prompt"):
            if not isinstance(raw.get(field), str):
                raise InputError(f"expected a string, got {type(raw.get(field)).__name__}", path=path, line=line,
                                 field=field)
        rows.append({"example_id": raw["example_id"], "prompt": raw["prompt"]})
    return rows


def read_catalog(layout: RunLayout) -> ApiDatabase:
    """The API database the data stage copied into the run."""
    return load_api_database(_stage_file(layout.catalog))


def read_hub_evidence(layout: RunLayout) -> dict[str, list[str]]:
    path = _stage_file(layout.hub_evidence)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
