"""`model.dtype: auto` and `trainer.autocast_bf16: auto`: bf16 exactly where the hardware
multiplies it natively, fp32 elsewhere, and an explicit value always kept. The CPU's feature
probes are set per test, so each branch runs on any machine."""

from __future__ import annotations

import pytest
import torch

from recipe import precision
from recipe.config import ConfigError, load_config
from recipe.schema import RunConfig
from tests.recipe.tiny_world import tiny_trainer


@pytest.fixture(params=["amx", "avx512_bf16", "avx2"])
def cpu_kind(request, monkeypatch):
    """A CPU with AMX, with AVX512-BF16, or with neither (AVX2 only)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: request.param == "amx")
    monkeypatch.setattr(
        torch.cpu, "_is_avx512_bf16_supported", lambda: request.param == "avx512_bf16"
    )
    return request.param


def test_auto_is_bf16_only_where_the_cpu_multiplies_it_natively(cpu_kind):
    native = cpu_kind != "avx2"
    assert precision.bf16_is_native("cpu") is native
    assert precision.resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert precision.torch_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert precision.autocast_enabled("auto", "cpu") is native
    assert ("auto means bfloat16" in precision.describe("cpu")) is native


def test_explicit_values_are_kept_whatever_the_hardware(cpu_kind):
    for name in ("float32", "bfloat16", "float16"):
        assert precision.resolve_dtype(name, "cpu") == name
    assert precision.autocast_enabled(True, "cpu") is True
    assert precision.autocast_enabled(False, "cpu") is False


def test_both_fields_accept_auto_and_name_the_key_on_anything_else(tmp_path):
    cfg = load_config(RunConfig, None, ["model.dtype=auto", "trainer.autocast_bf16=auto"])
    assert (cfg.model.dtype, cfg.trainer.autocast_bf16) == ("auto", "auto")
    assert load_config(RunConfig, None, ["trainer.autocast_bf16=true"]).trainer.autocast_bf16
    with pytest.raises(ConfigError, match="trainer.autocast_bf16"):
        load_config(RunConfig, None, ["trainer.autocast_bf16=maybe"])
    with pytest.raises(ConfigError, match="model.dtype"):
        load_config(RunConfig, None, ["model.dtype=bf16"])


@pytest.mark.usefixtures("smollm2_gguf_file", "one_torch_thread")
@pytest.mark.parametrize("native", [True, False])
def test_the_trainer_resolves_auto_for_its_generation_copy_and_its_update(
    tmp_path, monkeypatch, native
):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    trainer = tiny_trainer(
        tmp_path / "run", steps=1, autocast_bf16="auto", sections={"model": {"dtype": "auto"}}
    )
    expected = torch.bfloat16 if native else torch.float32
    assert {p.dtype for p in trainer.gen_model.parameters()} == {expected}
    assert {p.dtype for p in trainer.engine.module.parameters()} == {torch.float32}
    assert trainer.autocast is native
