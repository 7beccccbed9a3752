"""The LyCORIS family (LoHa, LoKr): the config fields, the layer lifecycle and the tuner recipe they share.

A LyCORIS adapter builds a full-size update ``delta W`` from small factors and adds the base layer's operation with
``delta W`` as its weight: ``y = base(x) + op(x, scaling * delta W)`` where ``op`` is ``F.linear`` or the base
convolution and ``scaling = alpha / r``. A method supplies three things: the shapes of its factors
(``_adapter_shapes``), which factors start at zero for each ``init_weights`` value (``_zero_initialized``; all others
are Kaiming-uniform), and its formula (``_delta_weight``). Everything else (rank and module dropout, forward,
merging, scaling for diffusers) is written here once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from peft.config import TargetingConfig
from peft.tuners._validation import check_positive_int
from peft.tuners.tuners_layer import HALF_PRECISION, BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner


def _check_init_weights(value: Any, valid: Iterable[bool | str], owner: str) -> None:
    """``value`` must be one of ``valid`` (``True`` and ``False`` by identity, so ``1`` or ``0`` are refused)."""
    valid = list(valid)
    if not any(value is mode or (isinstance(mode, str) and value == mode) for mode in valid):
        raise ValueError(f"init_weights={value!r} is not valid for {owner}; valid values are {valid}.")


@dataclass
class LycorisConfig(TargetingConfig):
    """Fields every LyCORIS method has (see ``LoHaConfig`` / ``LoKrConfig`` for their meaning).

    Raises:
        ValueError: for a non-positive ``r`` (or ``rank_pattern`` value), a dropout outside ``[0, 1]``, or an
            ``init_weights`` the method does not know.
    """

    r: int = field(default=8, metadata={"help": "Rank of the factors."})
    alpha: float = field(default=8, metadata={"help": "Scaling numerator: the update is scaled by alpha / r."})
    rank_dropout: float = field(default=0.0, metadata={"help": "Dropout of output rows of delta W in training."})
    module_dropout: float = field(default=0.0, metadata={"help": "Probability of skipping the adapter in training."})
    use_effective_conv2d: bool = field(
        default=False, metadata={"help": "Tucker-decomposed factors for Conv1d/Conv2d with kernels larger than 1."}
    )
    init_weights: bool = field(default=True, metadata={"help": "True: the adapter starts as the identity."})
    rank_pattern: dict[str, int] = field(default_factory=dict, metadata={"help": "Per-module ranks."})
    alpha_pattern: dict[str, float] = field(default_factory=dict, metadata={"help": "Per-module alphas."})

    # the method's layer class: its _zero_initialized keys are the init_weights values the method accepts
    _layer_cls: ClassVar[type[LycorisLayer] | None] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r", self.r)
        for key, rank in self.rank_pattern.items():
            check_positive_int(f"rank_pattern[{key!r}]", rank)
        for name in ("rank_dropout", "module_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
        if self._layer_cls is not None:
            _check_init_weights(self.init_weights, self._layer_cls._zero_initialized, type(self).__name__)


class LycorisLayer(BaseTunerLayer):
    """Adapter state and lifecycle shared by LoHa and LoKr layers; concrete layers are ``(MethodLayer, nn.Module)``.

    Every factor is an ``nn.Parameter`` in an ``nn.ParameterDict`` named in ``adapter_layer_names`` and keyed by
    adapter name, so the saved keys are ``<module>.<factor>`` (e.g. ``hada_w1_a``) as in the reference format.
    """

    other_param_names = ("r", "alpha", "scaling", "rank_dropout", "rank_dropout_scale", "module_dropout")
    # factors that start at zero per init_weights value (the adapter is then the identity); set by each method
    _zero_initialized: ClassVar[dict[bool | str, tuple[str, ...]]] = {True: (), False: ()}
    # whether rank dropout rescales the kept rows by default (LoHa always does; LoKr when asked)
    _default_rank_dropout_scale: ClassVar[bool] = True

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        base = self.get_base_layer()
        if isinstance(base, nn.modules.conv._ConvNd):
            weight_shape = (base.out_channels, base.in_channels // base.groups, *base.kernel_size)
        else:
            weight_shape = (self.out_features, self.in_features)
        self._weight_shape = weight_shape  # the base weight's (unquantized) shape; delta W has it too

    # ---------------------------------------------------------------------------------------------- per method
    def _adapter_shapes(self, r: int, effective_conv: bool, **options: Any) -> dict[str, tuple[int, ...]]:
        """``{factor name: shape}`` of a new adapter of rank ``r`` on this layer."""
        raise NotImplementedError

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype | None) -> torch.Tensor:
        """The unscaled update from the factors (cast to ``dtype`` if given), in any shape with the weight's size."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------- adapters
    @property
    def _kernel_size(self) -> tuple[int, ...]:
        """The base convolution's kernel size; ``()`` for linear layers."""
        return self._weight_shape[2:]

    @property
    def is_1x1_conv2d(self) -> bool:
        """A 1x1 Conv2d is a matrix product: factors always use the plain matrix layout."""
        return isinstance(self.get_base_layer(), nn.Conv2d) and self._kernel_size == (1, 1)

    @property
    def is_1_conv1d(self) -> bool:
        """A Conv1d with kernel size 1 is a matrix product: factors always use the plain matrix layout."""
        return isinstance(self.get_base_layer(), nn.Conv1d) and self._kernel_size == (1,)

    def _has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.r  # no single factor exists in every layout

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        alpha: float,
        rank_dropout: float = 0.0,
        module_dropout: float = 0.0,
        init_weights: bool | str = True,
        use_effective_conv2d: bool = False,
        rank_dropout_scale: bool | None = None,
        **options: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer.

        Args:
            r: rank of the factors; ``alpha / r`` scales the update.
            rank_dropout / module_dropout: training-time dropout of output rows of delta W / of the whole adapter.
            init_weights: ``True`` (identity at start), ``False`` (all random: for tests), or a method's own mode.
            use_effective_conv2d: Tucker-decomposed factors for convolutions whose kernel is larger than 1.
            rank_dropout_scale: rescale kept rows by the fraction kept (default: the method's behaviour).
            options: method-specific options (LoKr: ``decompose_both``, ``decompose_factor``).

        Raises:
            ValueError: if ``r`` is not positive or ``init_weights`` is unknown to the method.
        """
        check_positive_int("r", r)
        _check_init_weights(init_weights, self._zero_initialized, type(self).__name__)
        self.r[adapter_name] = r
        self.alpha[adapter_name] = alpha
        self.scaling[adapter_name] = alpha / r
        self.rank_dropout[adapter_name] = rank_dropout
        self.module_dropout[adapter_name] = module_dropout
        self.rank_dropout_scale[adapter_name] = (
            self._default_rank_dropout_scale if rank_dropout_scale is None else rank_dropout_scale
        )
        effective_conv = use_effective_conv2d and any(k != 1 for k in self._kernel_size)
        for name in self.adapter_layer_names:  # a replaced adapter may use another layout
            container = getattr(self, name)
            if adapter_name in container:
                del container[adapter_name]
        factory = self._factory_kwargs()
        for name, shape in self._adapter_shapes(r, effective_conv, **options).items():
            getattr(self, name)[adapter_name] = nn.Parameter(torch.empty(shape, **factory))
        self.reset_adapter_parameters(adapter_name, init_weights)

    def reset_adapter_parameters(self, adapter_name: str, init_weights: bool | str = True) -> None:
        """Zero the factors ``_zero_initialized[init_weights]`` names, draw the others Kaiming-uniform (the FedPara
        paper's choice), in ``adapter_layer_names`` order."""
        zero = next(names for mode, names in self._zero_initialized.items() if mode == init_weights)
        with torch.no_grad():
            for name in self.adapter_layer_names:
                container = getattr(self, name)
                if adapter_name not in container:
                    continue
                if name in zero:
                    nn.init.zeros_(container[adapter_name])
                else:
                    nn.init.kaiming_uniform_(container[adapter_name], a=math.sqrt(5))

    def _factor(self, name: str, adapter_name: str, dtype: torch.dtype | None) -> torch.Tensor:
        factor = getattr(self, name)[adapter_name]
        return factor if dtype is None else factor.to(dtype)

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        for name in self.adapter_layer_names:
            container = getattr(self, name)
            if adapter_name in container:
                return container[adapter_name].dtype
        raise KeyError(f"Adapter {adapter_name!r} not found on this layer; it has {sorted(self.r)}.")

    # ---------------------------------------------------------------------------------------------- delta W
    def _scaled_delta(
        self, adapter_name: str, dtype: torch.dtype | None = None, apply_rank_dropout: bool = False
    ) -> torch.Tensor:
        delta = (self._delta_weight(adapter_name, dtype) * self.scaling[adapter_name]).reshape(self._weight_shape)
        if apply_rank_dropout:
            keep = (torch.rand(delta.shape[0], device=delta.device) > self.rank_dropout[adapter_name]).to(delta.dtype)
            if self.rank_dropout_scale[adapter_name]:
                keep = keep / keep.mean().clamp_min(torch.finfo(keep.dtype).tiny)
            delta = delta * keep.view(-1, *[1] * (delta.dim() - 1))
        return delta

    def get_delta_weight(self, adapter_name: str, *, apply_rank_dropout: bool = False) -> torch.Tensor:
        """``scaling * delta W`` of ``adapter_name`` in the base weight's shape.

        Half-precision factors are combined in float32 on every device (the result has the factors' dtype), so a
        merge gives the same weight on CPU and GPU.
        """
        dtype = self._adapter_dtype(adapter_name)
        compute_dtype = torch.float32 if dtype in HALF_PRECISION else None
        return self._scaled_delta(adapter_name, compute_dtype, apply_rank_dropout).to(dtype)

    # ---------------------------------------------------------------------------------------------- forward
    def _apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The base layer's operation with ``weight`` and no bias (its padding mode, stride, groups, ...)."""
        base = self.get_base_layer()
        if isinstance(base, nn.modules.conv._ConvNd):
            return base._conv_forward(x, weight, None)
        return F.linear(x, weight)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """What the adapter adds to the base output: ``op(x, scaling * delta W)``, rank dropout in training."""
        apply_rank_dropout = self.training and self.rank_dropout[adapter_name] > 0
        delta = self._scaled_delta(adapter_name, apply_rank_dropout=apply_rank_dropout)
        x = self._cast_input_dtype(x, delta.dtype)
        return self._apply_weight(x, delta.to(x.dtype))

    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        module_dropout = self.module_dropout[adapter_name]
        if self.training and module_dropout > 0 and torch.rand(1).item() < module_dropout:
            return result  # module dropout: the whole adapter is skipped for this step
        return super()._adapter_output(x, result, adapter_name)

    # ---------------------------------------------------------------------------------------------- scaling
    def set_scale(self, adapter: str, scale: float | int) -> None:
        """Set ``adapter``'s scaling to ``scale * alpha / r``."""
        if adapter in self.scaling:
            self.scaling[adapter] = scale * self.alpha[adapter] / self.r[adapter]

    def scale_layer(self, scale: float | int) -> None:
        """Multiply the scaling of every active adapter by ``scale``."""
        if scale == 1:
            return
        for name in self.active_adapters:
            if name in self.scaling:
                self.scaling[name] *= scale

    def unscale_layer(self, scale: float | int | None = None) -> None:
        """Divide the active adapters' scaling by ``scale``, or reset it to ``alpha / r`` when None."""
        for name in self.active_adapters:
            if name in self.scaling:
                self.scaling[name] = self.alpha[name] / self.r[name] if scale is None else self.scaling[name] / scale


def tucker_product(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    """The ``(out, in, k1, k2)`` kernel of a Tucker core ``(r, r, k1, k2)`` with mode factors ``(r, out)``,
    ``(r, in)``."""
    return torch.einsum("i j k l, i p, j r -> p r k l", core, out_factor, in_factor)


def tucker_core_shape(r: int, kernel_size: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Shape of a Tucker core for ``kernel_size``; a Conv1d kernel ``(k,)`` is stored as ``(k, 1)`` (reference
    format)."""
    return (r, r, *kernel_size) if len(kernel_size) == 2 else (r, r, kernel_size[0], 1)


class LycorisTuner(BaseTuner):
    """The tuner recipe of every LyCORIS method: the config fields its layers get, ``r`` and ``alpha`` per module
    from the patterns; a method adds its ``layers_mapping`` (and options of its own)."""

    tuner_layer_cls = LycorisLayer
    layer_options = ("r", "alpha", "rank_dropout", "module_dropout", "init_weights", "use_effective_conv2d")
    option_patterns = {"r": "rank_pattern", "alpha": "alpha_pattern"}
