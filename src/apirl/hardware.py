"""What the machine computes natively, so that precision follows the hardware a run lands on, never a constant.

The CPUs behind these machines differ: on one with AVX-512 BF16 (or AMX) a bf16 matmul is fast, on one with AVX2
only it is emulated and about 80x slower than fp32 (measured: 1.2 against 95 GFLOP/s). `precision = "auto"` is
therefore bf16 only where the device does bf16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16
or AMX tiles (what oneDNN's bf16 kernels use); fp32 elsewhere. An explicit "bf16" or "fp32" is obeyed.
"""

from __future__ import annotations

from typing import Any


def cpu_capability() -> str:
    """torch's name for the CPU's widest vector ISA it dispatches to ("AVX2", "AVX512", ...)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX-512 BF16 or AMX tiles); torch's own probes, which exist in
    every torch this project pins but are private, so a missing one counts as no."""
    import torch

    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and bool(probe()) for probe in probes)


def native_bf16(device: str) -> bool:
    """Whether `device` ("cpu", "cuda", "cuda:1") computes bf16 natively."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_native_bf16()


def resolve_precision(choice: str, device: str) -> str:
    """"bf16" or "fp32" for a config's `precision` ("auto", "bf16", "fp32") on `device`."""
    if choice not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {choice!r}")
    if choice == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return choice


def describe() -> dict[str, Any]:
    """The facts a benchmark or a report prints beside its numbers."""
    import os

    import torch

    return {"cpu_capability": cpu_capability(), "cpu_native_bf16": cpu_native_bf16(), "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__}
