"""Decoding speed against the machine's limit and the engines a user would otherwise pick, in one run.

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/decode_speed.py \\
        [--model smollm2-135m] [--n 64] [--batch-size 64] [--max-new-tokens 256] [--out results/bench/decode.json]

The same `--n` test prompts (training format, longest first), greedy, stop at EOS only, `--batch-size` rows at a
time, through:

- `model.generate`: transformers, batches of `--batch-size` left-padded prompts;
- `apirl before`: the generic loop (`engine.decode_batches`: the HF forward, a `DynamicCache`, finished rows
  pruned), which was the only engine up to commit 2d08338;
- `apirl engine`: `engine.decode` (for a Llama: fixed KV slots, continuous batching);
- `llama.cpp`: the shipped Q4_1 GGUF through llama-cpp-python, `--batch-size` parallel sequences refilled from
  the queue as they end (its own continuous batching), only for `--model smollm2-135m` (the same weights).

The limit, measured in this run: a float32 matmul's throughput (2048 x 2048) over the model's FLOPs per new
token (2 x its matrix parameters), and the memory bandwidth (a 1 GiB read) over the weight bytes read per
decode step of `--batch-size` rows; the smaller of the two. Reported per decoder: new tokens (to EOS), seconds,
tokens/s, the ratio to each other decoder, the fraction of the limit, and how many rows equal `model.generate`'s
tokens (all of them, and their first 32).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from tables import emit

from apirl.config import load_config
from apirl.data.dataset import build_examples, load_gorilla
from apirl.hardware import describe
from apirl.models.engine import GREEDY, decode, decode_batches, eos_token_ids
from apirl.models.load import SMOLLM2, load_model, load_tokenizer, resolve_model, smollm2_gguf_path
from apirl.rundir import git_commit

_QUIET_LOG = None


def cut(row: list[int], eos: set[int]) -> list[int]:
    end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
    return row[:end]


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The best of `repeats` fp32 products of two size x size matrices, in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def read_gb_per_s(gib: float = 1.0, repeats: int = 5) -> float:
    """The best of `repeats` full reads (a sum) of a buffer far larger than the caches, in GB/s."""
    buffer = torch.ones(int(gib * 2**30) // 4)
    buffer.sum()
    best = min(_timed(buffer.sum) for _ in range(repeats))
    return buffer.numel() * 4 / best / 1e9


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def matrix_parameters(model: Any) -> int:
    """Parameters multiplied per token: every weight but the input embedding (a lookup), the output head counted
    once even when it shares the embedding's matrix."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    return total - embedding.numel() + (head.numel() if head.data_ptr() == embedding.data_ptr() else 0)


def llama_cpp_parallel(gguf: Path, prompts: list[list[int]], max_new_tokens: int, eos: set[int], parallel: int,
                       threads: int) -> list[list[int]]:
    """Greedy decoding with llama.cpp's batched API: `parallel` sequences in one `llama_decode` per step, a
    finished sequence's slot refilled with the next prompt (its prompt tokens join that step's batch)."""
    import llama_cpp as lib
    import numpy as np

    global _QUIET_LOG  # kept alive: llama.cpp calls it after this function returns
    _QUIET_LOG = lib.llama_log_callback(lambda _level, _text, _data: None)
    lib.llama_log_set(_QUIET_LOG, None)  # the loader prints thousands of lines otherwise
    lib.llama_backend_init()
    model = lib.llama_model_load_from_file(str(gguf).encode(), lib.llama_model_default_params())
    vocab_size = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    params = lib.llama_context_default_params()
    longest = max(len(prompt) for prompt in prompts) + max_new_tokens
    params.n_ctx = longest * parallel
    # The first step holds every slot's whole prompt (prompts come longest first): the most one batch holds.
    params.n_batch = params.n_ubatch = max(2048, sum(len(prompt) for prompt in prompts[:parallel]) + parallel)
    params.n_seq_max = parallel
    params.n_threads = params.n_threads_batch = threads
    context = lib.llama_init_from_model(model, params)
    memory = lib.llama_get_memory(context)
    batch = lib.llama_batch_init(params.n_batch, 0, 1)
    results: list[list[int]] = [[] for _ in prompts]
    queue = list(range(len(prompts)))[::-1]
    slot_row: list[int | None] = [None] * parallel
    slot_position = [0] * parallel

    def add(token: int, position: int, sequence: int, logits: bool) -> int:
        i = batch.n_tokens
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
        batch.seq_id[i][0], batch.logits[i] = sequence, logits
        batch.n_tokens += 1
        return i

    while True:
        batch.n_tokens = 0
        wanted = []
        for slot in range(parallel):
            row = slot_row[slot]
            if row is None and queue:
                row = slot_row[slot] = queue.pop()
                lib.llama_memory_seq_rm(memory, slot, -1, -1)
                prompt = prompts[row]
                for position, token in enumerate(prompt):
                    index = add(token, position, slot, position == len(prompt) - 1)
                slot_position[slot] = len(prompt)
                wanted.append((slot, index))
            elif row is not None:
                wanted.append((slot, add(results[row][-1], slot_position[slot], slot, True)))
                slot_position[slot] += 1
        if not wanted:
            break
        if lib.llama_decode(context, batch) != 0:
            raise RuntimeError("llama_decode failed")
        for slot, index in wanted:
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(context, index), shape=(vocab_size,))
            row = slot_row[slot]
            token = int(logits.argmax())
            results[row].append(token)
            if token in eos or len(results[row]) >= max_new_tokens:
                slot_row[slot] = None
    lib.llama_batch_free(batch)
    lib.llama_free(context)
    lib.llama_model_free(model)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--skip", action="append", default=[], help="a decoder to leave out (repeatable)")
    parser.add_argument("--out", default="", help="also write the table here (JSON)")
    args = parser.parse_args()

    config = load_config(None, [])
    examples = build_examples(load_gorilla(config.data), config.data)["test"][: args.n]
    source = resolve_model(args.model)
    model, tokenizer = load_model(source), load_tokenizer(source)
    eos = eos_token_ids(model, tokenizer)
    prompts = sorted((tokenizer(ex.prompt)["input_ids"] for ex in examples), key=len, reverse=True)
    size = args.batch_size

    def hf_generate() -> list[list[int]]:
        rows = []
        for start in range(0, len(prompts), size):
            batch = prompts[start:start + size]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in batch])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                                     do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
            rows += [cut(row, set(eos)) for row in out[:, width:].tolist()]
        return rows

    decoders = {
        "model.generate": hf_generate,
        "apirl before": lambda: decode_batches(model, prompts, max_new_tokens=args.max_new_tokens, eos_ids=eos,
                                               batch_size=size, sampling=GREEDY, seeds=None, stop=None,
                                               pad_id=tokenizer.pad_token_id, on_row=None),
        "apirl engine": lambda: decode(model, prompts, max_new_tokens=args.max_new_tokens, eos_ids=eos,
                                       batch_size=size),
    }
    if args.model == SMOLLM2:
        decoders["llama.cpp"] = lambda: llama_cpp_parallel(smollm2_gguf_path(), prompts, args.max_new_tokens,
                                                           set(eos), size, torch.get_num_threads())
    gflops, bandwidth = matmul_gflops(), read_gb_per_s()
    flops_per_token = 2 * matrix_parameters(model)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    limit = {"matmul_gflops": round(gflops, 1), "read_gb_per_s": round(bandwidth, 1),
             "flops_per_token": flops_per_token, "weight_bytes": weight_bytes,
             "compute_tokens_per_s": round(gflops * 1e9 / flops_per_token, 1),
             "bandwidth_tokens_per_s": round(bandwidth * 1e9 / weight_bytes * size, 1)}
    limit["tokens_per_s"] = min(limit["compute_tokens_per_s"], limit["bandwidth_tokens_per_s"])

    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, list[list[int]]] = {}
    for name, run in decoders.items():
        if name in args.skip:
            continue
        started = time.perf_counter()
        outputs[name] = run()
        seconds = time.perf_counter() - started
        tokens = sum(len(row) for row in outputs[name])
        results[name] = {"seconds": round(seconds, 1), "new_tokens": tokens,
                         "tokens_per_s": round(tokens / seconds, 1),
                         "fraction_of_limit": round(tokens / seconds / limit["tokens_per_s"], 3)}
        print(name, results[name], flush=True)
    if "model.generate" in outputs:
        reference = outputs["model.generate"]
        for name, rows in outputs.items():
            results[name]["rows_equal_to_generate"] = f"{sum(a == b for a, b in zip(rows, reference, strict=True))}"\
                                                      f"/{len(rows)}"
            results[name]["first_32_equal"] = f"{sum(a[:32] == b[:32] for a, b in zip(rows, reference, strict=True))}"\
                                              f"/{len(rows)}"
    for name, row in results.items():
        row["speedup_over"] = {other: round(row["tokens_per_s"] / results[other]["tokens_per_s"], 2)
                               for other in results if other != name}
    table = {"model": args.model, "n": args.n, "batch_size": size, "max_new_tokens": args.max_new_tokens,
             "prompt_tokens": sum(len(p) for p in prompts), "threads": torch.get_num_threads(), **describe(),
             "date": time.strftime("%Y-%m-%d"), "commit": git_commit(), "limit": limit, "decoders": results}
    emit(table, args.out)


if __name__ == "__main__":
    main()
