"""Time the executability check of the gold code of a split (median of N runs, hub already built).

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/exec_speed.py [--runs 3] [--split test]
        [--mode bound] [--workers 2] [--hub-dir DIR]

The first, untimed pass builds the offline hub's checkpoints for the split (its time is printed apart); each
timed run starts a fresh executor (workers preload torch, transformers, diffusers...) and runs every snippet.
"""

from __future__ import annotations

import argparse
import statistics
import time

from apirl.code_facts import model_ids_in_code
from apirl.config import load_config
from apirl.data.dataset import load_gorilla
from apirl.data.splits import scored_question_ids
from apirl.data.stage import hub_evidence
from apirl.execution.executor import Executor, summarize
from apirl.execution.offline_hub import OfflineHub
from apirl.execution.stage import gold_codes, hub_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--split", default="test")
    parser.add_argument("--mode", default="bound")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hub-dir", default="")
    args = parser.parse_args()
    cfg = load_config(overrides=[f'eval.split="{args.split}"', f'execution.hub_dir="{args.hub_dir}"'])
    data = load_gorilla(cfg.data)
    codes, domains = gold_codes(scored_question_ids(args.split, cfg.data.split_dir, data.question_ids), data)
    hub = OfflineHub(hub_dir(cfg.execution), data.api_db, hub_evidence(data))
    started = time.perf_counter()
    built = []
    hub.ensure([i for code in codes.values() for i in model_ids_in_code(code, hub.known)], on_built=built.append)
    print(f"offline hub: {len(built)} checkpoints built in {time.perf_counter() - started:.1f} s ({hub.root})")
    seconds = []
    for _ in range(args.runs):
        started = time.perf_counter()
        with Executor(hub.root, data.api_db, workers=args.workers, evidence=hub.evidence) as executor:
            verdicts = executor.check(codes, args.mode)
        seconds.append(time.perf_counter() - started)
        summary = summarize(verdicts, domains)
        print(f"  run: {seconds[-1]:.1f} s, executability {100 * summary['executability']:.1f}% "
              f"({summary['ok']}/{summary['n']})")
    print(f"{len(codes)} gold snippets, split {args.split}, mode {args.mode}, {args.workers} workers: "
          f"median {statistics.median(seconds):.1f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
