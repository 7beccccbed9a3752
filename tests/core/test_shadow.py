"""ShadowPEFT without transformers: the block equations against an independent computation, diffusion-style
transformers (seeded from the first wrapped block, with a token-wise MLP backbone), gradient checkpointing, configs.

Transformers models (caches, generation, checkpoints, the standalone network):
tests/transformers/test_shadow_transformers.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peft import ShadowConfig, get_peft_model
from peft.tuners.shadow import ShadowCarrier, ShadowLayer


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.linear(self.norm(hidden_states))


class _Config:
    model_type = "tiny_dit"
    num_attention_heads = 2
    attention_head_dim = 4

    def to_dict(self) -> dict:
        return {"model_type": self.model_type}


class _TinyDiT(nn.Module):
    """Diffusers-like: latents in, blocks in ``single_transformer_blocks``, optional gradient checkpointing."""

    def __init__(self) -> None:
        super().__init__()
        self.config = _Config()
        self.x_embedder = nn.Linear(8, 8)
        self.single_transformer_blocks = nn.ModuleList(_Block(8) for _ in range(3))
        self.proj_out = nn.Linear(8, 8)
        self.gradient_checkpointing = False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = self.x_embedder(hidden_states)
        for block in self.single_transformer_blocks:
            if self.gradient_checkpointing and self.training:
                hidden = torch.utils.checkpoint.checkpoint(block.__call__, hidden, use_reentrant=False)
            else:
                hidden = block(hidden)
        return self.proj_out(hidden)


LATENTS = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))


def _dit(**config) -> nn.Module:
    torch.manual_seed(0)
    kwargs = {"target_modules": r"single_transformer_blocks\.\d+$", "share_embeddings": False, "init_weights": False}
    return get_peft_model(_TinyDiT(), ShadowConfig(**(kwargs | config)))


def test_a_block_injects_the_shadow_state_and_advances_it_by_the_papers_equations():
    torch.manual_seed(0)
    layer = ShadowLayer(
        _Block(8), "default", hidden_size=8, r=2, shadow_alpha=0.3, shadow_dropout=0.0, init_weights=False
    )
    hidden, shadow = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    down, up = layer.shadow_down["default"].weight, layer.shadow_up["default"].weight
    transform, gate = layer.shadow_update_transform["default"], layer.shadow_update_gate["default"]

    def mlp(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x @ seq[0].weight.T + seq[0].bias) @ seq[2].weight.T + seq[2].bias

    with torch.no_grad():
        injected = hidden + 0.3 * ((hidden - shadow) @ down.T @ up.T)
        block_out = layer.base_layer(injected)
        g = torch.sigmoid(mlp(gate, block_out))
        expected_shadow = (1 - g) * shadow + g * mlp(transform, block_out)
        carrier = layer(ShadowCarrier(hidden, shadow))
        plain = layer(hidden)
    torch.testing.assert_close(carrier.hidden, block_out)
    torch.testing.assert_close(carrier.shadow, expected_shadow)
    torch.testing.assert_close(plain, layer.base_layer(hidden))


def test_w_up_starts_at_zero_so_a_new_adapter_changes_nothing():
    torch.manual_seed(0)
    base = _TinyDiT().eval()
    with torch.no_grad():
        expected = base(LATENTS)
    model = get_peft_model(base, ShadowConfig(target_modules=r"single_transformer_blocks\.\d+$")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(hidden_states=LATENTS), expected)


def test_diffusion_transformers_seed_the_shadow_state_from_the_first_wrapped_block():
    model = _dit(shadow_hidden_size=4, shadow_intermediate_size=6, shadow_num_hidden_layers=2)
    backbone = model.base_model.shadow_backbone["default"]
    assert type(backbone).__name__ == "TokenShadowBackbone" and len(backbone.blocks) == 2
    assert backbone.blocks[0][1].out_features == 6
    assert len([m for m in model.modules() if isinstance(m, ShadowLayer)]) == 3
    model(hidden_states=LATENTS).pow(2).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    with pytest.raises(NotImplementedError, match="not supported for Diffusers models"):
        model.base_model.unload_shadow()


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    def run(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = _dit()
        model.train()
        model.base_model.model.gradient_checkpointing = checkpointing
        out = model(hidden_states=LATENTS)
        out.pow(2).mean().backward()
        return out, {n: p.grad for n, p in model.named_parameters() if "shadow_" in n and p.grad is not None}

    expected, expected_grads = run(False)
    got, grads = run(True)
    torch.testing.assert_close(got, expected)
    assert grads.keys() == expected_grads.keys() and any("shadow_backbone" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=name)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"r": 0}, "ShadowConfig.r should be a positive integer"),
        ({"shadow_dropout": 1.5}, "shadow_dropout must be a probability"),
        ({"target_modules": ".*", "layers_pattern": "layers", "layers_to_transform": [0]}, "layers_to_transform"),
        ({"shadow_model": "some/model", "shadow_num_hidden_layers": 2}, "mirror-only fields"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShadowConfig(**kwargs)


def test_config_defaults_match_the_reference():
    config = ShadowConfig()
    assert (config.r, config.shadow_alpha, config.shadow_dropout, config.auxiliary_loss_weight) == (8, 0.1, 0.2, 0.05)
    assert (config.shadow_model, config.share_embeddings, config.init_weights) == ("mirror", True, True)
    assert str(config.peft_type) == "SHADOW"


def test_models_without_a_decoder_stack_need_target_modules():
    with pytest.raises(AttributeError, match="set target_modules"):
        get_peft_model(nn.Sequential(nn.Linear(4, 4)), ShadowConfig())
