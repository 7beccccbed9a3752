"""A bound on the memory a new adapter may take, checked before its tensors are allocated.

A config value such as ``r=10**9`` would otherwise make injection allocate until the machine runs out of memory.
While an adapter is created, a ``torch.overrides.TorchFunctionMode`` (public torch API) sees each call of a tensor
factory (``torch.empty``, ``torch.zeros``, ``torch.randn``, ...) before it runs, adds up the bytes it asks for and
refuses the one that would pass the bound. Only allocations with an explicit size are counted: they are where
config values become tensor sizes; operations on existing tensors are bounded by those.

So that injection into thousands of layers stays fast, the mode watches only the first layer of each kind: layers
whose base layers have the same type and parameter shapes, and that the config's ``*_pattern`` dicts treat alike,
get adapters of the same size, which is charged without watching.

The bound is ``max(4 GiB, twice the model's own parameters and buffers)`` unless set with
:func:`adapter_memory_limit` or the environment variable ``PEFT_ADAPTER_MEMORY_LIMIT`` (bytes, or a number with a
unit such as ``64GiB``; ``none`` for no bound).
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from peft.tuners._targeting import get_pattern_key
from peft.tuners.tuners_layer import BaseTunerLayer

ENV_VAR = "PEFT_ADAPTER_MEMORY_LIMIT"
_MIN_DEFAULT = 4 * 2**30
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_UNSET = object()

_user_limit: contextvars.ContextVar[Any] = contextvars.ContextVar("peft_adapter_memory_limit", default=_UNSET)
_current: contextvars.ContextVar[AllocationBudget | None] = contextvars.ContextVar(
    "peft_allocation_budget", default=None
)


@contextmanager
def adapter_memory_limit(nbytes: int | None) -> Iterator[None]:
    """Within the block, adapters created may take up to ``nbytes`` bytes (None: no bound).

    Example:
        >>> with adapter_memory_limit(64 * 2**30):  # an adapter larger than the default bound, on purpose
        ...     model = get_peft_model(model, config)
    """
    if nbytes is not None and (not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes <= 0):
        raise ValueError(f"The adapter memory limit must be a positive number of bytes or None, got {nbytes!r}.")
    token = _user_limit.set(nbytes)
    try:
        yield
    finally:
        _user_limit.reset(token)


def _limit_for(model: nn.Module) -> int | None:
    limit = _user_limit.get()
    if limit is not _UNSET:
        return limit
    text = os.environ.get(ENV_VAR)
    if text:
        return _parse_limit(text)
    own = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return max(_MIN_DEFAULT, 2 * own)


def _parse_limit(text: str) -> int | None:
    if text.strip().lower() in ("none", "unlimited"):
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"{ENV_VAR}={text!r} is not a memory size: use bytes or a number with a unit (e.g. 64GiB, 500MB), or "
            "'none' for no bound."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _format(nbytes: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size / 4:
            return f"{nbytes / size:.2f} {unit}"
    return f"{int(nbytes)} bytes"


# tensor factories and where their size is: the positional arguments from this index on, or the "size" keyword
_FACTORIES: dict[Any, int] = {
    torch.empty: 0,
    torch.zeros: 0,
    torch.ones: 0,
    torch.rand: 0,
    torch.randn: 0,
    torch.full: 0,
    torch.empty_strided: 0,
    torch.Tensor.new_empty: 1,
    torch.Tensor.new_zeros: 1,
    torch.Tensor.new_ones: 1,
    torch.Tensor.new_full: 1,
}


def _requested_bytes(func: Any, args: tuple, kwargs: dict) -> int:
    """How many bytes the tensor factory call ``func(*args, **kwargs)`` will allocate (0 on the meta device)."""
    if func is torch.randperm:
        numel, dtype = (args[0] if args else kwargs.get("n", 0)), torch.int64
    elif func is torch.eye:
        n = args[0] if args else kwargs.get("n", 0)
        numel, dtype = n * (args[1] if len(args) > 1 else kwargs.get("m", n)), torch.get_default_dtype()
    else:
        start = _FACTORIES[func]
        size = kwargs.get("size", args[start] if len(args) > start else ())
        if isinstance(size, int):  # torch.empty(3, 4): the sizes are the positional arguments
            size = [a for a in args[start:] if isinstance(a, int)] if func is not torch.full else [size]
        numel = 1
        for dim in size:
            numel *= int(dim)
        template = args[0] if start == 1 and args and isinstance(args[0], torch.Tensor) else None
        dtype = kwargs.get("dtype") or (template.dtype if template is not None else torch.get_default_dtype())
    device = kwargs.get("device")
    if device is not None and torch.device(device).type == "meta":
        return 0
    return int(numel) * torch.empty((), dtype=dtype, device="meta").element_size()


class AllocationBudget(TorchFunctionMode):
    """The bytes an adapter's creation may still allocate; while entered (``with budget:``), factory calls that
    would exceed the bound raise ``ValueError`` before allocating."""

    def __init__(self, model: nn.Module, what: str) -> None:
        super().__init__()
        self.model, self.what = model, what
        self.limit: int | None = None
        self.used = 0
        self.where = ""
        self._per_kind: dict[Any, int] = {}
        self._patterns: list[tuple[str, dict]] | None = None
        self._limit_known = False

    def charge(self, nbytes: int) -> None:
        if not self._limit_known:
            self.limit, self._limit_known = _limit_for(self.model), True
        if self.limit is not None and self.used + nbytes > self.limit:
            raise ValueError(
                f"Creating {self.what} would need more than {_format(self.limit)} of memory (already "
                f"{_format(self.used)}, and {_format(nbytes)} more for {self.where or 'the next tensor'}), the bound "
                "on an adapter's size. Check the config's sizes (r, n_frequency, num_virtual_tokens, ...). If the "
                "adapter really is that large, raise the bound: `with peft.helpers.adapter_memory_limit(<bytes>):` "
                f"around the call, or the environment variable {ENV_VAR} (e.g. 64GiB)."
            )
        self.used += nbytes

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES or func is torch.randperm or func is torch.eye:
            nbytes = _requested_bytes(func, args, kwargs)
            if nbytes:
                self.charge(nbytes)
        return func(*args, **kwargs)

    def layer(self, name: str, target: nn.Module, config: Any) -> _LayerScope:
        """A context in which the adapter of module ``name`` is created: watched if it is the first layer of its
        kind, else charged the size of the first one up front."""
        self.where = f"module {name!r}"
        if self._patterns is None:  # the config does not change while its adapter is created
            self._patterns = [
                (field, value)
                for field, value in sorted(vars(config).items())
                if field.endswith("_pattern") and isinstance(value, dict) and value
            ]
        kind = _layer_kind(name, target, self._patterns)
        known = self._per_kind.get(kind)
        if known is not None:
            self.charge(known)
        return _LayerScope(self, kind if known is None else None)


class _LayerScope:
    """Watches the allocations of one layer's adapter (``kind`` is None: nothing to watch), then records their
    size for the layers of the same kind."""

    __slots__ = ("before", "budget", "kind")

    def __init__(self, budget: AllocationBudget, kind: tuple | None) -> None:
        self.budget, self.kind, self.before = budget, kind, 0

    def __enter__(self) -> None:
        if self.kind is not None:
            self.before = self.budget.used
            self.budget.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        if self.kind is not None:
            self.budget.__exit__(*exc_info)
            self.budget._per_kind[self.kind] = self.budget.used - self.before


def _layer_kind(name: str, target: nn.Module, patterns: list[tuple[str, dict]]) -> tuple:
    """What determines the size of the adapter created on ``target``: its base layer's type and parameter shapes,
    and the values the config's ``*_pattern`` dicts (rank_pattern, ...) give module ``name``."""
    base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
    shapes = tuple((n, p.shape, p.dtype) for n, p in base._parameters.items() if p is not None)
    if not patterns:
        return (type(base), shapes)
    chosen = []
    for field, pattern in patterns:
        key = get_pattern_key(pattern.keys(), name)
        chosen.append((field, repr(pattern[key]) if key in pattern else None))
    return (type(base), shapes, tuple(chosen))


@contextmanager
def allocation_budget(model: nn.Module, what: str, enabled: bool = True) -> Iterator[AllocationBudget | None]:
    """Within the block, :func:`current_budget` is a new budget for ``what`` (an adapter) added to ``model``."""
    budget = AllocationBudget(model, what) if enabled else None
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def current_budget() -> AllocationBudget | None:
    """The budget of the adapter being created, or None outside :func:`allocation_budget`."""
    return _current.get()


def watched(name: str, target: nn.Module, config: Any) -> Any:
    """A context in which the adapter of one layer is created, within the current budget if any (see
    :meth:`AllocationBudget.layer`)."""
    budget = _current.get()
    return nullcontext() if budget is None else budget.layer(name, target, config)


@contextmanager
def watched_all(where: str) -> Iterator[None]:
    """Watch every allocation in the block (tensors shared by an adapter's layers) against the current budget."""
    budget = _current.get()
    if budget is None:
        yield
        return
    budget.where = where
    with budget:
        yield
