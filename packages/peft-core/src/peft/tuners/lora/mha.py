"""LoRA on ``nn.MultiheadAttention``.

The attention module reads ``in_proj_weight`` and ``out_proj.weight`` directly instead of calling submodules, so
the adapter cannot act on activations. Forward therefore calls the base module with both weights replaced by
``W + delta`` through ``call_with_tensors`` (gradients reach the adapter; the base weights stay as they
are). The in-projection adapter lives on this layer; the out-projection gets a ``lora.Linear`` in its place.

Checkpoint compatibility: the reference applies the out-projection update twice (its merge adds the delta and then
merges the out-projection layer again), and every MHA adapter trained with it learned under that formula. To
reproduce those adapters, the out-projection delta here is ``2 * scaling * B A`` as well (``_OutProjLinear``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import Linear, LoraLayer
from peft.utils.torch_internals import call_with_tensors, new_linear


class _OutProjLinear(Linear):
    """The out-projection adapter of ``MultiheadAttention``; its update counts twice (see the module docstring).

    Its parent merges and unmerges it, so model-wide merges skip it (``merged_by_parent``).
    """

    merged_by_parent = True

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        return 2 * super().get_delta_weight(adapter)


class MultiheadAttention(LoraLayer, nn.Module):
    """LoRA on ``nn.MultiheadAttention`` with equal query/key/value sizes."""

    @property
    def out_proj(self) -> nn.Module:
        """The base module's out-projection (without its adapter layer), as on ``nn.MultiheadAttention``."""
        out_proj = self.get_base_layer().out_proj
        return out_proj.get_base_layer() if isinstance(out_proj, LoraLayer) else out_proj

    def merge_masks(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_base_layer().merge_masks(*args, **kwargs)

    def update_layer(self, adapter_name: str, r: int, lora_alpha: float, **kwargs: Any) -> None:
        if kwargs.get("use_dora"):
            raise ValueError(f"{type(self).__name__} does not support DoRA (yet), please set use_dora to False")
        base = self.get_base_layer()
        if isinstance(base.out_proj, LoraLayer):
            base.out_proj.update_layer(adapter_name, r, lora_alpha, **kwargs)
        else:
            base.out_proj = _OutProjLinear(base.out_proj, adapter_name, r=r, lora_alpha=lora_alpha, **kwargs)
        super().update_layer(adapter_name, r, lora_alpha, **kwargs)

    def _create_adapter_weights(self, adapter_name: str, r: int, lora_bias: bool, **factory: Any) -> None:
        self.lora_A[adapter_name] = new_linear(self.in_features, r, False, **factory)
        self.lora_B[adapter_name] = new_linear(r, self.out_features, lora_bias, **factory)

    def get_base_weight(self) -> torch.Tensor:
        return self.get_base_layer().in_proj_weight.detach()

    def set_base_weight(self, weight: torch.Tensor) -> None:
        with torch.no_grad():
            self.get_base_layer().in_proj_weight.copy_(weight)

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        return self._lora_delta(adapter)

    def _out_proj(self) -> LoraLayer | None:
        out_proj = self.get_base_layer().out_proj
        return out_proj if isinstance(out_proj, LoraLayer) else None

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Merge the in-projection and out-projection updates; with ``safe_merge`` both are checked first."""
        out_proj = self._out_proj()
        if safe_merge:
            names = self._adapters_to_merge(adapter_names)
            in_weight = self.get_base_weight().clone()
            out_weight = out_proj.get_base_weight().clone() if out_proj is not None else None
            for name in names:
                in_weight = self._merged_weight(name, in_weight)
                if out_weight is not None and out_proj._has_adapter(name):
                    out_weight = out_proj._merged_weight(name, out_weight)
                finite = torch.isfinite(in_weight).all() and (out_weight is None or torch.isfinite(out_weight).all())
                if not finite:
                    raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken.")
        if out_proj is not None:
            out_proj.merge(adapter_names=adapter_names)
        super().merge(adapter_names=adapter_names)

    def unmerge(self) -> None:
        out_proj = self._out_proj()
        if out_proj is not None and out_proj.merged:
            out_proj.unmerge()
        super().unmerge()

    def forward(self, query: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        if query is None:
            query = kwargs.pop("query")
        if kwargs.pop("adapter_names", None) is not None:
            raise ValueError(f"lora.{type(self).__name__} does not support mixed-batch inference (adapter_names).")
        base = self.get_base_layer()
        active = [n for n in self.active_adapters if n in self.lora_A]
        if self._disable_adapters:
            if self.merged:
                self.unmerge()
            return self._call_base(base, {}, query, *args, **kwargs)
        if self.merged or not active:
            return base(query, *args, **kwargs)
        weights = {"in_proj_weight": base.in_proj_weight}
        for name in active:
            weights["in_proj_weight"] = weights["in_proj_weight"] + self.get_delta_weight(name).to(
                base.in_proj_weight.dtype
            )
        out_proj = self._out_proj()
        if out_proj is not None and not out_proj.merged:
            out_weight = out_proj.get_base_layer().weight
            for name in out_proj.active_adapters:
                if name in out_proj.lora_A:
                    out_weight = out_weight + out_proj.get_delta_weight(name).to(out_weight.dtype)
            weights["out_proj.base_layer.weight"] = out_weight
        return self._call_base(base, weights, query, *args, **kwargs)

    @staticmethod
    def _call_base(base: nn.Module, weights: dict[str, torch.Tensor], query: torch.Tensor, *args: Any, **kwargs: Any):
        if not weights:
            return base(query, *args, **kwargs)
        return call_with_tensors(base, weights, query, *args, **kwargs)


def _base_attribute(name: str) -> property:
    return property(lambda self: getattr(self.get_base_layer(), name), doc=f"The base module's ``{name}``.")


# what code reading an nn.MultiheadAttention looks at (torch's transformer layers check batch_first...), read
# through to the base module so that the adapted module answers as the original one
for _name in (
    "embed_dim", "kdim", "vdim", "_qkv_same_embed_dim", "num_heads", "dropout", "batch_first", "head_dim",
    "in_proj_weight", "in_proj_bias", "bias_k", "bias_v", "add_zero_attn",
):  # fmt: skip
    setattr(MultiheadAttention, _name, _base_attribute(_name))
