"""Module-tree helpers and auxiliary training wrappers (``modules_to_save``).

Auxiliary wrappers are modules that are trained and saved alongside adapters but are not adapter layers. They follow
the same activation path as adapter layers (REQUIREMENTS ARCH-20, AUX-1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from peft.utils.distributed import whole_copy

# the reference's quantization helpers of this module
from peft.utils.quantization_utils import get_quantization_config as get_quantization_config
from peft.utils.quantization_utils import is_gptqmodel_awq_layer as is_gptqmodel_awq_layer
from peft.utils.quantization_utils import is_gptqmodel_quant_linear as is_gptqmodel_quant_linear


def _get_submodules(model: nn.Module, key: str) -> tuple[nn.Module, nn.Module, str]:
    """``(parent, target, target_name)`` for the module named ``key``; the empty key names ``model`` itself (its
    own parent, as in the reference)."""
    parent_name, _, target_name = key.rpartition(".")
    return model.get_submodule(parent_name), model.get_submodule(key), target_name


def _as_list(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


class AuxiliaryTrainingWrapper(nn.Module):
    """Base of modules trained next to adapters (``ModulesToSaveWrapper``, ``TrainableTokensWrapper``).

    Mirrors ``BaseTunerLayer``: per-adapter state keyed by adapter name, ``set_adapter``, ``enable_adapters``,
    ``set_requires_grad``, ``delete_adapter``; plus how the adapter's state appears in checkpoints.
    """

    adapter_layer_names: tuple[str, ...] = ()

    def __init__(self, module_to_save: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        super().__init__()
        self.original_module = module_to_save
        self._active_adapter: list[str] = []
        self._disable_adapters = False
        self.update(adapter_name, **kwargs)

    @property
    def active_adapter(self) -> list[str]:
        return self._active_adapter

    @property
    def active_adapters(self) -> list[str]:
        return self._active_adapter

    @property
    def disable_adapters(self) -> bool:
        return self._disable_adapters

    def update(self, adapter_name: str, **kwargs: Any) -> None:
        """Add state for ``adapter_name`` (not activated)."""
        raise NotImplementedError

    def adapter_container(self, name: str) -> Any:
        """The per-adapter container ``name`` (one of ``adapter_layer_names``), or None (as on adapter layers)."""
        return getattr(self, name, None)

    def _available_adapters(self) -> list[str]:
        names: set[str] = set()
        for attr in self.adapter_layer_names:
            names.update(getattr(self, attr).keys())
        return sorted(names)

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        for attr in self.adapter_layer_names:
            container = getattr(self, attr)
            for name in _as_list(adapter_names):
                if name in container:
                    container[name].requires_grad_(requires_grad)

    def _activate(self, adapter_names: str | Sequence[str]) -> None:
        # a wrapper's active adapters are those of the activated ones it holds state for (none: the original runs)
        available = self._available_adapters()
        self._active_adapter = [name for name in _as_list(adapter_names) if name in available]

    def set_adapter(self, adapter_names: str | Sequence[str], inference_mode: bool = False) -> None:
        """Activate ``adapter_names`` (those this wrapper holds state for); trainable unless ``inference_mode``."""
        self._activate(adapter_names)
        for name in self._available_adapters():
            self.set_requires_grad(name, name in self._active_adapter and not inference_mode)

    def enable_adapters(self, enabled: bool) -> None:
        if not enabled:
            self.set_requires_grad(self._available_adapters(), False)
        self._disable_adapters = not enabled

    def delete_adapter(self, adapter_name: str, new_active_adapters: Sequence[str] | None = None) -> None:
        for attr in self.adapter_layer_names:
            container = getattr(self, attr)
            if adapter_name in container:
                del container[adapter_name]
        if adapter_name in self._active_adapter:
            if new_active_adapters is None:
                new_active_adapters = [n for n in self._active_adapter if n != adapter_name]
            self._activate(new_active_adapters)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The checkpoint entries of ``adapter_name``, taken from ``state_dict`` (this wrapper's own state_dict,
        already gathered); keys relative to the wrapper as they appear in files."""
        raise NotImplementedError

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        """``{key in file (relative to the wrapper): key in this module}`` for ``adapter_name``."""
        raise NotImplementedError

    def saves_adapter(self, adapter_name: str) -> bool:
        """Whether checkpoints of ``adapter_name`` hold tensors of this wrapper."""
        raise NotImplementedError

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        """The plain module that replaces this wrapper when adapters are unloaded."""
        raise NotImplementedError


class ModulesToSaveWrapper(AuxiliaryTrainingWrapper):
    """Holds ``original_module`` and, per adapter that lists it in ``modules_to_save``, a trainable full copy.

    Forward uses the active adapter's copy; the original when adapters are disabled or no active adapter has a copy.
    With several active adapters holding copies, their changes add up: parameters ``original + sum(copy_i -
    original)`` (REQUIREMENTS OPEN-2), in forward and when unloading. In a mixed batch each row uses its adapter's
    copy. Any attribute not found on the wrapper is read from the module forward uses.
    """

    adapter_layer_names = ("modules_to_save",)

    def __init__(self, module_to_save: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        _check_wrappable(module_to_save)
        self.modules_to_save = None  # set in update(); declared so __getattr__ never recurses
        super().__init__(module_to_save, adapter_name, **kwargs)

    def update(self, adapter_name: str, **kwargs: Any) -> None:
        if self.modules_to_save is None:
            self.modules_to_save = nn.ModuleDict()
        if adapter_name in self.modules_to_save:
            return
        copied = whole_copy(self.original_module)
        copied.requires_grad_(False)
        self.modules_to_save[adapter_name] = copied
        self.original_module.requires_grad_(False)

    def _active_copies(self) -> list[str]:
        return [name for name in self._active_adapter if name in self.modules_to_save]

    def active_module(self) -> nn.Module:
        """The module forward runs: the active adapter's copy, or the original. With several active copies, a
        module whose parameters are ``original + sum(copy_i - original)`` (built on demand, never stored)."""
        if self._disable_adapters:
            return self.original_module
        names = self._active_copies()
        if not names:
            return self.original_module
        if len(names) == 1:
            return self.modules_to_save[names[0]]
        return self._combined_module(names)

    def _combined_state(self, names: list[str]) -> dict[str, torch.Tensor]:
        """``original + sum(copy_i - original)`` for every floating tensor: the copies' changes add up."""
        original = self.original_module.state_dict(keep_vars=True)
        combined = {}
        for key, value in original.items():
            if not torch.is_floating_point(value):
                combined[key] = value
                continue
            total = value
            for name in names:
                total = total + (self.modules_to_save[name].state_dict(keep_vars=True)[key] - value)
            combined[key] = total
        return combined

    def _combined_module(self, names: list[str]) -> nn.Module:
        state = self._combined_state(names)
        wrapper = self

        class _Combined(nn.Module):
            def forward(self, *args: Any, **kwargs: Any) -> Any:
                return torch.func.functional_call(wrapper.original_module, state, args, kwargs)

        return _Combined()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        from peft.tuners.tuners_layer import current_mixed_batch

        adapter_names = current_mixed_batch()
        if adapter_names is None or self._disable_adapters:
            return self.active_module()(*args, **kwargs)
        return self._mixed_batch_forward(adapter_names, *args, **kwargs)

    def _mixed_batch_forward(self, adapter_names: Sequence[str], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        from peft.tuners.tuners_layer import forward_rows_by_adapter

        def rows_forward(name: str, rows: torch.Tensor) -> torch.Tensor:
            module = self.modules_to_save[name] if name in self.modules_to_save else self.original_module
            return module(rows, *args, **kwargs)

        return forward_rows_by_adapter(adapter_names, x, rows_forward)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "_modules", "_parameters", "_buffers"):
                raise
        names = [] if self._disable_adapters else self._active_copies()
        if len(names) > 1:  # several copies combine: read from a module holding the combination
            combined = copy.deepcopy(self.original_module)
            combined.load_state_dict(self._combined_state(names))
            return getattr(combined, name)
        return getattr(self.active_module(), name)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = f"modules_to_save.{adapter_name}."
        return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}

    def saves_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.modules_to_save

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        if adapter_name not in self.modules_to_save:
            return {}
        keys = self.modules_to_save[adapter_name].state_dict().keys()
        return {k: f"modules_to_save.{adapter_name}.{k}" for k in keys}

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        if not merge:
            return self.original_module  # unloading without merging gives the base model back
        names = adapter_names if adapter_names is not None else self._active_adapter
        names = [n for n in names if n in self.modules_to_save]
        if len(names) <= 1:
            return self.modules_to_save[names[0]] if names else self.original_module
        # several copies: their changes add up, as in forward
        combined = copy.deepcopy(self.original_module)
        combined.load_state_dict(self._combined_state(names))
        return combined


def _check_wrappable(module: nn.Module) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    cls = type(module)
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(module, BaseTunerLayer):
        raise ValueError(
            f"modules_to_save cannot be applied to modules of type {qualified}: it is an adapter layer. Target its "
            "base module with a different adapter type instead."
        )
    if isinstance(module, (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList)) or (
        type(module).forward is nn.Module.forward
    ):
        raise ValueError(
            f"modules_to_save cannot be applied to modules of type {qualified}: it has no forward. List the modules "
            "inside it instead."
        )


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


class TrainableTokensWrapper(AuxiliaryTrainingWrapper):
    """Wraps an embedding (or a layer tied to one) whose selected rows train next to another adapter
    (``LoraConfig(trainable_token_indices=...)``). The rows live in ``token_adapter``, a ``TrainableTokensLayer``.

    Reading ``weight`` gives the weight with the active adapters' rows applied; no other attribute is forwarded.
    """

    adapter_layer_names = ("token_adapter",)

    def __init__(
        self, module_to_save: nn.Module, adapter_name: str, token_indices: list[int], tied_adapter: Any = None
    ) -> None:
        self.token_adapter = None  # set in update()
        super().__init__(module_to_save, adapter_name, token_indices=token_indices, tied_adapter=tied_adapter)

    def update(self, adapter_name: str, token_indices: list[int] | None = None, tied_adapter: Any = None, **kw: Any):
        from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

        if token_indices is None:
            raise ValueError("TrainableTokensWrapper.update needs token_indices.")
        if self.token_adapter is None:
            self.token_adapter = TrainableTokensLayer(
                self.original_module, adapter_name, token_indices, tied_adapter=tied_adapter
            )
        else:
            self.token_adapter.update_layer(adapter_name, token_indices=token_indices)
        self.token_adapter._activate(self._active_adapter)
        self.token_adapter.set_requires_grad(adapter_name, False)

    @property
    def weight(self) -> torch.Tensor:
        if self._disable_adapters:
            return self.original_module.weight
        return self.token_adapter.get_merged_weights(self._active_adapter)

    def _available_adapters(self) -> list[str]:
        return self.token_adapter._all_available_adapter_names()

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        if self.token_adapter.tied_adapter is None:  # a tied layer's tensors belong to the embedding's adapter
            self.token_adapter.set_requires_grad(adapter_names, requires_grad)

    def _activate(self, adapter_names: str | Sequence[str]) -> None:
        super()._activate(adapter_names)
        self.token_adapter._activate(self._active_adapter)

    def enable_adapters(self, enabled: bool) -> None:
        super().enable_adapters(enabled)
        self.token_adapter.enable_adapters(enabled)

    def delete_adapter(self, adapter_name: str, new_active_adapters: Sequence[str] | None = None) -> None:
        if self.token_adapter.tied_adapter is None:
            self.token_adapter.delete_adapter(adapter_name, new_active_adapters)
        if adapter_name in self._active_adapter:
            if new_active_adapters is None:
                new_active_adapters = [n for n in self._active_adapter if n != adapter_name]
            self._activate(new_active_adapters)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._disable_adapters:
            return self.original_module(x, *args, **kwargs)
        return self.token_adapter(x, *args, **kwargs)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.token_adapter.tied_adapter is not None:
            return {}
        key = f"token_adapter.trainable_tokens_delta.{adapter_name}"
        return {"token_adapter.trainable_tokens_delta": state_dict[key]} if key in state_dict else {}

    def saves_adapter(self, adapter_name: str) -> bool:
        return self.token_adapter.tied_adapter is None and adapter_name in self._available_adapters()

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        if not self.saves_adapter(adapter_name):
            return {}
        return {"token_adapter.trainable_tokens_delta": f"token_adapter.trainable_tokens_delta.{adapter_name}"}

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        from peft.tuners.tuners_layer import BaseTunerLayer

        if merge and isinstance(self.token_adapter, BaseTunerLayer) and self.token_adapter.tied_adapter is None:
            self.token_adapter.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        return self.original_module


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


def match_target_against_key(target_pattern: str, key: str) -> Any:
    """The ``re.fullmatch`` of a str ``target_modules`` (a regex) against a module name, or None."""
    import re

    return re.fullmatch(target_pattern, key)


def get_pattern_key(pattern_keys: Sequence[str], key_to_match: str) -> str:
    """The first ``rank_pattern``/``alpha_pattern`` key matching ``key_to_match``, else ``key_to_match``."""
    from peft.tuners._targeting import get_pattern_key as _get_pattern_key

    return _get_pattern_key(pattern_keys, key_to_match)


def _set_adapter(model: nn.Module, adapter_name: str | list[str], inference_mode: bool = False) -> None:
    """Activate ``adapter_name`` on the auxiliary wrappers of ``model`` (those that hold it; the others run their
    original module)."""
    for module in model.modules():
        if isinstance(module, AuxiliaryTrainingWrapper):
            module.set_adapter(adapter_name, inference_mode=inference_mode)


def _set_trainable(
    model: nn.Module,
    adapter_name: str,
    module_names: Sequence[str] | None,
    inference_mode: bool,
    strict_module_check: bool = False,
    wrapper_cls: type[AuxiliaryTrainingWrapper] | None = None,
    activate_adapter: bool = True,
    **wrapper_kwargs: Any,
) -> None:
    """Wrap the modules named ``module_names`` (full name segments) in ``wrapper_cls`` (default
    ``ModulesToSaveWrapper``) for ``adapter_name``: a trainable copy unless ``inference_mode``.

    Raises:
        ValueError: with ``strict_module_check``, if no module matches.
    """
    if not module_names:
        return
    wrapper_cls = wrapper_cls or ModulesToSaveWrapper
    names = list(module_names)
    wrapped: list[str] = []
    for key in [name for name, _ in model.named_modules()]:
        if not key or any(key.startswith(w + ".") for w in wrapped):
            continue
        if not any(_is_valid_match(key, name) for name in names):
            continue
        parent, target, target_name = _get_submodules(model, key)
        if isinstance(target, wrapper_cls):
            target.update(adapter_name, **wrapper_kwargs)
        else:
            target = wrapper_cls(target, adapter_name, **wrapper_kwargs)
            setattr(parent, target_name, target)
        if activate_adapter:
            target.set_adapter(adapter_name, inference_mode=inference_mode)
        wrapped.append(key)
    if strict_module_check and not wrapped:
        raise ValueError(f"Target modules {names} not found in the base model. Please check the target modules.")


def set_additional_trainable_modules(
    model: nn.Module, peft_config: Any, model_config: Any, adapter_name: str, activate_adapter: bool = True
) -> None:
    """Wrap the modules ``peft_config`` lists in ``modules_to_save`` and ``trainable_token_indices`` for
    ``adapter_name`` (what every tuner does when it injects an adapter), activating them if asked."""
    from peft.tuners._auxiliary import add_auxiliary_modules

    add_auxiliary_modules(model, peft_config, adapter_name)
    if activate_adapter:
        _set_adapter(model, adapter_name, inference_mode=peft_config.inference_mode)


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
    from peft.utils import constants

    if name.startswith("TRANSFORMERS_MODELS_TO_") or name in constants.__all__:
        return getattr(constants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
