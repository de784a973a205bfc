"""The learning curve that chooses an SFT recipe: every `curve_steps` optimizer steps, the model answers the val
questions (greedy, through the engine, up to the end of its `<<<api_call>>>` line) and the answers are scored
as the evaluation scores them: AST accuracy and hallucination in Gorilla's mode, accuracy in strict mode,
and the share that names the gold domain.

The points go to the Trainer's log (so to TensorBoard, `sft/log.jsonl` and the report's plot, beside the loss)
and to `sft/curve.jsonl` with the answers' scoring time. Decoding stops at `<<<api_provider>>>`: the tagged
format puts the domain and the call first, and the rest (explanation, code) does not change these three
numbers, so a point costs a fifth of a full generation. Choose learning rate, epochs and data by this curve,
on val, never on test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from apirl.data.apidb import ApiDatabase
from apirl.data.dataset import Example
from apirl.data.prompts import parse_completion
from apirl.evaluate.ast_match import AstMatcher
from apirl.models.config import GenerateConfig

CURVE_FILE = "curve.jsonl"
CURVE_STOP = "<<<api_provider>>>"


def score_answers(answers: Sequence[str], examples: Sequence[Example], matcher: AstMatcher) -> dict[str, float]:
    """AST accuracy and hallucination (Gorilla's mode) and strict accuracy of one answer per example, and the
    share whose `<<<domain>>>` is the gold one: what catalog-grounded decoding's AST accuracy comes down to."""
    gorilla = [matcher.judge(a, gold_domain=ex.domain, gold_api_name=ex.api_name).outcome
               for a, ex in zip(answers, examples, strict=True)]
    strict = [matcher.judge(a, gold_domain=ex.domain, gold_api_name=ex.api_name, mode="strict").outcome
              for a, ex in zip(answers, examples, strict=True)]
    n = max(len(answers), 1)
    return {"val_ast_accuracy": gorilla.count("correct") / n,
            "val_hallucination": gorilla.count("hallucination") / n,
            "val_strict_accuracy": strict.count("correct") / n,
            "val_domain_accuracy": sum((parse_completion(a).domain or "").strip() == ex.domain
                                       for a, ex in zip(answers, examples, strict=True)) / n}


class ValCurve(TrainerCallback):
    """Scores the val questions every `every` steps (and before the first step); give it the trainer with
    `attach` so that its points go through `trainer.log`."""

    def __init__(self, examples: Sequence[Example], api_db: ApiDatabase, tokenizer: Any, out: Path, *,
                 every: int, max_new_tokens: int, batch_size: int) -> None:
        self.examples = list(examples)
        self.matcher = AstMatcher(api_db)
        self.tokenizer = tokenizer
        self.out = out
        self.every = every
        self.generate = GenerateConfig(split="val", batch_size=batch_size, max_new_tokens=max_new_tokens)
        self.trainer: Any = None

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # A resumed run restarts at its checkpoint's step: points written after it are dropped, then redone. A
        # run that starts over (`--force`) keeps none, not even an earlier run's step 0.
        kept = [row for row in self.rows() if row["step"] <= state.global_step] if state.global_step else []
        self.out.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
        if state.global_step == 0:
            self._point(kwargs["model"], state)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._point(kwargs["model"], state)

    def rows(self) -> list[dict[str, Any]]:
        if not self.out.is_file():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line.strip()]

    def answers(self, model: Any) -> list[str]:
        from apirl.models.generation import generate_batches

        answers = [""] * len(self.examples)

        def keep(indices: list[int], texts: list[str], _tokens: int) -> None:
            for index, text in zip(indices, texts, strict=True):
                answers[index] = text

        was_training = model.training
        model.eval()
        try:
            generate_batches(model, self.tokenizer, [ex.prompt for ex in self.examples], self.generate, seed=0,
                             extra_stops=(CURVE_STOP,), on_batch=keep)
        finally:
            model.train(was_training)
        return answers

    def _point(self, model: Any, state: Any) -> None:
        started = time.perf_counter()
        scores = score_answers(self.answers(model), self.examples, self.matcher)
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 3), **scores,
               "n": len(self.examples), "seconds": round(time.perf_counter() - started, 1)}
        with self.out.open("a", encoding="utf-8") as sink:
            sink.write(json.dumps(row) + "\n")
        if self.trainer is not None:
            self.trainer.log(scores)
