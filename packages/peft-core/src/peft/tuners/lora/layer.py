"""LoRA layers: ``y = base(x) + (alpha / r) * B(A(dropout(x)))`` for each active adapter.

``A`` maps ``in_features -> r`` and ``B`` maps ``r -> out_features``; with the default init ``B = 0``, so a new
adapter leaves the output unchanged. Variants (DoRA) change the formula through ``LoraVariant``. Every layer type
is built by the same constructor (``BaseTunerLayer``'s: wrap the base layer, create the first adapter with
``update_layer``); the types differ in the factors they create and in how they apply them.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from peft.config import PeftConfig
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.lora.initialization import lora_initialiser
from peft.tuners.lora.variant import (
    AdditiveLoraVariant,
    LoraVariant,
    lora_variant_options,
    register_lora_variant,
    requested_variant,
)
from peft.tuners.tuners_layer import (
    BASE_ADAPTER_NAME,
    HALF_PRECISION,
    BaseTunerLayer,
    LazyAdapterContainer,
    MixedBatch,
)
from peft.utils.reference_paths import reference_path_getattr
from peft.utils.torch_internals import (
    forward_is_hooked,
    new_linear,
    new_module,
    set_plain_attributes,
    set_submodules,
    store_submodule,
)
from peft.utils.warnings import warn

__all__ = [
    "AdditiveLoraVariant",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Embedding",
    "Linear",
    "LoraLayer",
    "LoraVariant",
    "is_lora_layer",
    "lora_variant_options",
    "register_lora_variant",
]


# the LoraConfig fields that are options of a LoRA layer (besides r and lora_alpha, and the variants' options)
LORA_LAYER_OPTIONS = (
    "lora_dropout",
    "init_lora_weights",
    "use_rslora",
    "use_dora",
    "use_qalora",
    "qalora_group_size",
    "loftq_config",
    "lora_bias",
    "lora_ga_config",
)


def _with_config_options(config: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed by the layer options of ``config``, a ``LoraConfig`` given in the reference's calling
    convention (``Linear(base, name, config, r=8)``, ``update_layer(name, r, lora_alpha, config)``): the options
    passed win; ``lora_alpha`` defaults to 1 there, as in that convention, not to the config's value."""
    from_config = {
        name: getattr(config, name)
        for name in (*LORA_LAYER_OPTIONS, "fan_in_fan_out", *lora_variant_options())
        if hasattr(config, name)
    }
    return {"lora_alpha": 1, **from_config, **options}


@functools.cache
def _update_layer_defaults() -> dict[str, Any]:
    parameters = inspect.signature(LoraLayer.update_layer).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


class LoraLayer(BaseTunerLayer):
    """State and lifecycle shared by all LoRA layer types.

    A layer is built as ``Linear(base_layer, adapter_name, r=8, lora_alpha=16, ...)``; a ``LoraConfig`` may stand
    third, giving the options not passed (``Linear(base_layer, adapter_name, config, r=8)``).
    """

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: PeftConfig | None = None, **kwargs: Any):
        if config is not None:
            kwargs = _with_config_options(config, kwargs)
        super().__init__(base_layer, adapter_name, **kwargs)

    adapter_layer_names = (
        "lora_A",
        "lora_B",
        "lora_embedding_A",
        "lora_embedding_B",
        "lora_magnitude_vector",
        "lora_diag",
        "lora_monteclora_sampler",
    )
    other_param_names = ("r", "lora_alpha", "scaling", "lora_dropout", "lora_velora_embed")
    adapter_buffer_names = ("lora_velora_embed",)  # VeLoRA's projection vectors: saved, never trained
    repr_prefix = "lora"
    # LoRA-wide code (injection updates, hotswap, weighted adapters) may treat the layer as holding plain LoRA factors;
    # AdaLoRA's layers, LoRA layers in SVD form, say False
    holds_plain_lora_factors: ClassVar[bool] = True
    # the base weight is stored (in, out) whatever fan_in_fan_out says (nn.Embedding: (vocab, dim))
    is_embedding: ClassVar[bool] = False
    # the reference checkpoint format stores the DoRA magnitude without the ".weight" of its module
    _file_key_aliases = {"lora_magnitude_vector.weight": "lora_magnitude_vector"}
    lora_embedding_A = LazyAdapterContainer(nn.ParameterDict)
    lora_embedding_B = LazyAdapterContainer(nn.ParameterDict)
    lora_magnitude_vector = LazyAdapterContainer(nn.ModuleDict)
    lora_diag = LazyAdapterContainer(nn.ParameterDict)  # KaSA's singular values
    lora_monteclora_sampler = LazyAdapterContainer(nn.ModuleDict)  # MonteCLoRA's variational parameters
    lora_velora_embed = LazyAdapterContainer(functools.partial(BufferDict, persistent=True))

    def _init_adapter_state(self) -> None:
        # through peft.utils.torch_internals: nn.Module.__init__/__setattr__ cost more than the rest of a LoRA layer
        # when thousands are created
        set_submodules(
            self,
            lora_dropout=new_module(nn.ModuleDict),
            lora_A=new_module(nn.ModuleDict),
            lora_B=new_module(nn.ModuleDict),
        )
        set_plain_attributes(
            self,
            r={},
            lora_alpha={},
            scaling={},
            use_dora={},
            use_rslora={},
            lora_bias={},
            lora_variant={},
            ephemeral_gpu_offload=False,
        )

    def _create_adapter_weights(self, adapter_name: str, r: int, lora_bias: bool, **factory: Any) -> None:
        """Create the adapter's tensors with ``factory`` (device/dtype) keyword arguments."""
        raise NotImplementedError

    def resolve_lora_variant(self, **options: Any) -> type[LoraVariant] | None:
        """The variant that the set variant options among ``options`` select on this layer (None: plain LoRA).

        Raises:
            ValueError: several variants are requested, or this layer type does not support the requested one.
        """
        requested = requested_variant(options)
        if requested is None:
            return None
        option, variant, layer_types = requested
        if {cls.__name__ for cls in type(self).__mro__}.isdisjoint(layer_types):
            raise ValueError(
                f"{option} is not supported on {type(self).__name__} layers (LoRA on "
                f"{type(self.get_base_layer()).__name__}); it supports LoRA layers of type {list(layer_types)}."
            )
        variant.check(self, **options)
        return variant

    def _store_rank(self, adapter_name: str, r: int, lora_alpha: float, lora_dropout: float) -> None:
        """Keep the adapter's rank, alpha and input dropout (``nn.Identity`` for 0)."""
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        dropout = nn.Dropout(p=lora_dropout) if lora_dropout > 0.0 else new_module(nn.Identity)
        store_submodule(self.lora_dropout, adapter_name, dropout)

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        lora_alpha: float,
        lora_dropout: float = 0.0,
        init_lora_weights: bool | str = True,
        use_rslora: bool = False,
        use_dora: bool = False,
        lora_bias: bool = False,
        ephemeral_gpu_offload: bool | None = None,
        fan_in_fan_out: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer.

        ``ephemeral_gpu_offload`` and ``fan_in_fan_out`` are settings of the layer, not of the adapter: when given,
        they replace the layer's (``fan_in_fan_out`` defaults to what the base layer's type says). A ``LoraConfig``
        in the place of ``lora_dropout`` (or as ``config=``) gives the options not passed.
        """
        config = kwargs.pop("config", None)
        if isinstance(lora_dropout, PeftConfig):
            config, lora_dropout = lora_dropout, 0.0
        if config is not None:
            named = {
                "lora_dropout": lora_dropout,
                "init_lora_weights": init_lora_weights,
                "use_rslora": use_rslora,
                "use_dora": use_dora,
                "lora_bias": lora_bias,
                "ephemeral_gpu_offload": ephemeral_gpu_offload,
                "fan_in_fan_out": fan_in_fan_out,
            }
            defaults = _update_layer_defaults()
            passed = {name: value for name, value in named.items() if value != defaults[name]}
            options = _with_config_options(config, {"lora_alpha": lora_alpha, **passed, **kwargs})
            return self.update_layer(adapter_name, r, **options)
        if ephemeral_gpu_offload is not None and ephemeral_gpu_offload != self.ephemeral_gpu_offload:
            set_plain_attributes(self, ephemeral_gpu_offload=ephemeral_gpu_offload)
        if fan_in_fan_out is not None:
            set_plain_attributes(self, fan_in_fan_out=fan_in_fan_out)
        if r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        variant = self.resolve_lora_variant(use_dora=use_dora, **kwargs)
        if lora_bias and self.is_embedding:
            raise ValueError("lora_bias=True is not supported for Embedding (LoRA on nn.Embedding has no bias).")
        if lora_bias and getattr(self.get_base_layer(), "bias", None) is None:
            warn(
                f"`lora_bias=True` was passed but the targeted layer of type {type(self.get_base_layer()).__name__} "
                "has no bias. This means that merging LoRA weights won't be possible."
            )
        self._store_rank(adapter_name, r, lora_alpha, lora_dropout)
        self._create_adapter_weights(adapter_name, r, lora_bias, **self._factory_kwargs())
        self.use_rslora[adapter_name] = use_rslora
        self.scaling[adapter_name] = self._default_scaling(adapter_name)
        self.use_dora[adapter_name] = use_dora
        self.lora_bias[adapter_name] = lora_bias
        initialiser = lora_initialiser(init_lora_weights)
        self.frozen_peft_weight_names.pop(adapter_name, None)  # a replaced adapter trains in full unless its init says
        if initialiser is None:
            self.reset_lora_parameters(adapter_name, init_lora_weights)
        else:  # PiSSA, OLoRA, CorDA, LoftQ, ...: see peft.tuners.lora.initialization
            initialiser(self, adapter_name, init_lora_weights, **kwargs)
        if variant is not None:
            variant.init(self, adapter_name=adapter_name, init_lora_weights=init_lora_weights, **kwargs)
            self.lora_variant[adapter_name] = variant()  # an instance, as in the reference (isinstance checks)
        else:
            self.lora_variant.pop(adapter_name, None)

    def reset_lora_parameters(self, adapter_name: str, init_lora_weights: bool | str) -> None:
        """Initialise ``A``/``B`` (created uninitialised): True (Kaiming-uniform A, zero B), "gaussian" (A ~ N(0, 1/r),
        zero B), False (both as torch initialises a fresh layer of their type: a random, non-identity adapter, drawn
        in the order and amount the reference draws them, so seeded runs continue with the same random stream)."""
        with torch.no_grad():
            if adapter_name in self.lora_A:
                lora_a, lora_b = self.lora_A[adapter_name], self.lora_B[adapter_name]
                if init_lora_weights is False:
                    lora_a.reset_parameters()
                    lora_b.reset_parameters()
                    return
                weight_a = lora_a.weight
                if init_lora_weights == "gaussian":
                    weight_a.normal_(0, 1 / self.r[adapter_name])
                else:  # Kaiming-uniform with a=sqrt(5), torch's default for Linear and Conv: bound 1/sqrt(fan_in)
                    bound = 1 / math.sqrt(math.prod(weight_a.shape[1:]))
                    weight_a.uniform_(-bound, bound)
                lora_b.weight.zero_()
                if lora_b.bias is not None:
                    lora_b.bias.zero_()
            elif adapter_name in self.lora_embedding_A and init_lora_weights is not False:
                # the embedding's non-zero factor is B, drawn from a normal distribution (False: both stay random)
                self.lora_embedding_A[adapter_name].zero_()
                self.lora_embedding_B[adapter_name].normal_()

    # diffusers' scaling helpers -------------------------------------------------------------------------------
    def _default_scaling(self, adapter: str) -> float:
        """``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with rsLoRA."""
        r = self.r[adapter]
        return self.lora_alpha[adapter] / (math.sqrt(r) if self.use_rslora.get(adapter) else r)

    def _store_scaling(self, adapter: str, value: float) -> None:
        # a tensor scaling (prepared for compiled hotswap) is updated in place so compiled graphs stay valid
        current = self.scaling[adapter]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            self.scaling[adapter] = value

    def set_scale(self, adapter: str, scale: float | int) -> None:
        """Set adapter ``adapter``'s scaling to ``scale`` times its default (``lora_alpha / r``)."""
        if adapter in self.scaling:
            self._store_scaling(adapter, scale * self._default_scaling(adapter))

    def scale_layer(self, scale: float | int) -> None:
        """Multiply the scaling of every active adapter by ``scale``."""
        if scale == 1:
            return
        for name in self.active_adapters:
            if name in self.scaling:
                self._store_scaling(name, float(self.scaling[name]) * scale)

    def unscale_layer(self, scale: float | int | None = None) -> None:
        """Divide the active adapters' scaling by ``scale``, or reset it to the default when None."""
        for name in self.active_adapters:
            if name not in self.scaling:
                continue
            value = self._default_scaling(name) if scale is None else float(self.scaling[name]) / scale
            self._store_scaling(name, value)

    # merging -------------------------------------------------------------------------------------------------
    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        unmergeable = [n for n in adapter_names if not getattr(self.lora_variant.get(n), "mergeable", True)]
        if unmergeable:
            reasons = sorted({self.lora_variant[n].merge_refusal for n in unmergeable})
            raise NotImplementedError(
                f"{' '.join(reasons)} Adapters {unmergeable}: use them unmerged, or delete them before merging the "
                "others."
            )
        if any(self.lora_bias.get(n) for n in adapter_names) and self.bias is None:
            raise ValueError(
                "Cannot merge an adapter with lora_bias=True into a base layer without bias: the base layer has no "
                "bias to add the adapter's bias to. Use the adapter unmerged, or train it with lora_bias=False."
            )

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """A LoRA adapter is a LoRA adapter already, unless a variant (DoRA) or a trained bias is part of it."""
        plain = adapter_name not in self.lora_variant and not self.lora_bias.get(adapter_name)
        return plain and self.has_linear_base()

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        if adapter_name in self.lora_variant:
            return self.lora_variant[adapter_name].merge_safe(self, adapter_name, weight)
        return super()._merged_weight(adapter_name, weight)

    def _unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        if adapter_name in self.lora_variant:
            return self.lora_variant[adapter_name].unmerge(self, adapter_name, weight)
        return super()._unmerged_weight(adapter_name, weight)

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        if self.lora_bias.get(adapter_name) and adapter_name in self.lora_B:
            bias = self.get_base_layer().bias
            with torch.no_grad():
                bias.add_(sign * self.lora_B[adapter_name].bias.to(bias.dtype) * self.scaling[adapter_name])

    def _linear_factor_weights(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights of the linear factors ``A`` and ``B``. Factors that FSDP or ZeRO-3 shard are whole only while
        they run, so those are read by calling them: a layer's output for the identity is its weight transposed, plus
        the bias (its output for zeros)."""
        lora_a, lora_b = self.lora_A[adapter_name], self.lora_B[adapter_name]
        if all(type(f) is nn.Linear and not forward_is_hooked(f) for f in (lora_a, lora_b)):
            return lora_a.weight, lora_b.weight
        options = {"dtype": lora_a.weight.dtype, "device": lora_a.weight.device}
        weight_a = lora_a(torch.eye(self.in_features, **options)).T
        identity = torch.eye(weight_a.shape[0], **options)
        through_b = lora_b(identity)
        if lora_b.bias is not None:
            through_b = through_b - lora_b(torch.zeros_like(identity[:1]))
        return weight_a, through_b.T

    def _lora_delta(self, adapter_name: str) -> torch.Tensor:
        """``scaling * B @ A`` for linear-like factors, computed in fp32 on CPU for half precision."""
        weight_a, weight_b = self._linear_factor_weights(adapter_name)
        dtype = weight_b.dtype
        if weight_a.device.type == "cpu" and dtype in HALF_PRECISION:
            weight_a, weight_b = weight_a.float(), weight_b.float()
        return (weight_b @ weight_a * self.scaling[adapter_name]).to(dtype)

    # forward ---------------------------------------------------------------------------------------------------
    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        variant = self.lora_variant.get(adapter_name)
        if variant is not None:
            return variant.forward(self, adapter_name, x, result)
        return super()._adapter_output(x, result, adapter_name)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``scaling * B(A(dropout(x)))``, or the update of the adapter's variant (mixed batches never include DoRA
        adapters)."""
        variant = self.lora_variant.get(adapter_name)
        if variant is not None and hasattr(variant, "update"):
            return variant.update(self, adapter_name, x)
        lora_a, lora_b = self.lora_A[adapter_name], self.lora_B[adapter_name]
        x = self._cast_input_dtype(x, lora_a.weight.dtype)
        return lora_b(lora_a(self.lora_dropout[adapter_name](x))) * self.scaling[adapter_name]


class Linear(LoraLayer, nn.Module):
    """LoRA on ``nn.Linear`` (and transformers' ``Conv1D``, whose weight is stored ``(in, out)``)."""

    @property
    def is_target_conv_1d_layer(self) -> bool:
        """Whether the base layer is transformers' ``Conv1D`` (its weight stored ``(in, out)``)."""
        return self.fan_in_fan_out

    def _create_adapter_weights(self, adapter_name: str, r: int, lora_bias: bool, **factory: Any) -> None:
        store_submodule(self.lora_A, adapter_name, new_linear(self.in_features, r, False, **factory))
        store_submodule(self.lora_B, adapter_name, new_linear(r, self.out_features, lora_bias, **factory))

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        variant = self.lora_variant.get(adapter)
        if variant is not None and hasattr(variant, "delta_weight"):
            return variant.delta_weight(self, adapter)
        delta = self._lora_delta(adapter)
        return delta.T if self.fan_in_fan_out else delta

    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        variant = self.lora_variant.get(adapter_name)
        if variant is not None:
            return variant.forward(self, adapter_name, x, result)
        lora_a, lora_b = self.lora_A[adapter_name], self.lora_B[adapter_name]
        scaling = self.scaling[adapter_name]
        fusable = (
            isinstance(scaling, float)
            and type(lora_b) is nn.Linear
            and not forward_is_hooked(lora_b)
            and lora_b.weight.dtype == result.dtype
            and isinstance(self.lora_dropout[adapter_name], nn.Identity)
        )
        if not fusable:
            return result + self._adapter_update(x, adapter_name).to(result.dtype)
        # result + scaling * (A x) B^T in one addmm: no separate update tensor and add pass
        hidden = lora_a(self._cast_input_dtype(x, lora_a.weight.dtype)).to(result.dtype)
        addmm = torch.Tensor.addmm_ if self._owns_base_output() else torch.addmm
        out = addmm(
            result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]), lora_b.weight.T, alpha=scaling
        )
        if lora_b.bias is not None:
            out = out + scaling * lora_b.bias
        return out.view(result.shape)

    def _mixed_batch_forward(
        self, x: torch.Tensor, *args: Any, adapter_names: Sequence[str], **kwargs: Any
    ) -> torch.Tensor:
        """All rows in two matmuls: ``x`` times the batch's adapters' stacked ``A`` factors, each row keeping only
        its own adapter's columns, then one ``addmm`` with the stacked, scaled ``B`` factors onto the base output.
        The stacked rank costs like one adapter of that rank, so with many adapters (stacked rank above four times
        the largest) the rows go adapter by adapter instead."""
        batch = adapter_names if isinstance(adapter_names, MixedBatch) else MixedBatch(adapter_names)
        names = [n for n in batch.unique_names if n != BASE_ADAPTER_NAME and self._has_adapter(n)]
        factors_a = [self.lora_A[n] for n in names]
        factors_b = [self.lora_B[n] for n in names]
        ranks = [a.weight.shape[0] for a in factors_a]  # the stored rank (hotswap preparation pads it)
        scalings = [self.scaling[n] for n in names]
        stackable = (
            names
            and sum(ranks) <= 4 * max(ranks)
            and all(isinstance(s, float) for s in scalings)
            and all(b.bias is None for b in factors_b)
            and all(a.weight.dtype == x.dtype for a in factors_a)
            and not any(n in self.lora_variant for n in names)
            and all(type(f) is nn.Linear and not forward_is_hooked(f) for f in factors_a + factors_b)
        )
        if not stackable:
            return super()._mixed_batch_forward(x, *args, adapter_names=batch, **kwargs)
        self._check_mixed_batch_state(batch, x)
        result = self.base_layer(x, *args, **kwargs)
        weight_a = torch.cat([a.weight for a in factors_a])
        weight_b = torch.cat([b.weight for b in factors_b], dim=1).to(result.dtype)
        mask = batch.column_mask(names, ranks, scalings, x)  # also applies each adapter's scaling
        hidden = F.linear(x, weight_a).mul_(mask.view(x.shape[0], *(1,) * (x.dim() - 2), -1))
        addmm = torch.Tensor.addmm_ if self._owns_base_output() else torch.addmm
        out = addmm(
            result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]).to(result.dtype), weight_b.T
        )
        return out.view(result.shape)


class Embedding(LoraLayer, nn.Module):
    """LoRA on ``nn.Embedding``: the update's rows are looked up from ``A`` and projected by ``B``."""

    _primary_adapter_layer_name = "lora_embedding_A"
    is_embedding = True

    def _create_adapter_weights(self, adapter_name: str, r: int, lora_bias: bool, **factory: Any) -> None:
        self.lora_embedding_A[adapter_name] = nn.Parameter(torch.randn(r, self.in_features, **factory))
        self.lora_embedding_B[adapter_name] = nn.Parameter(torch.randn(self.out_features, r, **factory))

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        weight_a, weight_b = self.lora_embedding_A[adapter], self.lora_embedding_B[adapter]
        return (weight_b @ weight_a).T * self.scaling[adapter]

    def _embed(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        base = self.get_base_layer()
        return F.embedding(
            x,
            weight,
            padding_idx=base.padding_idx,
            max_norm=base.max_norm,
            norm_type=base.norm_type,
            scale_grad_by_freq=base.scale_grad_by_freq,
            sparse=base.sparse,
        )

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``scaling * B`` applied to the rows of ``A`` looked up by ``x`` (times the base's ``embed_scale``)."""
        after_a = self._embed(x, self.lora_embedding_A[adapter_name].T)
        update = (after_a @ self.lora_embedding_B[adapter_name].T) * self.scaling[adapter_name]
        embed_scale = getattr(self.get_base_layer(), "embed_scale", None)
        if embed_scale is not None:  # the base output is scaled (e.g. Gemma), so the update is too
            update = update * torch.as_tensor(embed_scale, dtype=update.dtype, device=update.device)
        return update


class _ConvNd(LoraLayer, nn.Module):
    """LoRA on ``nn.Conv1d/2d/3d``: ``A`` is a conv with the base kernel, ``B`` a 1x1 conv."""

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        if self.get_base_layer().groups > 1:
            warn("LoRA adapter added to ConvNd layer with groups > 1. Merging is not supported.")

    def _create_adapter_weights(self, adapter_name: str, r: int, lora_bias: bool, **factory: Any) -> None:
        base = self.get_base_layer()
        if r % base.groups != 0:
            raise ValueError(
                f"Targeting a {type(base).__name__} with groups={base.groups} and rank {r}. Currently, support is "
                "limited to conv layers where the rank is divisible by groups. Either choose a different rank or do "
                "not target this specific layer."
            )
        conv_cls = type(base) if type(base) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) else _CONV_BY_DIM[base.weight.dim()]
        ones = (1,) * (base.weight.dim() - 2)
        # uninitialised, like the Linear factors: reset_lora_parameters draws each factor once
        self.lora_A[adapter_name] = skip_init(
            conv_cls, self.in_features, r, base.kernel_size, base.stride, base.padding, bias=False, **factory
        )
        self.lora_B[adapter_name] = skip_init(
            conv_cls, r, self.out_features, ones, ones, groups=base.groups, bias=lora_bias, **factory
        )

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        super()._check_merge_allowed(adapter_names)
        if self.get_base_layer().groups > 1:
            raise NotImplementedError("Merging is not supported for _ConvNd layers with groups > 1!")

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """``scaling * B A`` as a conv weight ``(out, in, *kernel)``.

        ``B`` is a 1x1 conv with the base layer's groups: output channel ``o`` reads the rank channels of its group.
        ``A`` is not grouped, so for a grouped base layer the delta covers every input channel: it has the
        ungrouped layout (see ``dense_base_weight``) and cannot be merged into the grouped base weight.
        """
        weight_a, weight_b = self.lora_A[adapter].weight, self.lora_B[adapter].weight
        dtype = weight_b.dtype
        if weight_a.device.type == "cpu" and dtype in HALF_PRECISION:
            weight_a, weight_b = weight_a.float(), weight_b.float()
        groups = self.get_base_layer().groups
        rank, kernel = weight_a.shape[0], weight_a.shape[2:]
        # (groups, out/groups, r/groups) @ (groups, r/groups, in * kernel): each group's outputs from its ranks
        per_group = weight_b.reshape(groups, -1, rank // groups) @ weight_a.reshape(groups, rank // groups, -1)
        delta = per_group.reshape(weight_b.shape[0], weight_a.shape[1], *kernel)
        return (delta * self.scaling[adapter]).to(dtype)

    def dense_base_weight(self) -> torch.Tensor:
        """The base weight in the ungrouped layout ``(out, in, *kernel)``: zero outside each output channel's
        group of input channels. The base weight itself when the layer is not grouped."""
        weight = self.get_base_weight()
        groups = self.get_base_layer().groups
        if groups == 1:
            return weight
        out_channels, in_per_group = weight.shape[:2]
        dense = weight.new_zeros(out_channels, in_per_group * groups, *weight.shape[2:])
        for group, block in enumerate(weight.chunk(groups, dim=0)):
            rows = slice(group * block.shape[0], (group + 1) * block.shape[0])
            dense[rows, group * in_per_group : (group + 1) * in_per_group] = block
        return dense


class Conv1d(_ConvNd):
    """LoRA on ``nn.Conv1d``."""


class Conv2d(_ConvNd):
    """LoRA on ``nn.Conv2d``."""


class Conv3d(_ConvNd):
    """LoRA on ``nn.Conv3d``."""


_CONV_BY_DIM = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}


def is_lora_layer(module: object) -> bool:
    """Whether LoRA-wide code (injection updates, hotswap) may treat ``module`` as a LoRA layer: AdaLoRA's SVD layers
    subclass ``LoraLayer`` but hold differently shaped factors and are left to AdaLoRA."""
    return isinstance(module, LoraLayer) and module.holds_plain_lora_factors


# LoRA layers the reference defines in this module; here they have their own modules, which import this one
__getattr__ = reference_path_getattr(
    __name__, {"ParamWrapper": "peft.tuners.lora.param_wrapper", "MultiheadAttention": "peft.tuners.lora.mha"}
)
