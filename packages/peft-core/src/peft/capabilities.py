"""What each registered PEFT method supports, measured rather than declared.

For every method in the registry (``PEFT_TYPE_TO_CONFIG_MAPPING``), :func:`method_capabilities` builds a tiny model
around one base layer of each common type, applies the method with ``get_peft_model`` and records what works: which
layer types it adapts, whether merging into the base weight reproduces the unmerged outputs, whether a mixed batch
(``adapter_names``) gives each row its own adapter's output, and whether it adapts a layer whose weight is stored
quantized (an int8 stand-in read through the quantization-backend interface). Nothing is kept in a hand-written list,
so a new method or a new layer type shows up as soon as it is registered; the documentation's method table and
``peft methods`` are built from here.

The probes are small (64 features) and run on the CPU in a few seconds for all methods. Some methods need a setting
to be valid on such a small layer or at all (AdaLoRA's ``total_step``); those settings are in
:data:`EXAMPLE_OPTIONS`, which the documentation's examples use too.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: Settings a method needs on the probes' 64-feature layers (or needs at all), by ``peft_type``.
EXAMPLE_OPTIONS: dict[str, dict[str, Any]] = {
    "ADALORA": {"total_step": 10},
    "ADAPTION_PROMPT": {"adapter_len": 4, "adapter_layers": 1},
    "C3A": {"block_size": 16},
    "IA3": {"feedforward_modules": []},
    "TRAINABLE_TOKENS": {"token_indices": [0, 1]},
    "VBLORA": {"vector_length": 16},
}

#: Extra forward arguments a method needs, by ``peft_type``: ``rows -> kwargs`` (Poly routes each row by its task).
FORWARD_OPTIONS: dict[str, Callable[[int], dict[str, Any]]] = {
    "POLY": lambda rows: {"task_ids": torch.zeros(rows, dtype=torch.long)},
}

_FEATURES = 64
_VOCAB = 100
#: Largest |difference| between merged and unmerged outputs, relative to the largest |output|.
_MERGE_RTOL = 1e-4


@dataclasses.dataclass(frozen=True)
class MethodCapabilities:
    """What one method supports (see the module docstring for how each field is measured).

    Attributes:
        peft_type: the method's ``peft_type``, e.g. ``"LORA"``.
        config_class: the name of its config class, e.g. ``"LoraConfig"``.
        kind: ``"prompt learning"`` (virtual tokens; no layer is adapted), ``"adaption prompt"`` (learned prompts
            inside the attention of Llama-like models), ``"adapter layers"``, or ``"model-level"`` for a method that
            no one-layer model can take (it wraps a transformer's blocks, or routes between loaded adapters); for
            those nothing is measured.
        summary: the first sentence of the config's docstring.
        layer_types: the base layer types it adapts, by name.
        merge: the layer types on which ``merge_and_unload`` leaves a plain layer computing the adapted outputs, and
            merging then unmerging leaves the adapter computing as before.
        mixed_batch: the layer types on which a mixed batch gives each row its own adapter's output.
        quantized_base: whether it adapts (and computes correctly on) a linear layer with an int8-quantized weight.
        mixed_adapter_types: whether ``PeftMixedModel`` combines it with other methods.
        errors: for each layer type that did not work, the error it raised (for the curious and for tests).
    """

    peft_type: str
    config_class: str
    kind: str
    summary: str
    layer_types: tuple[str, ...] = ()
    merge: tuple[str, ...] = ()
    mixed_batch: tuple[str, ...] = ()
    quantized_base: bool = False
    mixed_adapter_types: bool = False
    errors: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ probe layers
def _transformers_conv1d() -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    return Conv1D(_FEATURES, _FEATURES)


class _Int8Linear(nn.Linear):
    """A linear layer whose weight is stored as int8 with one float scale per output row (a quantized stand-in)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        scale = linear.weight.detach().abs().amax(dim=1, keepdim=True) / 127
        self.weight = nn.Parameter(torch.round(linear.weight.detach() / scale).to(torch.int8), requires_grad=False)
        self.register_buffer("scale", scale)
        if linear.bias is not None:
            self.bias = nn.Parameter(linear.bias.detach().clone())

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.dequantized().to(x.dtype), self.bias)


def _int8_backend() -> Any:
    from peft.quantization import QuantizationBackend

    class Int8ProbeBackend(QuantizationBackend):
        name = "int8 probe"

        def matches(self, module: nn.Module) -> bool:
            return isinstance(module, _Int8Linear)

        def get_weight(self, module: nn.Module) -> torch.Tensor:
            return module.dequantized()

        def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
            scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
            module.weight.data = torch.round(weight / scale).to(torch.int8)
            module.scale.copy_(scale)

    return Int8ProbeBackend()


_int8_backend_registered = False


def _register_int8_backend() -> None:
    global _int8_backend_registered
    if not _int8_backend_registered:
        from peft.quantization import register_quantization_backend

        register_quantization_backend(_int8_backend())
        _int8_backend_registered = True


#: Base layer types probed: name -> (builder, input builder).
PROBE_LAYERS: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Generator], Any]]] = {
    "Linear": (lambda: nn.Linear(_FEATURES, _FEATURES), lambda g: torch.randn(2, 3, _FEATURES, generator=g)),
    "Embedding": (lambda: nn.Embedding(_VOCAB, _FEATURES), lambda g: torch.randint(0, _VOCAB, (2, 3), generator=g)),
    "Conv1d": (lambda: nn.Conv1d(_FEATURES, _FEATURES, 3), lambda g: torch.randn(2, _FEATURES, 5, generator=g)),
    "Conv2d": (lambda: nn.Conv2d(_FEATURES, _FEATURES, 3), lambda g: torch.randn(2, _FEATURES, 5, 5, generator=g)),
    "Conv3d": (
        lambda: nn.Conv3d(_FEATURES, _FEATURES, 3),
        lambda g: torch.randn(2, _FEATURES, 3, 3, 3, generator=g),
    ),
    "transformers Conv1D": (_transformers_conv1d, lambda g: torch.randn(2, 3, _FEATURES, generator=g)),
    "MultiheadAttention": (
        lambda: nn.MultiheadAttention(_FEATURES, 4, batch_first=True),
        lambda g: torch.randn(2, 3, _FEATURES, generator=g),
    ),
    "LayerNorm": (lambda: nn.LayerNorm(_FEATURES), lambda g: torch.randn(2, 3, _FEATURES, generator=g)),
}


class _Probe(nn.Module):
    """A model made of one layer, called ``layer``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.is_attention = isinstance(layer, nn.MultiheadAttention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_attention:
            return self.layer(x, x, x, need_weights=False)[0]
        return self.layer(x)


# ------------------------------------------------------------------------------------------------ measuring
def _summary(config_cls: type) -> str:
    doc = (config_cls.__doc__ or "").strip()
    paragraph = doc.split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def _randomize_adapter(model: nn.Module, seed: int) -> None:
    """Give every trainable (adapter) parameter random values, so the adapter changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad and param.is_floating_point():
                param.add_(0.1 * torch.randn(param.shape, generator=generator).to(param.dtype))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(1.0, float(b.abs().max()))
    return bool((a - b).abs().max() <= _MERGE_RTOL * scale)


def _build(config_cls: type, peft_type: str, layer: nn.Module, adapter_name: str = "default") -> nn.Module:
    from peft import get_peft_model

    config = config_cls(target_modules=["layer"], **EXAMPLE_OPTIONS.get(peft_type, {}))
    return get_peft_model(_Probe(layer), config, adapter_name=adapter_name)


def _probe_layer(config_cls: type, peft_type: str, make_layer: Callable, make_input: Callable) -> dict[str, bool]:
    """Inject, then check merge and mixed batch on one layer type; raises if the method refuses the layer."""
    from peft.tuners.tuners_layer import BaseTunerLayer

    torch.manual_seed(0)
    model = _build(config_cls, peft_type, make_layer())
    _randomize_adapter(model, seed=1)
    model.eval()
    x = make_input(torch.Generator().manual_seed(2))
    extra = FORWARD_OPTIONS.get(peft_type, lambda rows: {})(x.shape[0])
    with torch.no_grad():
        adapted = model(x, **extra)
        with model.disable_adapter():
            plain = model(x, **extra)
    if _close(adapted, plain):
        raise RuntimeError("the adapter does not change the output")
    results = {"merge": False, "mixed_batch": False}
    with torch.no_grad():
        try:
            mixed = model(x, adapter_names=["default", "__base__"], **extra)
            results["mixed_batch"] = _close(mixed[:1], adapted[:1]) and _close(mixed[1:], plain[1:])
        except (ValueError, TypeError, NotImplementedError, RuntimeError):
            pass
        try:
            # merged for good: a model without adapter layers that computes the adapted outputs
            unloaded = copy.deepcopy(model).merge_and_unload()
            leftover = any(isinstance(module, BaseTunerLayer) for module in unloaded.modules())
            merged = unloaded(x)
            # merged and unmerged again: the adapter computes as before
            model.merge_adapter()
            model.unmerge_adapter()
            restored = model(x, **extra)
            results["merge"] = not leftover and _close(merged, adapted) and _close(restored, adapted)
        except (ValueError, TypeError, NotImplementedError, RuntimeError):
            pass
    return results


def _probe_quantized(config_cls: type, peft_type: str) -> bool:
    _register_int8_backend()
    torch.manual_seed(0)
    quantized = _Int8Linear(nn.Linear(_FEATURES, _FEATURES))
    reference = nn.Linear(_FEATURES, _FEATURES)
    with torch.no_grad():
        reference.weight.copy_(quantized.dequantized())
        reference.bias.copy_(quantized.bias)
    x = torch.randn(2, 3, _FEATURES, generator=torch.Generator().manual_seed(2))
    outputs = []
    for layer in (quantized, reference):
        torch.manual_seed(1)  # the same adapter initialisation for both
        try:
            model = _build(config_cls, peft_type, layer)
        except (ValueError, TypeError, NotImplementedError, RuntimeError):
            return False
        _randomize_adapter(model, seed=1)
        model.eval()
        with torch.no_grad():
            outputs.append(model(x, **FORWARD_OPTIONS.get(peft_type, lambda rows: {})(x.shape[0])))
    return _close(outputs[0], outputs[1])


def _is_adaption_prompt(config_cls: type, peft_type: str) -> bool:
    """Whether the config is adaption prompt's (a property of an instance; one that cannot be built is not)."""
    try:
        return bool(config_cls(**EXAMPLE_OPTIONS.get(peft_type, {})).is_adaption_prompt)
    except (ValueError, TypeError):
        return False


def method_capabilities(peft_type: str) -> MethodCapabilities:
    """Measure what the registered method ``peft_type`` supports (see the module docstring).

    Raises:
        KeyError: if no method ``peft_type`` is registered.
    """
    from peft.config import PromptLearningConfig
    from peft.registry import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_MIXED_MODEL_MAPPING

    peft_type = str(peft_type).upper()
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]
    common = {
        "peft_type": peft_type,
        "config_class": config_cls.__name__,
        "summary": _summary(config_cls),
        "mixed_adapter_types": peft_type in PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
    }
    if issubclass(config_cls, PromptLearningConfig):
        return MethodCapabilities(kind="prompt learning", **common)
    if _is_adaption_prompt(config_cls, peft_type):
        return MethodCapabilities(kind="adaption prompt", **common)
    layer_types, merge, mixed, errors = [], [], [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (make_layer, make_input) in PROBE_LAYERS.items():
            try:
                results = _probe_layer(config_cls, peft_type, make_layer, make_input)
            except ImportError as exc:  # transformers not installed: its Conv1D cannot be probed
                errors[name] = f"not probed: {exc}"
                continue
            except (ValueError, TypeError, NotImplementedError, RuntimeError, KeyError, AttributeError) as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            layer_types.append(name)
            if results["merge"]:
                merge.append(name)
            if results["mixed_batch"]:
                mixed.append(name)
        quantized = "Linear" in layer_types and _probe_quantized(config_cls, peft_type)
    return MethodCapabilities(
        # a method no single layer can take (it needs a whole transformer, or adapters to route between)
        kind="adapter layers" if layer_types else "model-level",
        layer_types=tuple(layer_types),
        merge=tuple(merge),
        mixed_batch=tuple(mixed),
        quantized_base=quantized,
        errors=errors,
        **common,
    )


def all_method_capabilities() -> list[MethodCapabilities]:
    """:func:`method_capabilities` of every registered method (host packages' included), sorted by ``peft_type``."""
    from peft.hosts import get_host_registry
    from peft.registry import PEFT_TYPE_TO_CONFIG_MAPPING

    get_host_registry()  # host packages register their methods (e.g. adaption prompt) when loaded

    return [method_capabilities(peft_type) for peft_type in sorted(PEFT_TYPE_TO_CONFIG_MAPPING)]
