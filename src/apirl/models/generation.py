"""Prompts and batched generation in Gorilla's answer format.

Prompt styles: `plain` is the training format (`###Instruction: ...\\n###Output:`), optionally preceded by solved
examples (few-shot); `chat` puts the request in the tokenizer's chat template after a system message that
describes the tagged answer (zero-shot for an instruct model). Generation is batched with left padding and
the KV cache, greedy or sampled, and stops at EOS or when the model starts another example.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from apirl.data.dataset import PROVENANCE_SYNTH, Example
from apirl.data.prompts import PROMPT_INPUT, PROMPT_INSTRUCTION, PROMPT_OUTPUT
from apirl.errors import InputError
from apirl.models.config import GenerateConfig

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


def generate_batches(model: Any, tokenizer: Any, prompts: Sequence[str], config: GenerateConfig, *,
                     seed: int, add_special_tokens: bool = True,
                     on_batch: Callable[[list[int], list[str], int], None]) -> GenerationStats:
    """Generate a completion for every prompt; `on_batch(indices, texts, new_tokens)` after each batch.

    Prompts are batched longest first so a batch holds similar lengths (less padding); a row leaves its batch
    as soon as it ends (`apirl.models.engine`). Sampling is seeded per batch from `seed` and the batch's
    position, so a rerun with the same prompts and config is identical.
    """
    import time

    import torch

    from apirl.models.engine import decode_pruned, eos_token_ids

    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    eos_ids = eos_token_ids(model, tokenizer)

    def stopped(tokens: list[int]) -> bool:
        tail = tokenizer.decode(tokens[-STOP_TAIL_TOKENS:], skip_special_tokens=True)
        return any(stop in tail for stop in STOP_STRINGS)

    stats = GenerationStats()
    started = time.perf_counter()
    for batch_number, start in enumerate(range(0, len(order), config.batch_size)):
        indices = order[start:start + config.batch_size]
        encoded = tokenizer([prompts[i] for i in indices], return_tensors="pt", padding=True,
                            add_special_tokens=add_special_tokens).to(device)
        generator = torch.Generator(device=device).manual_seed(seed * 100_003 + batch_number)
        new = decode_pruned(model, encoded["input_ids"], encoded["attention_mask"],
                            max_new_tokens=config.max_new_tokens, eos_ids=eos_ids, do_sample=config.do_sample,
                            temperature=config.temperature, top_p=config.top_p, generator=generator, stop=stopped)
        texts = [cut_at_stop(tokenizer.decode(row, skip_special_tokens=True)) for row in new]
        new_tokens = sum(len(row) for row in new)
        stats.prompts += len(indices)
        stats.new_tokens += new_tokens
        stats.seconds = time.perf_counter() - started
        on_batch(indices, texts, new_tokens)
    return stats
