"""Prompts and batched generation in Gorilla's answer format.

Prompt styles: `plain` is the training format (`###Instruction: ...\\n###Output:`), optionally preceded by solved
examples (few-shot); `chat` puts the request in the tokenizer's chat template after a system message that
describes the tagged answer (zero-shot for an instruct model). Generation runs through the engine
(`apirl.models.engine.decode`), greedy or sampled with a seed per row, and stops at EOS or when the model starts
another example.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from apirl.data.apidb import ApiDatabase
from apirl.data.dataset import PROVENANCE_SYNTH, Example
from apirl.data.prompts import PROMPT_INPUT, PROMPT_INSTRUCTION, PROMPT_OUTPUT
from apirl.errors import InputError
from apirl.models.config import GenerateConfig
from apirl.models.grounding import CatalogGrammar

# A completion ends where the model begins a new example: these never occur inside an answer.
STOP_STRINGS = (PROMPT_INSTRUCTION, PROMPT_INPUT, PROMPT_OUTPUT)
# A stop string is looked for in the text of a row's last tokens: longer than any stop string's tokens.
STOP_TAIL_TOKENS = 16

CHAT_SYSTEM_PROMPT = """\
You write Python code that uses a Hugging Face model to do what the user asks. Answer in exactly this format, \
one tag per section:
<<<domain>>>: the task's domain, e.g. Natural Language Processing Text Classification
<<<api_call>>>: the call that loads the model, e.g. pipeline('sentiment-analysis', model='org/model-name')
<<<api_provider>>>: the library, e.g. Hugging Face Transformers
<<<explanation>>>: the steps, in a few sentences
<<<code>>>: the complete Python code"""


def request_of(prompt: str) -> str:
    """The user's request inside a plain prompt: the instruction and input lines without the `###` cues."""
    text = prompt.strip()
    if text.endswith(PROMPT_OUTPUT):
        text = text[: -len(PROMPT_OUTPUT)].rstrip()
    return text.replace(PROMPT_INSTRUCTION, "").replace(PROMPT_INPUT, "Input:").strip()


def pick_shots(train: Sequence[Example], count: int, seed: int) -> list[Example]:
    """`count` solved examples for few-shot prompts, drawn from the train split only (never from the
    evaluated split), preferring complete APIBench examples over synthesized ones."""
    if count == 0:
        return []
    pool = [ex for ex in train if ex.complete and ex.provenance != PROVENANCE_SYNTH] or list(train)
    if len(pool) < count:
        raise InputError(f"{count} shots asked, the train split has {len(pool)} usable examples",
                         field="generate.shots")
    return random.Random(f"apirl-shots:{seed}").sample(pool, count)


def build_prompt(example: Example, style: str, shots: Sequence[Example], tokenizer: Any) -> str:
    """The text the model continues for `example`."""
    if style == "plain":
        return "".join(f"{shot.prompt}{shot.target}\n\n" for shot in shots) + example.prompt
    if style == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise InputError("prompt_style = 'chat' needs a tokenizer with a chat template; this model has none",
                             field="generate.prompt_style")
        messages = [{"role": "system", "content": CHAT_SYSTEM_PROMPT}]
        for shot in shots:
            messages += [{"role": "user", "content": request_of(shot.prompt)},
                         {"role": "assistant", "content": shot.target.strip()}]
        messages.append({"role": "user", "content": request_of(example.prompt)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    raise ValueError(f"unknown prompt style {style!r}")


def cut_at_stop(text: str) -> str:
    """The completion up to the first stop string (HF's stop criterion keeps the stop text itself)."""
    cut = min((i for s in STOP_STRINGS if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut].rstrip()


@dataclass
class GenerationStats:
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def row_seed(seed: int, key: str) -> int:
    """A row's sampling seed from the run's seed and the row's own key (its example or sample id), so a row
    draws the same answer whatever else is generated with it, and a resumed run draws what the first would have."""
    digest = hashlib.sha256(f"apirl-sample:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generate_batches(model: Any, tokenizer: Any, prompts: Sequence[str], config: GenerateConfig, *,
                     seed: int, keys: Sequence[str] | None = None, add_special_tokens: bool = True,
                     extra_stops: Sequence[str] = (), catalog: ApiDatabase | None = None,
                     on_batch: Callable[[list[int], list[str], int], None]) -> GenerationStats:
    """Generate a completion for every prompt; `on_batch(indices, texts, new_tokens)` as rows finish.

    Prompts are decoded longest first by `apirl.models.engine` (`config.batch_size` rows at a time, each
    finished row's place taken by the next prompt). When sampling, row i draws from its own generator seeded by
    `seed` and `keys[i]` (default: its index), so a rerun with the same prompts and config is identical.
    `extra_stops` end a row too (its text keeps them), e.g. the learning curve's stop after the call.
    With `config.grounding = "catalog"` the rows decode against `catalog` (`apirl.models.grounding`).
    """
    import time

    from apirl.models.engine import Sampling, decode, eos_token_ids

    if keys is not None and len(keys) != len(prompts):
        raise ValueError("one key per prompt")
    if config.grounding == "catalog" and catalog is None:
        raise InputError("generate.grounding = 'catalog' needs the API database (the data stage's catalog)",
                         field="generate.grounding")
    constraint = (CatalogGrammar(catalog, tokenizer).grounding()
                  if catalog is not None and config.grounding == "catalog" else None)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    encoded = [tokenizer(prompts[i], add_special_tokens=add_special_tokens)["input_ids"] for i in order]
    seeds = [row_seed(seed, keys[i] if keys is not None else str(i)) for i in order]

    stops = (*STOP_STRINGS, *extra_stops)

    def stopped(tokens: list[int]) -> bool:
        tail = tokenizer.decode(tokens[-STOP_TAIL_TOKENS:], skip_special_tokens=True)
        return any(stop in tail for stop in stops)

    stats = GenerationStats()
    started = time.perf_counter()

    def on_row(position: int, tokens: list[int]) -> None:
        stats.prompts += 1
        stats.new_tokens += len(tokens)
        stats.seconds = time.perf_counter() - started
        on_batch([order[position]], [cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True))], len(tokens))

    sampling = Sampling(config.do_sample, config.temperature, config.top_p)
    decode(model, encoded, max_new_tokens=config.max_new_tokens, eos_ids=eos_token_ids(model, tokenizer),
           batch_size=config.batch_size, sampling=sampling, seeds=seeds if config.do_sample else None, stop=stopped,
           pad_id=tokenizer.pad_token_id or 0, on_row=on_row, constraint=constraint)
    stats.seconds = time.perf_counter() - started
    return stats
