"""ShadowPEFT's view of the base model's structure (its decoder stack, its hidden width) and the mirror backbones
built from it: the base model's decoder class with a reduced config, or for diffusion transformers (latents, no
tokens) a small token-wise MLP.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from peft.tuners.shadow.config import ShadowConfig

_LAYER_LISTS = ("layers", "h", "single_transformer_blocks", "transformer_blocks")


def is_diffusion_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is a diffusers-style transformer (its block stack is ``single_transformer_blocks`` or
    ``transformer_blocks``, and its inputs are latents, not tokens)."""
    return isinstance(getattr(model, "single_transformer_blocks", None), nn.ModuleList) or (
        isinstance(getattr(model, "transformer_blocks", None), nn.ModuleList)
        and not isinstance(getattr(model, "layers", None), nn.ModuleList)
    )


def _has_layer_stack(module: nn.Module) -> bool:
    return any(isinstance(getattr(module, name, None), nn.ModuleList) for name in _LAYER_LISTS)


def find_backbone(model: nn.Module) -> nn.Module:
    """The module holding the decoder stack (``LlamaModel`` inside ``LlamaForCausalLM``; OPT's ``model.decoder``).

    Raises:
        AttributeError: if there is none; then ``target_modules`` must name the blocks.
    """
    if is_diffusion_transformer(model):
        return model
    for name in ("model", "transformer", "base_model", "decoder"):
        backbone = getattr(model, name, None)
        if not isinstance(backbone, nn.Module):
            continue
        nested = getattr(backbone, "decoder", None)
        if isinstance(nested, nn.Module) and _has_layer_stack(nested):
            return nested
        return backbone
    if _has_layer_stack(model):
        return model
    raise AttributeError(
        "Cannot find the decoder stack of the model (required when target_modules is None); set target_modules to "
        r"the decoder blocks to wrap, e.g. r'.*\.layers\.\d+$'."
    )


def decoder_layers(backbone: nn.Module) -> tuple[nn.ModuleList, str]:
    for name in _LAYER_LISTS:
        layers = getattr(backbone, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers, name
    raise AttributeError(
        "Cannot find the decoder blocks (a ModuleList .layers or .h) of the model (required when target_modules is "
        r"None); set target_modules to the decoder blocks to wrap, e.g. r'.*\.layers\.\d+$'."
    )


def hidden_size_of(config: Any) -> int:
    """The hidden width of a model config (``hidden_size``, ``n_embd``, ``d_model``, or heads x head dim).

    Raises:
        AttributeError: if the config tells none.
    """
    for name in ("hidden_size", "n_embd", "d_model"):
        if hasattr(config, name):
            return int(getattr(config, name))
    if hasattr(config, "num_attention_heads") and hasattr(config, "attention_head_dim"):
        return int(config.num_attention_heads) * int(config.attention_head_dim)
    raise AttributeError("Cannot infer the hidden size from the model's config.")


def _set_config_value(config: Any, names: tuple[str, ...], value: int) -> None:
    for name in names:
        if hasattr(config, name):
            setattr(config, name, int(value))
            return
    raise AttributeError(
        f"Cannot build a mirror shadow backbone: the model's config has none of {list(names)}. Use a supported "
        "decoder architecture or a pretrained shadow_model."
    )


def _fit_per_layer_fields(config: Any) -> None:
    """Per-layer config lists (``layer_types``) and counts (``max_window_layers``) follow a reduced depth."""
    layers = getattr(config, "num_hidden_layers", None)
    if not isinstance(layers, int):
        return
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        layer_types = list(layer_types) or ["full_attention"]
        config.layer_types = (layer_types + [layer_types[-1]] * layers)[:layers]
    max_window = getattr(config, "max_window_layers", None)
    if isinstance(max_window, int) and max_window > layers:
        config.max_window_layers = layers


class TokenShadowBackbone(nn.Module):
    """The mirror backbone of diffusion transformers: ``proj_in`` to the shadow width, then residual MLP blocks
    (``LayerNorm, Linear, GELU, Linear``) over each token; returns an object with ``last_hidden_state``."""

    def __init__(self, in_features: int, hidden_size: int, num_layers: int = 1, intermediate_size: int | None = None):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=int(hidden_size), model_type="shadow_token_backbone")
        width = intermediate_size or hidden_size
        self.proj_in = nn.Linear(in_features, hidden_size)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden_size), nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, hidden_size)
            )
            for _ in range(max(1, int(num_layers)))
        )

    def forward(self, input_ids: Any = None, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if inputs_embeds is None:
            raise ValueError("The token-wise shadow backbone needs inputs_embeds.")
        hidden = self.proj_in(inputs_embeds)
        for block in self.blocks:
            hidden = hidden + block(hidden)
        return SimpleNamespace(last_hidden_state=hidden, past_key_values=None)


def build_mirror_backbone(model: nn.Module, config: ShadowConfig) -> nn.Module:
    """A fresh backbone of ``model``'s decoder class with a config reduced by the ``shadow_*`` fields (a token-wise
    MLP for diffusion transformers).

    Raises:
        AttributeError: if ``model``'s config cannot be reduced (none of the expected size fields).
    """
    if is_diffusion_transformer(model):
        base_hidden = hidden_size_of(model.config)
        return TokenShadowBackbone(
            base_hidden,
            config.shadow_hidden_size or base_hidden,
            num_layers=config.shadow_num_hidden_layers or 1,
            intermediate_size=config.shadow_intermediate_size,
        )
    base_backbone = find_backbone(model)
    backbone_config = copy.deepcopy(base_backbone.config)
    depth = config.shadow_num_hidden_layers or 1
    _set_config_value(backbone_config, ("num_hidden_layers", "n_layer", "num_layers"), depth)
    overrides = (
        (("hidden_size", "n_embd", "d_model"), config.shadow_hidden_size),
        (("intermediate_size", "ffn_dim", "n_inner"), config.shadow_intermediate_size),
        (("num_attention_heads", "n_head", "num_heads"), config.shadow_num_attention_heads),
    )
    for names, value in overrides:
        if value is not None:
            _set_config_value(backbone_config, names, value)
    _fit_per_layer_fields(backbone_config)
    return type(base_backbone)(backbone_config)
