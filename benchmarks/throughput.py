"""Training and generation throughput of a model under a preset: tokens/s (median of N runs) and peak memory.

    APIRL_DATA_DIR=../shared/data/gorilla .venv/bin/python benchmarks/throughput.py \\
        --config configs/cpu-quick.toml [--runs 3] [--train-steps 3] [--set model.name="tiny-random"]

Training: optimizer steps of the preset's batch (`sft.batch_size` real training examples, prompt + answer,
truncated to `sft.max_length`, padded to the longest), forward + backward + AdamW, full or LoRA as the preset
says; the loss is over all tokens (the Trainer masks the prompt, which costs the same). Tokens/s counts real
(non-padding) tokens. Generation: one batch of `generate.batch_size` test prompts with the preset's generation
settings; tokens/s counts generated tokens up to EOS. Peak memory: the process's max RSS (CPU) or
torch.cuda.max_memory_allocated (GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from apirl.config import load_config
from apirl.data.dataset import build_examples, load_gorilla
from apirl.hardware import describe, resolve_precision
from apirl.models.generation import build_prompt, generate_batches
from apirl.models.load import default_device, load_model, load_tokenizer, resolve_model
from apirl.rundir import peak_memory_mb


def train_tokens_per_s(cfg, source, train, steps: int) -> list[float]:
    device = cfg.model.device or default_device()
    model = load_model(source, "float32", device)
    model.train()
    if cfg.sft.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.sft.lora_r, lora_alpha=cfg.sft.lora_alpha,
                                                 target_modules=cfg.sft.lora_target_modules, task_type="CAUSAL_LM"))
    tokenizer = load_tokenizer(source)
    tokenizer.padding_side = "right"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rates = []
    batch_size = cfg.sft.batch_size
    for step in range(steps + 1):  # the first step warms up (allocations, kernels) and is not counted
        rows = train[(step * batch_size) % len(train):][:batch_size]
        batch = tokenizer([r.prompt + r.target for r in rows], return_tensors="pt", padding=True, truncation=True,
                          max_length=cfg.sft.max_length).to(device)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        started = time.perf_counter()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step:
            rates.append(int(batch["attention_mask"].sum()) / (time.perf_counter() - started))
    return rates


def generate_tokens_per_s(cfg, source, test, runs: int) -> list[float]:
    model = load_model(source, cfg.model.dtype, cfg.model.device or None)
    tokenizer = load_tokenizer(source)
    prompts = [build_prompt(ex, cfg.generate.prompt_style, [], tokenizer) for ex in test[: cfg.generate.batch_size]]
    rates = []
    for _ in range(runs):
        stats = generate_batches(model, tokenizer, prompts, cfg.generate, seed=cfg.seed,
                                 add_special_tokens=cfg.generate.prompt_style == "plain",
                                 on_batch=lambda *_: None)
        rates.append(stats.tokens_per_s)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu-quick.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    data = load_gorilla(cfg.data)
    splits = build_examples(data, cfg.data)
    train = [ex for ex in splits["train"] if ex.complete]
    source = resolve_model(cfg.model.name)
    train_rates = train_tokens_per_s(cfg, source, train, args.train_steps)
    gen_rates = generate_tokens_per_s(cfg, source, splits["test"], args.runs)
    memory = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else peak_memory_mb())
    print(json.dumps({
        "model": cfg.model.name, "config": args.config, "device": cfg.model.device or default_device(),
        **describe(), "sft_precision": resolve_precision(cfg.sft.precision, cfg.model.device or default_device()),
        "threads": torch.get_num_threads(), "sft_method": cfg.sft.method, "sft_batch_size": cfg.sft.batch_size,
        "train_tokens_per_s_median": round(statistics.median(train_rates), 1),
        "train_tokens_per_s": [round(r, 1) for r in train_rates],
        "generate_batch_size": cfg.generate.batch_size, "max_new_tokens": cfg.generate.max_new_tokens,
        "generate_tokens_per_s_median": round(statistics.median(gen_rates), 1),
        "generate_tokens_per_s": [round(r, 1) for r in gen_rates],
        "peak_memory_mb": round(memory, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
