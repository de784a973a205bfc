"""Time `apirl eval` scoring of one responses file on every question (median of N runs).

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/eval_speed.py [--runs 3] [--file F]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from apirl.config import load_config
from apirl.data.dataset import load_gorilla
from apirl.evaluate.responses import load_responses
from apirl.evaluate.scorer import evaluate_responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--file", type=Path, default=None, help="default: Gorilla-7B FT 0-shot")
    args = parser.parse_args()
    cfg = load_config(overrides=['eval.split="all"'])
    data = load_gorilla(cfg.data)
    path = args.file or data.paths.responses_dir / "response_huggingface_Gorilla_FT_0_shot.jsonl"
    responses = load_responses(path)
    for codebleu in (False, True):
        cfg.eval.codebleu = codebleu
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            evaluate_responses(responses, data.records, data.api_db, cfg.eval, question_ids=None, path=path)
            seconds.append(time.perf_counter() - started)
        print(f"{len(responses)} responses, codebleu={codebleu}: median {statistics.median(seconds):.2f} s "
              f"over {args.runs} runs ({', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
