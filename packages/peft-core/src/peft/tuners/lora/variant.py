"""``LoraVariant``: how a change to the LoRA formula (DoRA, QA-LoRA, KaSA, ...) plugs into a LoRA layer, and the table
of variants that ``LoraConfig`` options select (each variant's module registers its own row)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from peft.tuners.lora.layer import LoraLayer


class LoraVariant:
    """A change to the LoRA formula (e.g. DoRA). Stateless: static methods acting on the layer.

    ``init`` adds the variant's per-adapter state; ``merge_safe``/``unmerge`` return the weight with the adapter
    merged/unmerged; ``forward`` returns the base output ``result`` with the adapter applied. A variant whose effect
    is an added update may define ``update(module, adapter_name, x)`` (then mixed batches use it) and
    ``delta_weight(module, adapter_name)`` (the dense update, for merging). ``check`` refuses a layer the variant
    cannot adapt, before anything is created; ``mergeable = False`` refuses merging (saying ``merge_refusal``).
    """

    mergeable: ClassVar[bool] = True
    merge_refusal: ClassVar[str] = "This LoRA variant cannot be merged."  # why, when not mergeable

    @staticmethod
    def check(module: LoraLayer, **kwargs: Any) -> None:
        """Raise a ``ValueError`` if this variant cannot be applied to ``module`` with these options."""

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def merge_safe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def merge_unsafe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data = LoraVariant.merge_safe(module, active_adapter, orig_weight)

    @staticmethod
    def unmerge(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def forward(module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class AdditiveLoraVariant(LoraVariant):
    """A variant that adds ``update(module, adapter, x)`` to the base output and merges as ``W + delta``: the
    variant's ``delta_weight(module, adapter)`` if it defines one, plain LoRA's ``s * B A`` otherwise."""

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def forward(cls, module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        return result + cls.update(module, active_adapter, x).to(result.dtype)

    @classmethod
    def merge_safe(cls, module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @classmethod
    def merge_unsafe(cls, module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data = cls.merge_safe(module, active_adapter, orig_weight)

    @classmethod
    def unmerge(cls, module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight - module.get_delta_weight(active_adapter).to(orig_weight.dtype)


# LoraConfig option -> (variant, names of the LoRA layer classes it supports); filled by the variants' modules
_LORA_VARIANTS: dict[str, tuple[type[LoraVariant], tuple[str, ...]]] = {}


def register_lora_variant(option: str, variant: type[LoraVariant], layer_types: Sequence[str]) -> None:
    """Make the ``LoraConfig`` option ``option`` (when set) select ``variant`` on LoRA layers whose class (or a base
    class) is named in ``layer_types``."""
    _LORA_VARIANTS[option] = (variant, tuple(layer_types))


def variant_state(module: LoraLayer, name: str, factory: Callable[[], Any]) -> Any:
    """The layer's attribute ``name``, a variant's per-layer bookkeeping of plain values (a dict, a set), created by
    ``factory`` on first use."""
    state = getattr(module, name, None)
    if state is None:
        state = factory()
        setattr(module, name, state)
    return state


def lora_variant_options() -> list[str]:
    """The ``LoraConfig`` options that select a LoRA variant."""
    return sorted(_LORA_VARIANTS)


def requested_variant(options: dict[str, Any]) -> tuple[str, type[LoraVariant], tuple[str, ...]] | None:
    """The variant the set options among ``options`` select, as ``(option, variant, layer types)``; None when none is
    set.

    Raises:
        ValueError: several variants are requested.
    """
    requested = [name for name in sorted(_LORA_VARIANTS) if options.get(name)]
    if not requested:
        return None
    if len(requested) > 1:
        raise ValueError(
            f"The LoRA variants {requested} cannot be combined in one adapter; set only one of "
            f"{lora_variant_options()}."
        )
    return (requested[0], *_LORA_VARIANTS[requested[0]])
