"""Adaption prompt (LLaMA-Adapter, Zhang et al., 2023) for Llama/Mistral-style attention.

The top ``adapter_layers`` attention modules get a learned prompt of ``adapter_len`` vectors. Each query also attends
to the prompt's keys and values (through the layer's own projections), and that extra attention, scaled by a
zero-initialised gate, is added to the attention output:
``out = attn(x) + o_proj(gate * softmax(q K_p^T / sqrt(d)) V_p)``.
It needs the attention's query projection and rotary embedding, hence it lives with the transformers glue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.config import BaseTargetingConfig, PeftConfig
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.peft_types import PeftType


@dataclass
class AdaptionPromptConfig(BaseTargetingConfig):
    """Configuration of adaption prompt.

    Args:
        target_modules: name of the attention submodules (e.g. ``"self_attn"``).
        adapter_len: number of prompt vectors per adapted layer.
        adapter_layers: number of layers, counted from the top, that get a prompt.
    """

    target_modules: str = field(default=None, metadata={"help": "Name of the attention submodules to adapt."})
    adapter_len: int = field(default=None, metadata={"help": "Number of adapter tokens to insert."})
    adapter_layers: int = field(default=None, metadata={"help": "Number of adapter layers (from the top)."})

    def __post_init__(self) -> None:
        # set here too, not only by the registration: the host may not be registered when this class is used;
        # adapter_len and adapter_layers may be filled in after creation, the tuner checks them when it uses them
        self.peft_type = PeftType.ADAPTION_PROMPT
        super().__post_init__()

    @property
    def is_adaption_prompt(self) -> bool:
        return True


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class AdaptedAttention(BaseTunerLayer, nn.Module):
    """A Llama/Mistral attention module with adaption prompts."""

    adapter_layer_names = ("adaption_prompt", "adaption_gate")

    def update_layer(self, adapter_name: str, adapter_len: int, **kwargs: Any) -> None:
        base = self.get_base_layer()
        weight = base.q_proj.weight
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        hidden = base.config.hidden_size
        self.adaption_prompt[adapter_name] = nn.Parameter(
            torch.empty(1, adapter_len, hidden, device=weight.device, dtype=dtype).normal_()
        )
        self.adaption_gate[adapter_name] = nn.Parameter(torch.zeros(1, device=weight.device, dtype=dtype))

    def _prompt_attention(self, adapter_name: str, hidden_states: torch.Tensor, kwargs: dict) -> torch.Tensor:
        base = self.get_base_layer()
        batch, q_len, _ = hidden_states.shape
        num_heads, head_dim = base.config.num_attention_heads, base.head_dim
        prompt = self.adaption_prompt[adapter_name]
        kv_heads = base.k_proj.out_features // head_dim
        keys = base.k_proj(prompt).view(1, -1, kv_heads, head_dim).expand(batch, -1, -1, -1).transpose(1, 2)
        values = base.v_proj(prompt).view(1, -1, kv_heads, head_dim).expand(batch, -1, -1, -1).transpose(1, 2)
        keys = keys.repeat_interleave(num_heads // kv_heads, dim=1)
        values = values.repeat_interleave(num_heads // kv_heads, dim=1)
        queries = base.q_proj(hidden_states).view(batch, q_len, num_heads, head_dim).transpose(1, 2)
        if kwargs.get("position_embeddings") is not None:
            cos, sin = (t.unsqueeze(1) for t in kwargs["position_embeddings"])
            queries = queries * cos + _rotate_half(queries) * sin
        scores = queries @ keys.transpose(2, 3).to(queries.dtype) / math.sqrt(head_dim)
        scores = self.adaption_gate[adapter_name] * F.softmax(scores, dim=-1, dtype=torch.float32).to(queries.dtype)
        output = (scores @ values).transpose(1, 2).reshape(batch, q_len, -1)
        return base.o_proj(output)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self.base_layer(*args, **kwargs)
        if self._disable_adapters:
            return outputs
        hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        attn_output, *rest = outputs
        for name in self.active_adapters:
            if name in self.adaption_prompt:
                attn_output = attn_output + self._prompt_attention(name, hidden_states, kwargs).to(attn_output.dtype)
        return (attn_output, *rest)

    def __repr__(self) -> str:
        return "adaption_prompt." + super().__repr__()


class AdaptionPromptModel(BaseTuner):
    """Wraps the top ``adapter_layers`` attention modules named ``target_modules`` with ``AdaptedAttention``."""

    prefix = "adaption_"
    tuner_layer_cls = AdaptedAttention
    target_module_mapping = {"llama": ["self_attn"], "mistral": ["self_attn"]}

    def _check_new_adapter_config(self, config: PeftConfig) -> None:
        super()._check_new_adapter_config(config)
        for name in ("adapter_len", "adapter_layers"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict[str, Any]) -> PeftConfig:
        if peft_config.target_modules is None:
            defaults = self.target_module_mapping.get(model_config.get("model_type"))
            if defaults is None:
                raise ValueError("Please specify target_modules (the attention submodule name) in the config.")
            peft_config.target_modules = defaults[0]
        return peft_config

    def _select_targets(self, model: nn.Module, peft_config: PeftConfig, state_dict: Any) -> list[str]:
        name = peft_config.target_modules
        names = [key for key, _ in model.named_modules() if key == name or key.endswith("." + name)]
        names = [key for key in names if ".base_layer" not in key]
        if len(names) < peft_config.adapter_layers:
            raise ValueError(
                f"adapter_layers={peft_config.adapter_layers} but the model has only {len(names)} modules named "
                f"{name!r}."
            )
        return names[-peft_config.adapter_layers :]

    def _create_and_replace(self, target: TargetModule) -> None:
        adapter_len = target.config.adapter_len
        if isinstance(target.module, AdaptedAttention):
            target.module.update_layer(target.adapter_name, adapter_len=adapter_len)
            return
        attention = target.module
        if not all(hasattr(attention, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "config")):
            raise ValueError(
                f"{target.key!r} ({type(attention).__name__}) is not a Llama/Mistral-style attention module with "
                "q/k/v/o projections; adaption prompt supports those."
            )
        target.replace(AdaptedAttention(attention, target.adapter_name, adapter_len=adapter_len))
