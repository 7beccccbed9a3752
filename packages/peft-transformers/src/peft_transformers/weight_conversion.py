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
        ``WeightRenaming`` objects for transformers' loader, the model's renamings after PEFT's.

    Raises:
        NotImplementedError: for model conversions that fuse tensors (e.g. MoE experts), not supported yet.
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
        if isinstance(conversion, WeightRenaming):
            rules.append(conversion)
        else:
            raise NotImplementedError(
                "Loading adapters into models whose checkpoints transformers converts with "
                f"{type(conversion).__name__} (e.g. fused MoE experts) is not supported yet; load the adapter with "
                "PeftModel.from_pretrained."
            )
    return rules
