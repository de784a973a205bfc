"""Precision follows what the device computes natively (issue 18): bf16 only with AVX-512 BF16 / AMX or a GPU."""

import pytest

from apirl import hardware
from apirl.train.checkpoints import precision_kwargs


@pytest.mark.parametrize(("native", "expected"), [(False, "fp32"), (True, "bf16")])
def test_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: native)
    assert hardware.resolve_precision("auto", "cpu") == expected
    assert precision_kwargs("auto") == {"bf16": expected == "bf16"}  # what the Trainer configs get (no GPU here)


def test_an_explicit_choice_is_obeyed_and_a_bad_one_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: False)
    assert hardware.resolve_precision("bf16", "cpu") == "bf16" and hardware.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        hardware.resolve_precision("fp16", "cpu")


def test_the_cpu_probe_reads_torch_and_counts_a_missing_probe_as_no(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert hardware.cpu_native_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert hardware.cpu_native_bf16() is False
    assert hardware.describe()["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_no_preset_hard_codes_bf16() -> None:
    from pathlib import Path

    configs = Path(__file__).parents[1] / "configs"
    assert not [path.name for path in configs.glob("*.toml") if 'precision = "bf16"' in path.read_text()]
