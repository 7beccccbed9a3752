"""The positions aLoRA adapters act on in the call being computed (see ``peft.tuners.lora.alora``).

Per row, the *offset* counts the positions from the start of the last occurrence of the adapter's invocation sequence
to the end of the input (None: the sequence does not occur). ``PeftModel.forward`` and ``generate`` find the offsets
(``alora_call``) and make them current for the call; adapter layers read them with ``current_alora_offsets``. Kept
apart from the LoRA package, so that models without LoRA adapters never import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import torch

from peft.tuners.tuners_layer import BASE_ADAPTER_NAME
from peft.utils.warnings import warn


class AloraOffsets(list):
    """Per-row offsets (int or None) of the call being computed, with the position masks derived from them cached.
    ``AloraOffsets(None)``: the call has no offsets (no input_ids), and aLoRA adapters change nothing."""

    def __init__(self, offsets: Sequence[int | None] | None) -> None:
        super().__init__(offsets or [])
        self.known = offsets is not None
        self._masks: dict[tuple, torch.Tensor] = {}

    def mask(self, rows: torch.Tensor | None, positions: int, device: torch.device) -> torch.Tensor | None:
        """``(len(rows), positions)`` bool: which positions of the given rows (None: all rows) the adapter changes;
        None when no offsets are known (no position)."""
        if not self.known:
            return None
        key = (None if rows is None else tuple(rows.tolist()), positions, device)
        if key not in self._masks:
            offsets = torch.tensor([0 if o is None else min(int(o), positions) for o in self], device=device)
            if rows is not None:
                offsets = offsets[rows.to(device)]
            self._masks[key] = torch.arange(positions, device=device) >= (positions - offsets)[:, None]
        return self._masks[key]


_current_offsets: ContextVar[AloraOffsets | None] = ContextVar("peft_alora_offsets", default=None)


def current_alora_offsets() -> AloraOffsets | None:
    """The offsets of the call being computed, or None outside a call that set them (a layer called directly, or
    recomputed by activation checkpointing in the backward pass)."""
    return _current_offsets.get()


@contextmanager
def alora_offsets(offsets: Sequence[int | None] | None) -> Iterator[AloraOffsets | None]:
    """Within the block, aLoRA layers adapt row ``i`` on its last ``offsets[i]`` positions (``offsets[i]`` None, or
    ``offsets`` None: nowhere); yields the offsets."""
    current = AloraOffsets(offsets)
    token = _current_offsets.set(current)
    try:
        yield current
    finally:
        _current_offsets.reset(token)


def invocation_offset(input_ids: torch.Tensor, invocation_tokens: Sequence[int]) -> int | None:
    """The offset of the last occurrence of ``invocation_tokens`` in the 1-D ``input_ids`` (None: absent)."""
    length = len(invocation_tokens)
    if length == 0 or input_ids.shape[-1] < length:
        return None
    pattern = torch.as_tensor(list(invocation_tokens), device=input_ids.device, dtype=input_ids.dtype)
    matches = (input_ids.unfold(0, length, 1) == pattern).all(dim=1).nonzero()
    if matches.numel() == 0:
        return None
    return input_ids.shape[-1] - int(matches[-1])


def find_alora_offsets(
    peft_config: Mapping[str, Any], adapter_per_row: Sequence[str], input_ids: torch.Tensor
) -> list[int | None]:
    """Each row's offset for the invocation sequence of its adapter (None for rows without an aLoRA adapter)."""
    offsets: list[int | None] = []
    for row, name in enumerate(adapter_per_row):
        tokens = getattr(peft_config.get(name), "alora_invocation_tokens", None) if name != BASE_ADAPTER_NAME else None
        offsets.append(invocation_offset(input_ids[row], tokens) if tokens else None)
    return offsets


def check_no_beam_search(num_beams: int) -> None:
    """Refuse beam search for a call with aLoRA adapters.

    Raises:
        ValueError: if ``num_beams`` > 1.
    """
    if num_beams > 1:
        raise ValueError(
            f"Beam search not yet supported for aLoRA. Got num_beams={num_beams}: beams reorder the rows, and each "
            "row's adapted positions would be lost. Use greedy decoding or sampling."
        )


def alora_call(
    peft_config: Mapping[str, Any],
    active_adapters: Sequence[str],
    adapter_names: Sequence[str] | None,
    kwargs: dict[str, Any],
    input_ids: torch.Tensor | None,
    repeat: int = 1,
) -> Any:
    """The context for one forward/generate call of a model whose adapters may include aLoRA ones: the offsets
    given as ``kwargs["alora_offsets"]`` (popped) or found in ``input_ids``; a no-op context when no adapter of the
    call is an aLoRA adapter. ``repeat``: rows are repeated that many times (generated sequences per input)."""
    given = kwargs.pop("alora_offsets", None)
    names = list(adapter_names) if adapter_names is not None else list(active_adapters)
    if not any(getattr(peft_config.get(n), "alora_invocation_tokens", None) for n in names):
        return alora_offsets(given) if given is not None else nullcontext()
    check_no_beam_search(kwargs.get("num_beams") or 1)
    if given is None:
        if input_ids is None:
            warn("aLoRA needs input_ids to find the invocation sequence; without them the aLoRA adapter is off.")
            return alora_offsets(None)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        per_row = list(adapter_names) if adapter_names is not None else [active_adapters[0]] * input_ids.shape[0]
        given = find_alora_offsets(peft_config, per_row, input_ids)
    return alora_offsets([offset for offset in given for _ in range(repeat)])
