"""The reward model (`apirl reward`): a scalar score of a completion, the reward of the RL stage.

Two kinds (`[reward] kind`), both a sequence classifier with one output, initialised from `reward.base` (M_SFT
in `runs/<name>/sft/model` by default). A causal LM has no classification head, so a fresh one (`score`, seeded)
is added; the summary names the weights that were initialised fresh.

- `classifier` (the paper, Dutta et al. 2024): trained with binary cross-entropy on the "acceptable" labels of
  `runs/<name>/feedback/feedback.jsonl`; its logit is the reward (logit > 0: judged acceptable).
- `pairwise`: Bradley-Terry on `pairs.jsonl` with TRL's `RewardTrainer`: -log sigmoid(r(chosen) - r(rejected)).
  The logit has no fixed zero, only differences count.

`mutant_negatives` > 0 adds to the training side, for each acceptable sample, mutants of its own code
(`apirl.execution.mutants`): unacceptable samples for the classifier, rejected partners for the pairwise model.

A text is `prompt + completion + EOS` (what TRL's `RewardTrainer` builds), tokenized once by `encode`, which
the training of both kinds and `RewardModel.score` share, so the RL stage scores exactly what was trained. A
text longer than `max_length` tokens keeps its last `max_length` tokens: the reward is read at the last token,
and cutting the end instead would hide the end of a rambling answer from it (TRL drops such texts, which
would hide the rambling answers from training altogether).

A seeded split by example_id holds `heldout_fraction` of the prompts out of training (all samples of a prompt
fall on one side, so no held-out prompt was seen). The trained model is then scored on:

- the held-out feedback: accuracy (classifier: logit > 0 agrees with the label; pairwise: the held-out pairs'
  chosen scored above their rejected) and the AUC of the logit against the label (both kinds);
- gold code against its mutants: on `feedback.calibrate_split` (val) examples, the gold answer and each of its
  mutants (`apirl.execution.mutants`, built as in `apirl feedback calibrate`), the share of (gold, mutant) pairs
  where the gold answer scores higher (ties count half), overall and per mutant kind.

Checkpoints, `--resume` and the outputs follow `apirl.train.sft`: checkpoints under `checkpoints/` beside a
fingerprint stamp (a resume never continues another config's checkpoints; they are deleted after success), the
final model (LoRA merged) with its tokenizer in `runs/<name>/reward/model/`, plus `summary.json`, `scores.jsonl`
(the score of each text behind the summary's figures), `log.jsonl` and TensorBoard logs.
`RewardModel.load(runs/<name>/reward/model)` is what the RL stage uses.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apirl.errors import InputError
from apirl.feedback.calibrate import GOLD, calibration_samples
from apirl.jsonl import iter_jsonl, json_line
from apirl.models.config import ModelConfig
from apirl.models.load import ModelSource, default_device, resolve_or_sft
from apirl.rundir import RunLayout, StageResult, weight_files
from apirl.stats import auc, win_rate
from apirl.train.checkpoints import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    checkpoint_to_resume,
    run_training_stage,
    save_final_model,
    trained_precision,
    trainer_kwargs,
    write_log,
    write_summary,
)
from apirl.train.config import RewardModelConfig, lora_config

STAGE = "reward"
# Beside the weights: the kind and the max_length the model was trained with, read by `RewardModel.load`.
METADATA = "apirl-reward.json"
# The score of every held-out sample and of every gold answer and mutant the summary's figures come from.
SCORES = "scores.jsonl"


# ------------------------------------------------------------------------------------------------------------
# Inputs: the feedback stage's files and the held-out split.


def _strings(raw: dict[str, Any], fields: Sequence[str], path: Path, line: int) -> None:
    for field in fields:
        if not isinstance(raw.get(field), str):
            raise InputError(f"expected a string, got {type(raw.get(field)).__name__}", path=path, line=line,
                             field=field)


def load_feedback(path: Path) -> list[dict[str, Any]]:
    """The labelled samples of `feedback.jsonl` ({example_id, prompt, completion, label})."""
    rows = []
    for line, raw in iter_jsonl(path, what="feedback.jsonl (run `apirl feedback` first)"):
        _strings(raw, ("example_id", "prompt", "completion"), path, line)
        if not isinstance(raw.get("label"), bool):
            raise InputError(f"expected true or false, got {raw.get('label')!r}", path=path, line=line, field="label")
        rows.append({key: raw[key] for key in ("example_id", "prompt", "completion", "label")})
    return rows


def load_preferences(path: Path) -> list[dict[str, str]]:
    """The preference pairs of `pairs.jsonl` ({example_id, prompt, chosen, rejected})."""
    rows = []
    for line, raw in iter_jsonl(path, what="pairs.jsonl (run `apirl feedback` first)"):
        _strings(raw, ("example_id", "prompt", "chosen", "rejected"), path, line)
        rows.append({key: raw[key] for key in ("example_id", "prompt", "chosen", "rejected")})
    return rows


def heldout_examples(example_ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The example ids held out of training: a seeded `fraction` of the distinct ids (sorted first, so the file
    order does not matter). With a fraction > 0 and two ids or more, at least one is held out and one is kept."""
    distinct = sorted(set(example_ids))
    count = 0
    if fraction > 0 and len(distinct) >= 2:
        count = min(max(round(fraction * len(distinct)), 1), len(distinct) - 1)
    return set(random.Random(f"apirl-reward-heldout:{seed}").sample(distinct, count))


def mutant_negatives(rows: Sequence[dict[str, Any]], per_sample: int, known_ids: set[str], seed: int
                     ) -> list[dict[str, Any]]:
    """Up to `per_sample` mutants of each acceptable sample's own code (`apirl.execution.mutants`, kinds in a
    seeded order per sample), each the sample with only its code replaced: {example_id, prompt, chosen (the
    sample), rejected (the mutant), kind}. Why: a competent policy's samples rarely show the faults a mutant
    makes (a broken import, a syntax error), so its feedback alone says little about them to the reward model."""
    from apirl.data.prompts import parse_completion
    from apirl.feedback.calibrate import mutated_answers

    out = []
    for index, row in enumerate(rows):
        if not row["label"] or parse_completion(row["completion"]).code is None:
            continue
        negatives = mutated_answers(row["completion"], known_ids, seed)
        random.Random(f"apirl-reward-mutants:{seed}:{index}").shuffle(negatives)
        out.extend({"example_id": row["example_id"], "prompt": row["prompt"], "chosen": row["completion"],
                    "rejected": negative, "kind": kind} for kind, negative in negatives[:per_sample])
    return out


# ------------------------------------------------------------------------------------------------------------
# Encoding and scoring: shared by training and by the RL stage.


def encode(tokenizer: Any, prompt: str, completion: str) -> list[int]:
    """The token ids of `prompt + completion + EOS` (EOS added when the text does not end with it), as TRL's
    `RewardTrainer` builds them; callers keep the last `max_length`. Where the pad token is the EOS (SmolLM2),
    the classifier skips it as padding and reads the logit at the token before it."""
    text = prompt + completion
    if tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return tokenizer(text)["input_ids"]


def pad_right(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) of sequences padded on the right. Right padding keeps every text at
    positions 0.. (models with absolute position embeddings, like GPT-2, score a left-padded text differently),
    and a causal model's real tokens never attend to the pads after them."""
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, :len(ids)] = 1
    return input_ids, attention_mask


class RewardModel:
    """A trained reward model: `score(prompts, completions)` gives each completion's logit, the reward.

    The sequence classifier reads its logit at each row's last token that is not `config.pad_token_id` (so
    left or right padding both work, ignoring the attention mask); that is why a pad id must be set, and why
    batches are padded with exactly that id."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int | None, kind: str | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.kind = kind
        self.pad_token_id: int = model.config.pad_token_id

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, dtype: str = "float32") -> RewardModel:
        """The model saved by `apirl reward` (or any one-logit sequence classifier with a tokenizer), in eval
        mode on `device` (cuda when available, else cpu)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load a reward model from {path}: {exc}", field="reward model") from exc
        if model.config.num_labels != 1:
            raise InputError(f"{path} has {model.config.num_labels} outputs; a reward model has one",
                             field="reward model")
        if model.config.pad_token_id is None:
            raise InputError(f"{path} has no pad_token_id in its config: a batch could not be scored at each "
                             "text's last token", field="reward model")
        metadata = json.loads((path / METADATA).read_text(encoding="utf-8")) if (path / METADATA).is_file() else {}
        model.to(device or default_device())
        model.eval()
        return cls(model, tokenizer, metadata.get("max_length"), metadata.get("kind"))

    def encode(self, prompt: str, completion: str) -> list[int]:
        ids = encode(self.tokenizer, prompt, completion)
        return ids[-self.max_length:] if self.max_length else ids

    def score(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 16) -> list[float]:
        """The reward (the logit) of each prompt + completion. Texts are batched by length (less padding) and
        the scores returned in the input order."""
        import torch

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        encoded = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        scores = [0.0] * len(encoded)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                input_ids, attention_mask = pad_right([encoded[i] for i in batch], self.pad_token_id)
                logits = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                for index, value in zip(batch, logits[:, 0].float().tolist(), strict=True):
                    scores[index] = value
        return scores


# ------------------------------------------------------------------------------------------------------------
# Evaluation.


def gold_vs_mutant_rate(scored: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """From (example_id, kind, score) rows, kind "gold" or a mutant kind: the share of (gold, mutant) pairs of
    the same example where the gold answer scores higher (ties count half), overall and per mutant kind.
    Mutants of an example without a gold row are not paired."""
    from apirl.execution.mutants import MUTANT_KINDS

    gold = {example_id: score for example_id, kind, score in scored if kind == GOLD}
    pairs: dict[str, tuple[list[float], list[float]]] = {kind: ([], []) for kind in MUTANT_KINDS}
    for example_id, kind, score in scored:
        if kind != GOLD and example_id in gold:
            better, worse = pairs.setdefault(kind, ([], []))
            better.append(gold[example_id])
            worse.append(score)
    all_better = [value for better, _ in pairs.values() for value in better]
    all_worse = [value for _, worse in pairs.values() for value in worse]
    return {"pairs": len(all_better), "rate": _round(win_rate(all_better, all_worse)),
            "per_kind": {kind: {"pairs": len(better), "rate": _round(win_rate(better, worse))}
                         for kind, (better, worse) in pairs.items()}}


def gold_and_mutants(reward: RewardModelConfig, layout: RunLayout, calibrate_split: str, mutant_seed: int
                     ) -> tuple[list[tuple[str, str, str, str]], int]:
    """((example_id, kind, prompt, completion) for every gold answer and mutant, number of examples) of the
    first `gold_vs_mutants_limit` examples of the data stage's `calibrate_split`, built as `apirl feedback
    calibrate` builds them (the target with only its code replaced)."""
    from apirl.data.stage import read_catalog, read_examples

    examples = read_examples(layout, calibrate_split)
    if reward.gold_vs_mutants_limit:
        examples = examples[:reward.gold_vs_mutants_limit]
    known = read_catalog(layout).model_ids
    items = []
    for example in examples:
        for sample, kind in calibration_samples([example], known, mutant_seed):
            items.append((example.example_id, kind, example.prompt, sample.completion))
    return items, len(examples)


def evaluate_reward_model(reward_model: RewardModel, reward: RewardModelConfig, layout: RunLayout,
                          heldout_rows: Sequence[dict[str, Any]], heldout_pairs: Sequence[dict[str, str]], *,
                          calibrate_split: str, mutant_seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Held-out accuracy and AUC, and the gold-vs-mutant rate, of a trained reward model (see the module doc),
    and the score of every text they were computed from (`scores.jsonl`: anyone can recompute them)."""
    batch_size = reward.batch_size
    scores = reward_model.score([r["prompt"] for r in heldout_rows], [r["completion"] for r in heldout_rows],
                                batch_size)
    acceptable = [s for s, row in zip(scores, heldout_rows, strict=True) if row["label"]]
    unacceptable = [s for s, row in zip(scores, heldout_rows, strict=True) if not row["label"]]
    pair_scores: list[dict[str, Any]] = []
    if reward.kind == "classifier":
        agree = [(s > 0) == row["label"] for s, row in zip(scores, heldout_rows, strict=True)]
        accuracy = sum(agree) / len(agree) if agree else None
    else:
        prompts = [p["prompt"] for p in heldout_pairs]
        chosen = reward_model.score(prompts, [p["chosen"] for p in heldout_pairs], batch_size)
        rejected = reward_model.score(prompts, [p["rejected"] for p in heldout_pairs], batch_size)
        accuracy = win_rate(chosen, rejected)
        pair_scores = [{"set": "heldout_pair", "example_id": pair["example_id"], "chosen": c, "rejected": r}
                       for pair, c, r in zip(heldout_pairs, chosen, rejected, strict=True)]

    items, examples = gold_and_mutants(reward, layout, calibrate_split, mutant_seed)
    item_scores = reward_model.score([item[2] for item in items], [item[3] for item in items], batch_size)
    rate = gold_vs_mutant_rate([(item[0], item[1], s) for item, s in zip(items, item_scores, strict=True)])
    scored = ([{"set": "heldout", "example_id": row["example_id"], "label": row["label"], "score": value}
               for row, value in zip(heldout_rows, scores, strict=True)]
              + [{"set": "gold_vs_mutant", "example_id": item[0], "kind": item[1], "score": value}
                 for item, value in zip(items, item_scores, strict=True)] + pair_scores)
    return {
        "heldout_accuracy": _round(accuracy),
        "accuracy_of": "label: logit > 0" if reward.kind == "classifier" else "pairs: chosen > rejected",
        "heldout_auc": _round(auc(acceptable, unacceptable)),
        "heldout_mean_reward_acceptable": _mean(acceptable),
        "heldout_mean_reward_unacceptable": _mean(unacceptable),
        "gold_vs_mutant": {"split": calibrate_split, "examples": examples, "mutant_seed": mutant_seed, **rate},
    }, scored


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


# ------------------------------------------------------------------------------------------------------------
# Training.


def base_source(reward: RewardModelConfig, model: ModelConfig, layout: RunLayout) -> ModelSource:
    """The model the reward model starts from: `reward.base`, else M_SFT in `runs/<name>/sft/model`."""
    return resolve_or_sft(reward.base, layout, model.cache_dir, "reward.base")


def load_base(source: ModelSource, seed: int) -> tuple[Any, Any, list[str]]:
    """(one-logit sequence classifier, tokenizer, names of the weights initialised fresh) from a base model.
    A causal LM's body is loaded and its `score` head is new: seeded here, so a rerun starts from the same head.
    The config's pad_token_id is the tokenizer's, which the classifier needs to find each text's last token."""
    import torch
    from transformers import AutoModelForSequenceClassification, set_seed

    from apirl.models.load import load_tokenizer

    tokenizer = load_tokenizer(source)
    tokenizer.padding_side = "right"
    set_seed(seed)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source.location, num_labels=1, dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load {source.spec!r} ({source.location}) as a sequence classifier: {exc}",
                         field="reward.base") from exc
    model.config.pad_token_id = tokenizer.pad_token_id
    # The reward is read deterministically when scoring; train the same function (TRL's RewardTrainer default).
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model, tokenizer, sorted(info["missing_keys"])


def bce_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Binary cross-entropy of the logit against the 0/1 label: the classifier's loss. Summed and divided by
    the labels of the whole accumulated batch (`num_items_in_batch`, from the Trainer), so gradient
    accumulation gives the loss of one big batch."""
    import torch.nn.functional as F

    logits = outputs.logits.squeeze(-1)
    total = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")
    return total / (num_items_in_batch if num_items_in_batch is not None else labels.numel())


def _collate_labelled(pad_token_id: int) -> Any:
    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        input_ids, attention_mask = pad_right([f["input_ids"] for f in features], pad_token_id)
        labels = torch.tensor([float(f["label"]) for f in features])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    return collate


def _classifier_trainer(reward: RewardModelConfig, seed: int, stage_dir: Path, model: Any, tokenizer: Any,
                        train_rows: Sequence[dict[str, Any]], heldout_rows: Sequence[dict[str, Any]],
                        callbacks: Sequence[Any]) -> Any:
    """The plain Trainer with `bce_loss` on {input_ids, label} rows (the paper's classifier)."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    max_length = reward.max_length

    def dataset(rows: Sequence[dict[str, Any]]) -> Any:
        return Dataset.from_list([{"input_ids": encode(tokenizer, r["prompt"], r["completion"])[-max_length:],
                                   "label": float(r["label"])} for r in rows])

    peft = lora_config(reward, "SEQ_CLS")
    return Trainer(
        model=get_peft_model(model, peft) if peft is not None else model,
        args=TrainingArguments(**trainer_kwargs(reward, stage_dir, seed, has_eval=bool(heldout_rows)),
                               remove_unused_columns=False),
        data_collator=_collate_labelled(tokenizer.pad_token_id),
        train_dataset=dataset(train_rows),
        eval_dataset=dataset(heldout_rows) if heldout_rows else None,
        processing_class=tokenizer,
        compute_loss_func=bce_loss,
        callbacks=list(callbacks),
    )


def _pairwise_trainer(reward: RewardModelConfig, seed: int, stage_dir: Path, model: Any, tokenizer: Any,
                      train_pairs: Sequence[dict[str, str]], heldout_pairs: Sequence[dict[str, str]],
                      callbacks: Sequence[Any]) -> Any:
    """TRL's RewardTrainer on pairs tokenized by `encode` (it takes tokenized `chosen_ids`/`rejected_ids` as
    they are), so training and scoring see the same tokens."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    max_length = reward.max_length

    def dataset(pairs: Sequence[dict[str, str]]) -> Any:
        return Dataset.from_list([{"chosen_ids": encode(tokenizer, p["prompt"], p["chosen"])[-max_length:],
                                   "rejected_ids": encode(tokenizer, p["prompt"], p["rejected"])[-max_length:]}
                                  for p in pairs])

    return RewardTrainer(
        model=model,
        args=RewardConfig(**trainer_kwargs(reward, stage_dir, seed, has_eval=bool(heldout_pairs)),
                          max_length=max_length, disable_dropout=True),
        train_dataset=dataset(train_pairs),
        eval_dataset=dataset(heldout_pairs) if heldout_pairs else None,
        processing_class=tokenizer,
        peft_config=lora_config(reward, "SEQ_CLS"),
        callbacks=list(callbacks),
    )


def train_reward(reward: RewardModelConfig, model_table: ModelConfig, layout: RunLayout, seed: int, stage_dir: Path,
                 *, calibrate_split: str, mutant_seed: int, resume: bool = False, callbacks: Sequence[Any] = (),
                 fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, save and evaluate the reward model in `stage_dir`; returns the summary (also `summary.json`).

    `fingerprint` (config, seed, input hashes) is kept beside the checkpoints, so a resume never continues
    checkpoints that another config wrote. The checkpoints are deleted once the model is saved and scored."""
    rows = load_feedback(layout.feedback_rows)
    heldout = heldout_examples([r["example_id"] for r in rows], reward.heldout_fraction, seed)
    train_rows = [r for r in rows if r["example_id"] not in heldout]
    heldout_rows = [r for r in rows if r["example_id"] in heldout]
    pairs = load_preferences(layout.pairs) if reward.kind == "pairwise" else []
    train_pairs = [p for p in pairs if p["example_id"] not in heldout]
    heldout_pairs = [p for p in pairs if p["example_id"] in heldout]
    if not (train_pairs if reward.kind == "pairwise" else train_rows):
        raise InputError(f"no {'pairs' if reward.kind == 'pairwise' else 'samples'} left to train on in "
                         f"{layout.stage('feedback')} after holding out {len(heldout)} prompts",
                         field="reward.heldout_fraction")

    negatives: list[dict[str, Any]] = []
    if reward.mutant_negatives:
        from apirl.data.stage import read_catalog

        negatives = mutant_negatives(train_rows, reward.mutant_negatives, read_catalog(layout).model_ids, seed)
        if reward.kind == "classifier":
            train_rows += [{"example_id": n["example_id"], "prompt": n["prompt"], "completion": n["rejected"],
                            "label": False} for n in negatives]
        else:
            train_pairs += [{key: n[key] for key in ("example_id", "prompt", "chosen", "rejected")}
                            for n in negatives]

    checkpoints = stage_dir / CHECKPOINTS_DIR
    resume_from = checkpoint_to_resume(checkpoints, resume, fingerprint)
    source = base_source(reward, model_table, layout)
    model, tokenizer, fresh = load_base(source, seed)
    if reward.kind == "classifier":
        trainer = _classifier_trainer(reward, seed, stage_dir, model, tokenizer, train_rows, heldout_rows, callbacks)
    else:
        trainer = _pairwise_trainer(reward, seed, stage_dir, model, tokenizer, train_pairs, heldout_pairs, callbacks)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_eval = trainer.evaluate() if trainer.eval_dataset is not None else {}

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before a merge
    model_dir = stage_dir / MODEL_DIR
    save_final_model(trainer.model, tokenizer, model_dir, reward.method == "lora", padding_side="right")
    (model_dir / METADATA).write_text(json.dumps({"kind": reward.kind, "base": source.spec,
                                                  "max_length": reward.max_length}, indent=2) + "\n",
                                      encoding="utf-8")
    write_log(stage_dir, trainer.state.log_history)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    state, precision = trainer.state, trained_precision(trainer)
    del trainer, model

    reward_model = RewardModel.load(model_dir, model_table.device or None)
    evaluation, scored = evaluate_reward_model(reward_model, reward, layout, heldout_rows, heldout_pairs,
                                               calibrate_split=calibrate_split, mutant_seed=mutant_seed)
    (stage_dir / SCORES).write_text("".join(json_line(row) for row in scored), encoding="utf-8")
    texts = ([(r["prompt"], r["completion"]) for r in train_rows] if reward.kind == "classifier" else
             [(p["prompt"], p[side]) for p in train_pairs for side in ("chosen", "rejected")])
    summary = {
        "kind": reward.kind, "base": source.spec, "method": reward.method, "fresh_weights": fresh,
        "train_samples": len(train_rows), "train_pairs": len(train_pairs) if reward.kind == "pairwise" else None,
        "train_label_rate": _mean([float(r["label"]) for r in train_rows]),
        "train_mutant_negatives": {kind: sum(n["kind"] == kind for n in negatives)
                                   for kind in sorted({n["kind"] for n in negatives})},
        "heldout_examples": len(heldout), "heldout_samples": len(heldout_rows),
        "heldout_pairs": len(heldout_pairs) if reward.kind == "pairwise" else None,
        "truncated_texts": sum(len(encode(reward_model.tokenizer, p, c)) > reward.max_length for p, c in texts),
        "steps": state.global_step, "epochs": round(state.epoch or 0.0, 3),
        "resumed_from": resume_from.name if resume_from else None,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss, "eval_loss": final_eval.get("eval_loss"),
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1), "precision": precision,
        "trainable_parameters": trainable,
        **evaluation,
    }
    write_summary(stage_dir, summary)
    shutil.rmtree(checkpoints)  # optimizer states; the final model is what stays
    return summary


def run_reward(reward: RewardModelConfig, model: ModelConfig, layout: RunLayout, seed: int, *, calibrate_split: str,
               mutant_seed: int, resume: bool = False, force: bool = False, callbacks: Sequence[Any] = ()
               ) -> StageResult[dict[str, Any]]:
    """The reward stage (`apirl reward`): trains on the feedback stage's output unless an identical run finished;
    the gold-vs-mutant check reads the data stage's `calibrate_split` with mutants of `mutant_seed`."""
    needed = [layout.feedback_rows]
    if reward.kind == "pairwise":
        needed.append(layout.pairs)
    for path in needed:
        if not path.is_file():
            raise InputError("not found: run `apirl feedback` first", path=path)
    source = base_source(reward, model, layout)
    weights = weight_files(source.location) if source.local else []
    inputs = [*needed, *weights, layout.split(calibrate_split), layout.catalog]
    # The gold-vs-mutant check reads the calibration split and the mutant seed: they decide the summary.
    stage_config = {"reward": reward.model_dump(mode="json"), "base": source.spec,
                    "calibrate_split": calibrate_split, "mutant_seed": mutant_seed}

    def train(directory: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return train_reward(reward, model, layout, seed, directory, calibrate_split=calibrate_split,
                            mutant_seed=mutant_seed, resume=resume, callbacks=callbacks, fingerprint=fingerprint)

    return run_training_stage(layout.stage(STAGE), config=stage_config, seed=seed, inputs=inputs, train=train,
                              force=force)
