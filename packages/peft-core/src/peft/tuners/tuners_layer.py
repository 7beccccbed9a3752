"""``BaseTunerLayer``: the lifecycle every adapter layer shares.

An adapter layer wraps its original module as ``base_layer`` and calls its forward (never copies it). Per-adapter
state lives in dicts keyed by adapter name, named by the class attributes ``adapter_layer_names`` (trainable, saved)
and ``other_param_names`` (per-adapter settings). Activation, enabling, trainability, deletion, device placement,
merging (through the quantization backend) and mixed-batch dispatch are written here once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from peft.quantization import (
    QuantizationBackend,
    check_base_layer,
    get_backend,
    is_plain_torch_layer,
    resolve_quantization_backend,
)
from peft.quantization.helpers import quantization_extra_repr
from peft.tuners._targeting import is_transformers_conv1d
from peft.utils.distributed import MERGE_WORKAROUND, check_whole, full_shape, read_whole
from peft.utils.files import check_path_segment
from peft.utils.torch_internals import (
    default_device_is_meta,
    forward_is_hooked,
    set_plain_attributes,
    set_submodules,
)
from peft.utils.warnings import warn

BASE_ADAPTER_NAME = "__base__"  # in mixed batches: rows that use the base model
# dtypes whose matrix products, inverses and decompositions are computed in float32
HALF_PRECISION = (torch.float16, torch.bfloat16)
# torch layers whose forward returns a new tensor that nothing else references
_FRESH_OUTPUT_LAYERS = frozenset({nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding})
_mixed_batch_adapter_names: contextvars.ContextVar[Sequence[str] | None] = contextvars.ContextVar(
    "peft_mixed_batch_adapter_names", default=None
)


# how many mixed_batch blocks are open, in any thread; a plain global so torch.compile traces the common case
_open_mixed_batches = 0


class MixedBatch(list):
    """Per-row adapter names, with what layers derive from them computed once per forward."""

    def __init__(self, adapter_names: Sequence[str]) -> None:
        super().__init__(adapter_names)
        self.unique_names = list(dict.fromkeys(adapter_names))
        self._groups: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._masks: dict[tuple, torch.Tensor] = {}

    def groups(self, device: torch.device) -> dict[str, torch.Tensor]:
        """``{adapter name: row indices}`` on ``device``."""
        if device not in self._groups:
            rows: dict[str, list[int]] = {}
            for row, name in enumerate(self):
                rows.setdefault(name, []).append(row)
            self._groups[device] = {name: torch.tensor(r, device=device) for name, r in rows.items()}
        return self._groups[device]

    def column_mask(
        self, names: Sequence[str], ranks: Sequence[int], scalings: Sequence[float], like: torch.Tensor
    ) -> torch.Tensor:
        """``(rows, sum(ranks))`` mask for the adapters' stacked ranks (``names[i]`` owns ``ranks[i]`` consecutive
        columns): a row's own adapter's columns hold its scaling ``scalings[i]``, all other entries 0."""
        key = (tuple(names), tuple(ranks), tuple(scalings), like.device, like.dtype)
        if key not in self._masks:
            slot = {name: i for i, name in enumerate(names)}
            row_slots = torch.tensor([slot.get(name, -1) for name in self], device=like.device)
            column_slots = torch.arange(len(names), device=like.device).repeat_interleave(
                torch.tensor(ranks, device=like.device)
            )
            column_scalings = torch.tensor(scalings, dtype=like.dtype, device=like.device).repeat_interleave(
                torch.tensor(ranks, device=like.device)
            )
            self._masks[key] = (row_slots[:, None] == column_slots[None, :]) * column_scalings
        return self._masks[key]


@contextmanager
def mixed_batch(adapter_names: Sequence[str] | None) -> Iterator[None]:
    """Within the block, adapter layers use ``adapter_names[i]`` for row ``i`` of their input.

    A context variable rather than forward hooks: nothing is registered on modules, so nothing can leak when the
    forward raises.
    """
    global _open_mixed_batches
    if adapter_names is not None and not isinstance(adapter_names, MixedBatch):
        adapter_names = MixedBatch(adapter_names)
    token = _mixed_batch_adapter_names.set(adapter_names)
    _open_mixed_batches += 1
    try:
        yield
    finally:
        _open_mixed_batches -= 1
        _mixed_batch_adapter_names.reset(token)


def _check_rows(adapter_names: Sequence[str], x: torch.Tensor) -> None:
    if len(adapter_names) != x.shape[0]:
        raise ValueError(
            f"adapter_names has {len(adapter_names)} entries but the batch has {x.shape[0]} rows; give one adapter "
            "name per row."
        )


def forward_rows_by_adapter(
    adapter_names: Sequence[str], x: torch.Tensor, forward_for: Callable[[str, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """For a mixed batch: ``forward_for(name, rows)`` on each adapter's rows of ``x``, outputs back in row order."""
    _check_rows(adapter_names, x)
    batch = adapter_names if isinstance(adapter_names, MixedBatch) else MixedBatch(adapter_names)
    result = None
    for name, index in batch.groups(x.device).items():
        out = forward_for(name, x.index_select(0, index))
        if not isinstance(out, torch.Tensor):
            raise ValueError("Mixed-batch inference needs modules that return one tensor.")
        if result is None:
            result = out.new_empty((x.shape[0], *out.shape[1:]))
        result[index] = out
    return result


def current_mixed_batch() -> Sequence[str] | None:
    """The per-row adapter names of the mixed batch being computed, or None."""
    if not _open_mixed_batches:  # no context-variable read (a graph break under torch.compile) in normal forwards
        return None
    return _mixed_batch_adapter_names.get()


class AdapterNamesTypeError(TypeError, ValueError):
    """``adapter_names`` given as one str where a list is expected. A ``TypeError`` as in the reference, and a
    ``ValueError`` for code written against earlier versions of this library."""


def check_adapter_name(adapter_name: str) -> None:
    """Adapter names become state_dict key segments and folder names of saved adapters: a non-empty str without
    dots, path separators, drives or NUL."""
    if not isinstance(adapter_name, str) or not adapter_name or "." in adapter_name:
        raise ValueError(f"Invalid adapter name {adapter_name!r}: use a non-empty str without '.'.")
    check_path_segment(adapter_name, "adapter name")


class LazyAdapterContainer:
    """Class attribute of an adapter layer: a per-adapter container (a module) created on first access.

    For containers most layers of a type never fill (LoRA's embedding factors and DoRA magnitudes on a Linear): with
    thousands of layers, empty containers would cost a fifth of the injection time. Lifecycle code reads containers
    through ``BaseTunerLayer.adapter_container``, which does not create them.
    """

    def __init__(self, factory: Callable[[], nn.Module]) -> None:
        self.factory = factory

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: nn.Module | None, owner: type | None = None) -> Any:
        if layer is None:
            return self
        container = layer._modules.get(self.name)
        if container is None:
            container = self.factory()
            set_submodules(layer, **{self.name: container})
        return container


def _as_list(adapter_names: str | Sequence[str]) -> list[str]:
    return [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)


def get_in_out_features(module: nn.Module) -> tuple[int | None, int | None]:
    """``(in_features, out_features)`` of a base layer, for every layer type adapters support.

    Quantized layers report the features of their dequantized weight (a packed tensor's shape tells nothing).

    Raises:
        ValueError: for ``nn.MultiheadAttention`` whose query, key and value sizes differ.
    """
    backend = None if is_plain_torch_layer(module) else resolve_quantization_backend(module)
    if backend is not None:
        return backend.in_out_features(module)
    if isinstance(module, nn.Linear):
        weight = module.weight
        # tensor-parallel weights: the local shard's shape
        shape = weight.to_local().shape if hasattr(weight, "to_local") else full_shape(weight)
        return shape[1], shape[0]
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels, module.out_channels
    if isinstance(module, nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    if is_transformers_conv1d(module):
        shape = full_shape(module.weight)
        return shape[0], shape[1]
    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim:
            raise ValueError(
                "Only same embed for query/key/value is supported as of now for MultiheadAttention: its query, key "
                "and value sizes must be equal."
            )
        return module.embed_dim, 3 * module.embed_dim
    for in_name, out_name in (
        ("in_features", "out_features"),
        ("infeatures", "outfeatures"),
        ("input_size", "output_size"),
    ):
        if hasattr(module, in_name) and hasattr(module, out_name):
            return getattr(module, in_name), getattr(module, out_name)
    return None, None


class BaseTunerLayer:
    """Mixin for adapter layers: ``class Linear(MyLayer, nn.Module)`` (the mixin first, so its ``forward`` wins).

    A method's layer sets ``adapter_layer_names`` (its trainable per-adapter containers, ``nn.ParameterDict``s unless
    the class declares them otherwise) and ``other_param_names`` (per-adapter settings, plain dicts), and implements
    ``update_layer(adapter_name, **options)``, which creates an adapter. Additive methods implement
    ``_adapter_update(x, adapter_name)`` (what the adapter adds to the base output) and, to be mergeable,
    ``get_delta_weight(adapter_name)``; others override ``_adapter_output``. Everything else comes from here.
    """

    adapter_layer_names: tuple[str, ...] = ()
    other_param_names: tuple[str, ...] = ()
    # those of other_param_names holding buffers that are saved with the adapter but never trained (SHiRA's indices)
    adapter_buffer_names: tuple[str, ...] = ()
    # which of adapter_layer_names tells whether this layer holds an adapter
    _primary_adapter_layer_name: str | None = None
    # False for methods whose merge changes only state beyond the weight (``_merge_extra``, e.g. a bias): the
    # weight is then neither read nor written back (no requantization of an unchanged quantized weight)
    merges_base_weight: bool = True

    _active_adapter: str | list[str] = "default"
    _disable_adapters: bool = False
    merged_adapters: list[str]
    cast_input_dtype_enabled: bool = True
    # False: autocast_adapter_dtype leaves this layer's adapters in their dtype (LN Tuning's copies of base modules)
    upcast_adapter_dtype: bool = True
    # the method's name, shown before the class name in repr ("lora.Linear(...)", as in the reference)
    repr_prefix: str = ""

    def __init__(self, base_layer: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        """Wrap ``base_layer`` and create the adapter ``adapter_name`` on it: ``update_layer(adapter_name,
        **kwargs)``."""
        super().__init__()
        self._init_tuner_layer(base_layer)
        self._init_adapter_state()
        self._activate(adapter_name)
        self.update_layer(adapter_name, **kwargs)

    def _init_tuner_layer(self, base_layer: nn.Module) -> None:
        """Set the state every adapter layer has; call right after ``nn.Module.__init__``."""
        check_base_layer(base_layer)
        set_submodules(self, base_layer=base_layer)
        in_features, out_features = get_in_out_features(base_layer)
        inner = base_layer.get_base_layer() if isinstance(base_layer, BaseTunerLayer) else base_layer
        set_plain_attributes(
            self,
            _active_adapter=[],
            _disable_adapters=False,
            merged_adapters=[],
            in_features=in_features,
            out_features=out_features,
            # transformers' Conv1D stores its weight as (in, out): deltas are transposed for it
            fan_in_fan_out=not isinstance(inner, nn.Linear) and is_transformers_conv1d(inner),
        )

    def _init_adapter_state(self) -> None:
        """Create the empty per-adapter state: an ``nn.ParameterDict`` for each of ``adapter_layer_names`` and a
        dict for each of ``other_param_names``, except the containers the class declares itself or a subclass
        created before calling this."""
        cls, modules = type(self), self._modules
        for name in self.adapter_layer_names:
            if name not in modules and not hasattr(cls, name):
                set_submodules(self, **{name: nn.ParameterDict()})
        for name in self.other_param_names:
            if name not in modules and name not in self.__dict__ and not hasattr(cls, name):
                set_plain_attributes(self, **{name: {}})

    def update_layer(self, adapter_name: str, **kwargs: Any) -> None:
        """Create (or replace) the adapter ``adapter_name`` on this layer."""
        raise NotImplementedError(f"{type(self).__name__} does not implement update_layer.")

    def __repr__(self) -> str:
        text = super().__repr__()
        return f"{self.repr_prefix}.{text}" if self.repr_prefix else text

    # ---------------------------------------------------------------------------------------------- base layer
    def get_base_layer(self) -> nn.Module:
        """The innermost module that is not an adapter layer."""
        base_layer = self
        while isinstance(base_layer, BaseTunerLayer):
            base_layer = base_layer.base_layer
        return base_layer

    @property
    def weight(self) -> torch.Tensor:
        base_layer = self.get_base_layer()
        return base_layer.qweight if hasattr(base_layer, "qweight") else base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.get_base_layer(), "bias", None)

    @property
    def quantization_backend(self) -> QuantizationBackend | None:
        """The backend of the base layer's weight format (None for plain float layers)."""
        return resolve_quantization_backend(self.get_base_layer())

    def base_layer_device(self) -> torch.device:
        """The device of the base layer's tensors (read from any of them: quantized layers need not have a
        ``weight``)."""
        tensor = _first_tensor(self.get_base_layer())
        if tensor is None:
            raise ValueError(f"The base layer {type(self.get_base_layer()).__name__} holds no tensor.")
        return tensor.device

    def extra_repr(self) -> str:
        return quantization_extra_repr(self)

    def get_base_weight(self) -> torch.Tensor:
        """The base layer's weight, dequantized and whole (gathered under DeepSpeed ZeRO-3, so every rank must read
        it); reading it never changes the layer.

        Raises:
            ValueError: if FSDP holds only a shard of the weight here (outside the forward of its unit).
        """
        base_layer = self.get_base_layer()
        return read_whole(base_layer, "weight", lambda: get_backend(base_layer).get_weight(base_layer))

    def set_base_weight(self, weight: torch.Tensor) -> None:
        """Write ``weight`` into the base layer (requantizing as needed), keeping its dtype.

        Raises:
            ValueError: if the weight is sharded (FSDP) or partitioned (ZeRO-3) here.
        """
        base_layer = self.get_base_layer()
        self._check_base_weight_writable()
        get_backend(base_layer).set_weight(base_layer, weight)

    def _check_base_weight_writable(self) -> None:
        """Raise unless the base weight is whole here, so that merging can write it."""
        check_whole(self.get_base_layer(), "merge an adapter", allow_zero3=False, workaround=MERGE_WORKAROUND)

    # ---------------------------------------------------------------------------------------------- adapters
    def adapter_container(self, name: str) -> Any:
        """This layer's per-adapter container ``name`` (one of ``adapter_layer_names``/``other_param_names``), or
        None; a lazy container that was never used stays uncreated."""
        container = self._modules.get(name)
        if container is not None or isinstance(getattr(type(self), name, None), LazyAdapterContainer):
            return container
        return getattr(self, name, None)

    def _adapter_dicts(self) -> Iterator[Any]:
        for name in self.adapter_layer_names:
            container = self.adapter_container(name)
            if container is not None:
                yield container

    def _has_adapter(self, adapter_name: str) -> bool:
        primary = self._primary_adapter_layer_name or self.adapter_layer_names[0]
        return adapter_name in getattr(self, primary)

    def _all_available_adapter_names(self) -> list[str]:
        names: set[str] = set()
        for attr in self.adapter_layer_names + self.other_param_names:
            container = self.adapter_container(attr)
            if hasattr(container, "keys"):
                names.update(container.keys())
        return sorted(names)

    @property
    def active_adapter(self) -> str | list[str]:
        return self._active_adapter

    @property
    def active_adapters(self) -> list[str]:
        return _as_list(self._active_adapter)

    @property
    def disable_adapters(self) -> bool:
        return self._disable_adapters

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    @property
    def frozen_peft_weight_names(self) -> dict[str, set[str]]:
        """Adapter name -> the names of its containers (e.g. ``"lora_B"``) that stay frozen when the adapter is
        trainable: a method that trains only part of its adapter (MiCA trains ``A`` only) records them here."""
        return self.__dict__.setdefault("_frozen_peft_weight_names", {})

    def _trainable(self, adapter_name: str, container_name: str, requires_grad: bool) -> bool:
        return requires_grad and container_name not in self.frozen_peft_weight_names.get(adapter_name, ())

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        """Make the parameters of ``adapter_names`` on this layer trainable (or frozen); weights recorded in
        ``frozen_peft_weight_names`` stay frozen."""
        for attr in self.adapter_layer_names:
            container = self.adapter_container(attr)
            for name in _as_list(adapter_names):
                if container is not None and name in container:
                    _set_requires_grad(container[name], self._trainable(name, attr, requires_grad))

    def _activate(self, adapter_names: str | Sequence[str]) -> None:
        """Choose which adapters compute; trainability is left as it is."""
        # runs for every layer on each switch: a plain attribute set without nn.Module.__setattr__'s checks
        set_plain_attributes(
            self, _active_adapter=adapter_names if isinstance(adapter_names, str) else list(adapter_names)
        )

    def set_adapter(self, adapter_names: str | Sequence[str], inference_mode: bool = False) -> None:
        """Activate ``adapter_names``; they become trainable unless ``inference_mode``, all others are frozen."""
        self._activate(adapter_names)
        active = set(self.active_adapters)
        for attr in self.adapter_layer_names:
            container = self.adapter_container(attr)
            for name, item in container.items() if container is not None else ():
                _set_requires_grad(item, self._trainable(name, attr, name in active and not inference_mode))

    def enable_adapters(self, enabled: bool) -> None:
        """Turn all adapters of this layer on or off; off freezes their parameters."""
        if enabled:
            self._disable_adapters = False
        else:
            self.set_requires_grad(self._all_available_adapter_names(), requires_grad=False)
            self._disable_adapters = True

    def delete_adapter(self, adapter_name: str, new_active_adapters: Sequence[str] | None = None) -> None:
        """Remove ``adapter_name``'s state from this layer.

        If it was active, ``new_active_adapters`` (chosen by the caller, identically for every layer) become active;
        without it, the remaining active adapters, else the first remaining adapter in sorted order.
        """
        for attr in self.adapter_layer_names + self.other_param_names:
            container = self.adapter_container(attr)
            if hasattr(container, "keys") and adapter_name in container:
                del container[adapter_name]
        self.frozen_peft_weight_names.pop(adapter_name, None)
        if adapter_name in self.merged_adapters:
            self.merged_adapters.remove(adapter_name)  # its delta stays merged into the base weight
        if adapter_name not in self.active_adapters:
            return
        if new_active_adapters is None:
            new_active_adapters = [n for n in self.active_adapters if n != adapter_name]
            remaining = self._all_available_adapter_names()
            if not new_active_adapters and remaining:
                new_active_adapters = remaining[:1]
        self._activate(list(new_active_adapters))

    def _factory_kwargs(self) -> dict[str, Any]:
        """``device``/``dtype`` for new adapter tensors: the base layer's device and floating dtype (meta inside a
        ``torch.device("meta")`` block), so new adapters never need moving."""
        reference = _first_tensor(self.get_base_layer())
        if default_device_is_meta():
            device = torch.device("meta")
        else:
            device = reference.device if reference is not None else None
        dtype = reference.dtype if reference is not None and reference.is_floating_point() else None
        return {"device": device, "dtype": dtype}

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device: torch.device | None = None) -> None:
        """Put ``adapter_name``'s tensors on the base layer's device and floating dtype; meta tensors stay."""
        reference = _first_tensor(self.get_base_layer())
        if device is None:
            if reference is None:
                return
            device = reference.device
        dtype = reference.dtype if reference is not None and reference.is_floating_point() else None
        if device.type == "meta":
            return
        for container in self._adapter_dicts():
            if adapter_name not in container:
                continue
            item = container[adapter_name]
            if any(t.device.type == "meta" for t in _tensors_of(item)):
                continue
            moved = item.to(device=device, dtype=dtype) if dtype is not None else item.to(device)
            if moved is not item:  # modules move in place; a Parameter comes back as a new tensor
                container[adapter_name] = nn.Parameter(moved, requires_grad=item.requires_grad)
        for name in self.adapter_buffer_names:  # buffers follow the device but keep their dtype (SHiRA's indices)
            container = self.adapter_container(name)
            if container is not None and adapter_name in container and container[adapter_name].device.type != "meta":
                container[adapter_name] = container[adapter_name].to(device)

    def _cast_input_dtype(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Cast the input to the adapter's dtype, unless disabled (diffusers' layerwise casting needs that)."""
        if not self.cast_input_dtype_enabled or x.dtype == dtype or not x.is_floating_point():
            return x
        return x.to(dtype)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Base output plus, for each active unmerged adapter, ``_adapter_output``; per-row adapters in mixed
        batches."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            adapter_names = current_mixed_batch()
        if self._disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(x, *args, adapter_names=adapter_names, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if self._has_adapter(name):
                result = self._adapter_output(x, result, name)
        return result

    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """The base output ``result`` with adapter ``adapter_name`` applied to input ``x``.

        Additive methods define ``_adapter_update(x, adapter_name)`` and get this default: the update is added, in
        place when this call owns the base output. Other methods override it.
        """
        adapter_update = getattr(self, "_adapter_update", None)
        if adapter_update is None:
            raise NotImplementedError(f"{type(self).__name__} does not implement _adapter_output.")
        update = adapter_update(x, adapter_name).to(result.dtype)
        return result.add_(update) if self._owns_base_output() else result + update

    def _owns_base_output(self) -> bool:
        """Whether the direct base layer's output is a tensor only this call holds, so that adapters may add to it
        in place (saving an output-sized buffer per layer): a plain torch layer whose forward no hook observes or
        replaces. Its backward never needs its own output, so in-place updates are safe under autograd too."""
        base = self.base_layer
        return type(base) in _FRESH_OUTPUT_LAYERS and not forward_is_hooked(base)

    def _check_mixed_batch_state(self, adapter_names: Sequence[str], x: torch.Tensor) -> None:
        if self.training:
            raise ValueError("Mixed-batch inference (adapter_names) is not supported in training mode; call .eval().")
        _check_rows(adapter_names, x)
        if self.merged:
            raise ValueError(
                f"Mixed-batch inference is not possible while adapters {self.merged_adapters} are merged; "
                "unmerge first."
            )

    def _mixed_batch_forward(
        self, x: torch.Tensor, *args: Any, adapter_names: Sequence[str], **kwargs: Any
    ) -> torch.Tensor:
        self._check_mixed_batch_state(adapter_names, x)
        result = self.base_layer(x, *args, **kwargs)
        groups = (adapter_names if isinstance(adapter_names, MixedBatch) else MixedBatch(adapter_names)).groups(
            x.device
        )
        additive = hasattr(self, "_adapter_update")
        if not (additive and self._owns_base_output()):
            result = result.clone()
        for name, index in groups.items():
            if name == BASE_ADAPTER_NAME or not self._has_adapter(name):
                continue
            rows = x.index_select(0, index)
            if additive:  # add each adapter's rows in place
                result.index_add_(0, index, self._adapter_update(rows, name).to(result.dtype))
            else:
                result[index] = self._adapter_output(rows, result[index], name)
        return result

    # ---------------------------------------------------------------------------------------------- merging
    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The change adapter ``adapter_name`` makes to the base weight, in the base weight's layout."""
        raise NotImplementedError(f"{type(self).__name__} cannot be merged.")

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` with the adapter merged in (additive by default)."""
        return weight + self.get_delta_weight(adapter_name).to(weight.dtype)

    def _unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_merged_weight`."""
        return weight - self.get_delta_weight(adapter_name).to(weight.dtype)

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        """Merge (sign=1) or unmerge (sign=-1) state beyond the weight, e.g. a bias; nothing by default."""

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        """Raise if these adapters cannot be merged on this layer; methods override."""

    def has_linear_base(self) -> bool:
        """Whether the base layer is linear with a 2-D weight (``nn.Linear``, a quantized linear, transformers'
        ``Conv1D``)."""
        base = self.get_base_layer()
        return isinstance(base, nn.Linear) or is_transformers_conv1d(base)

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """Whether adapter ``adapter_name`` of this layer can be written as a LoRA adapter (``convert_to_lora``): its
        merge adds ``get_delta_weight`` to the weight of a linear base layer and changes nothing else."""
        cls = type(self)
        if (
            isinstance(self, NonAdditiveTunerLayer)
            or not self.merges_base_weight
            or cls.get_delta_weight is BaseTunerLayer.get_delta_weight
            or cls._merge_extra is not BaseTunerLayer._merge_extra
            or not self.has_linear_base()
        ):
            return False
        try:
            self._check_merge_allowed([adapter_name])
        except (ValueError, NotImplementedError, TypeError):
            return False
        return True

    def _adapters_to_merge(self, adapter_names: Sequence[str] | None) -> list[str]:
        if isinstance(adapter_names, str):
            raise AdapterNamesTypeError(f"adapter_names should be a list of strings, got {adapter_names!r}.")
        if adapter_names is None:
            adapter_names = self.active_adapters
        if self.merged:
            already = [n for n in adapter_names if n in self.merged_adapters]
            if already and len(already) == len(adapter_names):
                warn("All adapters are already merged, nothing to do.")
            elif already:
                warn(f"Already merged adapters {already} are skipped; merging only the others.")
            adapter_names = [n for n in adapter_names if n not in self.merged_adapters]
        return [n for n in adapter_names if self._has_adapter(n)]

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Merge adapters (default: the active ones) into the base weight.

        Args:
            safe_merge: compute on a copy and refuse non-finite results, leaving the base weight untouched.
            adapter_names: adapters to merge; already merged ones are skipped.

        Raises:
            ValueError: if ``safe_merge`` finds NaN/inf, or ``adapter_names`` is a str.
        """
        names = self._adapters_to_merge(adapter_names)
        if not names:
            return
        self._check_merge_allowed(names)
        self._check_base_weight_writable()  # before reading: a read may be a collective the other ranks never join
        for name in names:
            if self.merges_base_weight:
                weight = self.get_base_weight()
                merged = self._merged_weight(name, weight.clone() if safe_merge else weight)
                if safe_merge and not torch.isfinite(merged).all():
                    raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken.")
                self.set_base_weight(merged)
            self._merge_extra(name, 1)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Undo all merges, last merged first."""
        if not self.merged:
            warn("Already unmerged. Nothing to do.")
            return
        self._check_base_weight_writable()
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if self._has_adapter(name):
                if self.merges_base_weight:
                    self.set_base_weight(self._unmerged_weight(name, self.get_base_weight()))
                self._merge_extra(name, -1)

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        """Merge if asked and return the module this layer wraps."""
        if merge:
            self.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        return self.base_layer


class NonAdditiveTunerLayer(BaseTunerLayer):
    """``BaseTunerLayer`` for methods whose adapters change the base layer's call itself (its input, or which module
    runs) instead of adding to its output: (IA)³ scaling, LN Tuning's module copies, OFT/BOFT/HRA rotations.

    A method implements ``_adapted_forward(x, adapter_names, *args, **kwargs)``: the output with ``adapter_names``
    (the active ones present on this layer, possibly none) applied. Normal and mixed-batch forwards come from here; a
    mixed batch calls it once per adapter's rows.
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            adapter_names = current_mixed_batch()
        if adapter_names is not None or self._disable_adapters or self.merged:
            return super().forward(x, *args, adapter_names=adapter_names, **kwargs)
        names = [name for name in self.active_adapters if self._has_adapter(name)]
        return self._adapted_forward(x, names, *args, **kwargs)

    def _mixed_batch_forward(self, x: torch.Tensor, *args: Any, adapter_names: Sequence[str], **kwargs: Any) -> Any:
        self._check_mixed_batch_state(adapter_names, x)

        def forward_for(name: str, rows: torch.Tensor) -> torch.Tensor:
            # the base model's rows (BASE_ADAPTER_NAME) adapt nothing
            return self._adapted_forward(rows, [name] if self._has_adapter(name) else [], *args, **kwargs)

        return forward_rows_by_adapter(adapter_names, x, forward_for)

    def _adapted_forward(self, x: torch.Tensor, adapter_names: list[str], *args: Any, **kwargs: Any) -> Any:
        """The layer's output for ``x`` with ``adapter_names`` applied (none: the base layer's output)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _adapted_forward.")


def base_parameter_path(layer: nn.Module, parameter_name: str) -> str:
    """Path of ``parameter_name`` of the innermost base module, relative to ``layer.base_layer`` (through nested
    adapter layers), for ``call_with_tensors`` (``peft.utils.torch_internals``) on the base layer."""
    path, module = [], layer.base_layer
    while isinstance(module, BaseTunerLayer):
        path.append("base_layer")
        module = module.base_layer
    return ".".join([*path, parameter_name])


def _set_requires_grad(item: nn.Module | torch.Tensor, requires_grad: bool) -> None:
    if isinstance(item, torch.Tensor):
        item.requires_grad_(requires_grad)
    elif item._modules:
        item.requires_grad_(requires_grad)
    else:  # a leaf module (the usual adapter factor): no traversal
        for param in item._parameters.values():
            if param is not None:
                param.requires_grad_(requires_grad)


def _first_tensor(module: nn.Module) -> torch.Tensor | None:
    for tensor in module._parameters.values():
        if tensor is not None:
            return tensor
    for tensor in module._buffers.values():
        if tensor is not None:
            return tensor
    return None


def _tensors_of(item: Any) -> list[torch.Tensor]:
    if isinstance(item, torch.Tensor):
        return [item]
    if isinstance(item, nn.Module):
        return list(item.parameters()) + list(item.buffers())
    return []


def walk_modules(model: nn.Module, into_adapters: bool = True) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules()`` in the same order, without descending into adapter internals: below an adapter layer
    only its ``base_layer`` is visited (``into_adapters=False``: nothing below it), so the cost of walking a model
    does not grow with the number of adapters it holds. Auxiliary wrappers are descended into like plain modules."""
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        yield name, module
        if isinstance(module, BaseTunerLayer):
            children = [("base_layer", module.base_layer)] if into_adapters else []
        else:
            children = [(child_name, child) for child_name, child in module._modules.items() if child is not None]
        prefix = f"{name}." if name else ""
        stack.extend((prefix + child_name, child) for child_name, child in reversed(children))
