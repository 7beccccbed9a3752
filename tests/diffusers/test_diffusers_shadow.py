"""ShadowPEFT on a diffusers transformer (Sana): its latents are no tokens, so the shadow state is seeded from the
first wrapped block's input by a token-wise MLP backbone."""

from __future__ import annotations

import diffusers
import pytest
import torch

from peft import ShadowConfig, get_peft_model


def test_sana_transformer_trains_the_token_wise_shadow_backbone():
    torch.manual_seed(0)
    base = diffusers.SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=4,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        mlp_ratio=2.0,
        sample_size=4,
        patch_size=1,
    )
    config = ShadowConfig(
        target_modules=r"transformer_blocks\.\d+$",
        share_embeddings=False,
        shadow_hidden_size=4,
        shadow_intermediate_size=6,
        shadow_num_hidden_layers=2,
        init_weights=False,
    )
    model = get_peft_model(base, config)
    backbone = model.base_model.shadow_backbone["default"]
    assert (len(backbone.blocks), backbone.blocks[0][1].out_features) == (2, 6)
    inputs = {
        "hidden_states": torch.randn(1, 4, 4, 4),
        "encoder_hidden_states": torch.randn(1, 3, 8),
        "timestep": torch.tensor([1]),
        "return_dict": False,
    }
    output = model(**inputs)[0]
    assert output.shape == inputs["hidden_states"].shape
    output.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    with model.disable_adapter(), torch.no_grad():
        disabled = model(**inputs)[0]
    with torch.no_grad():
        assert not torch.allclose(model(**inputs)[0], disabled)
    with pytest.raises(NotImplementedError, match="not supported for Diffusers models"):
        model.base_model.unload_shadow()
