"""Where an adapter's tensors are in a model (live keys) and in its checkpoint (file keys).

File keys are live keys without the adapter name (``<path>.lora_A.default.weight`` <-> ``<path>.lora_A.weight``).
Which tensors belong to an adapter is read from the module tree (adapter layers' ``adapter_layer_names``, auxiliary
wrappers' own maps), never guessed from key strings, so layer names containing ``weight`` or the adapter name
round-trip.
"""

from __future__ import annotations

import bisect

import torch
from torch import nn

from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper
from peft.tuners.tuners_layer import BaseTunerLayer, walk_modules
from peft.utils.error import check_tensor_fits

__all__ = [
    "adapter_key_map",
    "auxiliary_key_map",
    "shared_tensors_from_file",
    "shared_tensors_to_file",
    "without_wrappers",
]


def adapter_key_map(
    model: nn.Module, adapter_name: str, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, str]:
    """``{file key: live key}`` for every tensor of ``adapter_name`` in adapter layers of ``model``.

    With ``state_dict`` (a state dict of ``model``), an adapter module's tensor names are read from it rather than
    from the module: a module that FSDP wraps answers ``state_dict()`` only together with every other rank. An adapter
    module that holds tensors none of which are in ``state_dict`` maps its own name, which the caller then finds
    missing.
    """
    sorted_keys = sorted(state_dict) if state_dict is not None else None
    key_map: dict[str, str] = {}
    modules = dict(walk_modules(model))
    for path, module in modules.items():
        if not isinstance(module, BaseTunerLayer) or getattr(module, "tied_adapter", None) is not None:
            continue  # a tied layer shares its tensors with the adapter it is tied to, which saves them
        file_path = without_wrappers(_file_path(path, adapter_name, modules))
        prefix = f"{file_path}." if file_path else ""
        live_prefix = f"{without_wrappers(path)}." if path else ""
        aliases = getattr(module, "_file_key_aliases", {})
        for attr in module.adapter_layer_names + module.adapter_buffer_names:
            container = module.adapter_container(attr)
            if container is None or adapter_name not in container:
                continue
            if adapter_name in getattr(container, "_non_persistent_buffers_set", ()):
                continue  # a frozen tensor that is drawn again when loading is not part of the checkpoint
            item = container[adapter_name]
            live_item = f"{live_prefix}{attr}.{adapter_name}"
            if sorted_keys is not None:
                sub_keys = _sub_keys(sorted_keys, live_item) or ([""] if _holds_tensors(item) else [])
            else:
                sub_keys = list(item.state_dict().keys()) if isinstance(item, nn.Module) else [""]
            for sub_key in sub_keys:
                relative = f"{attr}.{sub_key}" if sub_key else attr
                live = f"{live_item}.{sub_key}" if sub_key else live_item
                key_map[prefix + aliases.get(relative, relative)] = live
    return key_map


# modules that wrap another under this attribute name (FSDP1 units, activation checkpointing); state dicts of the
# wrapped model leave the name out, wherever in a path it occurs
_WRAPPER_ATTRIBUTES = frozenset({"_fsdp_wrapped_module", "_checkpoint_wrapped_module"})


def without_wrappers(path: str) -> str:
    """``path`` as the state dict of a wrapped model names it, without the wrappers' segments."""
    if "_wrapped_module" not in path:
        return path
    return ".".join(part for part in path.split(".") if part not in _WRAPPER_ATTRIBUTES)


def _holds_tensors(item: nn.Module | torch.Tensor) -> bool:
    """Whether an adapter's entry has tensors to save (some modules of an adapter may be empty)."""
    if isinstance(item, torch.Tensor):
        return True
    return next(item.parameters(), None) is not None or next(item.buffers(), None) is not None


def _sub_keys(sorted_keys: list[str], name: str) -> list[str]:
    """Keys of the tensors under module or tensor ``name`` among ``sorted_keys``, relative to it ("" for ``name``
    itself)."""
    found = []
    for index in range(bisect.bisect_left(sorted_keys, name), len(sorted_keys)):
        key = sorted_keys[index]
        if not key.startswith(name):
            break
        if key == name:
            found.append("")
        elif key[len(name)] == ".":
            found.append(key[len(name) + 1 :])
    return found


def _file_path(path: str, adapter_name: str, modules: dict[str, nn.Module]) -> str:
    """The module path an adapter's keys are saved under: where the adapter sits in the model, whatever adapters of
    other types were stacked on top of it (``embed_tokens``, not ``embed_tokens.base_layer``), so keys do not depend
    on the order adapters were added. Nesting within one adapter (several parameters of one module) is kept."""
    while path.endswith(".base_layer"):
        outer_path = path[: -len(".base_layer")]
        outer = modules.get(outer_path)
        holds_adapter = isinstance(outer, BaseTunerLayer) and adapter_name in outer._all_available_adapter_names()
        if not isinstance(outer, BaseTunerLayer) or holds_adapter:
            break
        path = outer_path
    return path


def auxiliary_key_map(model: nn.Module, adapter_name: str) -> dict[str, str]:
    key_map: dict[str, str] = {}
    for path, module in walk_modules(model):
        if isinstance(module, AuxiliaryTrainingWrapper):
            path = without_wrappers(path)
            prefix = f"{path}." if path else ""
            for file_key, live_key in module.adapter_state_dict_load_map(adapter_name).items():
                key_map[prefix + file_key] = prefix + live_key
    return key_map


def _shared_file_key(file_key: str, container: str) -> str | None:
    """``base_model.<container>[.<rest>]`` for a layer's file key ``<path>.<container>[.<rest>]``, else None."""
    segments = file_key.split(".")
    if container not in segments:
        return None
    return ".".join(["base_model", *segments[segments.index(container) :]])


def shared_tensors_to_file(state_dict: dict[str, torch.Tensor], container: str) -> dict[str, torch.Tensor]:
    """File keys with every layer's view of a tensor the model shares (``<path>.<container>[.<key>]``, e.g. UniLoRA's
    ``theta_d``) replaced by one ``base_model.<container>[.<key>]``."""
    result: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        result[_shared_file_key(key, container) or key] = tensor
    return result


def shared_tensors_from_file(
    model: nn.Module, adapter_name: str, state_dict: dict[str, torch.Tensor], container: str
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`shared_tensors_to_file`: each ``base_model.<container>[.<key>]`` goes to every layer's
    view of it."""
    prefix = f"base_model.{container}"
    shared = {key: state_dict.pop(key) for key in list(state_dict) if key == prefix or key.startswith(prefix + ".")}
    checked: set[str] = set()
    for file_key, live_key in adapter_key_map(model, adapter_name).items():
        shared_key = _shared_file_key(file_key, container)
        if shared_key in shared:
            owner, name = tensor_owner(model, live_key)
            if shared_key not in checked and owner is not None:  # checked here, where the file's own key is known
                current = owner._parameters[name] if name in owner._parameters else owner._buffers[name]
                check_tensor_fits(shared_key, live_key, shared[shared_key], current, adapter_name)
                checked.add(shared_key)
            state_dict[file_key] = shared[shared_key]
    return state_dict


def tensor_owner(model: nn.Module, live_key: str) -> tuple[nn.Module | None, str]:
    """The module holding the tensor ``live_key`` and its local name, without walking the model."""
    path, _, name = live_key.rpartition(".")
    try:
        owner = model.get_submodule(path) if path else model
    except AttributeError:
        return None, name
    if name in owner._parameters and owner._parameters[name] is not None:
        return owner, name
    if name in owner._buffers and owner._buffers[name] is not None:
        return owner, name
    return None, name
