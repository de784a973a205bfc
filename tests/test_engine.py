"""The decoding engine: greedy decoding equals `model.generate`; finished rows leave the batch; top-p."""

from __future__ import annotations

import pytest

from apirl.models.engine import decode_pruned, filter_top_p


def test_top_p_keeps_the_smallest_head_reaching_the_mass() -> None:
    import torch

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.allclose(filter_top_p(probs, 0.7), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert torch.allclose(filter_top_p(probs, 0.4), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # always one token
    assert filter_top_p(probs, 1.0) is probs


@pytest.fixture(scope="module")
def tiny() -> tuple:
    import torch

    from apirl.models.load import load_model, load_tokenizer, resolve_model

    source = resolve_model("tiny-random")
    # float64: the padded and the pruned batch must pick the same argmax even where random logits nearly tie.
    model = load_model(source).to(torch.float64)
    # The random init's logits are nearly flat (every row repeats one token); sharper weights make rows differ.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.2)
    return model, load_tokenizer(source)


def test_greedy_equals_generate_and_a_stopped_row_leaves_the_batch(tiny: tuple) -> None:
    import torch

    model, tokenizer = tiny
    prompts = ["###Instruction: a much longer prompt than the others, to pad the rest\n###Output:",
               "###Instruction: short\n###Output:", "###Instruction: middle length here\n###Output:"]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    eos = [tokenizer.eos_token_id]
    with torch.no_grad():
        reference = model.generate(**encoded, max_new_tokens=12, do_sample=False, eos_token_id=eos,
                                   pad_token_id=tokenizer.pad_token_id)[:, encoded["input_ids"].shape[1]:]
    full = decode_pruned(model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens=12, eos_ids=eos)
    assert full == [row[:len(full[i])].tolist() for i, row in enumerate(reference)]
    assert all(len(row) == 12 or row[-1] in eos for row in full)
    assert len({token for row in full for token in row}) > 3  # not one repeated token

    # Row 1 stops after 3 tokens: it leaves the cache, and the other rows go on exactly as before. (A random
    # model may give every row the same tokens, so the check picks the row by call order: rows are asked in
    # batch order at each step.)
    calls_at_3 = []

    def row_1_at_3(tokens: list[int]) -> bool:
        if len(tokens) == 3:
            calls_at_3.append(tokens)
            return len(calls_at_3) == 2
        return False

    pruned = decode_pruned(model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens=12,
                           eos_ids=eos, stop=row_1_at_3)
    assert pruned[1] == full[1][:3]
    assert pruned[0] == full[0] and pruned[2] == full[2]


def test_sampling_is_fixed_by_the_generator(tiny: tuple) -> None:
    import torch

    model, tokenizer = tiny
    encoded = tokenizer(["###Instruction: x\n###Output:", "###Instruction: yy\n###Output:"], return_tensors="pt",
                        padding=True)

    def draw(seed: int) -> list[list[int]]:
        return decode_pruned(model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens=8,
                             eos_ids=[tokenizer.eos_token_id], do_sample=True, temperature=1.0, top_p=0.9,
                             generator=torch.Generator().manual_seed(seed))

    assert draw(1) == draw(1) and draw(1) != draw(2)


def test_kept_finished_rows_leave_the_other_rows_draws_unchanged(tiny: tuple) -> None:
    """With `keep_finished` every step draws for the whole batch, so a row samples the same tokens whether or not
    the other rows have finished (PPO's rollouts rely on it); each row still ends at its own EOS."""
    import torch

    model, tokenizer = tiny
    encoded = tokenizer(["###Instruction: x\n###Output:", "###Instruction: yy\n###Output:",
                         "###Instruction: a longer one\n###Output:"], return_tensors="pt", padding=True)

    def draw(eos: list[int]) -> list[list[int]]:
        return decode_pruned(model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens=8, eos_ids=eos,
                             do_sample=True, temperature=1.0, generator=torch.Generator().manual_seed(3),
                             keep_finished=True)

    free = draw([-1])  # no row ever ends
    assert all(len(row) == 8 for row in free)
    eos = [free[1][2]]  # row 1 ends by its third token
    stopped = draw(eos)
    for row, tokens in zip(free, stopped, strict=True):
        end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        assert tokens == row[:end]
    assert len(stopped[1]) <= 3
