"""Bone layers: the MiSS family's update (``peft.tuners.miss.layer``) under Bone's parameter names, so adapters saved
by peft <= 0.18 load: ``bone_block`` holds ``D`` ``(r, out)`` (``init_weights=True``) or ``(out / r, r, r)``
(``"bat"``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners.miss.layer import FragmentLayer


class BoneLayer(FragmentLayer):
    """State of the Bone layer types (per-adapter ``bone_block`` keyed by adapter name)."""

    adapter_layer_names = ("bone_block",)
    other_param_names = ("bone_r", "bone_fn")
    _init_modes = (True, False, "bat")
    _method_name = "Bone"
    repr_prefix = "bone"

    @property
    def _ranks(self) -> dict[str, int]:
        return self.bone_r

    @property
    def _modes(self) -> dict[str, bool | str]:
        return self.bone_fn

    def update_layer(self, adapter_name: str, r: int = 64, init_weights: bool | str = True, **kwargs: Any) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``BoneConfig``).

        Raises:
            ValueError: for a non-positive ``r`` or one above ``in_features``, an unknown ``init_weights``, or, for
                ``"bat"``, sides of the weight not divisible by ``r``.
        """
        self._create_fragment(adapter_name, r, init_weights)


class Linear(BoneLayer, nn.Module):
    """Bone on ``nn.Linear``."""
