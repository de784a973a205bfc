"""What the RL recipes (`ppo`, `grpo` for GRPO and RLOO, `dpo`) share: the policy they start from and how it is
loaded, the train prompts, the files their result depends on, their stage manifest and the summary keys every
online algorithm reports. The recipes import this module; `apirl.train.rl` imports the recipes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from apirl.config import RunConfig
from apirl.errors import InputError
from apirl.jsonl import iter_jsonl
from apirl.models.load import ModelSource, load_model, load_tokenizer, resolve_or_sft
from apirl.rundir import StageResult, run_stage
from apirl.rundir import fingerprint as stage_fingerprint
from apirl.train.checkpoints import CHECKPOINTS_DIR, LOG, MODEL_DIR, SUMMARY
from apirl.train.rewards import reward_model_path


def policy_source(config: RunConfig) -> ModelSource:
    """`rl.policy`, else M_SFT in `runs/<name>/sft/model`."""
    return resolve_or_sft(config.rl.policy, config.run_dir, config.model.cache_dir, "rl.policy")


def load_policy(config: RunConfig, device: str | None = None) -> tuple[Any, Any, ModelSource]:
    """(the policy in fp32 and eval mode on `device`, its tokenizer with left padding, its source); an error
    loading it names `rl.policy`."""
    source = policy_source(config)
    tokenizer = load_tokenizer(source)
    return load_model(source, "float32", device), tokenizer, source


def load_prompts(path: Path) -> list[str]:
    """The plain-format prompts of a data-stage split."""
    prompts = []
    for line, raw in iter_jsonl(path, what="data-stage examples"):
        prompt = raw.get("prompt")
        if not isinstance(prompt, str):
            raise InputError("expected a string", path=path, line=line, field="prompt")
        prompts.append(prompt)
    if len(prompts) < 2:
        raise InputError(f"RL needs at least 2 prompts, found {len(prompts)}", path=path)
    return prompts


def policy_inputs(config: RunConfig) -> list[Path]:
    """The policy's weight files, when it is local (a hub id is its own version)."""
    source = policy_source(config)
    return sorted(Path(source.location).glob("*.safetensors")) if source.local else []


def online_inputs(config: RunConfig) -> list[Path]:
    """What an online algorithm's result depends on: the train prompts (the data stage is prepared if
    needed), the policy's weights and, when it is a term of the reward, the reward model's weights."""
    from apirl.data.stage import prepare_data

    inputs = [prepare_data(config.data, config.layout, config.seed).stage_dir / "train.jsonl",
              *policy_inputs(config)]
    spec = reward_model_path(config)
    if config.rl.reward_model_weight and not spec.startswith("rule:"):
        inputs += sorted(Path(spec).glob("*.safetensors"))
    return inputs


def reward_summary(config: RunConfig) -> dict[str, Any]:
    """The reward's terms and weights, as said in a manifest or a summary."""
    rl = config.rl
    terms: dict[str, Any] = {}
    if rl.reward_model_weight:
        terms["reward_model"] = {"weight": rl.reward_model_weight, "model": reward_model_path(config)}
    if rl.tools_weight:
        terms["tools"] = {"weight": rl.tools_weight}
    if rl.exec_weight:
        terms["exec"] = {"weight": rl.exec_weight, "mode": config.execution.mode}
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


def rl_stage_config(config: RunConfig) -> dict[str, Any]:
    """The `[rl]` part of an RL stage's manifest (the algorithm adds its own table); DPO has no reward."""
    stage = {"rl": config.rl.model_dump(mode="json"), "policy": policy_source(config).spec}
    return stage if config.rl.algorithm == "dpo" else {**stage, "reward": reward_summary(config)}


def run_rl_stage(config: RunConfig, table: Any, inputs: list[Path], train: Callable[..., dict[str, Any]], *,
                 resume: bool, force: bool, **train_kwargs: Any) -> StageResult:
    """An algorithm's stage in `runs/<name>/<algorithm>/`: skipped when an identical run finished (its table,
    `[rl]`, seed and input hashes), else `train(config, directory, resume=..., fingerprint=..., **train_kwargs)`,
    which writes `summary.json`, `log.jsonl` and `model/`. `force` discards an interrupted run's checkpoints."""
    algorithm = config.rl.algorithm
    stage_dir = config.run_dir / algorithm
    if force and (stage_dir / CHECKPOINTS_DIR).is_dir():
        shutil.rmtree(stage_dir / CHECKPOINTS_DIR)
    stage_config = {algorithm: table.model_dump(mode="json"), **rl_stage_config(config)}

    def work(directory: Path) -> list[Path]:
        train(config, directory, resume=resume, fingerprint=stage_fingerprint(stage_config, config.seed, inputs),
              **train_kwargs)
        return [directory / SUMMARY, directory / LOG, directory / MODEL_DIR / "model.safetensors"]

    return run_stage(stage_dir, config=stage_config, seed=config.seed, inputs=inputs, work=work, force=force)
