"""LoRA-GA preprocessing: estimate the gradient of each target layer's full weight on a few training steps.

LoRA-GA (low-rank adaptation with gradient approximation) starts the adapter from the singular vectors of the
gradient that full fine-tuning would follow, so its first steps move the model the same way. ``preprocess_loraga``
runs the user's ``train_step`` with gradients enabled on the target weights only and leaves the mean gradient on
each target layer (attribute ``_peft_loraga_grad``); ``get_peft_model`` with ``init_lora_weights="lora_ga"`` consumes
it (``peft.tuners.lora.initialization.init_lora_ga``).

Example:
    >>> config = LoraConfig(init_lora_weights="lora_ga", target_modules=["q_proj"], lora_ga_config=LoraGAConfig())
    >>> preprocess_loraga(model, config, train_step=lambda: [model(**b).loss.backward() for b in batches])
    >>> model = get_peft_model(model, config)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peft.quantization import resolve_quantization_backend
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.initialization import LORAGA_GRADIENT_ATTRIBUTE, preprocessing_targets


def preprocess_loraga(
    model: nn.Module,
    lora_config: LoraConfig,
    train_step: Callable[[], Any],
    cache_file: str | os.PathLike | None = None,
) -> None:
    """Prepare ``model`` for ``get_peft_model(model, lora_config)`` with ``init_lora_weights="lora_ga"``.

    Every target layer (``nn.Linear`` or transformers ``Conv1D`` matched by ``lora_config``) gets the gradient of
    its weight, averaged over the backward passes ``train_step`` makes. Gradients are computed for the target
    weights only; the ``requires_grad`` flags and the training mode of the model are restored afterwards.

    Args:
        model: the model to add the adapter to (unquantized: the gradient of a quantized weight does not exist).
        lora_config: its LoRA config, with ``lora_ga_config`` set.
        train_step: runs forward and backward passes on training samples.
        cache_file: a file to reuse the gradients from when it exists, or to write them to.

    Raises:
        ValueError: without ``lora_config.lora_ga_config``, for quantized target layers, or when no target layer is
            linear.
    """
    if lora_config.lora_ga_config is None:
        raise ValueError(
            "If you want to use LoRA-GA, please initialize the LoraConfig with init_lora_weights='lora_ga' and "
            "lora_ga_config=LoraGAConfig(...)."
        )
    targets = preprocessing_targets(model, lora_config)
    for name, module in targets:
        if resolve_quantization_backend(module) is not None or hasattr(module, "quant_state"):
            raise ValueError(
                f"LoRA-GA does not support quantized models. Found quantized module: {name!r}. LoRA-GA needs the "
                "gradient of the full-precision weight: preprocess and initialise the unquantized model, then "
                "quantize its residual."
            )
    if not targets:
        raise ValueError(
            "No supported layers found for LoRA-GA initialization. LoRA-GA only supports nn.Linear and Conv1D layers; "
            f"target_modules={lora_config.target_modules!r} matches none."
        )
    if cache_file is not None and os.path.exists(cache_file) and os.path.getsize(cache_file) > 0:
        device = next(iter(model.parameters())).device
        cache = torch.load(cache_file, map_location=device)
        for name, module in targets:
            key = f"{name}.{LORAGA_GRADIENT_ATTRIBUTE}"
            if key not in cache:
                raise ValueError(f"LoRA-GA cache file {os.fspath(cache_file)!r} has no gradient for {name!r}.")
            setattr(module, LORAGA_GRADIENT_ATTRIBUTE, cache[key])
        return
    _estimate_gradients(model, targets, train_step)
    if cache_file is not None:
        directory = os.path.dirname(os.fspath(cache_file))
        if directory:
            os.makedirs(directory, exist_ok=True)
        gradients = {
            f"{name}.{LORAGA_GRADIENT_ATTRIBUTE}": getattr(module, LORAGA_GRADIENT_ATTRIBUTE)
            for name, module in targets
            if hasattr(module, LORAGA_GRADIENT_ATTRIBUTE)
        }
        torch.save(gradients, cache_file)


def _estimate_gradients(model: nn.Module, targets: list[tuple[str, nn.Module]], train_step: Callable[[], Any]) -> None:
    """Run ``train_step`` with only the target weights requiring grad; store each mean gradient on its module.

    The backward passes reaching a weight are counted by a hook on it, so gradients accumulated over several
    backward passes are averaged; a module the steps never reached gets no gradient (it starts as
    ``init_lora_weights=True``).
    """
    was_training = model.training
    requires_grad = {param: param.requires_grad for param in model.parameters()}
    counts = dict.fromkeys((module for _, module in targets), 0)

    def counter(module: nn.Module) -> Callable[[torch.Tensor], None]:
        def count(grad: torch.Tensor) -> None:
            counts[module] += 1

        return count

    previous_grads = {module: module.weight.grad for _, module in targets}
    handles = []
    try:
        for param in requires_grad:
            param.requires_grad_(False)
        for _, module in targets:
            module.weight.grad = None
            module.weight.requires_grad_(True)
            handles.append(module.weight.register_hook(counter(module)))
        model.train()
        with torch.enable_grad():
            train_step()
        for _, module in targets:
            if counts[module] > 0 and module.weight.grad is not None:
                setattr(module, LORAGA_GRADIENT_ATTRIBUTE, module.weight.grad.detach() / counts[module])
    finally:
        for handle in handles:
            handle.remove()
        for _, module in targets:
            module.weight.grad = previous_grads[module]
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)
        model.train(was_training)
