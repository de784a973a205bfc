"""apirl's catalog trie against xgrammar on the same constraint, per token at a batch of rows, in one run.

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/grounding_libraries.py [--rows 32] \\
        [--out FILE]          # needs `pip install xgrammar` (not a dependency of apirl)

The constraint compared is the part both can state plainly: the answer opens with ` <<<domain>>>: `, a domain
of the API database, `<<<api_call>>>: `, one of that domain's calls (`apirl.models.grounding.groundable_rows`),
then free text. xgrammar gets it as an EBNF grammar (one alternative per domain, each with its calls); apirl as
its token tries. `--rows` answers (the database rows' own domain and call, then their example code) are fed
token by token to both, teacher-forced, as a decoder at that batch size would: per step, each row's mask is
computed and applied to a (rows x vocab) logits tensor, then the step's tokens are accepted. Reported: the
grammar's build time, and milliseconds per step of the whole batch (what it adds to one decode step).
"""

from __future__ import annotations

import argparse
import time

import torch
from tables import emit

from apirl.config import load_config
from apirl.data.apidb import as_text
from apirl.data.dataset import load_gorilla
from apirl.hardware import describe
from apirl.models.grounding import AFTER_CALL, AFTER_DOMAIN, OPENING, CatalogGrammar, groundable_rows, mask_logits
from apirl.models.load import load_tokenizer, resolve_model
from apirl.rundir import git_commit


def ebnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def catalog_ebnf(rows: list) -> str:
    """The domain-then-call constraint as xgrammar EBNF."""
    domains: dict[str, list[str]] = {}
    for row in rows:
        domains.setdefault(row.domain, []).append(row.api_call)
    lines = [f"root ::= {ebnf_literal(OPENING)} domain rest", "rest ::= [^\\x00]*"]
    choices = []
    for index, (domain, calls) in enumerate(domains.items()):
        choices.append(f"{ebnf_literal(f' {domain}{AFTER_DOMAIN}')} calls{index}")
        alternatives = " | ".join(ebnf_literal(f" {call}{AFTER_CALL}") for call in dict.fromkeys(calls))
        lines.append(f"calls{index} ::= {alternatives}")
    lines.insert(1, "domain ::= " + " | ".join(choices))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    import xgrammar as xgr

    data = load_gorilla(load_config(None, []).data)
    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    rows = groundable_rows(data.api_db)
    step = max(1, len(rows) // args.rows)
    answers = [f"{OPENING} {row.domain}{AFTER_DOMAIN} {row.api_call}{AFTER_CALL}<<<api_provider>>>: Hugging Face"
               f"\n<<<code>>>: {as_text(row.example_code)[:400]}" for row in rows[::step][: args.rows]]
    streams = [tokenizer(answer, add_special_tokens=False)["input_ids"] for answer in answers]
    steps = max(len(stream) for stream in streams)
    vocab = len(tokenizer)
    logits = torch.randn(len(streams), vocab)
    results = {}

    started = time.perf_counter()
    grammar = CatalogGrammar(data.api_db, tokenizer)
    build = time.perf_counter() - started
    grounding = grammar.grounding()
    so_far: list[list[int]] = [[] for _ in streams]
    rejected = 0
    started = time.perf_counter()
    for position in range(steps):
        live = [row for row, stream in enumerate(streams) if position < len(stream)]
        mask_logits(logits[: len(live)], live, [so_far[row] for row in live], grounding)
        for row in live:
            allowed = grounding.allowed(row, so_far[row])  # already fed: a lookup, to count the rejections
            rejected += allowed is not None and streams[row][position] not in allowed
            so_far[row].append(streams[row][position])
    results["apirl trie"] = {"build_seconds": round(build, 3),
                             "ms_per_step": round(1000 * (time.perf_counter() - started) / steps, 3),
                             "tokens_rejected": rejected}

    started = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
    compiled = xgr.GrammarCompiler(info, max_threads=torch.get_num_threads()).compile_grammar(catalog_ebnf(rows))
    build = time.perf_counter() - started
    matchers = [xgr.GrammarMatcher(compiled) for _ in streams]
    bitmask = xgr.allocate_token_bitmask(len(streams), info.vocab_size)
    rejected = 0
    started = time.perf_counter()
    for position in range(steps):
        live = [row for row, stream in enumerate(streams) if position < len(stream)]
        for slot, row in enumerate(live):
            matchers[row].fill_next_token_bitmask(bitmask, slot)
        xgr.apply_token_bitmask_inplace(logits[: len(live)], bitmask[: len(live)])
        for row in live:
            rejected += not matchers[row].accept_token(streams[row][position])
    results["xgrammar"] = {"build_seconds": round(build, 3),
                           "ms_per_step": round(1000 * (time.perf_counter() - started) / steps, 3),
                           "tokens_rejected": rejected, "version": getattr(xgr, "__version__", "0.2.8")}
    table = {"rows": len(streams), "steps": steps, "vocab": vocab, "calls": len(rows), **describe(),
             "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
             "results": results}
    emit(table, args.out)


if __name__ == "__main__":
    main()
