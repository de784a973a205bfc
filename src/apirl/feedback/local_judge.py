"""An LLM judge in this process: a causal LM from `apirl.models.load` read at its next token.

No generation: one forward pass over the prompt gives the distribution of the answer's first token, and P(yes)
is the mass of the yes-like first tokens over that of the yes-like and no-like ones together (computed as a
difference of log-sum-exps, so it never underflows to 0/0). That is exact where a sampled or greedy answer is
only its mode, costs one pass per question, and needs no parsing: the answer is never unparseable.

The yes-like ids are the first tokens of "Yes", " Yes", "yes", " yes", "YES", " YES" (and the no-like ones of
the same spellings of "no") whose text is a prefix of the word: with SmolLM2's tokenizer "YES" starts with "Y",
which counts, while a bare space or byte that starts a spelling would not. An id in both sets is dropped.

Batches are left-padded (the tokenizer from `load_tokenizer` pads left) with explicit position ids, so that a
prompt scores the same alone and in a batch. The items are taken a chunk of several batches at a time (sorted by
length within it, to save padding) and each chunk's answers are handed over when it is done: a kill loses at
most one chunk's forward passes, never an answer already handed to the cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from apirl.data.apidb import ApiDatabase
from apirl.feedback.prompts import grounding_for, judge_messages
from apirl.feedback.questions import Question
from apirl.feedback.types import Answer, JudgedAnswer, Sample
from apirl.models.load import SMOLLM2, load_model, load_tokenizer, resolve_model

JUDGE = "local"
_SPELLINGS = ("{w}", " {w}", "{W}", " {W}", "{WW}", " {WW}")
_CHUNK_BATCHES = 4  # batches per chunk (see the module docstring)


def answer_token_ids(tokenizer: Any) -> tuple[frozenset[int], frozenset[int]]:
    """(yes ids, no ids): the first token of each spelling of "yes" and "no" (see the module docstring)."""
    found: dict[str, set[int]] = {}
    for word in ("yes", "no"):
        ids = found.setdefault(word, set())
        for spelling in _SPELLINGS:
            text = spelling.format(w=word, W=word.capitalize(), WW=word.upper())
            tokens = tokenizer.encode(text, add_special_tokens=False)
            if not tokens:
                continue
            piece = tokenizer.decode([tokens[0]]).strip().lower()
            if piece and word.startswith(piece):
                ids.add(tokens[0])
    yes, no = found["yes"] - found["no"], found["no"] - found["yes"]
    if not yes or not no:
        raise ValueError(f"the tokenizer has no first token for {'yes' if not yes else 'no'}")
    return frozenset(yes), frozenset(no)


class LocalJudge:
    """Answers the questions with an in-process causal LM (see the module docstring)."""

    name = JUDGE

    def __init__(self, model_spec: str = SMOLLM2, *, grounding: bool = False, api_db: ApiDatabase | None = None,
                 batch_size: int = 8, device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if grounding and api_db is None:
            raise ValueError("grounding needs the API database (api_db)")
        source = resolve_model(model_spec)
        self.model_spec = model_spec
        self.grounding = grounding
        self.api_db = api_db
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(source)
        self.tokenizer.padding_side = "left"
        self.lm = load_model(source, device=device)
        self.yes_ids, self.no_ids = answer_token_ids(self.tokenizer)
        # Only the last position's logits are needed: a full [batch, length, vocab] tensor is gigabytes.
        self._keep_last = "logits_to_keep" in inspect.signature(self.lm.forward).parameters

    @property
    def _templated(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def cache_model(self) -> str:
        """The model name to key cached answers on: grounded answers are other answers."""
        return f"{self.model_spec}+grounding" if self.grounding else self.model_spec

    def prompt_text(self, sample: Sample, question: Question) -> str:
        """The text the model reads: the judge messages through the chat template (generation prompt added),
        or as plain "System:/User:/Answer:" text for a model without one."""
        grounding = grounding_for(sample.code, self.api_db) if self.grounding else None
        messages = judge_messages(sample, question, grounding)
        if self._templated:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        system, user = messages[0]["content"], messages[1]["content"]
        return f"System: {system}\n\nUser: {user}\n\nAnswer:"

    def answer_many(self, items: Sequence[tuple[Sample, Question]],
                    on_answer: Callable[[int, JudgedAnswer], None] | None = None) -> list[JudgedAnswer]:
        """The answers to these (sample, question) pairs, in their order, each also handed to
        `on_answer(position, answer)` once its chunk is done (see the module docstring). No token counts."""
        out: list[JudgedAnswer] = []
        chunk = self.batch_size * _CHUNK_BATCHES
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            p_yes = self.p_yes_many([self.prompt_text(sample, question) for sample, question in part])
            for (_, question), p in zip(part, p_yes, strict=True):
                judged = JudgedAnswer(Answer(question.key, p >= 0.5, p, JUDGE, f"P(yes)={p:.3f}"))
                if on_answer is not None:
                    on_answer(len(out), judged)
                out.append(judged)
        return out

    def p_yes_many(self, texts: Sequence[str]) -> list[float]:
        """P(yes) after each prompt text, batched by length (less padding) and returned in the texts' order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [0.0] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for index, p in zip(chunk, self._p_yes_batch([texts[i] for i in chunk]), strict=True):
                out[index] = p
        return out

    def _p_yes_batch(self, texts: list[str]) -> list[float]:
        import torch

        # A chat template writes its own special tokens; plain text gets the tokenizer's (a BOS, if any).
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self._templated)
        device = next(self.lm.parameters()).device
        input_ids = encoded["input_ids"].to(device)
        attention = encoded["attention_mask"].to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": 1} if self._keep_last else {}
        with torch.inference_mode():
            logits = self.lm(input_ids=input_ids, attention_mask=attention, position_ids=positions, **extra).logits
        last = logits[:, -1, :].float()
        yes = torch.logsumexp(last[:, sorted(self.yes_ids)], dim=-1)
        no = torch.logsumexp(last[:, sorted(self.no_ids)], dim=-1)
        return torch.sigmoid(yes - no).tolist()  # yes / (yes + no) of the softmax probabilities
