"""The decoding engine: greedy decoding equals `model.generate` on both paths (the Llama slots and the generic
Hugging Face loop); continuous batching gives every row the tokens it gets alone; a row's sample depends on its
seed only; a LoRA adapter is decoded as the PEFT model computes it; top-p."""

from __future__ import annotations

import pytest

from apirl.models.engine import GREEDY, Sampling, decode, decode_batches, filter_top_p
from apirl.models.llama_slots import supports

PROMPTS = ["###Instruction: a much longer prompt than the others, to pad the rest\n###Output:",
           "###Instruction: short\n###Output:", "###Instruction: middle length here\n###Output:",
           "###Instruction: x\n###Output:", "###Instruction: two words\n###Output:"]


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
    # float64: the paths sum in different orders, and must still pick the same argmax where random logits
    # nearly tie.
    model = load_model(source).to(torch.float64)
    # The random init's logits are nearly flat (every row repeats one token); sharper weights make rows differ.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.2)
    return model, load_tokenizer(source)


def ids(tokenizer, prompts: list[str] = PROMPTS) -> list[list[int]]:
    return [tokenizer(prompt)["input_ids"] for prompt in prompts]


def reference(model, tokenizer, prompts: list[str], max_new_tokens: int, eos: list[int]) -> list[list[int]]:
    """`model.generate` greedy, cut after each row's first EOS."""
    import torch

    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id)[:, encoded["input_ids"].shape[1]:]
    rows = []
    for row in out.tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        rows.append(row[:end])
    return rows


def test_the_tiny_model_takes_the_slots_path(tiny: tuple) -> None:
    assert supports(tiny[0])


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_greedy_equals_generate_whatever_the_batch(tiny: tuple, batch_size: int) -> None:
    """Two slots for five prompts: rows end at different steps, slots are refilled and then compacted, and every
    row still gets exactly the tokens `model.generate` gives it."""
    model, tokenizer = tiny
    expected = reference(model, tokenizer, PROMPTS, 12, [tokenizer.eos_token_id])
    assert len({token for row in expected for token in row}) > 3  # not one repeated token
    got = decode(model, ids(tokenizer), max_new_tokens=12, eos_ids=[tokenizer.eos_token_id], batch_size=batch_size)
    assert got == expected


def test_the_generic_loop_equals_generate_too(tiny: tuple) -> None:
    model, tokenizer = tiny
    expected = reference(model, tokenizer, PROMPTS, 12, [tokenizer.eos_token_id])
    got = decode_batches(model, ids(tokenizer), max_new_tokens=12, eos_ids=[tokenizer.eos_token_id], batch_size=2,
                         sampling=GREEDY, seeds=None, stop=None, pad_id=tokenizer.pad_token_id, on_row=None)
    assert got == expected


def test_a_row_that_ends_early_frees_its_slot_and_changes_no_other_row(tiny: tuple) -> None:
    model, tokenizer = tiny
    full = decode(model, ids(tokenizer), max_new_tokens=10, eos_ids=[-1], batch_size=2)
    assert all(len(row) == 10 for row in full)
    early = full[1][:3]
    finished: dict[int, list[int]] = {}

    def stop(tokens: list[int]) -> bool:
        return tokens == early

    got = decode(model, ids(tokenizer), max_new_tokens=10, eos_ids=[-1], batch_size=2, stop=stop,
                 on_row=lambda row, tokens: finished.__setitem__(row, list(tokens)))
    assert got[1] == early
    assert all(got[i] == full[i] for i in range(len(full)) if full[i][:3] != early)
    assert finished == dict(enumerate(got))  # each row reported once, when done, with its final tokens


def test_a_row_samples_by_its_own_seed_only(tiny: tuple) -> None:
    """The same seed draws the same answer alone, in any batch, on either path; another seed draws another."""
    model, tokenizer = tiny
    prompts = ids(tokenizer)
    sampling = Sampling(do_sample=True, temperature=1.0, top_p=0.9)
    seeds = [11, 12, 13, 14, 15]
    together = decode(model, prompts, max_new_tokens=8, eos_ids=[-1], batch_size=5, sampling=sampling, seeds=seeds)
    assert together == decode(model, prompts, max_new_tokens=8, eos_ids=[-1], batch_size=2, sampling=sampling,
                              seeds=seeds)
    alone = decode(model, prompts[2:3], max_new_tokens=8, eos_ids=[-1], batch_size=1, sampling=sampling,
                   seeds=seeds[2:3])
    assert alone == together[2:3]
    generic = decode_batches(model, prompts, max_new_tokens=8, eos_ids=[-1], batch_size=3, sampling=sampling,
                             seeds=seeds, stop=None, pad_id=tokenizer.pad_token_id, on_row=None)
    assert generic == together
    other = decode(model, prompts, max_new_tokens=8, eos_ids=[-1], batch_size=5, sampling=sampling,
                   seeds=[21, 22, 23, 24, 25])
    assert other != together
    with pytest.raises(ValueError, match="one seed per prompt"):
        decode(model, prompts, max_new_tokens=8, eos_ids=[-1], batch_size=5, sampling=sampling)


def test_a_lora_adapter_is_decoded_as_the_peft_model_computes_it(tiny: tuple) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    import copy

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"], task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # zero at init: make the adapter change the answers
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.5)
    assert supports(peft_model)
    eos = [tokenizer.eos_token_id]
    slots = decode(peft_model, ids(tokenizer), max_new_tokens=10, eos_ids=eos, batch_size=2)
    generic = decode_batches(peft_model, ids(tokenizer), max_new_tokens=10, eos_ids=eos, batch_size=5,
                             sampling=GREEDY, seeds=None, stop=None, pad_id=tokenizer.pad_token_id, on_row=None)
    assert slots == generic
    assert slots != decode(model, ids(tokenizer), max_new_tokens=10, eos_ids=eos, batch_size=2)


@pytest.mark.parametrize(("dtype", "atol"), [("float32", 1e-4), ("bfloat16", 0.1)])
def test_slot_logits_match_the_model_forward(dtype: str, atol: float) -> None:
    """In float32 the products run on oneDNN's packed kernels (bf16 too where the CPU has oneDNN's bf16 kernels,
    else plain products): the prefill's and a step's logits agree with the Hugging Face forward of the same
    tokens to the dtype's rounding."""
    import torch

    from apirl.models.llama_slots import SlotDecoder
    from apirl.models.load import load_model, load_tokenizer, resolve_model

    source = resolve_model("tiny-random")
    model, tokenizer = load_model(source).to(getattr(torch, dtype)), load_tokenizer(source)
    prompts = ids(tokenizer)[:3]
    decoder = SlotDecoder(model, slots=3, capacity=64)
    if dtype == "float32":
        assert decoder.layers[0].qkv.packed is not None or not torch.backends.mkldnn.is_available()
    first = decoder.prefill([2, 0, 1], prompts)
    following = decoder.step(torch.tensor([7, 8, 9]))  # slot i takes token 7 + i
    with torch.no_grad():
        for row, (slot, prompt) in enumerate(zip([2, 0, 1], prompts, strict=True)):
            logits = model(input_ids=torch.tensor([[*prompt, 7 + slot]])).logits[0]
            assert torch.allclose(first[row].float(), logits[-2].float(), atol=atol)
            assert torch.allclose(following[slot].float(), logits[-1].float(), atol=atol)
