"""The one decoder: `apirl generate`, the feedback stage's samples and PPO's rollouts all call `decode`.

For a Llama-family model (SmolLM2, the default) it runs continuous batching over the fixed slots of
`apirl.models.llama_slots`: `batch_size` rows decode together, a row leaves at its EOS, a stop string or its
token budget, and its slot takes the next prompt at once, so the batch stays full until the queue is empty.
Every other model decodes in batches with the Hugging Face forward and a `DynamicCache`, a finished row leaving
the batch (`decode_pruned`).

Greedy decoding gives the tokens of `model.generate` (tested in float64; in float32 a different summation order
may flip a near-tie, which `benchmarks/decode_speed.py` counts). Sampling (temperature, then top-p) draws each
row from its own `torch.Generator` seeded by the caller, so a row's answer depends on its seed and prompt only:
not on the batch size, on its neighbours, or on whether the run was resumed (exactly so in float64; in float32
the products' rounding depends on how many rows share a step, which can rarely flip a near-tied token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# A row also stops when this says its text so far is complete (the stop strings of the tagged format).
StopCheck = Callable[[list[int]], bool]
# Called with (prompt index, new tokens) as soon as a row is done, so callers can write it at once.
RowDone = Callable[[int, list[int]], None]


class Constraint(Protocol):
    """Which tokens a row may take next (ids, a list or a 1-D tensor; None: any), given its prompt index and its
    new tokens so far; e.g. `apirl.models.grounding.CatalogGrounding`. The engine masks the rest before it picks."""

    def allowed(self, row: int, tokens: Sequence[int]) -> Any: ...


@dataclass(frozen=True)
class Sampling:
    """Greedy (`do_sample` false) or a draw from softmax(logits / temperature) after top-p filtering."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


GREEDY = Sampling()


def filter_top_p(probs: Any, top_p: float) -> Any:
    """Nucleus filtering: keep the smallest set of most probable tokens whose mass reaches top_p (at least one),
    renormalised. top_p = 1 returns `probs` unchanged."""
    import torch

    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True, dim=-1)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the tokens ranked above
    sorted_probs = torch.where(before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    filtered = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def next_tokens(logits: Any, sampling: Sampling, generators: Sequence[Any]) -> list[int]:
    """One token per row of `logits`: the argmax, or a draw with row i's own generator."""
    import torch

    if not sampling.do_sample:
        return logits.argmax(dim=-1).tolist()
    probs = filter_top_p(torch.softmax(logits.float() / sampling.temperature, dim=-1), sampling.top_p)
    return [int(torch.multinomial(row, 1, generator=generator)) for row, generator in
            zip(probs, generators, strict=True)]


def row_generators(seeds: Sequence[int] | None, count: int, device: Any) -> list[Any]:
    """A generator per row from its seed (none are needed for greedy decoding)."""
    import torch

    if seeds is None:
        return [None] * count
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a row: the model's generation config's (what `model.generate` stops at), else the
    tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    eos = eos if eos is not None else tokenizer.eos_token_id
    return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


def position_ids(mask: Any) -> Any:
    """Positions that skip left padding (what `generate` uses), so a padded row sees the positions it has alone."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def decode(model: Any, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: Sequence[int],
           batch_size: int, sampling: Sampling = GREEDY, seeds: Sequence[int] | None = None,
           stop: StopCheck | None = None, pad_id: int = 0, on_row: RowDone | None = None,
           constraint: Constraint | None = None) -> list[list[int]]:
    """The new tokens of each prompt (token ids, no special tokens added here), up to and including its EOS or
    the token that completed a stop string, at most `max_new_tokens`. `seeds` (one per prompt) are required
    when sampling. Rows are taken in the given order: sort them longest first for less padding. A
    `constraint` masks each row's logits before its token is picked (greedy or sampled)."""
    from apirl.models import llama_slots

    if sampling.do_sample and (seeds is None or len(seeds) != len(prompts)):
        raise ValueError("sampling needs one seed per prompt")
    if not prompts:
        return []
    if llama_slots.supports(model):
        return decode_slots(model, prompts, max_new_tokens=max_new_tokens, eos_ids=eos_ids, batch_size=batch_size,
                            sampling=sampling, seeds=seeds, stop=stop, on_row=on_row, constraint=constraint)
    return decode_batches(model, prompts, max_new_tokens=max_new_tokens, eos_ids=eos_ids, batch_size=batch_size,
                          sampling=sampling, seeds=seeds, stop=stop, pad_id=pad_id, on_row=on_row,
                          constraint=constraint)


def decode_slots(model: Any, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: Sequence[int],
                 batch_size: int, sampling: Sampling, seeds: Sequence[int] | None, stop: StopCheck | None,
                 on_row: RowDone | None, constraint: Constraint | None = None) -> list[list[int]]:
    """Continuous batching: `batch_size` slots, each refilled with the next prompt when its row ends; once the
    queue is empty the live rows are compacted into the first slots, so a step never computes a dead row."""
    import torch

    from apirl.models.grounding import mask_logits
    from apirl.models.llama_slots import SlotDecoder

    slots = min(batch_size, len(prompts))
    decoder = SlotDecoder(model, slots, max(len(prompt) for prompt in prompts) + max_new_tokens)
    generators = row_generators(seeds, len(prompts), decoder.device)
    eos = set(eos_ids)
    results: list[list[int]] = [[] for _ in prompts]
    slot_row: list[int | None] = [None] * slots  # the prompt each slot decodes
    queue = iter(range(len(prompts)))
    remaining = len(prompts)

    def take(rows: list[int], tokens: list[int]) -> list[bool]:
        """Append each row's new token; True where the row goes on."""
        going = []
        for row, token in zip(rows, tokens, strict=True):
            results[row].append(token)
            done = (token in eos or len(results[row]) >= max_new_tokens
                    or (stop is not None and stop(results[row])))
            if done and on_row is not None:
                on_row(row, results[row])
            going.append(not done)
        return going

    while True:
        free = [slot for slot in range(slots) if slot_row[slot] is None]
        while free and remaining:
            rows = [next(queue) for _ in range(min(len(free), remaining))]
            remaining -= len(rows)
            used, free = free[:len(rows)], free[len(rows):]
            logits = decoder.prefill(used, [list(prompts[row]) for row in rows])
            logits = mask_logits(logits, rows, [results[row] for row in rows], constraint)
            going = take(rows, next_tokens(logits, sampling, [generators[row] for row in rows]))
            for slot, row, keep in zip(used, rows, going, strict=True):
                if keep:
                    slot_row[slot] = row
                else:
                    free.append(slot)
        # Compact: the live rows into slots 0 .. live - 1 (only ever moves rows once the queue is empty).
        live = sum(row is not None for row in slot_row)
        holes = [slot for slot in range(live) if slot_row[slot] is None]
        movers = [slot for slot in range(live, slots) if slot_row[slot] is not None]
        for hole, mover in zip(holes, movers, strict=True):
            decoder.move(mover, hole)
            slot_row[hole], slot_row[mover] = slot_row[mover], None
        if live == 0:
            return results
        rows = [row for row in slot_row[:live] if row is not None]
        logits = decoder.step(torch.tensor([results[row][-1] for row in rows], device=decoder.device))
        logits = mask_logits(logits, rows, [results[row] for row in rows], constraint)
        going = take(rows, next_tokens(logits, sampling, [generators[row] for row in rows]))
        for slot, keep in enumerate(going):
            if not keep:
                slot_row[slot] = None


def decode_batches(model: Any, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: Sequence[int],
                   batch_size: int, sampling: Sampling, seeds: Sequence[int] | None, stop: StopCheck | None,
                   pad_id: int, on_row: RowDone | None, constraint: Constraint | None = None) -> list[list[int]]:
    """Batches of `batch_size` left-padded prompts through `decode_pruned` (any Hugging Face causal LM)."""
    import torch

    device = next(model.parameters()).device
    generators = row_generators(seeds, len(prompts), device)
    results: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        batch = [list(prompt) for prompt in prompts[start:start + batch_size]]
        width = max(len(prompt) for prompt in batch)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        rows = decode_pruned(model, ids, mask, max_new_tokens=max_new_tokens, eos_ids=eos_ids, sampling=sampling,
                             generators=generators[start:start + batch_size], stop=stop, constraint=constraint,
                             row_offset=start)
        for offset, row in enumerate(rows):
            if on_row is not None:
                on_row(start + offset, row)
        results += rows
    return results


def decode_pruned(model: Any, input_ids: Any, attention_mask: Any, *, max_new_tokens: int, eos_ids: Sequence[int],
                  sampling: Sampling = GREEDY, generators: Sequence[Any] | None = None,
                  stop: StopCheck | None = None, constraint: Constraint | None = None,
                  row_offset: int = 0) -> list[list[int]]:
    """The new tokens of each row of a left-padded batch, up to and including its EOS (or the token that
    completed a stop string), at most `max_new_tokens`. A row leaves the batch (and the cache,
    `DynamicCache.batch_select_indices`) as soon as it ends, so the cost follows the sum of the rows' lengths.
    The constraint sees row i of the batch as row `row_offset + i`."""
    import torch

    from apirl.models.grounding import mask_logits

    device = input_ids.device
    eos = torch.tensor(list(eos_ids), device=device)
    positions = position_ids(attention_mask)
    generators = list(generators) if generators is not None else [None] * input_ids.shape[0]
    results: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    rows = list(range(input_ids.shape[0]))  # the original index of each row still in the batch
    mask = attention_mask
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        cache = out.past_key_values
        next_position = positions[:, -1:] + 1
        for step in range(max_new_tokens):
            logits = mask_logits(out.logits[:, -1], [row_offset + row for row in rows],
                                 [results[row] for row in rows], constraint)
            values = next_tokens(logits, sampling, [generators[row] for row in rows])
            tokens = torch.tensor(values, device=device)
            ended = torch.isin(tokens, eos).tolist()
            keep = []
            for position, row in enumerate(rows):
                results[row].append(values[position])
                if not (ended[position] or (stop is not None and stop(results[row]))):
                    keep.append(position)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                tokens, mask, next_position = tokens[index], mask[index], next_position[index]
                rows = [rows[position] for position in keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position,
                        past_key_values=cache, use_cache=True)
            next_position = next_position + 1
    return results
