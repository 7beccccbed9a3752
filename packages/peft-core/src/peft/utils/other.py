"""Module-tree helpers: finding submodules, FSDP wrapping policy, preparing (quantized) models for training.

The auxiliary wrappers (``ModulesToSaveWrapper``, ...) live in ``peft.auxiliary``; they resolve from here too, the
reference's import path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peft.utils import constants
from peft.utils.reference_paths import reference_path_attribute

# names of the reference's peft.utils.other that live in higher layers now
_MOVED = {
    "AuxiliaryTrainingWrapper": "peft.auxiliary",
    "ModulesToSaveWrapper": "peft.auxiliary",
    "TrainableTokensWrapper": "peft.auxiliary",
    "_set_adapter": "peft.auxiliary.injection",
    "_set_trainable": "peft.auxiliary.injection",
    "set_additional_trainable_modules": "peft.auxiliary.injection",
    "get_pattern_key": "peft.tuners._targeting",
    "match_target_against_key": "peft.tuners._targeting",
    "get_quantization_config": "peft.quantization.helpers",
    "is_gptqmodel_awq_layer": "peft.quantization.helpers",
    "is_gptqmodel_quant_linear": "peft.quantization.helpers",
}


def _get_submodules(model: nn.Module, key: str) -> tuple[nn.Module, nn.Module, str]:
    """``(parent, target, target_name)`` for the module named ``key``; the empty key names ``model`` itself (its
    own parent, as in the reference)."""
    parent_name, _, target_name = key.rpartition(".")
    return model.get_submodule(parent_name), model.get_submodule(key), target_name


def delegated_getattr(module: nn.Module, name: str, inner: str) -> Any:
    """Attribute lookup for a module that stands in for the module it wraps, its submodule ``inner``: ``nn.Module``'s
    own (parameters, buffers, submodules), then the wrapped module's attribute."""
    try:
        return nn.Module.__getattr__(module, name)
    except AttributeError:
        if name in (inner, "_modules", "_parameters", "_buffers"):
            raise
        return getattr(nn.Module.__getattr__(module, inner), name)


def _no_split_module_names(model: nn.Module) -> set[str]:
    """``_no_split_modules`` declared anywhere in the model (nested models declare their own)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def fsdp_auto_wrap_policy(model: nn.Module) -> Callable[..., bool]:
    """An FSDP ``auto_wrap_policy`` for PEFT models.

    Each transformer block (the classes named in ``_no_split_modules``, or in the comma-separated environment variable
    ``FSDP_TRANSFORMER_CLS_TO_WRAP``) becomes one FSDP unit, and every leaf module with a trainable weight (adapter
    weights, ``modules_to_save`` copies) its own unit, so trainable and frozen parameters are sharded separately.
    Works on any model; one without ``_no_split_modules`` wraps only the trainable leaves.
    """
    import os

    from_env = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
    wanted = set(from_env.split(",")) if from_env else _no_split_module_names(model)
    layer_classes = tuple(sorted({type(m) for m in model.modules() if type(m).__name__ in wanted}, key=str))
    missing = sorted(wanted - {cls.__name__ for cls in layer_classes})
    if from_env and missing:
        raise ValueError(f"FSDP_TRANSFORMER_CLS_TO_WRAP names classes the model does not have: {missing}.")

    def policy(module: nn.Module, recurse: bool, nonwrapped_numel: int = 0, **kwargs: Any) -> bool:
        if recurse:
            return True
        if layer_classes and isinstance(module, layer_classes):
            return True
        weight = getattr(module, "weight", None)
        return not module._modules and isinstance(weight, torch.Tensor) and weight.requires_grad

    return policy


def cast_mixed_precision_params(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast frozen floating parameters to ``dtype`` and trainable ones to fp32, in place.

    For mixed-precision training (AMP) of a half-precision model: the optimizer then sees fp32 adapter weights,
    avoiding "Attempting to unscale FP16 gradients", while the frozen base stays small.
    """
    for param in model.parameters():
        if not param.is_floating_point():
            continue
        param.data = param.data.float() if param.requires_grad else param.data.to(dtype)


def make_inputs_require_grad(model: nn.Module) -> None:
    """Make the input embeddings' output require grad, so that under gradient checkpointing the checkpointed blocks
    see an input with a gradient and adapters behind frozen embeddings still get theirs."""
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    elif callable(getattr(model, "get_input_embeddings", None)):
        model.get_input_embeddings().register_forward_hook(lambda module, args, output: output.requires_grad_(True))


def prepare_model_for_kbit_training(
    model: nn.Module, use_gradient_checkpointing: bool = True, gradient_checkpointing_kwargs: dict | None = None
) -> nn.Module:
    """Ready a (quantized) model for adapter training: freeze it, upcast its fp16/bf16 float weights to fp32 (quantized
    weights stay as they are), and with ``use_gradient_checkpointing`` enable checkpointing with gradients flowing
    from the input embeddings, so adapters behind frozen embeddings still get gradients.

    Returns:
        The same model.
    """
    for param in model.parameters():
        param.requires_grad_(False)
        # packed bitsandbytes weights (4-bit ones may be stored as bfloat16) and tensor subclasses (torchao) stay
        quantized = type(param).__name__ in ("Params4bit", "Int8Params") or type(param.data) is not torch.Tensor
        if not quantized and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
    if use_gradient_checkpointing:
        make_inputs_require_grad(model)
        enable = getattr(model, "gradient_checkpointing_enable", None)
        if enable is not None:
            enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs or {"use_reentrant": True})
    return model


# ------------------------------------------------------------------------------ small helpers downstream code imports


def infer_device() -> str:
    """The accelerator to use: ``"cuda"``, ``"mps"``, ``"mlu"``, ``"xpu"`` or ``"npu"`` if present, else ``"cpu"``."""
    from peft.import_utils import is_npu_available, is_xpu_available

    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    if hasattr(torch, "mlu") and torch.mlu.is_available():
        return "mlu"
    if is_xpu_available():
        return "xpu"
    if is_npu_available():
        return "npu"
    return "cpu"


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels: shifted one position right, ``decoder_start_token_id`` first, -100 -> pad.

    Raises:
        ValueError: if ``pad_token_id`` is None.
    """
    if pad_token_id is None:
        raise ValueError("self.model.config.pad_token_id has to be defined.")
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def transpose(weight: torch.Tensor, fan_in_fan_out: bool) -> torch.Tensor:
    """``weight.T`` for layers storing their weight as ``(in, out)`` (``fan_in_fan_out``), else ``weight``."""
    if not fan_in_fan_out:
        return weight
    return nn.Parameter(weight.T) if isinstance(weight, nn.Parameter) else weight.T


def _is_valid_match(key: str, target_key: str) -> bool:
    """Whether module name ``key`` is ``target_key`` or ends with ``"." + target_key``."""
    return key == target_key or key.endswith("." + target_key)


def _get_batch_size(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> int:
    """The batch size of ``input_ids``, else of ``inputs_embeds``.

    Raises:
        ValueError: if both are None.
    """
    if input_ids is None and inputs_embeds is None:
        raise ValueError("You have to provide either input_ids or inputs_embeds")
    return (input_ids if input_ids is not None else inputs_embeds).shape[0]


def _freeze_adapter(model: nn.Module, adapter_name: str) -> None:
    """Freeze every parameter whose name contains ``adapter_name``."""
    for name, param in model.named_parameters():
        if adapter_name in name:
            param.requires_grad_(False)


def _get_input_embeddings_name(model: nn.Module, default: str | None = None) -> str | None:
    """The module name of ``model.get_input_embeddings()``, or ``default``."""
    getter = getattr(model, "get_input_embeddings", None)
    if not callable(getter):
        return default
    embeddings = getter()
    return next((name for name, module in model.named_modules() if module is embeddings), default)


def id_tensor_storage(tensor: torch.Tensor) -> tuple[torch.device, int, int]:
    """``(device, storage address, storage bytes)``: equal for tensors sharing one storage (tied weights)."""
    if tensor.device.type == "xla":
        import torch_xla  # xla tensors have no storage: use their id

        return tensor.device, torch_xla._XLAC._xla_get_tensor_id(tensor), 0
    storage = tensor.untyped_storage()
    return tensor.device, storage.data_ptr(), storage.nbytes()


def str_to_bool(value: str) -> int:
    """1 for ``y``, ``yes``, ``t``, ``true``, ``on``, ``1``; 0 for ``n``, ``no``, ``f``, ``false``, ``off``, ``0``.

    Raises:
        ValueError: for any other value.
    """
    value = value.lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return 1
    if value in ("n", "no", "f", "false", "off", "0"):
        return 0
    raise ValueError(f"invalid truth value {value}")


def check_file_exists_on_hf_hub(repo_id: str, filename: str, **kwargs: Any) -> bool | None:
    """Whether ``filename`` exists in the Hub repository ``repo_id``; None when that cannot be told (offline mode,
    invalid id, network error: warned)."""
    import os

    from peft.utils.warnings import warn

    if str_to_bool(os.environ.get("HF_HUB_OFFLINE", "0")):
        return None
    from huggingface_hub import file_exists
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        return file_exists(repo_id, filename, **kwargs)
    except (HFValidationError, EntryNotFoundError):
        return None
    except Exception as exc:  # a failed lookup must not fail loading: the caller proceeds without the file
        warn(f"Unable to check whether {filename!r} exists in {repo_id!r} ({exc}); proceeding without it.")
        return None


def map_cache_to_layer_device_map(model: nn.Module, cache: Any) -> None:
    """Move each layer's keys and values in ``cache`` (a transformers cache) to the device of the decoder layer that
    reads them, for a model dispatched over devices (``hf_device_map``); does nothing for other models."""
    if getattr(model, "hf_device_map", None) is None:
        return
    cache = getattr(cache, "self_attention_cache", cache)  # an encoder-decoder cache: the decoder's part
    layers = getattr(cache, "layers", None)
    if not layers:
        return
    blocks = next((m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == len(layers)), None)
    if blocks is None:
        return
    for layer, block in zip(layers, blocks):
        param = next(block.parameters(), None)
        if param is not None and getattr(layer, "keys", None) is not None:
            layer.keys, layer.values = layer.keys.to(param.device), layer.values.to(param.device)


def _first_value(config: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return value
    return None


def _prepare_prompt_learning_config(peft_config: Any, model_config: Any) -> Any:
    """Fill the sizes a prompt-learning config leaves open (``num_layers``, ``token_dim``, ``num_attention_heads``,
    ``num_transformer_submodules``) from the model's config (an object or a dict; a vision-language model's
    ``text_config``). For prefix tuning with grouped-query attention, prefixes get the key/value width.

    Raises:
        ValueError: naming the sizes that cannot be found.
    """
    text_config = _first_value(model_config, ("text_config",))
    config = text_config if text_config is not None else model_config
    if peft_config.num_layers is None:
        peft_config.num_layers = _first_value(config, ("num_hidden_layers", "num_layers", "n_layer"))
    if peft_config.token_dim is None:
        peft_config.token_dim = _first_value(config, ("hidden_size", "n_embd", "d_model"))
    if peft_config.num_attention_heads is None:
        peft_config.num_attention_heads = _first_value(
            config, ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
        )
        kv_heads = _first_value(config, ("num_key_value_heads",))
        heads = peft_config.num_attention_heads
        # prompts that are key/value prefixes of the attention layers have the key/value width
        kv_prefix = str(peft_config.peft_type) in ("PREFIX_TUNING", "CARTRIDGE")
        if kv_prefix and kv_heads and heads and kv_heads != heads:
            peft_config.token_dim = peft_config.token_dim // heads * kv_heads
            peft_config.num_attention_heads = kv_heads
    if peft_config.num_transformer_submodules is None:
        peft_config.num_transformer_submodules = 2 if str(peft_config.task_type) == "SEQ_2_SEQ_LM" else 1
    missing = [n for n in ("num_layers", "token_dim", "num_attention_heads") if getattr(peft_config, n) is None]
    if missing:
        raise ValueError(
            f"Cannot infer {missing} from the model's config; set them in the {type(peft_config).__name__}."
        )
    return peft_config


def __getattr__(name: str) -> Any:
    # constants of the reference's module, importable from here as from peft.utils.constants (lazily, so that the
    # per-method target tables come from host packages only when asked for)
    if name.startswith("TRANSFORMERS_MODELS_TO_") or name in constants.__all__:
        return getattr(constants, name)
    return reference_path_attribute(__name__, name, _MOVED)
