"""The reward of the online RL algorithms (PPO, GRPO, RLOO): a weighted sum of named terms, configured in `[rl]`.

Each term maps (prompts, completions) to one float per completion:

* `reward_model`: the reward model's logit (the paper's reward), or a built-in rule (`rule:...`, for tests);
* `tools`: the share of the program-analysis questions the tools judge of `apirl.feedback.tools` answers yes
  (imports resolve, syntax, defined names, the API exists and fits, arguments bind, no placeholders); an answer
  it cannot decide counts half, as in the feedback score;
* `exec`: 1 if the code runs to the end in the executability harness (bound mode by default) and loads a database
  model that its `<<<api_call>>>` names or that is of the prompt's gold domain (the train split says which),
  else 0: code that avoids the API (pandas reading a CSV, plain Python) runs, and must not be paid for it.

PPO adds the weighted terms itself; TRL's trainers get one reward function per term and the weights, so they
log each term apart. A term whose weight is 0 is never built: no reward model loaded, no sandbox started.

Every scored rollout is also written to the stage's `rollouts.jsonl` (`RolloutLog`): the step means cannot show
*what* the reward paid for, the texts can, so the report prints the top-reward rollouts of a few steps.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from apirl.errors import InputError
from apirl.execution.config import ExecConfig
from apirl.jsonl import json_line, whole_rows
from apirl.rundir import RunLayout
from apirl.train.config import RewardModelConfig, RlConfig

RewardFn = Callable[[Sequence[str], Sequence[str]], list[float]]

ROLLOUTS = "rollouts.jsonl"

# The questions program analysis decides on its own (the others need an LLM or an execution verdict).
TOOLS_QUESTIONS = ("imports", "syntax", "defined_names", "api_exists", "arguments", "complete")


@dataclass(frozen=True)
class RewardTerm:
    name: str
    weight: float
    fn: RewardFn


# ---------------------------------------------------------------------------------------------------------------
# Rule rewards: cheap stand-ins for a reward model, so the recipes can be tested in seconds on a task whose
# optimum is known.


def _short(prompt: str, response: str) -> float:
    return -min(len(response), 64) / 64


def _long(prompt: str, response: str) -> float:
    return min(len(response), 64) / 64


RULE_REWARDS: dict[str, Callable[[str, str], float]] = {"short": _short, "long": _long}


def rule_reward(spec: str) -> RewardFn:
    """A built-in reward by name: `rule:short` (-chars/64, capped), `rule:long` (+chars/64, capped) or
    `rule:contains:<text>` (1.0 when the response contains text, else 0)."""
    name = spec.removeprefix("rule:")
    if name.startswith("contains:"):
        needle = name.removeprefix("contains:")
        if not needle:
            raise InputError("rule:contains: needs a text after it", field="rl.reward_model")
        return lambda prompts, responses: [float(needle in r) for r in responses]
    if name not in RULE_REWARDS:
        raise InputError(f"unknown rule reward {spec!r}; known: "
                         f"{', '.join(f'rule:{n}' for n in RULE_REWARDS)}, rule:contains:<text>",
                         field="rl.reward_model")
    rule = RULE_REWARDS[name]
    return lambda prompts, responses: [rule(p, r) for p, r in zip(prompts, responses, strict=True)]


# ---------------------------------------------------------------------------------------------------------------
# The terms.


def reward_model_path(rl: RlConfig, layout: RunLayout) -> str:
    """`rl.reward_model`, or the reward stage's model when empty."""
    return rl.reward_model or str(layout.model("reward"))


def reward_model_fn(rl: RlConfig, layout: RunLayout, device: str) -> RewardFn:
    spec = reward_model_path(rl, layout)
    if spec.startswith("rule:"):
        return rule_reward(spec)
    from apirl.train.reward import RewardModel

    if not Path(spec).is_dir():
        raise InputError(f"no reward model at {spec}: run `apirl reward` first, or set rl.reward_model",
                         field="rl.reward_model")
    model = RewardModel.load(spec, device)
    return lambda prompts, completions: model.score(prompts, completions, rl.reward_batch_size)


def tools_fn(api_db: Any) -> RewardFn:
    """The tools judge's share of yes over `TOOLS_QUESTIONS` (unknown = half), in [0, 1]."""
    from apirl.feedback.questions import question
    from apirl.feedback.tools import ToolsJudge
    from apirl.feedback.types import Sample, answer_weight

    judge = ToolsJudge(api_db)
    questions = [question(key) for key in TOOLS_QUESTIONS]

    def score(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        scores = []
        for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            sample = Sample(f"rl-{index}", prompt, completion)
            weights = [answer_weight(judge.answer(sample, q)) for q in questions]
            scores.append(sum(weights) / len(weights))
        return scores

    return score


def exec_fn(executor: Any, mode: str, api_db: Any, domains: dict[str, frozenset[str]]) -> RewardFn:
    """1.0 for a completion whose code runs to the end in the executability harness and loads the API the task
    asks for (`apirl.evaluate.scorer.uses_api`: the model its api_call names, or one of the gold domain), else
    0.0. `domains` maps a prompt to its gold domains (`gold_domains`); for a prompt it lacks only the named model
    counts, and the first such prompt is reported once."""
    from apirl.evaluate.scorer import uses_api
    from apirl.execution.executor import runnable_code

    unknown: set[str] = set()

    def score(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        codes = {str(index): runnable_code(text) for index, text in enumerate(completions)}
        verdicts = {v.key: v for v in executor.check(codes, mode)}
        scores = []
        for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            verdict = verdicts[str(index)]
            if prompt not in domains:
                if not unknown:
                    print(f"exec reward: a prompt without a gold domain (only its named model counts): "
                          f"{prompt[:80]!r}", file=sys.stderr)
                unknown.add(prompt)
            gold = domains.get(prompt, frozenset())
            scores.append(1.0 if verdict.ok and uses_api(verdict.loaded, completion, gold, api_db) else 0.0)
        return scores

    return score


def gold_domains(layout: RunLayout, split: str = "train") -> dict[str, frozenset[str]]:
    """Prompt -> the gold domains of the split's examples with that prompt (train: the RL prompts)."""
    from apirl.data.stage import read_examples

    domains: dict[str, set[str]] = {}
    for example in read_examples(layout, split):
        domains.setdefault(example.prompt, set()).add(example.domain)
    return {prompt: frozenset(found) for prompt, found in domains.items()}


@contextlib.contextmanager
def reward_terms(rl: RlConfig, execution: ExecConfig, layout: RunLayout, device: str, prompts_split: str = "train"
                 ) -> Iterator[list[RewardTerm]]:
    """The weighted terms of `[rl]`; the executability sandbox (when `exec_weight` > 0) lives as long as the
    context. The tools judge and the harness read the data stage's API database; the executability term knows the
    gold domains of `prompts_split`'s prompts."""
    with contextlib.ExitStack() as stack:
        terms = []
        if rl.reward_model_weight:
            terms.append(RewardTerm("reward_model", rl.reward_model_weight, reward_model_fn(rl, layout, device)))
        if rl.tools_weight or rl.exec_weight:
            from apirl.data.stage import read_catalog, read_hub_evidence

            api_db = read_catalog(layout)
            if rl.tools_weight:
                terms.append(RewardTerm("tools", rl.tools_weight, tools_fn(api_db)))
            if rl.exec_weight:
                from apirl.execution.stage import open_executor

                executor = stack.enter_context(open_executor(execution, api_db, read_hub_evidence(layout)))
                terms.append(RewardTerm("exec", rl.exec_weight,
                                        exec_fn(executor, execution.mode, api_db,
                                                gold_domains(layout, prompts_split))))
        yield terms


class RolloutLog:
    """`rollouts.jsonl` of an online RL stage: one line per scored rollout (step, prompt, completion, each term's
    value, the weighted reward the terms paid, and whether it ended with EOS where the trainer says). Opened for a
    run that starts after `start` steps: the lines of later steps (a killed run's, which the resumed run draws
    again) and a last line cut short by the kill are dropped, so every step appears once. Single-process: one
    writer per stage directory."""

    def __init__(self, path: Path, start: int = 0) -> None:
        kept = [row for row in whole_rows(path) if isinstance(row, dict) and isinstance(row.get("step"), int)
                and row["step"] <= start] if start and path.is_file() else []
        partial = path.with_name(path.name + ".tmp")
        with partial.open("w", encoding="utf-8") as handle:
            handle.writelines(json_line(row) for row in kept)
        partial.replace(path)  # the old file stays whole until the kept rows are written
        self._handle: IO[str] = path.open("a", encoding="utf-8")

    def write(self, step: int, prompts: Sequence[str], completions: Sequence[str],
              values: dict[str, list[float]], weights: dict[str, float],
              ended: Sequence[bool] | None = None) -> None:
        """One batch of rollouts, scored by each term (`values`, in order of the completions)."""
        for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            terms = {name: round(column[index], 6) for name, column in values.items()}
            reward = sum(weights[name] * value for name, value in terms.items())
            row = {"step": step, "prompt": prompt, "completion": completion, "terms": terms,
                   "reward": round(reward, 6)}
            if ended is not None:
                row["ended"] = bool(ended[index])
            self._handle.write(json_line(row))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


@contextlib.contextmanager
def rollout_log(path: Path, start: int = 0) -> Iterator[RolloutLog]:
    """A `RolloutLog` closed on exit."""
    log = RolloutLog(path, start)
    try:
        yield log
    finally:
        log.close()


def combine(terms: Sequence[RewardTerm], prompts: Sequence[str], completions: Sequence[str]
            ) -> tuple[list[float], dict[str, list[float]]]:
    """(the weighted sum per completion, each term's values)."""
    totals = [0.0] * len(completions)
    values = {}
    for term in terms:
        values[term.name] = term.fn(prompts, completions)
        totals = [total + term.weight * value for total, value in zip(totals, values[term.name], strict=True)]
    return totals, values


def gold_vs_mutants(rl: RlConfig, execution: ExecConfig, reward: RewardModelConfig, layout: RunLayout, device: str,
                    *, split: str, mutant_seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The RL reward as `[rl]` weighs it, and each of its terms, on gold answers against their mutants: the same
    pairs as the reward stage's check (`[reward] gold_vs_mutants_limit` examples of `split`), so that a learned
    reward model and a reward that is not learned are measured alike. Returns (summary, one row per text)."""
    from apirl.train.reward import gold_and_mutants, gold_vs_mutant_rate

    items, examples = gold_and_mutants(reward, layout, split, mutant_seed)
    prompts = [prompt for _, _, prompt, _ in items]
    with reward_terms(rl, execution, layout, device, prompts_split=split) as terms:
        totals, values = combine(terms, prompts, [completion for *_, completion in items])
    weights = {term.name: term.weight for term in terms}
    rows = [{"example_id": example_id, "kind": kind, "reward": round(total, 6),
             "terms": {name: round(column[index], 6) for name, column in values.items()}}
            for index, ((example_id, kind, _, _), total) in enumerate(zip(items, totals, strict=True))]
    rate = gold_vs_mutant_rate([(row["example_id"], row["kind"], row["reward"]) for row in rows])
    per_term = {name: gold_vs_mutant_rate([(row["example_id"], row["kind"], row["terms"][name]) for row in rows])
                for name in values}
    return {"split": split, "examples": examples, "mutant_seed": mutant_seed, "weights": weights, **rate,
            "terms": per_term}, rows


def term_means(values: dict[str, list[float]]) -> dict[str, float]:
    """Each term's mean over the batch (PPO's step log)."""
    return {name: sum(column) / len(column) if column else 0.0 for name, column in values.items()}


def trl_reward_funcs(terms: Sequence[RewardTerm], log: RolloutLog | None = None, eos_ids: Sequence[int] = ()
                     ) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The terms as TRL reward functions (called with keyword arguments `prompts`, `completions`,
    `completion_ids`, `trainer_state` and the dataset's other columns), named after the term so TRL logs
    `rewards/<name>/mean`, and their weights. TRL calls them in order on the same batch (once per generation
    batch): the first starts a batch, the last sends it to `log` with the step it trains first (the state's
    global step + 1, as in TRL's log) and, given `eos_ids`, whether each completion ended with one."""
    funcs = []
    weights = {term.name: term.weight for term in terms}
    pending: dict[str, list[float]] = {}
    for position, term in enumerate(terms):
        def reward(prompts: list[str], completions: list[str], _fn: RewardFn = term.fn, _name: str = term.name,
                   _first: bool = position == 0, _last: bool = position == len(terms) - 1,
                   **kwargs: Any) -> list[float]:
            if _first:
                pending.clear()
            values = pending[_name] = _fn(prompts, completions)
            if _last and log is not None:
                state = kwargs.get("trainer_state")
                if state is None:
                    raise TypeError("the rollout log needs TRL's trainer_state keyword (TRL >= 1.0)")
                ids = kwargs.get("completion_ids")
                ended = [bool(row) and row[-1] in eos_ids for row in ids] if eos_ids and ids is not None else None
                log.write(state.global_step + 1, prompts, completions, dict(pending), weights, ended)
            return values

        reward.__name__ = term.name
        funcs.append(reward)
    return funcs, [term.weight for term in terms]
