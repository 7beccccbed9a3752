"""peft integration for TRL: the trainer-side conventions TRL users otherwise write by hand around PEFT.

- :func:`lora_config_from_model_args`: a ``LoraConfig`` from TRL's ``ModelConfig`` (``--lora_r`` ... flags).
- :func:`use_adapter`: run a model under one adapter, or under none (the base model), then restore its state:
  the policy/reference switch of DPO, KTO, GRPO and RLOO.
- :func:`copy_adapter`: a frozen copy of an adapter, e.g. the ``"ref"`` reference TRL builds when it re-trains a
  pretrained adapter.
- :func:`prepare_model_for_gradient_checkpointing`: turn on gradient checkpointing and let gradients reach adapters
  behind frozen input embeddings.
- :func:`adapt_training_args`: switch off what a TRL default makes impossible for a PEFT method (gradient
  checkpointing for prefix tuning).

Unlike peft-transformers and peft-diffusers this package is not a host of the core: TRL's models are transformers
models, so it has no task type, target table or weight conversion to register, and the core never loads it. It is a
library of helpers on top of peft and peft-transformers. Importing it stays cheap: the helpers, and with them torch
and peft, load on first use.

Example:
    >>> from trl import ModelConfig, SFTTrainer
    >>> from peft_trl import lora_config_from_model_args
    >>> model_args = ModelConfig(use_peft=True, lora_r=8, lora_target_modules=["q_proj", "v_proj"])
    >>> trainer = SFTTrainer(model, args=args, train_dataset=data, peft_config=lora_config_from_model_args(model_args))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "1.0.0.dev0"

_EXPORTS = {
    "lora_config_from_model_args": "peft_trl.model_args",
    "use_adapter": "peft_trl.adapters",
    "copy_adapter": "peft_trl.adapters",
    "prepare_model_for_gradient_checkpointing": "peft_trl.training",
    "adapt_training_args": "peft_trl.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'peft_trl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
