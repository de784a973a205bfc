"""The cost of catalog grounding per generated token, against the same engine without it, in one run.

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/grounding_speed.py \\
        --model runs/cpu-fp32/sft/model [--n 64] [--batch-size 32] [--max-new-tokens 256] [--repeats 2] [--out FILE]

The same `--n` test prompts (training format), greedy, `--batch-size` rows at a time, through `engine.decode`
free and with `generate.grounding = "catalog"` (`apirl.models.grounding`, the run's API database), alternating,
`--repeats` times each, the fastest run of each kept. The two write different answers, so the cost is compared
per new token: seconds per token grounded over free (run-to-run noise is several percent on a shared CPU).
In the grounded run the constraint's own time (building the grammar once, then every mask) is timed apart too;
its share of that run's decoding time is the overhead that does not depend on which answers were written. Use a
fine-tuned model: an untuned one rarely writes the tagged format that the grammar constrains.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from tables import emit

from apirl.config import load_config
from apirl.data.dataset import build_examples, load_gorilla
from apirl.hardware import describe
from apirl.models import grounding
from apirl.models.engine import decode, eos_token_ids
from apirl.models.grounding import CatalogGrammar
from apirl.models.load import load_model, load_tokenizer, resolve_model
from apirl.rundir import git_commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="", help="also write the table here (JSON)")
    args = parser.parse_args()

    config = load_config(None, [])
    data = load_gorilla(config.data)
    examples = build_examples(data, config.data)["test"][: args.n]
    source = resolve_model(args.model)
    model, tokenizer = load_model(source), load_tokenizer(source)
    eos = eos_token_ids(model, tokenizer)
    prompts = sorted((tokenizer(ex.prompt)["input_ids"] for ex in examples), key=len, reverse=True)

    masking = {"seconds": 0.0}
    plain_mask = grounding.mask_logits

    def timed_mask(*mask_args: Any) -> Any:
        started = time.perf_counter()
        try:
            return plain_mask(*mask_args)
        finally:
            masking["seconds"] += time.perf_counter() - started

    results: dict[str, dict[str, Any]] = {}
    for name in ("free", "catalog") * args.repeats:  # alternating, the fastest run of each kept
        constraint, build_seconds = None, 0.0
        masking["seconds"] = 0.0
        grounding.mask_logits = timed_mask
        started = time.perf_counter()
        if name == "catalog":
            constraint = CatalogGrammar(data.api_db, tokenizer).grounding()
            build_seconds = time.perf_counter() - started
        rows = decode(model, prompts, max_new_tokens=args.max_new_tokens, eos_ids=eos, batch_size=args.batch_size,
                      constraint=constraint)
        seconds = time.perf_counter() - started
        grounding.mask_logits = plain_mask
        tokens = sum(len(row) for row in rows)
        if name in results and results[name]["seconds"] <= seconds:
            continue
        results[name] = {"seconds": round(seconds, 2), "new_tokens": tokens,
                         "ms_per_token": round(1000 * seconds / tokens, 3),
                         "tokens_per_s": round(tokens / seconds, 1),
                         "grammar_build_seconds": round(build_seconds, 2),
                         "constraint_seconds": round(masking["seconds"], 2),
                         "constraint_share": round((build_seconds + masking["seconds"]) / seconds, 4)}
        print(name, results[name], flush=True)
    results = {name: results[name] for name in ("free", "catalog")}
    overhead = results["catalog"]["ms_per_token"] / results["free"]["ms_per_token"] - 1
    table = {"model": args.model, "n": args.n, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
             "repeats": args.repeats, "threads": torch.get_num_threads(), **describe(),
             "date": time.strftime("%Y-%m-%d"),
             "commit": git_commit(), "runs": results, "per_token_overhead": round(overhead, 4)}
    emit(table, args.out)


if __name__ == "__main__":
    main()
