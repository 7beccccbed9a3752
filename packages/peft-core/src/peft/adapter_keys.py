"""Where an adapter's tensors are in a model (live keys) and in its checkpoint (file keys).

File keys are live keys without the adapter name (``<path>.lora_A.default.weight`` <-> ``<path>.lora_A.weight``).
Which tensors belong to an adapter is read from the module tree (adapter layers' ``adapter_layer_names``, auxiliary
wrappers' own maps), never guessed from key strings, so layer names containing ``weight`` or the adapter name
round-trip.
"""

from __future__ import annotations

from torch import nn

from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper
from peft.tuners.tuners_layer import BaseTunerLayer, walk_modules

__all__ = ["adapter_key_map", "auxiliary_key_map"]


def adapter_key_map(model: nn.Module, adapter_name: str) -> dict[str, str]:
    """``{file key: live key}`` for every tensor of ``adapter_name`` in adapter layers of ``model``."""
    key_map: dict[str, str] = {}
    modules = dict(walk_modules(model))
    for path, module in modules.items():
        if not isinstance(module, BaseTunerLayer) or getattr(module, "tied_adapter", None) is not None:
            continue  # a tied layer shares its tensors with the adapter it is tied to, which saves them
        prefix = f"{_file_path(path, adapter_name, modules)}." if path else ""
        live_prefix = f"{path}." if path else ""
        aliases = getattr(module, "_file_key_aliases", {})
        for attr in module.adapter_layer_names + module.adapter_buffer_names:
            container = module.adapter_container(attr)
            if container is None or adapter_name not in container:
                continue
            item = container[adapter_name]
            sub_keys = list(item.state_dict().keys()) if isinstance(item, nn.Module) else [""]
            for sub_key in sub_keys:
                relative = f"{attr}.{sub_key}" if sub_key else attr
                live = f"{live_prefix}{attr}.{adapter_name}" + (f".{sub_key}" if sub_key else "")
                key_map[prefix + aliases.get(relative, relative)] = live
    return key_map


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
            prefix = f"{path}." if path else ""
            for file_key, live_key in module.adapter_state_dict_load_map(adapter_name).items():
                key_map[prefix + file_key] = prefix + live_key
    return key_map
