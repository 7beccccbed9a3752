"""Adapters whose update is a ``delta W`` of the base weight's shape built from a compact parameterisation:
spectral coefficients (FourierFT, WaveFT), circulant kernels (C3A), low-rank products (GraLoRA's block-wise
factors, TinyLoRA's frozen SVD factors around a tiny mixing matrix, DeLoRA's normalised factors, UniLoRA's factors
drawn from one shared vector), sparse entries (Super-Tuning), and factors of a decomposition of the base weight
(PSOFT, OSF, FRoD, AdaMSS) or functions of it (PEANuT, DEFT).

Such a layer computes ``y = base(x) + x @ delta_W^T`` with ``delta_W`` of the base weight's ``(out, in)`` shape,
derived from a few trainable numbers per adapter. A method supplies the formula (``_delta_weight``) and
``update_layer``; low-rank methods also override ``_adapter_update`` to apply their factors one after the other
instead of forming ``delta_W``. Forward, merging (through the quantization backend), mixed batches, transformers'
``Conv1D`` (``fan_in_fan_out``), reading the base weight in ``(out, in)`` layout and the checks on the base layer are
written here once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from peft.quantization import is_linear_layer
from peft.tuners._buffer_dict import BufferDict
from peft.tuners._targeting import is_transformers_conv1d
from peft.tuners._validation import check_positive_int, check_probability
from peft.tuners.tuners_layer import BaseTunerLayer


def check_base_layer(layer_cls: type, base_layer: nn.Module) -> None:
    """Refuse base layers a dense-delta method cannot wrap: anything but ``nn.Linear`` or a quantized linear layer
    (or transformers' ``Conv1D`` where the method allows it). Quantized storage no backend reads is refused for
    every method when the adapter layer is created.

    Raises:
        TypeError: naming the layer type.
    """
    method = layer_cls.method_name
    allowed = (
        is_linear_layer(base_layer)
        or (layer_cls.supports_conv1d and is_transformers_conv1d(base_layer))
        or (layer_cls.supports_embedding and isinstance(base_layer, nn.Embedding))
    )
    if not allowed:
        supported = "torch.nn.Linear" + (", transformers.pytorch_utils.Conv1D" if layer_cls.supports_conv1d else "")
        supported += ", torch.nn.Embedding" if layer_cls.supports_embedding else ""
        raise TypeError(
            f"{method} does not support target modules of type {type(base_layer).__name__}; supported: {supported}."
        )


class DenseDeltaLayer(BaseTunerLayer):
    """State and forward of a dense-delta adapter layer; concrete layers are ``(MethodLayer, nn.Module)``.

    Subclasses set ``method_name``, ``adapter_layer_names`` (``nn.ParameterDict`` of trainable tensors, or
    ``nn.ModuleDict`` for those in ``module_container_names``), ``other_param_names`` (plain per-adapter dicts, except
    ``adapter_buffer_names``: a ``BufferDict`` each, and ``dropout_name``: an ``nn.ModuleDict``) and implement
    ``update_layer`` and ``_delta_weight``.
    """

    method_name: ClassVar[str] = ""
    # whether transformers' Conv1D (GPT-2 style, weight stored as (in, out)) can be wrapped
    supports_conv1d: ClassVar[bool] = True
    # whether nn.Embedding can be wrapped (its delta W has the embedding matrix's (num_embeddings, dim) layout)
    supports_embedding: ClassVar[bool] = False
    # adapter_layer_names whose entries are modules (e.g. nn.Linear factors) rather than parameters
    module_container_names: ClassVar[tuple[str, ...]] = ()
    # the per-adapter input dropout container, if the method has one (one of other_param_names)
    dropout_name: ClassVar[str] = ""

    @property
    def repr_prefix(self) -> str:
        return self.method_name

    def _init_adapter_state(self) -> None:
        check_base_layer(type(self), self.get_base_layer())
        for name in self.module_container_names:
            setattr(self, name, nn.ModuleDict())
        for name in self.adapter_buffer_names:
            setattr(self, name, BufferDict(persistent=True))
        if self.dropout_name:
            setattr(self, self.dropout_name, nn.ModuleDict())
        super()._init_adapter_state()  # ParameterDicts and dicts for the other names

    def _store_dropout(self, adapter_name: str, dropout: float) -> None:
        """The adapter's input dropout (``nn.Identity`` for 0) in the ``dropout_name`` container.

        Raises:
            ValueError: if ``dropout`` is not a probability.
        """
        check_probability(type(self).__name__, self.dropout_name, dropout)
        container = getattr(self, self.dropout_name)
        container[adapter_name] = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()

    def _store_buffer(self, name: str, adapter_name: str, tensor: torch.Tensor, persistent: bool = True) -> None:
        """Keep the frozen ``tensor`` in the ``BufferDict`` ``name``; ``persistent=False`` leaves it out of the state
        dict and checkpoints (for tensors drawn again from a seed when loading)."""
        container = getattr(self, name)
        container.persistent = persistent
        container[adapter_name] = tensor

    def _store_adapter_tensor(self, adapter_name: str, tensor: torch.Tensor) -> None:
        """Keep ``tensor`` as the adapter's trainable parameter, on the base layer's device and dtype."""
        getattr(self, self.adapter_layer_names[0])[adapter_name] = nn.Parameter(tensor)
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def _locations_on(
        self, locations_by_adapter: dict[str, torch.Tensor], adapter_name: str, device: torch.device
    ) -> torch.Tensor:
        """The adapter's ``(2, n)`` positions (drawn on the CPU) on ``device``: moved there once and kept there, not
        copied host-to-device on every forward."""
        locations = locations_by_adapter[adapter_name]
        if locations.device != device:
            locations = locations.to(device)
            if device.type != "meta":  # a meta copy could not be moved back once the values are loaded
                locations_by_adapter[adapter_name] = locations
        return locations

    def _derived_device(self) -> torch.device:
        """Where state computed from the base weight lives: the base weight's device (real even inside a
        ``torch.device("meta")`` block, since such state is never loaded from a checkpoint)."""
        return self.base_layer_device()

    def original_base_weight(self) -> torch.Tensor:
        """The base weight an update is computed from (dequantized): the current one here; methods whose update is a
        function of it keep the one from before merging (``BaseWeightDependentLayer``)."""
        return self.get_base_weight()

    def _weight_out_in(self, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        """``original_base_weight()`` in ``(out_features, in_features)`` layout, detached, in ``dtype`` (None: its
        own)."""
        weight = self.original_base_weight().detach()
        weight = weight.T if self.fan_in_fan_out else weight
        return weight if dtype is None else weight.to(dtype)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The adapter's update in ``(out_features, in_features)`` layout (the ``F.linear`` one; an embedding's own
        ``(num_embeddings, dim)`` layout for ``nn.Embedding``)."""
        raise NotImplementedError

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The change adapter ``adapter_name`` makes to the base weight, in the base weight's layout."""
        delta = self._delta_weight(adapter_name)
        return delta.T if self.fan_in_fan_out else delta

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """What the adapter adds to the base output: ``x @ delta_W^T``."""
        delta = self._delta_weight(adapter_name)
        x = self._cast_input_dtype(x, delta.dtype)
        return F.linear(x, delta)


def random_locations(out_features: int, in_features: int, count: int, seed: Any, owner: str) -> torch.Tensor:
    """``count`` distinct ``(row, column)`` positions of an ``(out, in)`` matrix as a ``(2, count)`` tensor, drawn by
    ``torch.randperm`` from a CPU generator seeded with ``seed`` (as the reference draws them: the positions are not
    saved in checkpoints, so loading relies on drawing them again).

    Raises:
        ValueError: if ``count`` is not in ``[1, out * in]`` or ``seed`` is not an int.
    """
    check_positive_int(f"{owner}: `n_frequency`", count)
    if count > out_features * in_features:
        raise ValueError(
            f"{owner}: `n_frequency` should be less than or equal to the product of the input and output dimensions "
            f"but the value passed is {count} and the product is {out_features * in_features} (out_features * "
            f"in_features = {out_features} * {in_features})."
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(
            f"{owner}: `random_loc_seed` must be an int (the frequency locations are re-drawn from it when an adapter "
            f"is loaded), got {seed!r}."
        )
    generator = torch.Generator(device="cpu").manual_seed(seed)
    flat = torch.randperm(out_features * in_features, generator=generator, device="cpu")[:count]
    return torch.stack([flat // in_features, flat % in_features])


def dense_from_locations(
    values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """The ``shape`` matrix holding ``values`` at ``(rows, cols)`` and zeros elsewhere."""
    dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
    return dense.index_put((rows, cols), values)
