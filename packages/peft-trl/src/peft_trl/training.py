"""Training setup around adapters: gradient checkpointing with frozen embeddings, and TRL defaults a method cannot use.

With a frozen base model nothing before the first adapter requires gradients. Reentrant gradient checkpointing
then sees inputs without gradients, skips the backward of every checkpointed layer, and the adapters inside them
never train; making the input embeddings' output require gradients fixes it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.utils.warnings import warn

# transformers >= 5.23 reads `activation_checkpointing`, TRL its deprecated mirror `gradient_checkpointing`
_CHECKPOINTING_FLAGS = ("activation_checkpointing", "gradient_checkpointing")


def prepare_model_for_gradient_checkpointing(
    model: nn.Module, gradient_checkpointing_kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """Turn on gradient checkpointing and make the input embeddings' output require gradients.

    Parameters keep their ``requires_grad``: this prepares a model for adapter training, it does not choose what
    trains. Call it on a ``PeftModel`` or on the base model before wrapping it.

    Args:
        model: a ``PeftModel`` or a transformers model.
        gradient_checkpointing_kwargs: passed to ``torch.utils.checkpoint.checkpoint`` (e.g.
            ``{"use_reentrant": True}``); ``None`` keeps the model's default.

    Returns:
        ``model``.

    Raises:
        TypeError: if the model has no gradient checkpointing support or no input embeddings.

    Example:
        >>> model = get_peft_model(base, LoraConfig(target_modules=["q_proj", "v_proj"]))
        >>> prepare_model_for_gradient_checkpointing(model, {"use_reentrant": True})
    """
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    enable = getattr(base, "activation_checkpointing_enable", None)
    if callable(enable):
        enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs)
    elif callable(getattr(base, "gradient_checkpointing_enable", None)):
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)
    else:
        raise TypeError(f"{type(base).__name__} has no gradient_checkpointing_enable: it cannot checkpoint layers.")
    if not getattr(base, "_require_grads_hooks", None):  # transformers may have added the hook already
        _make_input_embeddings_require_grads(base)
    return model


def adapt_training_args(args: Any, peft_config: Any) -> Any:
    """Switch off what TRL's defaults turn on but ``peft_config``'s method cannot train with, with a warning.

    - Prefix tuning: ``gradient_checkpointing`` (on by default in ``SFTConfig``, ``DPOConfig``, ...). The prefixes
      are given to the attention layers as a key/value cache, which checkpointed layers drop, so the trainer would
      fail in the first forward.

    Args:
        args: TRL or transformers training arguments (changed in place).
        peft_config: the config the trainer will get as ``peft_config``.

    Returns:
        ``args``.

    Example:
        >>> args = adapt_training_args(SFTConfig(output_dir="out"), PrefixTuningConfig(num_virtual_tokens=8))
        >>> args.gradient_checkpointing
        False
    """
    names = [name for name in _CHECKPOINTING_FLAGS if hasattr(args, name)]
    checkpointing = any(getattr(args, name) for name in names)
    if str(getattr(peft_config, "peft_type", "")) == "PREFIX_TUNING" and checkpointing:
        warn(
            "Prefix tuning cannot train with gradient checkpointing (checkpointed layers drop the key/value cache "
            "that holds the prefixes): setting gradient_checkpointing=False."
        )
        for name in names:
            setattr(args, name, False)
    return args


def _make_input_embeddings_require_grads(model: nn.Module) -> None:
    enable = getattr(model, "enable_input_require_grads", None)
    if callable(enable):
        enable()
        return
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    if embeddings is None:
        raise TypeError(f"{type(model).__name__} has no get_input_embeddings(): cannot make its inputs need grads.")
    embeddings.register_forward_hook(_output_requires_grad)


def _output_requires_grad(module: nn.Module, inputs: Any, output: Any) -> None:
    output.requires_grad_(True)
