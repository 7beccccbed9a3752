"""``BufferDict``: buffers keyed by adapter name, the buffer counterpart of ``nn.ParameterDict``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn


class BufferDict(nn.Module):
    """Holds tensors as buffers of this module, keyed by str. Not a ``Mapping`` (it stays hashable like any module).

    Args:
        buffers: initial items (a dict, another ``BufferDict`` or ``(key, tensor)`` pairs).
        persistent: whether the buffers appear in ``state_dict``; set before any item is added.
    """

    def __init__(self, buffers: dict | BufferDict | Iterable | None = None, persistent: bool = False) -> None:
        super().__init__()
        self.persistent = persistent
        if buffers is not None:
            self.update(buffers)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._buffers[key]

    def __setitem__(self, key: str, buffer: torch.Tensor) -> None:
        self.register_buffer(key, buffer, persistent=self.persistent)

    def __delitem__(self, key: str) -> None:
        del self._buffers[key]
        self._non_persistent_buffers_set.discard(key)

    def __len__(self) -> int:
        return len(self._buffers)

    def __iter__(self) -> Iterator[str]:
        return iter(self._buffers)

    def __contains__(self, key: object) -> bool:
        return key in self._buffers

    def keys(self) -> Iterable[str]:
        return self._buffers.keys()

    def items(self) -> Iterable[tuple[str, torch.Tensor]]:
        return self._buffers.items()

    def values(self) -> Iterable[torch.Tensor]:
        return self._buffers.values()

    def update(self, buffers: dict | BufferDict | Iterable) -> None:
        """Add items from a dict, another ``BufferDict``, or ``(key, tensor)`` pairs."""
        items = buffers.items() if isinstance(buffers, (dict, BufferDict)) else buffers
        for key, value in items:
            self[key] = value

    def extra_repr(self) -> str:
        return ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._buffers.items())
