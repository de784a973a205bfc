"""An offline Hugging Face hub: a tiny random checkpoint for every model id of the API database.

Generated code is judged by running it, and Gorilla-style code loads hub models (`pipeline(task, model=ID)`,
`XForY.from_pretrained(ID)`, `SentenceTransformer(ID)`, `DiffusionPipeline.from_pretrained(ID)`,
`hf_hub_download(ID, FILE)`). No hub is reachable here and nobody wants 900 real models, so for each id we
write a randomly initialised checkpoint of a compatible architecture, a few hundred kilobytes to a few
megabytes, into a normal Hugging Face cache directory (`<root>/hub/models--org--name/snapshots/<rev>/`). The
code under test then runs the real, unmodified loading code of transformers, diffusers and
sentence-transformers with `HF_HUB_OFFLINE=1` and `HF_HOME=<root>`: an id that is not in the database is not in
the cache, and loading it fails the way a missing repository fails offline (an OSError that the sandbox
classifies as `unknown_model_id`).

The architecture of an id is chosen from evidence, most specific first: concrete classes named with the id in
the database row's `api_call`, then in the row's `example_code` and in the eval answers that use the row (a
checkpoint is whatever its users load it with), then tokenizer/processor classes, then the pipeline task or
Auto class (its model types, picked by the id's name, e.g. `distilbert-base-...` -> distilbert), then a default
per task. Sizes are shrunk (`tiny_checkpoints.TINY`: hidden size 64, two layers); vocabularies and image/audio
preprocessing keep their real sizes, so special-token ids and processor/config pairs stay consistent.

Built lazily (only the ids a run uses), once: `<root>/built/<id>.json` records each id's plan and outcome, and
the version of this builder (`BUILDER_VERSION`) invalidates old builds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apirl.data.apidb import ApiDatabase, ApiRow
from apirl.execution.hub_plan import CheckpointPlan, plan_checkpoint
from apirl.execution.tiny_checkpoints import BUILDERS, quiet

BUILDER_VERSION = 2

# ------------------------------------------------------------------------------------------------------------
# The cache directory.


def _revision(model_id: str) -> str:
    return hashlib.sha1(f"apirl-offline-hub-{BUILDER_VERSION}-{model_id}".encode()).hexdigest()


@dataclass
class BuildRecord:
    model_id: str
    status: str  # built | failed
    plan: dict[str, Any]
    error: str = ""


class OfflineHub:
    """A Hugging Face cache directory (`HF_HOME`) filled lazily with tiny checkpoints of database model ids."""

    def __init__(self, root: str | Path, api_db: ApiDatabase, evidence: dict[str, list[str]] | None = None) -> None:
        self.root = Path(root)
        self.known = set(api_db.model_ids)
        self.evidence = evidence or {}
        self.rows: dict[str, ApiRow] = {}
        for row in api_db.rows:  # the first row of an id, as the AST matcher picks it
            if row.model_id:
                self.rows.setdefault(row.model_id, row)

    @property
    def env(self) -> dict[str, str]:
        """Environment for processes that load from this hub."""
        return {"HF_HOME": str(self.root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1", "DIFFUSERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}

    def repo_dir(self, model_id: str) -> Path:
        return self.root / "hub" / ("models--" + model_id.replace("/", "--"))

    def _record_path(self, model_id: str) -> Path:
        return self.root / "built" / (model_id.replace("/", "--") + ".json")

    def record(self, model_id: str) -> BuildRecord | None:
        path = self._record_path(model_id)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("builder_version") != BUILDER_VERSION:
            return None
        return BuildRecord(data["model_id"], data["status"], data["plan"], data.get("error", ""))

    def plan(self, model_id: str) -> CheckpointPlan:
        return plan_checkpoint(model_id, self.rows.get(model_id), self.evidence.get(model_id, ()))

    def ensure(self, model_ids: Iterable[str], on_built: Callable[[BuildRecord], None] | None = None
               ) -> dict[str, BuildRecord]:
        """Build every known id of `model_ids` that is not built yet; unknown ids are left out (absent from the
        hub, as on the real one). Failures are recorded, not raised: the snippet then fails to load."""
        records: dict[str, BuildRecord] = {}
        for model_id in dict.fromkeys(model_ids):
            if model_id not in self.known:
                continue
            record = self.record(model_id)
            if record is None:
                record = self.build(model_id)
                if on_built is not None:
                    on_built(record)
            records[model_id] = record
        return records

    def build(self, model_id: str) -> BuildRecord:
        """Write the repo of one id (into a scratch dir, moved into place when complete) and its record."""
        plan = self.plan(model_id)
        revision = _revision(model_id)
        repo = self.repo_dir(model_id)
        scratch = repo / "snapshots" / (revision + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            with quiet():
                BUILDERS[plan.library](plan, scratch)
            final = repo / "snapshots" / revision
            shutil.rmtree(final, ignore_errors=True)
            scratch.rename(final)
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / "main").write_text(revision)
            record = BuildRecord(model_id, "built", asdict(plan))
        except Exception as exc:  # recorded: the id then behaves as a repo whose files cannot be loaded
            shutil.rmtree(scratch, ignore_errors=True)
            record = BuildRecord(model_id, "failed", asdict(plan), f"{type(exc).__name__}: {exc}"[:500])
        path = self._record_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**asdict(record), "builder_version": BUILDER_VERSION}, indent=1))
        return record
