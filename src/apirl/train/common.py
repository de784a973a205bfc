"""What the RL recipes (`ppo`, `grpo` for GRPO and RLOO, `dpo`) share: what an RL run reads besides its own table
(`RlRun`), the policy it starts from and how it is loaded, the train prompts, the files its result depends on,
its stage manifest and the summary keys every online algorithm reports. The recipes import this module;
`apirl.train.rl` imports the recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apirl.config_base import StrictModel
from apirl.data.stage import read_prompts
from apirl.errors import InputError
from apirl.execution.config import ExecConfig
from apirl.models.config import ModelConfig
from apirl.models.load import ModelSource, load_model, load_tokenizer, resolve_or_sft
from apirl.rundir import RunLayout, StageResult, weight_files
from apirl.train.checkpoints import run_training_stage
from apirl.train.config import RlConfig
from apirl.train.rewards import reward_model_path

ONLINE = ("ppo", "grpo", "rloo")


@dataclass(frozen=True)
class RlRun:
    """What every RL recipe reads besides its own table: which algorithm, the `[rl]` table (policy, LoRA,
    reward), the `[model]` table (cache and device), the `[execution]` table (the exec reward), the run's
    directory and seed."""

    algorithm: str
    rl: RlConfig
    model: ModelConfig
    execution: ExecConfig
    layout: RunLayout
    seed: int

    @property
    def stage_dir(self) -> Path:
        return self.layout.stage(self.algorithm)


def policy_source(run: RlRun) -> ModelSource:
    """`rl.policy`, else M_SFT in `runs/<name>/sft/model`."""
    return resolve_or_sft(run.rl.policy, run.layout, run.model.cache_dir, "rl.policy")


def load_policy(run: RlRun, device: str | None = None) -> tuple[Any, Any, ModelSource]:
    """(the policy in fp32 and eval mode on `device`, its tokenizer with left padding, its source); an error
    loading it names `rl.policy`."""
    source = policy_source(run)
    tokenizer = load_tokenizer(source)
    return load_model(source, "float32", device), tokenizer, source


def train_prompts(layout: RunLayout) -> list[str]:
    """The plain-format prompts of the data stage's train split."""
    prompts = [row["prompt"] for row in read_prompts(layout, "train")]
    if len(prompts) < 2:
        raise InputError(f"RL needs at least 2 prompts, found {len(prompts)}", path=layout.split("train"))
    return prompts


def policy_inputs(run: RlRun) -> list[Path]:
    """The policy's weight files, when it is local (a hub id is its own version)."""
    source = policy_source(run)
    return weight_files(source.location) if source.local else []


def online_inputs(run: RlRun) -> list[Path]:
    """What an online algorithm's result depends on: the data stage's train prompts, the policy's weights, the
    reward model's weights when it is a term of the reward, the API database when the tools or exec term reads
    it."""
    rl = run.rl
    if not (rl.reward_model_weight or rl.tools_weight or rl.exec_weight):
        raise InputError(f"{run.algorithm} needs a reward: every reward weight is 0", field="rl")
    inputs = [run.layout.split("train"), *policy_inputs(run)]
    spec = reward_model_path(rl, run.layout)
    if rl.reward_model_weight and not spec.startswith("rule:"):
        inputs += weight_files(spec)
    if rl.tools_weight or rl.exec_weight:
        inputs.append(run.layout.catalog)
    if rl.exec_weight:
        inputs.append(run.layout.hub_evidence)
    return inputs


def reward_summary(run: RlRun) -> dict[str, Any]:
    """The reward's terms and weights, as said in a manifest or a summary."""
    rl = run.rl
    terms: dict[str, Any] = {}
    if rl.reward_model_weight:
        terms["reward_model"] = {"weight": rl.reward_model_weight, "model": reward_model_path(rl, run.layout)}
    if rl.tools_weight:
        terms["tools"] = {"weight": rl.tools_weight}
    if rl.exec_weight:
        terms["exec"] = {"weight": rl.exec_weight, "mode": run.execution.mode}
    return terms


def _mean_of(log: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in log if key in entry]
    return sum(values) / len(values) if values else None


def progress_summary(log: Sequence[dict[str, Any]], *, reward: str, kl: str, length: str,
                     terms: dict[str, str]) -> dict[str, Any]:
    """The summary keys every online algorithm reports, read from its step log under that log's own names: the
    mean reward of the first and of the last quarter of the steps (`first_reward`, `last_reward`), the last KL,
    the mean completion length, and per reward term (name -> log key) its first and last quarter's mean (None
    where the log has no such key), so the CLI and the report read one set of keys whatever the algorithm."""
    window = max(1, len(log) // 4)
    summary = {"first_reward": _mean_of(log[:window], reward), "last_reward": _mean_of(log[-window:], reward),
               "last_kl": log[-1].get(kl) if log else None, "mean_completion_length": _mean_of(log, length)}
    for name, key in terms.items():
        summary[f"first_{name}"] = _mean_of(log[:window], key)
        summary[f"last_{name}"] = _mean_of(log[-window:], key)
    return summary


def run_rl_stage(run: RlRun, table: StrictModel, inputs: list[Path],
                 train: Callable[[Path, dict[str, Any]], dict[str, Any]], *, force: bool
                 ) -> StageResult[dict[str, Any]]:
    """An algorithm's stage in `runs/<name>/<algorithm>/`: skipped when an identical run finished (its table,
    `[rl]`, the policy, the reward, seed and input hashes), else `train(stage_dir, fingerprint)`, which writes
    `summary.json`, `log.jsonl` and `model/`. `force` discards an interrupted run's checkpoints."""
    stage = {run.algorithm: table.model_dump(mode="json"), "rl": run.rl.model_dump(mode="json", exclude={"algorithm"}),
             "policy": policy_source(run).spec}
    if run.algorithm in ONLINE:
        stage["reward"] = reward_summary(run)
    return run_training_stage(run.stage_dir, config=stage, seed=run.seed, inputs=inputs, train=train, force=force)
