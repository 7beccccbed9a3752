"""Methods built on frozen random projections that every adapted layer shares (VeRA, RandLoRA): the config fields,
layer plumbing and tuner lifecycle they have in common.

The model (tuner) owns one ``SharedBufferDict`` per projection (``vera_A``, ``vera_B``, ...) keyed by adapter name.
The first adapter's projections are drawn from ``projection_prng_key`` at the size the largest adapted layer needs;
later adapters reuse the same tensors (one copy in memory), so their layers must fit in them. Each layer slices what
it needs in forward and moves only that slice to the input's device. Layers refer to the dicts without registering
them as submodules, so the projections appear once in the state dict (``base_model.vera_A.<adapter>``) and, with
``save_projection``, once in checkpoints (``base_model.vera_A``).

A method supplies its projection names, how to draw them for the largest layer shape (``_generate_projections``),
the least shape each layer needs (``_projection_needs``), its trainable vectors and its formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave
from peft.tuners._buffer_dict import BufferDict
from peft.tuners._memory_bound import watched_all
from peft.tuners._validation import check_positive_int, check_probability
from peft.tuners.tuners_layer import HALF_PRECISION, BaseTunerLayer, walk_modules
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.error import CheckpointMismatchError, DtypeMismatch, dtype_mismatch_error
from peft.utils.warnings import warn

_SUPPORTED = "torch.nn.Linear (optionally quantized), transformers.pytorch_utils.Conv1D"


def projection_property(name: str) -> property:
    """A read-only layer attribute ``name`` giving the model's shared projection container (reference API)."""

    def get(layer: SharedProjectionLayer) -> SharedBufferDict:
        return layer._projections[name]

    return property(get, doc=f"The model's shared ``{name}`` projections, keyed by adapter.")


class SharedBufferDict(BufferDict):
    """A ``BufferDict`` whose entries may be one tensor under several keys (one per adapter): moving or casting it
    converts each distinct tensor once, so the entries stay one tensor instead of becoming copies."""

    def _apply(self, fn: Any, recurse: bool = True) -> SharedBufferDict:
        converted: dict[int, torch.Tensor] = {}
        for key, tensor in self._buffers.items():
            if tensor is not None:
                if id(tensor) not in converted:
                    converted[id(tensor)] = fn(tensor)
                self._buffers[key] = converted[id(tensor)]
        return self


@dataclass
class SharedProjectionConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Fields every shared-projection method has (see ``VeraConfig`` / ``RandLoraConfig`` for their meaning).

    Raises:
        ValueError: for a non-positive ``r``.
    """

    r: int = field(default=8, metadata={"help": "Rank of the shared projections."})
    projection_prng_key: int = field(default=0, metadata={"help": "Seed from which the projections are drawn."})
    save_projection: bool = field(default=True, metadata={"help": "Save the projections in checkpoints."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Which biases train: 'none', 'all' or '<method>_only'."})
    init_weights: bool = field(default=True, metadata={"help": "True: the adapter starts as the identity."})

    # config fields that define the projections: all adapters of one model must agree on them
    _projection_fields: ClassVar[tuple[str, ...]] = ("projection_prng_key", "save_projection")
    _projection_names: ClassVar[tuple[str, ...]] = ()
    # sentence put in front of the error when adapters disagree on a projection field: field -> template, formatted
    # with ``values`` (the sorted values the adapters have)
    _projection_mismatch_messages: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(f"{type(self).__name__}.r", self.r)
        if not self.save_projection:
            names = " and ".join(self._projection_names)
            warn(
                f"save_projection=False: {names} are not saved in checkpoints but drawn again from "
                "projection_prng_key when loading, which is not guaranteed to give the same values on every device "
                "and torch version. Set save_projection=True to restore checkpoints exactly everywhere."
            )


class SharedProjectionLayer(BaseTunerLayer):
    """Adapter state shared by the layers of shared-projection methods; concrete layers are ``(MethodLayer,
    nn.Module)``. ``fan_in_fan_out`` layers (GPT-2's ``Conv1D``) store the base weight as ``(in, out)``: only merging
    sees that, the forward acts on activations."""

    # the per-adapter dropout container (one of other_param_names)
    dropout_name: ClassVar[str] = ""
    # the model's projections the layer slices, as the tuner names them
    projection_names: ClassVar[tuple[str, ...]] = ()

    def _init_adapter_state(self) -> None:
        if None in (self.in_features, self.out_features):
            raise TypeError(f"Unsupported layer type {type(self.get_base_layer()).__name__}; supported: {_SUPPORTED}.")
        super()._init_adapter_state()
        setattr(self, self.dropout_name, nn.ModuleDict())
        # the projections are a plain attribute, set by update_layer: they belong to the model, not to each layer's
        # state dict
        self._projections: dict[str, SharedBufferDict] | None = None

    # ---------------------------------------------------------------------------------------------- per method
    def _init_trainables(self, adapter_name: str, r: int, init_weights: bool, **options: Any) -> None:
        """Create the trainable tensors of ``adapter_name`` from the method's ``options`` (its config's fields)."""
        raise NotImplementedError

    def _projection_needs(self, adapter_name: str) -> dict[str, tuple[int, ...]]:
        """``{projection name: least shape}`` this layer slices for ``adapter_name``."""
        raise NotImplementedError

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        """The update ``(out, in)`` computed in ``dtype``."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------- adapters
    def update_layer(
        self,
        adapter_name: str,
        r: int,
        projections: dict[str, SharedBufferDict] | None = None,
        init_weights: bool = True,
        **options: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer.

        Args:
            r: the adapter's rank (see the method's config).
            projections: the model's projection containers.
            init_weights: ``True``: the adapter starts as the identity (see the method's config).
            options: the method's other config fields; the input dropout is the one named ``dropout_name``.

        Raises:
            ValueError: if ``r`` is not a positive integer or the dropout not a probability.
        """
        dropout = options.pop(self.dropout_name, 0.0)
        check_positive_int(f"{type(self).__name__}.r", r)
        check_probability(type(self).__name__, self.dropout_name, dropout)
        if projections is not None:
            self._projections = projections
        self.r[adapter_name] = r
        getattr(self, self.dropout_name)[adapter_name] = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self._init_trainables(adapter_name, r, init_weights, **options)

    # ---------------------------------------------------------------------------------------------- helpers
    def _new_vector(self, values: torch.Tensor) -> nn.Parameter:
        """``values`` as a parameter on the base layer's device and dtype (drawn on the CPU in float32 first, so
        a seed gives the same values whatever the base layer's device or dtype)."""
        return nn.Parameter(values.to(**self._factory_kwargs()))

    def _projection(self, name: str, adapter_name: str, index: tuple[slice, ...], like: torch.Tensor) -> torch.Tensor:
        """The part ``index`` of the shared projection ``name``, on ``like``'s device and dtype (only the slice
        moves: the projections stay where they were drawn)."""
        return self._projections[name][adapter_name][index].to(device=like.device, dtype=like.dtype)

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return getattr(self, self.adapter_layer_names[0])[adapter_name].dtype

    def _projection_misfit(self, adapter_name: str, projections: dict[str, torch.Tensor]) -> str | None:
        """Why ``projections`` are too small for this layer's ``adapter_name``, or None if they fit."""
        for name, need in self._projection_needs(adapter_name).items():
            shape = tuple(projections[name].shape)
            if len(shape) != len(need):
                return f"{name} has shape {shape} but at least {need} is needed"
            # the feature dimension (last) is named before the rank
            for have, want in reversed(list(zip(shape, need))):
                if have < want:
                    return (
                        f"{name} has a size of {have} but {want} or greater is required (shape {shape}, at least "
                        f"{need} is needed)"
                    )
        return None

    # ---------------------------------------------------------------------------------------------- merging
    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The update of ``adapter_name`` in the base weight's layout; half-precision adapters are combined in
        float32 on every device, so a merge gives the same weight on CPU and GPU."""
        dtype = self._adapter_dtype(adapter_name)
        delta = self._delta_weight(adapter_name, torch.float32 if dtype in HALF_PRECISION else dtype).to(dtype)
        return delta.T if self.fan_in_fan_out else delta

    # ---------------------------------------------------------------------------------------------- forward


class SharedProjectionTuner(BaseTuner):
    """Injects a shared-projection method's layers and owns the projections (one ``SharedBufferDict`` attribute per
    name of the layer's ``projection_names``). Subclasses set the recipe (``tuner_layer_cls``, ``layer_options``; their
    layer goes on every linear layer, quantized or not) and implement ``_generate_projections``."""

    # the projections live on the tuner: injecting into a bare model (transformers' add_adapter) cannot keep them
    uses_shared_state = True
    projection_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.projection_names = cls.tuner_layer_cls.projection_names

    # ------------------------------------------------------------------------------------------ per method
    def _generate_projections(
        self, config: SharedProjectionConfig, out_features: int, in_features: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The projections (on the CPU, drawn from ``generator``) for layers of at most ``out_features x
        in_features``."""
        raise NotImplementedError

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        return {**super()._layer_kwargs(target), "projections": self._projection_dicts(target.config)}

    # ------------------------------------------------------------------------------------------ projections
    def _projection_dicts(self, config: SharedProjectionConfig) -> dict[str, SharedBufferDict]:
        """The model's projection containers, created on first use; persistent (in the state dict) when the
        projections are saved."""
        dicts = {}
        for name in self.projection_names:
            container = self._modules.get(name)
            if container is None:
                container = SharedBufferDict(persistent=config.save_projection)
                setattr(self, name, container)
            elif not len(container):  # every adapter was deleted: the next one chooses again
                container.persistent = config.save_projection
            dicts[name] = container
        return dicts

    def _layers_of(self, adapter_name: str) -> list[tuple[str, SharedProjectionLayer]]:
        return [
            (path, module)
            for path, module in walk_modules(self.model)
            if isinstance(module, self.tuner_layer_cls) and module._has_adapter(adapter_name)
        ]

    def _check_fit(
        self, adapter_name: str, projections: dict[str, torch.Tensor], layers: list[tuple[str, Any]]
    ) -> None:
        for path, layer in layers:
            misfit = layer._projection_misfit(adapter_name, projections)
            if misfit is not None:
                raise ValueError(
                    f"Adapter {adapter_name!r} does not fit the model's shared projections on {path!r} (r="
                    f"{layer.r[adapter_name]}, in_features={layer.in_features}, out_features={layer.out_features}): "
                    f"{misfit}. The projections are sized by the model's first adapter (its r and its largest "
                    "layers) and later adapters must fit in them: add the adapter that needs the largest ones first."
                )

    def _attach_projections(self, config: SharedProjectionConfig, adapter_name: str) -> None:
        """Give ``adapter_name`` the model's projections: drawn for its largest layer if it is the first adapter,
        else the existing ones, which must be large enough for each of its layers (all adapters share one set)."""
        layers = self._layers_of(adapter_name)
        if not layers:
            return
        dicts = self._projection_dicts(config)
        first = self.projection_names[0]
        if len(dicts[first]):
            owner = next(iter(dicts[first].keys()))
            projections = {name: dicts[name][owner] for name in self.projection_names}
        else:
            out_features = max(layer.out_features for _, layer in layers)
            in_features = max(layer.in_features for _, layer in layers)
            generator = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
            projections = self._generate_projections(config, out_features, in_features, generator)
            # on the base weights' device and floating dtype, as the reference (so its files have the same dtype)
            weight = next(
                (p for _, layer in layers for p in layer.get_base_layer().parameters() if p.device.type != "meta"),
                None,
            )
            if weight is not None:
                dtype = weight.dtype if weight.is_floating_point() else None
                projections = {name: t.to(device=weight.device, dtype=dtype) for name, t in projections.items()}
        self._check_fit(adapter_name, projections, layers)
        for name in self.projection_names:
            dicts[name][adapter_name] = projections[name]

    def _load_projections(self, adapter_name: str, loaded: dict[str, torch.Tensor], file_prefix: str = "") -> None:
        """Use checkpoint projections for ``adapter_name``: equal ones keep sharing the model's tensors, others
        become this adapter's own (so loading never changes another adapter's projections)."""
        current = {name: getattr(self, name)[adapter_name] for name in self.projection_names}
        dtype_mismatches = [
            DtypeMismatch.between(file_prefix + name, f"{name}.{adapter_name}", tensor, current[name])
            for name, tensor in sorted(loaded.items())
        ]
        if any(dtype_mismatches):
            raise dtype_mismatch_error([m for m in dtype_mismatches if m is not None])
        new = dict(current)
        for name, tensor in loaded.items():
            tensor = tensor.to(device=current[name].device, dtype=current[name].dtype)
            if tensor.shape != current[name].shape or not torch.equal(tensor, current[name]):
                new[name] = tensor
        if all(new[name] is current[name] for name in self.projection_names):
            return
        try:
            self._check_fit(adapter_name, new, self._layers_of(adapter_name))
        except ValueError as exc:
            keys = ", ".join(repr(file_prefix + name) for name in sorted(loaded))
            raise CheckpointMismatchError(f"The checkpoint's projections ({keys}) do not fit: {exc}") from None
        for name in self.projection_names:
            getattr(self, name)[adapter_name] = new[name]

    # ------------------------------------------------------------------------------------------ lifecycle
    def _check_new_adapter_config(self, config: SharedProjectionConfig) -> None:
        """All adapters of a model share the projections, so they must agree on what defines them."""
        super()._check_new_adapter_config(config)
        for other_name, other in sorted(self.peft_config.items()):
            if other is config:
                continue
            for name in config._projection_fields:
                if getattr(other, name) != getattr(config, name):
                    template = config._projection_mismatch_messages.get(name, "")
                    lead = template.format(values=sorted([getattr(other, name), getattr(config, name)]))
                    raise ValueError(
                        f"{lead + ' ' if lead else ''}{name} must be the same for all adapters of a model because "
                        "they share the random "
                        f"projections: adapter {other_name!r} has {name}={getattr(other, name)!r}, the new adapter "
                        f"{getattr(config, name)!r}."
                    )

    def _create_adapter_modules(
        self,
        model: nn.Module,
        peft_config: SharedProjectionConfig,
        adapter_name: str,
        low_cpu_mem_usage: bool,
        state_dict: dict[str, torch.Tensor] | None,
    ) -> None:
        super()._create_adapter_modules(model, peft_config, adapter_name, low_cpu_mem_usage, state_dict)
        # after the layers exist: they tell the size the projections need (a failure here is cleaned up by the
        # caller like any other injection error)
        with watched_all("the shared projections"):
            self._attach_projections(peft_config, adapter_name)

    def _finish_injection(
        self, model: nn.Module, peft_config: SharedProjectionConfig, adapter_name: str, autocast_adapter_dtype: bool
    ) -> None:
        super()._finish_injection(model, peft_config, adapter_name, autocast_adapter_dtype)
        if autocast_adapter_dtype:
            for name in self.projection_names:
                container = self._modules.get(name)
                if container is not None and adapter_name in container:
                    tensor = container[adapter_name]
                    if tensor.dtype in HALF_PRECISION:
                        tensor.data = tensor.data.float()  # in place: adapters sharing the tensor see it too

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter everywhere, its entry in the shared projections included (see ``BaseTuner``)."""
        super().delete_adapter(adapter_name)
        for name in self.projection_names:
            container = self._modules.get(name)
            if container is not None and adapter_name in container:
                del container[adapter_name]

    # ------------------------------------------------------------------------------------------ checkpoints
    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: SharedProjectionConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """With ``save_projection`` the adapter's projections are saved once, as ``base_model.<name>``.

        The reference's RandLoRA also writes a full copy under every layer (``<layer>.randlora_A``), so its files
        grow with the number of layers (gigabytes for a 7B model); those copies are read but not written. The
        reference loads these files with the same results (it warns that the per-layer keys are missing)."""
        if not config.save_projection:
            return state_dict
        prefix, tuner = cls._find_tuner(model)
        for name in cls.projection_names:
            state_dict[prefix + name] = getattr(tuner, name)[adapter_name]
        return state_dict

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: SharedProjectionConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Take the projections out of the checkpoint and install them (``save_projection``), or warn that they are
        drawn from ``projection_prng_key``. Per-layer copies of the projections (written by the reference's RandLoRA)
        are the same tensor and are dropped.

        Raises:
            CheckpointMismatchError: if ``save_projection`` is set but the checkpoint holds no projections, or they
                are too small for the adapter's layers.
        """
        prefix, tuner = cls._find_tuner(model)
        loaded: dict[str, torch.Tensor] = {}
        for name in cls.projection_names:
            tensor = state_dict.pop(prefix + name, None)
            for key in [k for k in state_dict if k.endswith("." + name)]:
                copy_ = state_dict.pop(key)
                tensor = copy_ if tensor is None else tensor
            if tensor is not None:
                loaded[name] = tensor
        names = " and ".join(cls.projection_names)
        if config.save_projection:
            if len(loaded) != len(cls.projection_names):
                raise CheckpointMismatchError(
                    f"The adapter config has save_projection=True but the checkpoint does not hold {names}; set "
                    "save_projection=False in its adapter_config.json to draw them from projection_prng_key.",
                    missing_keys=[prefix + name for name in cls.projection_names if name not in loaded],
                )
            tuner._load_projections(adapter_name, loaded, file_prefix=prefix)
        elif loaded:
            warn(
                f"The checkpoint holds {names} but its config has save_projection=False: they are ignored and drawn "
                "from projection_prng_key. Set save_projection=True to use them."
            )
        else:
            warn(
                f"{names} are not in the checkpoint (save_projection=False): they are drawn from projection_prng_key, "
                "which may not reproduce them exactly on every device and torch version."
            )
        return state_dict
