"""The stable integration API: functions that work on any ``nn.Module`` holding PEFT layers.

Transformers, Diffusers and other hosts call these on their own models; their signatures are guaranteed. They are the
lifecycle loops of ``peft.lifecycle`` (the same ones ``BaseTuner`` runs), injection and the state-dict functions.
"""

from __future__ import annotations

from peft.lifecycle import cast_adapter_dtype, delete_adapter, set_adapter, set_requires_grad
from peft.mapping import inject_adapter_in_model
from peft.state_dict import get_peft_model_state_dict, set_peft_model_state_dict

__all__ = [
    "cast_adapter_dtype",
    "delete_adapter",
    "get_peft_model_state_dict",
    "inject_adapter_in_model",
    "set_adapter",
    "set_peft_model_state_dict",
    "set_requires_grad",
]
