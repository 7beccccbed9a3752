"""The bound on the memory a new adapter may take: an adapter larger than the bound is refused before anything is
allocated; shared projections count; the bound can be changed (issue #14).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peft import LoraConfig, get_peft_model
from tests.tiny_models import two_linear_mlp


# ------------------------------------------------------------------------------------ memory bound
def _max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@pytest.mark.parametrize(
    ("config", "where"),
    [
        (LoraConfig(r=10**9, target_modules=["lin0"]), "module 'lin0'"),
        (LoraConfig(r=4, rank_pattern={"lin1": 10**9}, target_modules=["lin0", "lin1"]), "module 'lin1'"),
    ],
)
def test_an_adapter_larger_than_the_bound_is_refused_before_allocating(config, where):
    """The reference tries to allocate the tens of gigabytes ``r=10**9`` asks for."""
    rss = _max_rss_bytes()
    model = two_linear_mlp()
    with pytest.raises(ValueError) as excinfo:
        get_peft_model(model, config)
    message = str(excinfo.value)
    assert "would need more than 4.00 GiB" in message and where in message
    assert "adapter_memory_limit" in message and "PEFT_ADAPTER_MEMORY_LIMIT" in message
    assert _max_rss_bytes() - rss < 2**30
    assert not any("lora_" in name for name, _ in model.named_parameters())  # nothing of the adapter is left


def test_shared_projections_count_against_the_bound():
    from peft import VeraConfig
    from peft.helpers import adapter_memory_limit

    with adapter_memory_limit(2**20), pytest.raises(ValueError, match="for the shared projections"):
        get_peft_model(two_linear_mlp(), VeraConfig(r=20_000, target_modules=["lin0", "lin1"]))


def test_the_bound_can_be_lowered_and_raised(monkeypatch):
    from peft.helpers import adapter_memory_limit

    big = LoraConfig(r=64, target_modules=["lin0"])  # 64 * (10 + 20) floats: 7.5 KiB
    with adapter_memory_limit(4096), pytest.raises(ValueError, match="more than 4.00 KiB"):
        get_peft_model(two_linear_mlp(), big)
    with adapter_memory_limit(8192):
        get_peft_model(two_linear_mlp(), big)
    monkeypatch.setenv("PEFT_ADAPTER_MEMORY_LIMIT", "4KiB")
    with pytest.raises(ValueError, match="would need more than"):
        get_peft_model(two_linear_mlp(), big)
    monkeypatch.setenv("PEFT_ADAPTER_MEMORY_LIMIT", "none")
    get_peft_model(two_linear_mlp(), big)
    monkeypatch.setenv("PEFT_ADAPTER_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="PEFT_ADAPTER_MEMORY_LIMIT='lots' is not a memory size"):
        get_peft_model(two_linear_mlp(), big)
    with pytest.raises(ValueError, match="positive number of bytes"):
        adapter_memory_limit(-1).__enter__()


def test_layers_of_the_same_kind_are_charged_without_being_watched():
    """Only the first layer of a kind runs under the allocation watch (injection into thousands of layers stays
    fast), the others are charged its size: with room for 5 of 8 equal layers, the 6th is refused."""
    from peft.helpers import adapter_memory_limit

    model = nn.Sequential(*[nn.Linear(16, 16) for _ in range(8)])
    per_layer = 4 * (16 + 16) * 4  # r=4: A (4 x 16) and B (16 x 4) floats
    with adapter_memory_limit(5 * per_layer), pytest.raises(ValueError, match="for module '5'"):
        get_peft_model(model, LoraConfig(r=4, target_modules=[str(i) for i in range(8)]))


def test_the_allocation_watch_sees_the_factories_torch_layers_use():
    """Breaks if torch stops routing tensor factories through TorchFunctionMode (the bound would then be blind)."""
    from peft.tuners._memory_bound import AllocationBudget, adapter_memory_limit

    budget = AllocationBudget(nn.Linear(1, 1), "a test adapter")
    with adapter_memory_limit(10**9), budget:
        nn.Linear(100, 30)
        torch.randn(7, 3)
        torch.zeros((2, 5), dtype=torch.float64)
        torch.ones(4, 4).new_zeros(3)
        torch.empty(5, device="meta")  # nothing allocated
    assert budget.used == 100 * 30 * 4 + 30 * 4 + 7 * 3 * 4 + 2 * 5 * 8 + 4 * 4 * 4 + 3 * 4
