"""Lily: low-rank projectors shared across layers and mixed per batch by a router (REQUIREMENTS SAVE-15, LIFE-4).

The forward is written out from the paper's formula (``scaling * (A x) sum_e p_e B_e`` with ``p`` the router's softmax
averaged over the batch); the sharing structure is checked by module identity; checkpoints of adapters that were
trained without sharing (the reference's later adapters) load unshared, as saved.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from peft import LilyConfig, PeftModel, PeftWarning, get_peft_model

ATOL = 1e-5


class _Blocks(nn.Module):
    """Four blocks of (q: 8 -> 8, v: 8 -> 8) and an input projection 6 -> 8."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 8)
        self.layers = nn.ModuleList(nn.ModuleDict({"q": nn.Linear(8, 8), "v": nn.Linear(8, 8)}) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for block in self.layers:
            x = torch.tanh(block["q"](x) + block["v"](x))
        return x


def _blocks(seed: int = 0) -> _Blocks:
    torch.manual_seed(seed)
    return _Blocks().eval()


def _x(rows: int = 5) -> torch.Tensor:
    return torch.randn(rows, 6, generator=torch.Generator().manual_seed(1))


def _lily_update(layer, x: torch.Tensor, adapter: str = "default") -> torch.Tensor:
    project_in = layer.lily_A[adapter].weight.detach()  # (r, in)
    router = layer.lily_router[adapter].weight.detach()  # (num_B, r)
    stacked = layer.lily_B[adapter].weight.detach()  # (num_B * r, out)
    num_b, r = router.shape
    hidden = x @ project_in.T
    mix = torch.softmax(hidden @ router.T, dim=-1).reshape(-1, num_b).mean(dim=0)
    combined = sum(mix[e] * stacked[e * r : (e + 1) * r] for e in range(num_b))
    return hidden @ combined * layer.scaling[adapter]


def test_lily_forward_mixes_the_projectors_with_the_batch_averaged_router():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 4)).eval()
    model = get_peft_model(base, LilyConfig(r=3, num_B=3, scaling=0.7, init_weights=False, target_modules=["0"]))
    model.eval()
    layer = model.base_model.model[0]
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(1))  # the mix averages over all 10 tokens
    with torch.no_grad():
        expected = layer.get_base_layer()(x) + _lily_update(layer, x)
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


def test_lily_identity_by_default():
    model = get_peft_model(_blocks(), LilyConfig(r=2, target_modules=["q", "v"])).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), _blocks()(_x()))


def test_lily_shares_a_per_stride_and_b_per_target_entry():
    config = LilyConfig(r=2, stride_A=2, num_B=3, init_weights=False, target_modules=["q", "v", "proj"])
    model = get_peft_model(_blocks(), config)
    blocks = model.base_model.model.layers
    for kind in ("q", "v"):
        layers = [block[kind] for block in blocks]
        assert len({id(layer.lily_B["default"]) for layer in layers}) == 1
        a_modules = [id(layer.lily_A["default"]) for layer in layers]
        assert a_modules[0] == a_modules[1] != a_modules[2] == a_modules[3]
        assert all(layer.lily_router["default"] is not layers[0].lily_router["default"] for layer in layers[1:])
    assert blocks[0]["q"].lily_B["default"] is not blocks[0]["v"].lily_B["default"]
    proj = model.base_model.model.proj
    assert proj.lily_B["default"] is not blocks[0]["q"].lily_B["default"]  # another entry and shape
    distinct = {id(p) for p in model.parameters() if p.requires_grad}
    # q and v: 2 A's and 1 B each; 8 routers; proj: its own A, B and router
    assert len(distinct) == 2 * (2 + 1) + 8 + 3


def test_lily_regex_targets_share_by_shape():
    config = LilyConfig(r=2, init_weights=False, target_modules=r".*\.(q|v)")
    model = get_peft_model(_blocks(), config)
    layers = [block[kind] for block in model.base_model.model.layers for kind in ("q", "v")]
    assert len({id(layer.lily_B["default"]) for layer in layers}) == 1


def test_lily_second_adapter_shares_its_own_projectors(tmp_path):
    """Unlike the reference (which shares only for the first adapter of a model), every adapter shares."""
    model = get_peft_model(_blocks(), LilyConfig(r=2, target_modules=["q"]))
    model.add_adapter("other", LilyConfig(r=3, stride_A=4, init_weights=False, target_modules=["q"]))
    layers = [block["q"] for block in model.base_model.model.layers]
    assert len({id(layer.lily_A["other"]) for layer in layers}) == 1
    assert len({id(layer.lily_B["other"]) for layer in layers}) == 1
    assert layers[0].lily_B["other"] is not layers[0].lily_B["default"]


def test_lily_checkpoint_with_differing_copies_loads_unshared_with_a_warning(tmp_path):
    model = get_peft_model(_blocks(), LilyConfig(r=2, init_weights=False, target_modules=["q"])).eval()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    key = "base_model.model.layers.2.q.lily_B.weight"
    tensors[key] = tensors[key] + 1.0  # as if layer 2 had trained its own B
    save_file(tensors, tmp_path / "adapter_model.safetensors")
    with pytest.warns(PeftWarning, match="loaded unshared, as saved"):
        loaded = PeftModel.from_pretrained(_blocks(), tmp_path).eval()
    layers = [block["q"] for block in loaded.base_model.model.layers]
    torch.testing.assert_close(layers[2].lily_B["default"].weight, tensors[key])
    torch.testing.assert_close(
        layers[1].lily_B["default"].weight, tensors["base_model.model.layers.1.q.lily_B.weight"]
    )
    assert layers[0].lily_B["default"] is layers[1].lily_B["default"] is layers[3].lily_B["default"]


def test_lily_config_validation():
    with pytest.raises(ValueError, match=r"LilyConfig.num_B=1 is invalid: expected an int >= 2"):
        LilyConfig(num_B=1)
    with pytest.raises(ValueError, match=r"LilyConfig.stride_A=0 is invalid: expected an int >= 1"):
        LilyConfig(stride_A=0)
