"""ShadowPEFT layers: a wrapped decoder block that injects the shadow state into its input and advances it.

For the active adapter, with ``h`` the block's input, ``s`` the shadow state and ``h'`` the block's output:

    h~ = h + alpha * W_up(dropout(W_down(h - s)))          (Eq. 2-4: injection; W_down: d -> r, W_up: r -> d)
    h' = block(h~)
    s' = (1 - g) * s + g * T(h'),   g = sigmoid(G(h'))      (Eq. 5-7: gated update; T, G: d -> u -> d MLPs)

The pair ``(h, s)`` travels through the decoder loop as a :class:`ShadowCarrier` in place of the hidden states; the
model (``ShadowModel``) wraps the first adapted block's input and unwraps the last one's output. A block given a
plain tensor (adapters disabled, or the shadow path not active) is just the block. Stored per adapter:
``shadow_down``, ``shadow_up`` (``nn.Linear`` without bias), ``shadow_update_transform`` and ``shadow_update_gate``
(``Linear, GELU, Linear``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.tuners_layer import BaseTunerLayer, current_mixed_batch


def refuse_merge() -> None:
    """ShadowPEFT has no weight delta to merge.

    Raises:
        NotImplementedError: always.
    """
    raise NotImplementedError(
        "ShadowPEFT cannot be merged into the base weights: its adaptation follows the input's trajectory through the "
        "layers, it is no weight delta. Use unload() for the base model or unload_shadow() for the standalone shadow "
        "network."
    )


class ShadowCarrier:
    """The base hidden states and the shadow state of one forward, passed between decoder blocks together."""

    def __init__(self, hidden: torch.Tensor, shadow: torch.Tensor) -> None:
        self.hidden = hidden
        self.shadow = shadow


def block_output_hidden_states(output: Any) -> torch.Tensor:
    """The hidden states a decoder block returned: a tensor, the first entry of a tuple, or the ``hidden_states`` /
    ``last_hidden_state`` of an output object.

    Raises:
        TypeError: for any other output.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple):
        return output[0]
    for name in ("hidden_states", "last_hidden_state"):
        if isinstance(getattr(output, name, None), torch.Tensor):
            return getattr(output, name)
    raise TypeError(f"Unsupported decoder block output {type(output).__name__}; expected a tensor or a tuple.")


class ShadowLayer(BaseTunerLayer, nn.Module):
    """ShadowPEFT on a decoder block of hidden size ``hidden_size`` (the base model's)."""

    adapter_layer_names = ("shadow_down", "shadow_up", "shadow_update_transform", "shadow_update_gate")
    other_param_names = ("shadow_r", "shadow_alpha", "shadow_dropout")

    repr_prefix = "shadow"

    def _init_adapter_state(self) -> None:
        for name in ("shadow_down", "shadow_up", "shadow_update_transform", "shadow_update_gate", "shadow_dropout"):
            setattr(self, name, nn.ModuleDict())
        super()._init_adapter_state()

    def update_layer(
        self,
        adapter_name: str,
        hidden_size: int,
        r: int = 8,
        shadow_alpha: float = 0.1,
        shadow_dropout: float = 0.2,
        init_weights: bool = True,
        update_hidden_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on a block of width ``hidden_size`` (the base model's; other
        arguments as in ``ShadowConfig``)."""
        self.hidden_size = int(hidden_size)
        if r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        d, width = self.hidden_size, update_hidden_size or r
        factory = self._factory_kwargs()
        self.shadow_r[adapter_name] = r
        self.shadow_alpha[adapter_name] = shadow_alpha
        # created in the reference's order, so a seed gives the same initial values
        self.shadow_down[adapter_name] = nn.Linear(d, r, bias=False, **factory)
        self.shadow_up[adapter_name] = nn.Linear(r, d, bias=False, **factory)
        dropout = nn.Dropout(p=shadow_dropout) if shadow_dropout else nn.Identity()
        self.shadow_dropout[adapter_name] = dropout.train(self.get_base_layer().training)  # off in an eval model
        if init_weights:
            nn.init.zeros_(self.shadow_up[adapter_name].weight)
        for container in (self.shadow_update_transform, self.shadow_update_gate):
            container[adapter_name] = nn.Sequential(
                nn.Linear(d, width, **factory), nn.GELU(), nn.Linear(width, d, **factory)
            )

    def _factory_kwargs(self) -> dict[str, Any]:
        """The block's device and floating dtype (its parameters sit in its submodules)."""
        kwargs = super()._factory_kwargs()
        if kwargs["device"] is None or kwargs["dtype"] is None:
            param = next((p for p in self.get_base_layer().parameters() if p.is_floating_point()), None)
            if param is not None and kwargs["device"] is None:
                kwargs["device"] = param.device
            if param is not None and kwargs["dtype"] is None:
                kwargs["dtype"] = param.dtype
        return kwargs

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(hidden_states, ShadowCarrier):
            return self.base_layer(hidden_states, *args, **kwargs)
        if current_mixed_batch() is not None:
            raise ValueError("ShadowPEFT does not support mixed-batch inference (adapter_names).")
        name = self.active_adapters[0]
        hidden, shadow = hidden_states.hidden, hidden_states.shadow
        if self._disable_adapters or not self._has_adapter(name):  # the block runs as it is; the state goes on
            output = self.base_layer(hidden, *args, **kwargs)
            new_hidden, new_shadow = block_output_hidden_states(output), shadow
        else:
            output = self.base_layer(self.shadow_inject(hidden, shadow, name), *args, **kwargs)
            new_hidden = block_output_hidden_states(output)
            new_shadow = self.shadow_update(new_hidden, shadow, name)
        carrier = ShadowCarrier(new_hidden, new_shadow)
        # decoder loops that read output[0] (e.g. GPT-J) get the block's other outputs back in place
        return (carrier, *output[1:]) if isinstance(output, tuple) else carrier

    def shadow_inject(
        self, hidden_states: torch.Tensor, shadow_states: torch.Tensor, adapter_name: str
    ) -> torch.Tensor:
        """``h + alpha * W_up(dropout(W_down(h - s)))``, computed in the adapter's dtype, returned in ``h``'s."""
        down = self.shadow_down[adapter_name]
        delta = (hidden_states - shadow_states).to(down.weight.dtype)
        delta = self.shadow_up[adapter_name](down(self.shadow_dropout[adapter_name](delta)))
        return hidden_states + (self.shadow_alpha[adapter_name] * delta).to(hidden_states.dtype)

    def shadow_update(
        self, hidden_states: torch.Tensor, shadow_states: torch.Tensor, adapter_name: str
    ) -> torch.Tensor:
        """``(1 - g) * s + g * T(h')`` with ``g = sigmoid(G(h'))``, in the adapter's dtype, returned in ``s``'s."""
        transform = self.shadow_update_transform[adapter_name]
        dtype = transform[0].weight.dtype
        hidden = hidden_states.to(dtype)
        gate = torch.sigmoid(self.shadow_update_gate[adapter_name](hidden))
        new_shadow = (1.0 - gate) * shadow_states.to(dtype) + gate * transform(hidden)
        return new_shadow.to(shadow_states.dtype)

    # ---------------------------------------------------------------------------------------------- merging
    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        refuse_merge()

    def __getattr__(self, name: str) -> Any:
        # decoder loops read attributes of the block they iterate over (e.g. Qwen3's `attention_type`)
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_layer", "_modules", "_parameters", "_buffers") or "base_layer" not in self._modules:
                raise
            return getattr(self._modules["base_layer"], name)
