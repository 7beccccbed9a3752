"""LN Tuning layers: each adapter is a trainable copy of the wrapped module, run instead of it (arXiv 2312.11420,
which tunes the LayerNorm layers of a transformer):

    y = copy_a(x)        (adapter ``a`` active; the copy starts equal to the base module)

Any module type can be wrapped. Copies are saved as ``ln_tuning_layers.<adapter>.<name>`` (``ln_tuning_layers.weight``
in checkpoints) and keep the base module's dtype (they run where it runs, so ``autocast_adapter_dtype`` leaves them
alone). One adapter computes per layer at a time, except in mixed batches (one per row). Merging loads the active
copy's tensors into the base module in place, keeping the originals aside for unmerging, so the base module object
is preserved and the saved adapter always holds the tuned values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from peft.tuners.tuners_layer import NonAdditiveTunerLayer
from peft.utils.distributed import whole_copy
from peft.utils.warnings import warn


class LNTuningLayer(NonAdditiveTunerLayer, nn.Module):
    """Wraps a module and holds one trainable copy of it per adapter (``ln_tuning_layers``, keyed by adapter name)."""

    repr_prefix = "ln_tuning"
    adapter_layer_names = ("ln_tuning_layers",)
    upcast_adapter_dtype = False

    def _init_adapter_state(self) -> None:
        self.ln_tuning_layers = nn.ModuleDict()
        # the base module's own tensors while an adapter is merged into it
        self._unmerged_state: dict | None = None

    def update_layer(self, adapter_name: str, **kwargs: Any) -> None:
        """Create (or replace) adapter ``adapter_name``: a copy of the base module (of its original values when
        another adapter is merged)."""
        layer = whole_copy(self.base_layer)
        if self._unmerged_state is not None:
            layer.load_state_dict(self._unmerged_state)
        self.ln_tuning_layers[adapter_name] = layer

    # ---------------------------------------------------------------------------------------------- forward
    def _adapted_forward(self, x: torch.Tensor, adapter_names: list[str], *args: Any, **kwargs: Any) -> Any:
        """The copy of the one adapter in ``adapter_names`` instead of the base module.

        Raises:
            ValueError: if more than one active adapter has a copy on this layer.
        """
        if len(adapter_names) > 1:
            raise ValueError(
                f"Trying to run forward with {len(adapter_names)} active adapters ({adapter_names}), but LN tuning "
                "does not allow inference with more than one adapter at a time; activate one of them."
            )
        module = self.ln_tuning_layers[adapter_names[0]] if adapter_names else self.base_layer
        return module(x, *args, **kwargs)

    # ---------------------------------------------------------------------------------------------- merging
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Load one adapter's copy (default: the active one) into the base module; a merged other adapter is
        unmerged first (with a warning).

        Raises:
            ValueError: if more than one adapter is to be merged, or ``safe_merge`` finds NaN/inf in the copy.
        """
        names = self._adapters_to_merge(adapter_names)
        if not names:
            return
        if len(names) > 1:
            raise ValueError(
                f"Trying to merge {len(names)} adapters ({names}), but LN tuning does not allow merging more than one "
                "adapter at a time."
            )
        tuned = self.ln_tuning_layers[names[0]].state_dict()
        if safe_merge and not all(torch.isfinite(t).all() for t in tuned.values() if t.is_floating_point()):
            raise ValueError(f"NaNs detected in the merged weights. The adapter {names[0]} seems to be broken.")
        if self.merged:
            warn(f"Already merged with {self.merged_adapters}. Unmerging first.")
            self.unmerge()
        base = self.base_layer
        self._unmerged_state = {key: value.detach().clone() for key, value in base.state_dict().items()}
        with torch.no_grad():
            base.load_state_dict(tuned)
        self.merged_adapters.append(names[0])

    def unmerge(self) -> None:
        """Give the base module its own tensors back."""
        if not self.merged:
            warn("Already unmerged. Nothing to do.")
            return
        with torch.no_grad():
            self.base_layer.load_state_dict(self._unmerged_state)
        self._unmerged_state = None
        self.merged_adapters.clear()

    def delete_adapter(self, adapter_name: str, new_active_adapters: Sequence[str] | None = None) -> None:
        """Remove ``adapter_name``; if it is merged, its values stay in the base module (as for every method)."""
        if adapter_name in self.merged_adapters:
            self._unmerged_state = None
        super().delete_adapter(adapter_name, new_active_adapters)
