"""Tensors that a distributed engine shards: their full shape, reading them whole, and when that is impossible.

- DeepSpeed ZeRO-3 partitions each parameter across the ranks: its data is empty (``ds_shape`` is the full shape)
  except inside the forward of the module that owns it or a ``deepspeed.zero.GatheredParameters`` block. Reading it
  elsewhere means gathering it, a collective every rank must take part in.
- FSDP1 flattens the parameters of each unit: with ``use_orig_params=True`` a parameter outside its unit's forward is
  a 1-D slice of this rank's shard; with ``use_orig_params=False`` it is no longer a registered parameter but a view
  whose storage is freed once the unit reshards.
- FSDP2 (``fully_shard``) turns parameters into DTensor shards outside their unit's forward.

Nothing here imports an engine; DeepSpeed is imported only when a ZeRO-3 parameter has to be gathered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

MERGE_WORKAROUND = (
    "To merge, gather the weights first: under DeepSpeed ZeRO-3, merge inside "
    "`with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0):` on every rank; under FSDP, "
    "save the adapter from a full state dict, load it on the unsharded base model in one process, and merge there."
)
READ_WORKAROUND = (
    "Add and load adapters before the model is sharded (FSDP, fully_shard); inside a forward pass the weights of the "
    "unit running it are whole."
)


def full_shape(tensor: torch.Tensor) -> torch.Size:
    """The shape of ``tensor`` as the model defines it, also while ZeRO-3 holds only a partition of it."""
    return getattr(tensor, "ds_shape", tensor.shape)


def is_zero3_partitioned(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ZeRO-3 parameter whose data is not gathered on this rank now."""
    status = getattr(tensor, "ds_status", None)
    return status is not None and status.name != "AVAILABLE"


@contextmanager
def gathered(tensors: Iterable[torch.Tensor]) -> Iterator[None]:
    """Within the block, those of ``tensors`` that ZeRO-3 partitions hold their full data; the others are left as they
    are. Gathering is a collective: every rank must enter the block when any tensor is partitioned."""
    partitioned = [t for t in tensors if is_zero3_partitioned(t)]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned):
        yield


def _sharding_of(module: nn.Module, name: str = "weight") -> str | None:
    """How tensor ``name`` of ``module`` is sharded right now, in words, or None when it is whole (or partitioned by
    ZeRO-3, which :func:`gathered` can undo on any rank)."""
    tensor = getattr(module, name, None)
    if not isinstance(tensor, torch.Tensor) or hasattr(tensor, "ds_id"):
        return None
    if any(type(p).__name__ in ("Shard", "_StridedShard") for p in getattr(tensor, "placements", ())):
        return "a DTensor shard (FSDP2 or tensor parallelism)"
    if getattr(tensor, "_fsdp_flattened", False) and tensor.dim() < 2 and _weight_ndim(module) >= 2:
        return "a flat shard of an FSDP unit (use_orig_params=True), outside the unit's forward"
    registered = name in module._parameters or name in module._buffers
    if not registered and tensor.untyped_storage().size() == 0:
        return "a view of a resharded FSDP flat parameter (use_orig_params=False), outside the unit's forward"
    return None


def _weight_ndim(module: nn.Module) -> int:
    """How many dimensions the weight of a torch layer of ``module``'s type has (0 when unknown)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        return 2
    if isinstance(module, nn.modules.conv._ConvNd):
        return 2 + len(module.kernel_size)
    return 0


def check_whole(
    module: nn.Module, what: str, name: str = "weight", allow_zero3: bool = True, workaround: str = READ_WORKAROUND
) -> None:
    """Raise if tensor ``name`` of ``module`` cannot be used whole here (``allow_zero3``: ZeRO-3 partitions are fine,
    the caller gathers them); ``what`` and ``workaround`` go into the message.

    Raises:
        ValueError: naming how the tensor is sharded and the documented way around it.
    """
    tensor = getattr(module, name, None)
    sharding = _sharding_of(module, name)
    if sharding is None and not allow_zero3 and hasattr(tensor, "ds_id") and not _gathered_by_caller(tensor):
        sharding = "partitioned by DeepSpeed ZeRO-3 (outside a GatheredParameters block)"
    if sharding is not None:
        raise ValueError(f"Cannot {what}: the {name} of this {type(module).__name__} is {sharding}. {workaround}")


def _gathered_by_caller(tensor: torch.Tensor) -> bool:
    """Whether ZeRO-3 parameter ``tensor`` is inside a ``GatheredParameters`` block, the only place where writing it
    reaches its partitions (with ``modifier_rank``). Being available is not enough: ZeRO-3 may keep parameters
    gathered after a forward for reuse, and writes to those are lost."""
    from deepspeed.runtime.zero import partition_parameters

    marker = getattr(partition_parameters, "DS_Z3_GATHERED_PARAM_CONTEXT_DEPTH_ATTR", None)
    if marker is None:  # DeepSpeed versions that do not mark gathered blocks: availability is the best sign left
        return not is_zero3_partitioned(tensor)
    return getattr(tensor, marker, 0) > 0


def read_whole(module: nn.Module, name: str, read: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``read()``, a function of tensor ``name`` of ``module``, with that tensor whole: a ZeRO-3 partition is gathered
    for the call (a collective) and the result copied, since the gathered data is released afterwards.

    Raises:
        ValueError: if FSDP holds only a shard of the tensor here.
    """
    check_whole(module, "read a base weight", name)
    tensor = getattr(module, name, None)  # quantized layers may store the weight under other names (HQQ's W_q)
    if tensor is None or not is_zero3_partitioned(tensor):
        return read()
    with gathered([tensor]):
        return read().clone()


def whole_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with plain, whole parameters: ZeRO-3 partitions are gathered (a collective) and copied
    into new parameters that carry none of DeepSpeed's bookkeeping, which belongs to the original."""
    partitioned = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not partitioned:
        return copy.deepcopy(module)
    with gathered(partitioned):
        memo = {id(p): nn.Parameter(p.data.clone(), requires_grad=p.requires_grad) for p in partitioned}
        return copy.deepcopy(module, memo)
