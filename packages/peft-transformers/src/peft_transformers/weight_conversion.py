"""Rules that let transformers' own loader read PEFT adapter files (``model.load_adapter``).

Transformers renames checkpoint keys with ``WeightRenaming`` objects and loads the tensors itself. The rules map file
keys (``base_model.model.<path>.lora_A.weight``) to live keys (``<path>.lora_A.<adapter>.weight``), then apply the
model's own renamings (checkpoints of older architectures). Per-expert LoRA weights of MoE models whose experts
transformers now fuses are fused the same way (see ``moe_conversion``).

Imported only when transformers loads an adapter, so transformers is imported at module level here.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers.core_model_loading import ConversionOps, WeightConverter, WeightRenaming

from .moe_conversion import (
    FUSED_EXPERT_LAYOUTS,
    FusedExpertsLayout,
    fuse_expert_lora_a,
    fuse_expert_lora_b,
    fused_parameters_adapted,
)


def build_peft_weight_mapping(
    weight_conversions: list[Any] | None, adapter_name: str, peft_config: Any = None
) -> list[Any]:
    """Renaming rules from adapter-file keys to the live keys of adapter ``adapter_name``.

    Args:
        weight_conversions: the model's own conversions (from transformers' ``get_model_conversion_mapping``).
        adapter_name: the name the adapter is loaded under.
        peft_config: the adapter's config; its method's parameter prefix selects the keys to rename.

    Returns:
        ``WeightRenaming`` objects for transformers' loader, LoRA expert-fusing ``WeightConverter`` objects for models
        whose experts transformers fuses, then the model's own conversions.
    """
    from peft import registry

    peft_type = getattr(peft_config, "peft_type", None)
    if peft_type is not None and registry.load_method(peft_type):
        prefixes = [registry.parameter_prefix(peft_type)]
    else:
        prefixes = sorted(set(registry.PEFT_TYPE_TO_PREFIX_MAPPING.values()))
    rules = [WeightRenaming("base_model.model.model.", "model."), WeightRenaming("base_model.model.", "")]
    for prefix in prefixes:
        escaped = re.escape(prefix)
        rules.append(WeightRenaming(rf"({escaped}[^\.]*)", rf"\1.{adapter_name}"))
        # the DoRA magnitude is stored without the ".weight" of its live module
        rules.append(WeightRenaming(rf"({escaped}magnitude_vector\.{re.escape(adapter_name)})", r"\1.weight"))
    if str(peft_type) == "LORA":
        layout = _fused_layout_of(weight_conversions or [])
        if layout is not None:
            rules.extend(_expert_lora_converters(layout, adapter_name, peft_config))
    for conversion in weight_conversions or []:
        # the model's converters rename or fuse base weights (e.g. per-expert w1/w3 into gate_up_proj); their
        # patterns end in base parameter names, so adapter keys pass through them unchanged
        rules.append(conversion)
    return rules


def _fused_layout_of(weight_conversions: list[Any]) -> FusedExpertsLayout | None:
    """The layout whose expert fusion the model's own converters perform (e.g. ``experts.*.w1.weight`` into
    ``experts.gate_up_proj``), if it converts old configs."""
    for layout in FUSED_EXPERT_LAYOUTS.values():
        if not layout.convert_old_targets:
            continue
        fused, olds = layout.fused[0]
        for conversion in weight_conversions:
            if not isinstance(conversion, WeightConverter):
                continue
            sources = " ".join(conversion.source_patterns)
            if any(t.endswith(f"{layout.experts}.{fused}") for t in conversion.target_patterns) and all(
                f".{old}.weight" in sources for old in olds
            ):
                return layout
    return None


class _FuseExpertLora(ConversionOps):
    """Per-expert LoRA factors (one list over experts per fused projection) -> the fused parameter's factor."""

    def __init__(self, factor: str) -> None:
        self.factor = factor

    @torch.no_grad()
    def convert(
        self, input_dict: dict[str, Any], source_patterns: list[str], target_patterns: list[str], **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        per_projection = [input_dict[p] for p in source_patterns if p in input_dict]
        if len(per_projection) != len(source_patterns):
            missing = [p for p in source_patterns if p not in input_dict]
            raise ValueError(f"Cannot fuse expert LoRA weights: the checkpoint lacks {missing}.")
        fuse = fuse_expert_lora_a if self.factor == "lora_A" else fuse_expert_lora_b
        return {target_patterns[0]: fuse(per_projection)}


def _expert_lora_converters(layout: FusedExpertsLayout, adapter_name: str, peft_config: Any) -> list[Any]:
    """One converter per fused parameter and factor, targeting where that parameter's LoRA wrapper sits: wrappers
    nest in registration order, the first innermost (``experts.base_layer``), the last at ``experts``."""
    adapted = fused_parameters_adapted(peft_config, layout)
    olds_of = dict(layout.fused)
    converters = []
    for position, fused in enumerate(adapted):
        wrapper = f".{layout.experts}" + ".base_layer" * (len(adapted) - 1 - position)
        for factor in ("lora_A", "lora_B"):
            sources = [f".{layout.experts}.*.{old}.{factor}.{adapter_name}.weight" for old in olds_of[fused]]
            target = f"{wrapper}.{factor}.{adapter_name}.weight"
            converters.append(WeightConverter(sources, target, operations=[_FuseExpertLora(factor)]))
    return converters
