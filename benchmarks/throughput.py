"""SFT training throughput against the bare-step ceiling, per batching mode, plus generation, in one run.

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/throughput.py \\
        --config configs/cpu-quick.toml [--train-steps 4] [--set model.name="tiny-random"] [--out FILE]

Training: TRL's `SFTTrainer` exactly as `apirl sft` builds it (the preset's `[sft]`: batch size, max_length, full
or LoRA, precision), `--train-steps` optimizer steps after one warm-up step, once per `sft.batching` mode
(`padded` is what every run used before the mode existed). Real tokens are the non-padding tokens of each step's
batch (the Trainer's `num_input_tokens_seen`). The ceiling: a bare forward + backward + AdamW step of the same
model (full or LoRA alike) on one packed batch of the same number of real tokens (`batch_size` rows, no padding,
a plain causal loss), the most a trainer can get out of this machine for that work. Generation: one
`apirl generate` of `generate.batch_size` test prompts with the preset's settings. Peak memory: max RSS (CPU) or
torch.cuda.max_memory_allocated (GPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tables import emit

from apirl.config import load_config
from apirl.data.dataset import build_examples, load_gorilla
from apirl.hardware import describe, resolve_precision
from apirl.models.generation import build_prompt, generate_batches
from apirl.models.load import default_device, load_model, load_tokenizer, resolve_model
from apirl.rundir import git_commit, peak_memory_mb
from apirl.train.config import lora_config
from apirl.train.sft import _trainer_args

MODES = ("padded", "length_grouped", "packed")


class StepClock:
    """A Trainer callback: each optimizer step's seconds and real tokens, from one step's end to the next (the
    Trainer counts a batch's tokens before its `on_step_begin`); the first step is a warm-up and not kept."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.marks.append((time.perf_counter(), state.num_input_tokens_seen))

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.marks.append((time.perf_counter(), state.num_input_tokens_seen))

        self.callback = Callback()
        self.marks: list[tuple[float, int]] = []

    @property
    def steps(self) -> list[tuple[float, int]]:
        return [(t1 - t0, n1 - n0) for (t0, n0), (t1, n1) in zip(self.marks, self.marks[1:], strict=False)]

    def tokens_per_s(self) -> float:
        kept = self.steps[1:]
        return sum(tokens for _s, tokens in kept) / sum(seconds for seconds, _t in kept)

    def tokens_per_step(self) -> int:
        return round(statistics.median(tokens for _s, tokens in self.steps[1:]))


def sft_tokens_per_s(cfg: Any, source: Any, rows: list[dict[str, str]], steps: int, mode: str) -> StepClock:
    from datasets import Dataset
    from trl import SFTTrainer

    sft = cfg.sft.model_copy(update={"batching": mode, "max_steps": steps + 1, "save_steps": 10_000,
                                     "logging_steps": 10_000})
    tokenizer = load_tokenizer(source)
    tokenizer.padding_side = "right"
    clock = StepClock()
    with tempfile.TemporaryDirectory() as directory:
        trainer = SFTTrainer(model=load_model(source), args=_trainer_args(sft, cfg.seed, Path(directory), False),
                             train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                             peft_config=lora_config(sft), callbacks=[clock.callback])
        trainer.train()
    return clock


def ceiling_tokens_per_s(cfg: Any, source: Any, rows: list[dict[str, str]], tokens: int, steps: int) -> float:
    """Real tokens/s of bare steps on a packed batch of `tokens` tokens: `sft.batch_size` rows cut from the
    examples' concatenated text, so no position is padding."""
    device = cfg.model.device or default_device()
    model = load_model(source, "float32", device)
    model.train()
    config = lora_config(cfg.sft)
    if config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, config)
    tokenizer = load_tokenizer(source)
    stream = [token for row in rows for token in tokenizer(row["prompt"] + row["completion"])["input_ids"]]
    width = max(1, tokens // cfg.sft.batch_size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    precision = resolve_precision(cfg.sft.precision, device)
    rates = []
    for step in range(steps + 1):  # the first step warms up and is not counted
        start = step * width * cfg.sft.batch_size % max(1, len(stream) - width * cfg.sft.batch_size)
        batch = torch.tensor(stream[start:start + width * cfg.sft.batch_size], device=device)
        batch = batch.reshape(cfg.sft.batch_size, width)
        started = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step:
            rates.append(batch.numel() / (time.perf_counter() - started))
    return statistics.median(rates)


def generate_tokens_per_s(cfg: Any, source: Any, test: list[Any]) -> float:
    model = load_model(source, cfg.model.dtype, cfg.model.device or None)
    tokenizer = load_tokenizer(source)
    prompts = [build_prompt(ex, cfg.generate.prompt_style, [], tokenizer) for ex in test[: cfg.generate.batch_size]]
    stats = generate_batches(model, tokenizer, prompts, cfg.generate, seed=cfg.seed,
                             add_special_tokens=cfg.generate.prompt_style == "plain", on_batch=lambda *_: None)
    return stats.tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu-quick.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--mode", action="append", choices=MODES, help="batching modes to run (default: all)")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--out", default="", help="also write the table here (JSON)")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    splits = build_examples(load_gorilla(cfg.data), cfg.data)
    rows = [{"prompt": ex.prompt, "completion": ex.target} for ex in splits["train"] if ex.complete]
    source = resolve_model(cfg.model.name)
    device = cfg.model.device or default_device()

    trainers: dict[str, dict[str, Any]] = {}
    clocks = {}
    for mode in args.mode or MODES:
        clocks[mode] = sft_tokens_per_s(cfg, source, rows, args.train_steps, mode)
        trainers[f"sft {mode}"] = {"tokens_per_s": round(clocks[mode].tokens_per_s(), 1),
                                   "real_tokens_per_step": clocks[mode].tokens_per_step()}
        print(f"sft {mode}", trainers[f"sft {mode}"], flush=True)
    tokens = round(statistics.median(clock.tokens_per_step() for clock in clocks.values()))
    ceiling = ceiling_tokens_per_s(cfg, source, rows, tokens, args.train_steps)
    for row in trainers.values():
        row["fraction_of_ceiling"] = round(row["tokens_per_s"] / ceiling, 3)
        if "sft padded" in trainers:
            row["speedup_over_padded"] = round(row["tokens_per_s"] / trainers["sft padded"]["tokens_per_s"], 2)
    table: dict[str, Any] = {
        "model": cfg.model.name, "config": args.config, "device": device, **describe(),
        "sft_precision": resolve_precision(cfg.sft.precision, device), "threads": torch.get_num_threads(),
        "sft_method": cfg.sft.method, "sft_batch_size": cfg.sft.batch_size, "sft_max_length": cfg.sft.max_length,
        "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
        "ceiling": {"tokens_per_s": round(ceiling, 1), "tokens_per_step": tokens}, "trainers": trainers,
    }
    if not args.no_generate:
        table.update(generate_batch_size=cfg.generate.batch_size, max_new_tokens=cfg.generate.max_new_tokens,
                     generate_tokens_per_s=round(generate_tokens_per_s(cfg, source, splits["test"]), 1))
    table["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
                                    else peak_memory_mb(), 1)
    emit(table, args.out)


if __name__ == "__main__":
    main()
