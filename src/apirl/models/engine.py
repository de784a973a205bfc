"""Batched decoding with a KV cache that drops every row as soon as it is finished.

`model.generate` keeps a batch at full size until its longest row ends: on a CPU, with answers of 100 to 512
tokens, most of a batch's compute goes to rows that are already done. Here a row leaves the batch (and the
cache, `DynamicCache.batch_select_indices`) at its EOS or stop string, so the cost follows the sum of the rows'
lengths, not the batch size times the longest.

Greedy decoding gives the tokens `model.generate` gives (tested); sampling (temperature, then top-p) draws from a
`torch.Generator`, so a seed fixes the result. Generation, feedback sampling and PPO's rollouts all decode here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# A row also stops when this says its text so far is complete (the stop strings of the tagged format).
StopCheck = Callable[[list[int]], bool]


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


def next_tokens(logits: Any, *, do_sample: bool, temperature: float, top_p: float, generator: Any) -> Any:
    """One token per row: argmax, or a draw from softmax(logits / temperature) after top-p filtering."""
    import torch

    if not do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(filter_top_p(probs, top_p), 1, generator=generator).squeeze(1)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a row: the model's generation config's (what `model.generate` stops at), else the
    tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    eos = eos if eos is not None else tokenizer.eos_token_id
    return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


def position_ids(mask: Any) -> Any:
    """Positions that skip left padding (what `generate` uses), so a padded row sees the positions it has alone."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def decode_pruned(model: Any, input_ids: Any, attention_mask: Any, *, max_new_tokens: int, eos_ids: Sequence[int],
                  do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, generator: Any = None,
                  stop: StopCheck | None = None, keep_finished: bool = False) -> list[list[int]]:
    """The new tokens of each row of a left-padded batch, up to and including its EOS (or the token that
    completed a stop string), at most `max_new_tokens`.

    `keep_finished` keeps finished rows in the batch (their draws are discarded) instead of dropping them: every
    step then draws for the whole batch, so a row's sample depends on its seed and place in the batch only, not
    on when the other rows finished. PPO's rollouts use it, which keeps their results those of a fixed batch."""
    import torch

    device = input_ids.device
    eos = torch.tensor(list(eos_ids), device=device)
    positions = position_ids(attention_mask)
    results: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    rows = list(range(input_ids.shape[0]))  # the original index of each row in the batch
    live = list(range(input_ids.shape[0]))  # the batch positions of the rows still decoding
    mask = attention_mask
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        cache = out.past_key_values
        next_position = positions[:, -1:] + 1
        for step in range(max_new_tokens):
            tokens = next_tokens(out.logits[:, -1], do_sample=do_sample, temperature=temperature, top_p=top_p,
                                 generator=generator)
            ended = torch.isin(tokens, eos).tolist()
            values = tokens.tolist()
            keep = []
            for position in live:
                row = rows[position]
                results[row].append(values[position])
                if not (ended[position] or (stop is not None and stop(results[row]))):
                    keep.append(position)
            if not keep or step == max_new_tokens - 1:
                break
            if not keep_finished and len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                tokens, mask, next_position = tokens[index], mask[index], next_position[index]
                rows = [rows[position] for position in keep]
                keep = list(range(len(keep)))
            live = keep
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position,
                        past_key_values=cache, use_cache=True)
            next_position = next_position + 1
    return results
