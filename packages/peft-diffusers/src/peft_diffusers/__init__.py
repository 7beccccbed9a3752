"""peft integration for Diffusers.

Diffusers drives PEFT itself (``pipe.load_lora_weights``, ``unet.add_adapter``, ...); this package holds the
diffusers conventions as a library usable without pipelines:

- :mod:`peft_diffusers.convert`: LoRA state dicts in the kohya, A1111 and older diffusers formats to and from the
  PEFT format, with the ``LoraConfig`` kwargs (ranks, alphas) that reproduce them;
- :mod:`peft_diffusers.targets`: default LoRA targets of UNets, DiTs and CLIP text encoders;
- :mod:`peft_diffusers.naming`: kohya and LDM (A1111) module naming;
- :mod:`peft_diffusers.formats`: those formats as ``peft convert`` uses them.

The core finds this package through its ``peft.hosts`` entry point and calls :func:`register`. Importing it must
stay cheap: nothing here imports diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "1.0.0.dev0"

if TYPE_CHECKING:
    from peft.hosts import HostRegistry


def register(registry: HostRegistry) -> None:
    """Register the default LoRA targets of diffusers models (keyed by class name) and the LoRA file formats of
    Stable Diffusion tools (for ``peft convert``) with the core.

    Args:
        registry: the core's :class:`peft.hosts.HostRegistry`.
    """
    from .formats import FORMATS
    from .targets import DIFFUSERS_LORA_TARGET_MODULES

    for lora_format in FORMATS:
        registry.register_lora_format(lora_format)

    registry.register_default_target_modules(
        "LORA", {name: list(targets) for name, targets in DIFFUSERS_LORA_TARGET_MODULES.items()}
    )
