"""Quantization backends: the only way adapter layers read and write a base layer's weight.

A backend knows one storage format (plain float tensors, bitsandbytes 4/8-bit, torchao, HQQ, GPTQ, ...). Adapter
layers call ``get_base_weight`` / ``set_base_weight`` on themselves, which go through the backend of their base layer,
so every method works on every backend: M methods and N backends cost M + N code. A backend also gives the layer's
logical (dequantized) in/out features, which a packed tensor's shape does not tell.

Backends for optional libraries live in one small module each and are loaded lazily: a layer of library X can only
exist once X has been imported, so a backend module is imported only when its library is already in ``sys.modules``.
``import peft`` therefore never imports bitsandbytes, torchao or any other quantization library.
"""

from __future__ import annotations

import importlib
import sys

import torch
from torch import nn


class QuantizationBackend:
    """Reads and writes the weight of base layers stored in one format.

    Subclasses set ``name`` (shown in layer reprs and ``get_layer_status``), ``library`` (the top-level module whose
    layers they handle), ``install`` (how to get that library) and either ``layer_types`` (the classes they handle) or
    ``matches``; mergeable formats implement
    ``get_weight`` and ``set_weight``. Forward and training never need a backend method: adapter layers call the base
    layer itself.
    """

    name: str = ""
    library: str = ""
    install: str = ""
    # the layer classes ``matches`` recognises, for a backend that recognises its layers by class
    layer_types: tuple[type, ...] = ()
    # whether the base layer computes ``x @ W^T (+ b)`` with a dequantized ``(out, in)`` weight, so that methods
    # written for ``nn.Linear`` apply to it
    is_linear: bool = True
    # whether the weight can be dequantized (DoRA norms, PiSSA/OLoRA/LoftQ init, merging read it) ...
    can_dequantize: bool = True
    # ... and written back (merging, unmerging)
    can_requantize: bool = True

    def matches(self, module: nn.Module) -> bool:
        """Whether ``module`` stores its weight in this backend's format."""
        if not self.layer_types:
            raise NotImplementedError(f"{type(self).__name__} sets neither layer_types nor matches.")
        return isinstance(module, self.layer_types)

    def check_adaptable(self, module: nn.Module) -> None:
        """Raise (or warn) when adapters on ``module`` cannot work (or train) as expected; called at injection."""

    def in_out_features(self, module: nn.Module) -> tuple[int, int]:
        """The logical ``(in_features, out_features)`` of the layer (those of its dequantized weight)."""
        for in_name, out_name in (("in_features", "out_features"), ("infeatures", "outfeatures")):
            if hasattr(module, in_name) and hasattr(module, out_name):
                return getattr(module, in_name), getattr(module, out_name)
        out_features, in_features = self.get_weight(module).shape
        return in_features, out_features

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        """The weight as a float ``(out, in)`` tensor (dequantized), one the caller may modify freely."""
        raise TypeError(
            f"The base weight of {type(module).__name__} ({self.name}) cannot be dequantized: this format supports "
            "forward and training only, not merging or methods that read the base weight."
        )

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        """Store ``weight`` (a float tensor of the dequantized shape) into ``module``, requantizing as needed."""
        raise TypeError(
            f"The base weight of {type(module).__name__} ({self.name}) cannot be written: merging and unmerging are "
            "not possible for this format. Use the adapter unmerged, or merge into an unquantized copy of the model."
        )

    @property
    def backend_name(self) -> str:
        """The name as the reference's backends call it."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class PlainBackend(QuantizationBackend):
    """Unquantized layers: the weight is a floating-point ``weight`` parameter, updated in place."""

    name = "plain"

    def matches(self, module: nn.Module) -> bool:
        weight = getattr(module, "weight", None)
        return isinstance(weight, torch.Tensor) and weight.is_floating_point()

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.weight.detach()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        # in place, so the Parameter object (and anything holding it: optimizers, tied modules) stays the same
        with torch.no_grad():
            module.weight.copy_(weight)


class ForwardOnlyBackend(QuantizationBackend):
    """Formats the library can compute with but not rewrite (GPTQ, AWQ, EETQ, AQLM, ...): forward and training work,
    reading or writing the weight (merging, DoRA, weight-based initialisations) raises a clear error."""

    can_dequantize = False
    can_requantize = False


PLAIN_BACKEND = PlainBackend()

# (library whose layers the backends handle, module of this package that defines them in ``BACKENDS``)
_LAZY_BACKEND_MODULES: tuple[tuple[str, str], ...] = (
    ("bitsandbytes", "bnb"),
    ("torchao", "torchao"),
    ("hqq", "hqq"),
    ("gptqmodel", "gptq"),
    ("auto_gptq", "gptq"),
    ("awq", "awq"),
    ("eetq", "eetq"),
    ("aqlm", "aqlm"),
    ("neural_compressor", "inc"),
    ("transformer_engine", "te"),
    ("megatron", "megatron"),
)
_BACKENDS: list[QuantizationBackend] = []
_loaded: dict[str, tuple[QuantizationBackend, ...]] = {}


def register_quantization_backend(backend: QuantizationBackend) -> None:
    """Add a backend for a storage format of your own; backends registered later are tried first."""
    _BACKENDS.insert(0, backend)


def _backends_in_use() -> list[QuantizationBackend]:
    """Registered backends, then the built-in backends of every quantization library imported so far (importing
    the backend module of each on first use). The one place where backends are loaded lazily."""
    backends = list(_BACKENDS)
    for library, module_name in _LAZY_BACKEND_MODULES:
        if library not in sys.modules:
            continue
        if module_name not in _loaded:
            _loaded[module_name] = _import_backends(module_name, library)
        backends.extend(b for b in _loaded[module_name] if b not in backends)
    return backends


def _import_backends(module_name: str, library: str) -> tuple[QuantizationBackend, ...]:
    try:
        return importlib.import_module(f"{__name__}.{module_name}").BACKENDS
    except ImportError as error:
        from peft.utils.warnings import warn

        warn(
            f"{library} is imported but peft's backend for it could not be loaded ({error}); layers quantized with "
            f"{library} cannot be adapted. Check that the installed {library} version is supported."
        )
        return ()


# torch layers that, holding a plain float Parameter, no quantization library produces: injection skips the backend
# lookup for them (thousands of layers per model)
_PLAIN_TORCH_LAYERS = frozenset({nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding})


def is_plain_torch_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a torch ``Linear``/``Conv``/``Embedding`` with a plain float ``nn.Parameter`` weight."""
    weight = module._parameters.get("weight") if type(module) in _PLAIN_TORCH_LAYERS else None
    return type(weight) is nn.Parameter and weight.is_floating_point()


def resolve_quantization_backend(base_layer: nn.Module) -> QuantizationBackend | None:
    """The backend for ``base_layer``'s weight format, or None for plain floating-point layers."""
    for backend in _backends_in_use():
        if backend.matches(base_layer):
            return backend
    return None


def get_backend(base_layer: nn.Module) -> QuantizationBackend:
    """Like :func:`resolve_quantization_backend` but returns the plain backend for float layers."""
    return resolve_quantization_backend(base_layer) or PLAIN_BACKEND


def is_quantized_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a quantized layer that computes like ``nn.Linear`` (GPTQ, AWQ, HQQ, ... layers need
    not subclass it)."""
    backend = resolve_quantization_backend(module)
    return backend is not None and backend.is_linear


def is_linear_layer(module: nn.Module) -> bool:
    """Whether methods written for ``nn.Linear`` apply to ``module``: an ``nn.Linear`` or a quantized linear layer."""
    return isinstance(module, nn.Linear) or is_quantized_linear(module)


def check_base_layer(base_layer: nn.Module) -> None:
    """Check, when an adapter layer is created, that adapters can work on ``base_layer``: its backend's own checks,
    and refusal of a weight stored in a format no backend reads (an integer ``weight``, a ``qweight``), on which
    adapters could neither size themselves nor merge correctly.

    Raises:
        TypeError: naming the layer class, the weight's dtype and the libraries whose layers are supported.
    """
    if is_plain_torch_layer(base_layer):
        return
    backend = resolve_quantization_backend(base_layer)
    if backend is not None:
        backend.check_adaptable(base_layer)
        return
    weight = base_layer._parameters.get("weight", base_layer._buffers.get("weight"))
    packed = weight is not None and not weight.is_floating_point()
    if not packed and not hasattr(base_layer, "qweight"):
        return
    dtype = weight.dtype if weight is not None else getattr(getattr(base_layer, "qweight", None), "dtype", None)
    raise TypeError(
        f"The base layer {type(base_layer).__module__}.{type(base_layer).__qualname__} stores its weight as {dtype}, "
        "and no quantization backend handles it, so adapters can neither read its shape nor merge into it. "
        f"Supported quantized layers: {SUPPORTED_LIBRARIES}. If the layer comes from one of these libraries, make "
        "sure it is installed and imported; for another format, register a backend with "
        "peft.quantization.register_quantization_backend."
    )


SUPPORTED_LIBRARIES = (
    "bitsandbytes Linear4bit/Linear8bitLt (pip install bitsandbytes), torchao int8 weights (pip install torchao), "
    "HQQ HQQLinear (pip install hqq), GPTQ QuantLinear (pip install gptqmodel), AWQ WQLinear (pip install autoawq), "
    "EETQ EetqLinear (pip install eetq), AQLM QuantizedLinear (pip install aqlm), Intel Neural Compressor "
    "PatchedLinear (pip install neural-compressor), TransformerEngine Linear/LayerNormLinear "
    "(pip install transformer-engine), Megatron ColumnParallelLinear/RowParallelLinear (megatron-core)"
)
