"""Rules that let transformers' own loader read PEFT adapter files (``model.load_adapter``).

Transformers renames checkpoint keys with ``WeightRenaming`` objects and loads the tensors itself. The rules map file
keys (``base_model.model.<path>.lora_A.weight``) to live keys (``<path>.lora_A.<adapter>.weight``), then apply the
model's own renamings (checkpoints of older architectures).
"""

from __future__ import annotations

import re
from typing import Any


def build_peft_weight_mapping(
    weight_conversions: list[Any] | None, adapter_name: str, peft_config: Any = None
) -> list[Any]:
    """Renaming rules from adapter-file keys to the live keys of adapter ``adapter_name``.

    Args:
        weight_conversions: the model's own conversions (from transformers' ``get_model_conversion_mapping``).
        adapter_name: the name the adapter is loaded under.
        peft_config: the adapter's config; its method's parameter prefix selects the keys to rename.

    Returns:
        ``WeightRenaming`` objects for transformers' loader, followed by the model's own conversions.
    """
    from transformers.core_model_loading import WeightRenaming

    from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING

    peft_type = getattr(peft_config, "peft_type", None)
    prefixes = (
        [PEFT_TYPE_TO_PREFIX_MAPPING[str(peft_type)]]
        if str(peft_type) in PEFT_TYPE_TO_PREFIX_MAPPING
        else sorted(set(PEFT_TYPE_TO_PREFIX_MAPPING.values()))
    )
    rules = [WeightRenaming("base_model.model.model.", "model."), WeightRenaming("base_model.model.", "")]
    for prefix in prefixes:
        escaped = re.escape(prefix)
        rules.append(WeightRenaming(rf"({escaped}[^\.]*)", rf"\1.{adapter_name}"))
        # the DoRA magnitude is stored without the ".weight" of its live module
        rules.append(WeightRenaming(rf"({escaped}magnitude_vector\.{re.escape(adapter_name)})", r"\1.weight"))
    for conversion in weight_conversions or []:
        # the model's converters rename or fuse base weights (e.g. per-expert w1/w3 into gate_up_proj); their
        # patterns end in base parameter names, so adapter keys pass through them unchanged
        rules.append(conversion)
    return rules
