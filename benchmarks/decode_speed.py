"""`model.generate` against apirl's pruning decoder (`apirl.models.engine`) on the same batch of test prompts.

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/decode_speed.py \\
        --model runs/cpu-quick/sft/model [--n 16] [--max-new-tokens 256] [--runs 1]

Greedy decoding, stop at EOS (no stop strings, so both do the same work). Prints, per decoder, the wall time,
the real generated tokens (up to EOS) and tokens/s (median of `--runs`), and how many rows both decoded to the
same tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from apirl.config import load_config
from apirl.data.dataset import build_examples, load_gorilla
from apirl.hardware import describe
from apirl.models.engine import decode_pruned
from apirl.models.load import load_model, load_tokenizer, resolve_model


def trimmed(row: list[int], eos: list[int]) -> list[int]:
    for position, token in enumerate(row):
        if token in eos:
            return row[:position + 1]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    config = load_config(None, [])
    examples = build_examples(load_gorilla(config.data), config.data)["test"][: args.n]
    source = resolve_model(args.model)
    model, tokenizer = load_model(source), load_tokenizer(source)
    eos = model.generation_config.eos_token_id
    eos = list(eos) if isinstance(eos, list | tuple) else [int(eos if eos is not None else tokenizer.eos_token_id)]
    encoded = tokenizer([ex.prompt for ex in examples], return_tensors="pt", padding=True)
    width = encoded["input_ids"].shape[1]

    def hf() -> list[list[int]]:
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id)
        return [trimmed(row.tolist(), eos) for row in out[:, width:]]

    def pruned() -> list[list[int]]:
        return decode_pruned(model, encoded["input_ids"], encoded["attention_mask"],
                             max_new_tokens=args.max_new_tokens, eos_ids=eos)

    results, outputs = {}, {}
    for name, decode in (("model.generate", hf), ("apirl engine", pruned)):
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            outputs[name] = decode()
            seconds.append(time.perf_counter() - started)
        tokens = sum(len(row) for row in outputs[name])
        wall = statistics.median(seconds)
        results[name] = {"seconds": round(wall, 1), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1)}
    same = sum(a == b for a, b in zip(outputs["model.generate"], outputs["apirl engine"], strict=True))
    print(json.dumps({"model": args.model, "n": args.n, "max_new_tokens": args.max_new_tokens,
                      "threads": torch.get_num_threads(), **describe(), **results,
                      "rows_identical": f"{same}/{args.n}"},
                     indent=2))


if __name__ == "__main__":
    main()
