"""Small helpers that hosts and users call around PEFT models."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from functools import update_wrapper
from types import MethodType
from typing import Any

from torch import nn

from peft.config import PeftConfig
from peft.kappatune import KappaTuneSelector, find_kappa_target_modules
from peft.tuners._adapter_lock import adapter_lock
from peft.tuners._memory_bound import adapter_memory_limit
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.other import cast_mixed_precision_params
from peft.utils.reference_paths import reference_path_getattr

__all__ = [
    "DoraCaching",  # noqa: F822  (resolved on first use by __getattr__)
    "KappaTuneSelector",
    "adapter_memory_limit",
    "adapters_in_use",
    "cast_mixed_precision_params",
    "check_if_peft_model",
    "disable_input_dtype_casting",
    "find_kappa_target_modules",
    "rescale_adapter_scale",
    "update_forward_signature",
    "update_generate_signature",
    "update_signature",
]


def _takes_only_args_and_kwargs(method: Any) -> bool:
    parameters = inspect.signature(method).parameters
    return set(parameters) in ({"args", "kwargs"}, {"kwargs"})


def _with_signature_of(model: nn.Module, name: str) -> None:
    """Give ``model.<name>`` (a method taking ``*args, **kwargs``) the docstring and annotations of the base model's
    method, so that ``help()`` and IDEs show the real arguments."""
    method = getattr(model, name)
    if not _takes_only_args_and_kwargs(method):
        return
    function = deepcopy(method.__func__)
    update_wrapper(
        function, getattr(type(model.get_base_model()), name), assigned=("__doc__", "__name__", "__annotations__")
    )
    setattr(model, name, MethodType(function, model))


def update_forward_signature(model: nn.Module) -> None:
    """Show the base model's ``forward`` arguments on ``model.forward`` (a PEFT model's forward takes ``**kwargs``).

    Example:
        >>> update_forward_signature(peft_model)
    """
    _with_signature_of(model, "forward")


def update_generate_signature(model: nn.Module) -> None:
    """Show the base model's ``generate`` arguments on ``model.generate``, if the model generates."""
    if hasattr(model, "generate"):
        _with_signature_of(model, "generate")


def update_signature(model: nn.Module, method: str = "all") -> None:
    """``update_forward_signature`` and/or ``update_generate_signature``: ``method`` is "forward", "generate" or
    "all".

    Raises:
        ValueError: for another ``method``.
    """
    if method not in ("forward", "generate", "all"):
        raise ValueError(f"method {method} is not supported please choose one of ['forward', 'generate', 'all']")
    if method in ("forward", "all"):
        update_forward_signature(model)
    if method in ("generate", "all"):
        update_generate_signature(model)


def check_if_peft_model(model_name_or_path: str) -> bool:
    """Whether ``model_name_or_path`` (a folder or a Hub repository) holds a PEFT adapter config."""
    try:
        PeftConfig.from_pretrained(model_name_or_path)
    except Exception:  # any failure (missing file, network, invalid JSON) means: not a PEFT model
        return False
    return True


@contextmanager
def rescale_adapter_scale(model: nn.Module, multiplier: float | int) -> Iterator[None]:
    """Within the block every LoRA layer's scaling is multiplied by ``multiplier`` (restored afterwards); with a
    multiplier in [0, 1] this interpolates between the base and the adapted model (WiSE-FT).

    Raises:
        TypeError: if ``multiplier`` is not a float or int.
        ValueError: if the model has no LoRA layer.
    """
    from peft.tuners.lora import LoraLayer

    if isinstance(multiplier, bool) or not isinstance(multiplier, (float, int)):
        raise TypeError(f"Argument multiplier should be of type float, got {type(multiplier)}")
    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    if not layers:
        raise ValueError("scaling is only supported for models with `LoraLayer`s")
    with _attribute_replaced(layers, "scaling", lambda layer: {n: v * multiplier for n, v in layer.scaling.items()}):
        yield


@contextmanager
def disable_input_dtype_casting(model: nn.Module, active: bool = True) -> Iterator[None]:
    """Within the block adapter layers do not cast their input to the adapter's dtype (for diffusers' layerwise
    casting, which manages dtypes with hooks)."""
    if not active:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    with _attribute_replaced(layers, "cast_input_dtype_enabled", lambda layer: False):
        yield


@contextmanager
def _attribute_replaced(layers: list[nn.Module], name: str, value_for: Callable[[nn.Module], Any]) -> Iterator[None]:
    """Within the block each layer's attribute ``name`` is ``value_for(layer)``; afterwards it is what it was."""
    originals = [getattr(layer, name) for layer in layers]
    for layer in layers:
        setattr(layer, name, value_for(layer))
    try:
        yield
    finally:
        for layer, value in zip(layers, originals):
            setattr(layer, name, value)


@contextmanager
def adapters_in_use(model: nn.Module) -> Iterator[None]:
    """Within the block, adapters are not switched: ``set_adapter``, enabling/disabling, merging, adding and deleting
    adapters (through the ``PeftModel``/tuner methods) wait until every thread has left the block, so each forward
    pass run inside it computes with one consistent set of adapters. Blocks of several threads run together.

    For a different adapter per request from many threads, pass ``adapter_names=`` to the forward instead (no lock
    needed); see docs/troubleshooting.md.

    Example:
        >>> with adapters_in_use(model):  # in each serving thread
        ...     output = model(**inputs)
        >>> model.set_adapter("other")  # in another thread: waits for the forwards above, then switches

    Raises:
        RuntimeError: if a thread switches adapters inside its own block (it would wait for itself).
    """
    with adapter_lock(_adapter_holder(model)).shared():
        yield


def _adapter_holder(model: nn.Module) -> nn.Module:
    """The module whose layers hold the adapters (what the lifecycle methods lock)."""
    while "_orig_mod" in model._modules:  # torch.compile wrappers
        model = model._modules["_orig_mod"]
    get_base_model = getattr(type(model), "get_base_model", None)
    if get_base_model is not None:  # PeftModel, PeftMixedModel
        return get_base_model(model)
    return model.model if isinstance(model, BaseTuner) else model


class MontecloraTrainerMixin:
    """A ``transformers.Trainer`` mixin adding MonteCLoRA's variational loss (``LoraModel._get_monteclora_loss()``)
    to the task loss in training; with no MonteCLoRA adapter it adds nothing.

    Example:
        >>> class MontecloraTrainer(MontecloraTrainerMixin, Trainer):
        ...     pass
    """

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        task_loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        # one term per tuner holding MonteCLoRA samplers, averaged so that several tuners do not add up
        terms = [m._get_monteclora_loss() for m in model.modules() if hasattr(m, "_get_monteclora_loss")]
        loss = task_loss + (sum(terms) / len(terms) if terms else 0.0)
        return (loss, outputs) if return_outputs else loss


# DoRA lives with LoRA, which is imported on first use only
__getattr__ = reference_path_getattr(__name__, {"DoraCaching": "peft.tuners.lora.dora"})
