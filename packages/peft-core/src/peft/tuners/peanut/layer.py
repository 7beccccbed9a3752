"""PEANuT layers: the update is computed from the base weight by a small network (arXiv 2410.01870):

    h_0 = f(W^T A^T)                                   (W: (out, in); A: (r, out); h: (in, r))
    e_i = f(E_i e_{i-1})  for i = 1..depth             (e_0 = h_0; encoders E_i: (r, r))
    d_i = f(D_i d_{i-1}) + e_{depth-i}                 (d_0 = e_depth; decoders D_i: (r, r))
    delta W = scaling * (d_depth B^T)^T                (B: (out, r))

with ``f`` the configured activation. ``y = base(x) + x delta_W^T``. Stored per adapter (the reference checkpoint
format): ``peanut_A.weight``, ``peanut_B.weight``, ``peanut_encoders.<i>.weight``, ``peanut_decoders.<i>.weight``
(bias-free linear layers). ``init_weights=True`` zeroes ``B``: the adapter starts as the identity. The update reads
the base weight, so merging keeps the unmerged weight to compute updates from and to restore
(``BaseWeightDependentLayer``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft.tuners._base_weight_dependent import BaseWeightDependentLayer
from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_non_negative_int, check_positive_int
from peft.tuners.peanut.config import activation


class PeanutLayer(BaseWeightDependentLayer, DenseDeltaLayer):
    """State and formula of PEANuT layers (per-adapter networks keyed by adapter name)."""

    method_name = "peanut"
    adapter_layer_names = ("peanut_A", "peanut_B", "peanut_encoders", "peanut_decoders")
    # the config's depth is kept per adapter as res_num (the reference's attribute name)
    other_param_names = ("r", "res_num", "scaling", "act_fn")
    module_container_names = adapter_layer_names

    def update_layer(
        self,
        adapter_name: str,
        r: int = 32,
        depth: int = 0,
        act_fn: str = "relu",
        scaling: float = 1.0,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (arguments as in ``PeanutConfig``).

        Raises:
            ValueError: for a non-positive ``r``, a negative ``depth`` or an unknown ``act_fn``.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        check_non_negative_int(type(self).__name__, "depth", depth)
        activation(act_fn)
        factory = self._factory_kwargs()
        # created in the reference's order, so that a seed draws the same initial values
        self.peanut_A[adapter_name] = nn.Linear(self.out_features, r, bias=False, **factory)
        self.peanut_encoders[adapter_name] = nn.ModuleList(
            nn.Linear(r, r, bias=False, **factory) for _ in range(depth)
        )
        self.peanut_decoders[adapter_name] = nn.ModuleList(
            nn.Linear(r, r, bias=False, **factory) for _ in range(depth)
        )
        self.peanut_B[adapter_name] = nn.Linear(r, self.out_features, bias=False, **factory)
        self.r[adapter_name] = r
        self.res_num[adapter_name] = depth
        self.act_fn[adapter_name] = act_fn
        self.scaling[adapter_name] = scaling
        self.reset_peanut_parameters(adapter_name, init_weights)

    def reset_peanut_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        """Kaiming-uniform ``A`` and hidden layers; ``B`` zero (``init_weights``) or Kaiming-uniform too."""
        if adapter_name not in self.peanut_A:
            return
        hidden = [*self.peanut_encoders[adapter_name], *self.peanut_decoders[adapter_name]]
        layers = [self.peanut_A[adapter_name], *hidden]
        with torch.no_grad():
            for layer in [*layers, self.peanut_B[adapter_name]]:
                if layer.weight.is_meta:
                    return
            for layer in layers:
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
            if init_weights:
                nn.init.zeros_(self.peanut_B[adapter_name].weight)
            else:
                nn.init.kaiming_uniform_(self.peanut_B[adapter_name].weight, a=math.sqrt(5))

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        act = activation(self.act_fn[adapter_name])
        weight_a = self.peanut_A[adapter_name].weight
        hidden = act(self._weight_out_in(weight_a.dtype).T @ weight_a.T)  # (in, r)
        skips = []
        for encoder in self.peanut_encoders[adapter_name]:
            skips.append(hidden)
            hidden = act(encoder(hidden))
        for decoder in self.peanut_decoders[adapter_name]:
            hidden = act(decoder(hidden)) + skips.pop()
        return (self.peanut_B[adapter_name](hidden) * self.scaling[adapter_name]).T


class Linear(PeanutLayer, nn.Module):
    """PEANuT on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D``."""
