"""Convert LoRA state dicts between the PEFT format and the formats Stable Diffusion tools write.

Formats (keys shown for one module; ``<c>`` is a pipeline component such as ``unet`` or ``text_encoder``):

- ``"peft"``: ``<c>.<path>.lora_A.weight``, ``<c>.<path>.lora_B.weight`` (plus ``lora_B.bias`` and
  ``lora_magnitude_vector`` for lora_bias/DoRA), what ``save_lora_weights`` writes. The scaling
  (``lora_alpha / r``) lives in a ``LoraConfig``, not in the file.
- ``"kohya"``: ``lora_unet_<path with _>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha`` (a scalar: the
  update is ``alpha / rank * up @ down``); text encoders are ``lora_te_`` (``lora_te1_``/``lora_te2_`` for SDXL's
  two). kohya's and AUTOMATIC1111's files for SD 1.x name UNet modules as diffusers does.
- ``"a1111"``: kohya keys whose UNet names are the original LDM UNet's (``lora_unet_input_blocks_1_1_...``), as
  AUTOMATIC1111 and kohya's SDXL files use; converting needs the UNet's module names.
- ``"diffusers"``: diffusers' older formats: ``<c>.<path>.lora.down.weight``/``lora.up.weight`` (UNet),
  ``<c>.<path>.lora_linear_layer.down.weight`` (text encoders), and attention-processor keys
  ``<path>.processor.to_q_lora.down.weight``. They carry no alpha (scale 1), unless ``<path>.alpha`` keys are present.

Which code does what: the key renaming of diffusers' older formats is diffusers' own
(``diffusers.utils.state_dict_utils.convert_unet_state_dict_to_peft`` and ``convert_state_dict_to_peft``). Everything
else is this module's, because diffusers lacks it: reading kohya/A1111 files against the model's real module names
(diffusers' kohya reader guesses names by spelling, for SD/SDXL UNets only, and leaves the alphas aside); writing
kohya files (``convert_state_dict_to_kohya`` writes every alpha as the rank, losing the scale, and no
``text_model.`` prefix or LDM names); writing diffusers' older format for every module (diffusers maps only the
attention projections); and the ``LoraConfig`` arguments that carry each module's scale.

Every reader returns ``(peft_state_dict, configs)`` where ``configs[component]`` are ``LoraConfig`` keyword
arguments (``r``, ``lora_alpha``, ``rank_pattern``, ``alpha_pattern`` for modules whose rank/alpha differ from the
most common one, ``target_modules`` as full paths, ``use_dora``, ``lora_bias``) that reproduce the file's scaling
exactly, e.g. as ``unet_lora_adapter_metadata`` for diffusers' ``save_lora_weights``.

Example:
    >>> peft_sd, configs = kohya_to_peft(load_file("style.safetensors"), module_names={"unet": pipe.unet})
    >>> kohya_sd = peft_to_kohya(peft_sd, configs)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from peft_diffusers.naming import LDM_BLOCK_NAMES, FlatNameResolver, LdmUNetNames, flatten_name, guess_path

__all__ = [
    "KOHYA_PREFIXES",
    "LoraModuleWeights",
    "a1111_to_peft",
    "detect_format",
    "diffusers_to_peft",
    "kohya_to_peft",
    "lora_config_kwargs",
    "peft_to_a1111",
    "peft_to_diffusers",
    "peft_to_kohya",
    "to_peft",
]

# pipeline component -> kohya key prefix; SDXL's first text encoder is written lora_te1_ when a second one exists
KOHYA_PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te", "text_encoder_2": "lora_te2"}
_KOHYA_READ_PREFIXES = {
    "lora_unet": "unet",
    "lora_te": "text_encoder",
    "lora_te1": "text_encoder",
    "lora_te2": "text_encoder_2",
}
COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "prior", "controlnet")
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
# paths of transformers' flattened CLIPTextModel, which kohya names below "text_model."
_CLIP_TEXT_MODEL_CHILDREN = ("encoder.", "embeddings.", "final_layer_norm")
_PEFT_MARKERS = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_B.bias", "up_bias"),
    (".lora_magnitude_vector", "magnitude"),
)

ModuleNames = Mapping[str, "Iterable[str] | nn.Module"]


@dataclass
class LoraModuleWeights:
    """The LoRA of one module, format-free: ``delta W = scale * up @ down`` with ``scale = alpha / rank``.

    ``alpha`` None means "as in the file's convention without alpha": scale 1 (alpha equals the rank).
    """

    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None
    up_bias: torch.Tensor | None = None
    magnitude: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def effective_alpha(self) -> float:
        return float(self.rank) if self.alpha is None else float(self.alpha)


# ------------------------------------------------------------------------------------------------ format detection
def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"peft"``, ``"kohya"``, ``"a1111"`` or ``"diffusers"``, from the keys.

    Raises:
        ValueError: if the keys fit none of them.
    """
    keys = list(state_dict)
    if not keys:
        raise ValueError("The state dict is empty.")
    if all(k.startswith(tuple(p + "_" for p in _KOHYA_READ_PREFIXES)) for k in keys):
        unet_names = [k[len("lora_unet_") :] for k in keys if k.startswith("lora_unet_")]
        return "a1111" if any(n.startswith(LDM_BLOCK_NAMES) for n in unet_names) else "kohya"
    if any(".lora_A." in k or k.endswith(".lora_A.weight") for k in keys):
        return "peft"
    if any(".lora.down." in k or ".lora_linear_layer.down." in k or "_lora.down." in k for k in keys):
        return "diffusers"
    raise ValueError(f"Unrecognised LoRA state dict format; first keys: {keys[:5]}.")


def to_peft(
    state_dict: Mapping[str, torch.Tensor], module_names: ModuleNames | None = None, component: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Convert a LoRA state dict of any supported format to the PEFT format (see :func:`detect_format`).

    A PEFT-format input comes back with component-prefixed keys (``component`` names the component of keys that
    have none) and configs of scale 1 (PEFT files carry no alpha).
    """
    fmt = detect_format(state_dict)
    if fmt in ("kohya", "a1111"):
        return kohya_to_peft(state_dict, module_names=module_names)
    if fmt == "diffusers":
        return diffusers_to_peft(state_dict)
    modules = _read_peft(state_dict, configs=None, component=component)
    return _write_peft(modules), lora_config_kwargs(modules)


# ------------------------------------------------------------------------------------------------ kohya / A1111
def kohya_to_peft(
    state_dict: Mapping[str, torch.Tensor], module_names: ModuleNames | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Convert a kohya (or A1111) LoRA state dict to the PEFT format.

    Args:
        state_dict: ``lora_unet_*`` / ``lora_te*_*`` keys with ``.lora_down.weight``, ``.lora_up.weight`` and
            optional ``.alpha``.
        module_names: per component (``"unet"``, ``"text_encoder"``, ...), the model or its module names. With
            them, kohya names are resolved exactly and LDM (A1111) UNet names can be read; without, names are
            resolved with the segment vocabulary of diffusers/CLIP models.

    Returns:
        ``(peft_state_dict, configs)``: keys ``<component>.<path>.lora_A.weight`` ...; ``configs[component]`` the
        ``LoraConfig`` kwargs with ``lora_alpha``/``alpha_pattern`` from the ``.alpha`` entries.

    Raises:
        ValueError: for unknown prefixes, keys without their up/down partner, unresolvable names, or DoRA
            (``dora_scale``) entries.
    """
    resolvers = _resolvers(module_names)
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        name, _, suffix = key.partition(".")
        if suffix == "dora_scale":
            raise ValueError(f"kohya DoRA entries ({key!r}) are not supported: their magnitude layout differs.")
        grouped.setdefault(name, {})[suffix] = tensor
    modules: dict[str, LoraModuleWeights] = {}
    for name in sorted(grouped):
        parts = grouped[name]
        component, flat = _split_kohya_name(name)
        path = _resolve(component, flat, resolvers)
        if "lora_down.weight" not in parts or "lora_up.weight" not in parts:
            raise ValueError(
                f"kohya module {name!r} needs both lora_down.weight and lora_up.weight; has {sorted(parts)}."
            )
        unknown = sorted(set(parts) - {"lora_down.weight", "lora_up.weight", "alpha"})
        if unknown:
            raise ValueError(f"kohya module {name!r} has entries this converter does not know: {unknown}.")
        alpha = parts.get("alpha")
        modules[f"{component}.{path}"] = LoraModuleWeights(
            down=parts["lora_down.weight"],
            up=parts["lora_up.weight"],
            alpha=None if alpha is None else _as_number(alpha.item()),
        )
    return _write_peft(modules), lora_config_kwargs(modules)


def a1111_to_peft(
    state_dict: Mapping[str, torch.Tensor], module_names: ModuleNames
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Convert an A1111 LoRA (kohya keys, LDM UNet names) to the PEFT format; ``module_names["unet"]`` is required.

    See :func:`kohya_to_peft`.
    """
    if "unet" not in module_names:
        raise ValueError("A1111 (LDM) UNet names need module_names['unet']: the UNet or its module names.")
    return kohya_to_peft(state_dict, module_names=module_names)


def peft_to_kohya(
    state_dict: Mapping[str, torch.Tensor],
    configs: Mapping[str, Any] | Any | None = None,
    component: str | None = None,
    ldm_unet_names: ModuleNames | None = None,
) -> dict[str, torch.Tensor]:
    """Convert a PEFT-format LoRA state dict to kohya keys (``.lora_down``/``.lora_up``/``.alpha``).

    Args:
        state_dict: ``<component>.<path>.lora_A.weight`` ... keys (or, with ``component``, component-less keys such
            as ``<path>.lora_A.weight`` and ``base_model.model.<path>.lora_A.weight``).
        configs: the adapters' ``LoraConfig`` (or kwargs) per component, or one for all; gives each module's alpha
            (rank patterns, alpha patterns and rsLoRA honoured). Without it the scale is 1 (alpha = rank).
        component: the component of component-less keys.
        ldm_unet_names: ``{"unet": unet or its module names}`` to write UNet names the LDM (A1111) way.

    Raises:
        ValueError: for DoRA or lora_bias adapters (kohya has no place for them) or components without a kohya
            prefix.
    """
    modules = _read_peft(state_dict, configs=configs, component=component)
    ldm = LdmUNetNames(_names_of(ldm_unet_names["unet"])) if ldm_unet_names else None
    with_te2 = any(key.startswith("text_encoder_2.") for key in modules)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(modules):
        weights = modules[key]
        if weights.magnitude is not None or weights.up_bias is not None:
            raise ValueError(f"{key}: DoRA and lora_bias adapters cannot be written in the kohya format.")
        module_component, path = key.split(".", 1)
        prefix = KOHYA_PREFIXES.get(module_component)
        if prefix is None:
            raise ValueError(f"No kohya prefix for component {module_component!r}; known: {sorted(KOHYA_PREFIXES)}.")
        if module_component == "text_encoder" and with_te2:
            prefix = "lora_te1"
        if module_component in _TEXT_ENCODERS and path.startswith(_CLIP_TEXT_MODEL_CHILDREN):
            path = "text_model." + path
        if module_component == "unet" and ldm is not None:
            if path not in ldm.to_ldm:
                raise ValueError(f"UNet module {path!r} has no LDM name.")
            path = ldm.to_ldm[path]
        name = f"{prefix}_{flatten_name(path)}"
        out[f"{name}.lora_down.weight"] = weights.down
        out[f"{name}.lora_up.weight"] = weights.up
        out[f"{name}.alpha"] = torch.tensor(weights.effective_alpha)
    return out


def peft_to_a1111(
    state_dict: Mapping[str, torch.Tensor],
    unet: Iterable[str] | nn.Module,
    configs: Mapping[str, Any] | Any | None = None,
    component: str | None = None,
) -> dict[str, torch.Tensor]:
    """Convert a PEFT-format LoRA to A1111 keys (kohya keys with LDM UNet names); see :func:`peft_to_kohya`."""
    return peft_to_kohya(state_dict, configs=configs, component=component, ldm_unet_names={"unet": unet})


# ------------------------------------------------------------------------------------------------ diffusers formats
def diffusers_to_peft(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Convert diffusers' older LoRA formats (``lora.down``/``lora.up``, ``lora_linear_layer``, attention-processor
    ``to_q_lora``) to the PEFT format. Keys without a component prefix belong to the UNet; ``<path>.alpha`` entries,
    if present, give the alphas (otherwise scale 1).

    The keys are renamed by diffusers' own converters (``convert_unet_state_dict_to_peft`` for the UNet,
    ``convert_state_dict_to_peft`` for text encoders); this function adds the component prefixes, the alphas and the
    ``LoraConfig`` arguments, which those converters do not handle.
    """
    renamed: dict[str, torch.Tensor] = {}
    alphas: dict[str, float | int] = {}
    for key, tensor in state_dict.items():
        if key.split(".", 1)[0] not in COMPONENTS:
            key = "unet." + key
        component = key.split(".", 1)[0]
        if key.endswith(".alpha"):
            module = key[: -len(".alpha")].removesuffix(".lora").removesuffix(".lora_linear_layer")
            alphas[_diffusers_module_path(module, component)] = _as_number(tensor.item())
            continue
        new_key = _diffusers_key_to_peft(key, component)
        if not new_key.endswith(tuple(marker for marker, _ in _PEFT_MARKERS)):
            raise ValueError(f"Key {key!r} is not in a diffusers LoRA format.")
        renamed[new_key] = tensor
    modules = _read_peft(renamed, configs=None, component=None)
    unknown = sorted(set(alphas) - set(modules))
    if unknown:
        raise ValueError(f"alpha entries for modules without LoRA weights: {unknown}.")
    for module, alpha in alphas.items():
        modules[module].alpha = alpha
    return _write_peft(modules), lora_config_kwargs(modules)


def _diffusers_key_to_peft(key: str, component: str) -> str:
    """One key of diffusers' older formats in the PEFT format, renamed by diffusers' converters."""
    from diffusers.utils.state_dict_utils import (
        StateDictType,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    if component in _TEXT_ENCODERS:
        # attention-processor keys (to_q_lora) and lora_linear_layer keys may be mixed in one file: say which per key
        old = "_lora." in key.replace(".processor.", ".")
        original_type = StateDictType.DIFFUSERS_OLD if old else StateDictType.DIFFUSERS
        return next(iter(convert_state_dict_to_peft({key: None}, original_type=original_type)))
    return next(iter(convert_unet_state_dict_to_peft({key: None})))


def _diffusers_module_path(module: str, component: str) -> str:
    """The PEFT module path of a module named as in diffusers' older formats (for its ``.alpha`` entry)."""
    layer = "lora_linear_layer" if component in _TEXT_ENCODERS else "lora"
    probe = f"{module}.down.weight" if module.endswith("_lora") else f"{module}.{layer}.down.weight"
    return _diffusers_key_to_peft(probe, component).removesuffix(".lora_A.weight")


def peft_to_diffusers(
    state_dict: Mapping[str, torch.Tensor],
    configs: Mapping[str, Any] | Any | None = None,
    component: str | None = None,
) -> dict[str, torch.Tensor]:
    """Convert a PEFT-format LoRA to diffusers' ``lora.down``/``lora.up`` format (``lora_linear_layer`` for text
    encoders). That format has no alpha: each module's scale (from ``configs``) is multiplied into its up weight.
    """
    modules = _read_peft(state_dict, configs=configs, component=component)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(modules):
        weights = modules[key]
        module_component = key.split(".", 1)[0]
        layer = "lora_linear_layer" if module_component in _TEXT_ENCODERS else "lora"
        scale = weights.effective_alpha / weights.rank
        out[f"{key}.{layer}.down.weight"] = weights.down
        out[f"{key}.{layer}.up.weight"] = weights.up if scale == 1 else weights.up * scale
        if weights.up_bias is not None:
            out[f"{key}.{layer}.up.bias"] = weights.up_bias if scale == 1 else weights.up_bias * scale
        if weights.magnitude is not None:
            out[f"{key}.lora_magnitude_vector"] = weights.magnitude
    return out


# ------------------------------------------------------------------------------------------------ configs
def lora_config_kwargs(modules: Mapping[str, LoraModuleWeights]) -> dict[str, dict[str, Any]]:
    """``LoraConfig`` kwargs per component that reproduce every module's rank and scale.

    ``r``/``lora_alpha`` are the most common rank/alpha (ties: the one met first in sorted module order); modules
    that differ go to ``rank_pattern``/``alpha_pattern`` under ``^<path>`` (anchored full paths, as diffusers
    writes them).
    """
    by_component: dict[str, dict[str, LoraModuleWeights]] = {}
    for key in sorted(modules):
        module_component, path = key.split(".", 1)
        by_component.setdefault(module_component, {})[path] = modules[key]
    configs = {}
    for module_component, items in by_component.items():
        ranks = {path: w.rank for path, w in items.items()}
        alphas = {path: _as_number(w.effective_alpha) for path, w in items.items()}
        r = Counter(ranks.values()).most_common(1)[0][0]
        lora_alpha = Counter(alphas.values()).most_common(1)[0][0]
        configs[module_component] = {
            "r": r,
            "lora_alpha": lora_alpha,
            "rank_pattern": {f"^{p}": v for p, v in ranks.items() if v != r},
            "alpha_pattern": {f"^{p}": v for p, v in alphas.items() if v != lora_alpha},
            "target_modules": sorted(items),
            "use_dora": any(w.magnitude is not None for w in items.values()),
            "lora_bias": any(w.up_bias is not None for w in items.values()),
        }
    return configs


# ------------------------------------------------------------------------------------------------ helpers
def _as_number(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else value


def _names_of(model_or_names: Iterable[str] | nn.Module) -> list[str]:
    if isinstance(model_or_names, nn.Module):
        return [name for name, _ in model_or_names.named_modules()]
    return list(model_or_names)


def _resolvers(module_names: ModuleNames | None) -> dict[str, FlatNameResolver]:
    resolvers = {}
    for module_component, source in (module_names or {}).items():
        names = _names_of(source)
        aliases: dict[str, str] = {}
        if module_component == "unet":
            try:
                ldm = LdmUNetNames(names)
            except ValueError:
                ldm = None
            if ldm is not None:
                aliases.update({flatten_name(ldm_name): path for ldm_name, path in ldm.from_ldm.items()})
        if module_component in _TEXT_ENCODERS:
            # kohya writes CLIP paths below "text_model."; transformers' flattened CLIPTextModel has no such module
            aliases.update(
                {flatten_name("text_model." + n): n for n in names if n.startswith(_CLIP_TEXT_MODEL_CHILDREN)}
            )
        resolvers[module_component] = FlatNameResolver(names, aliases)
    return resolvers


def _split_kohya_name(name: str) -> tuple[str, str]:
    for prefix in sorted(_KOHYA_READ_PREFIXES, key=len, reverse=True):
        if name.startswith(prefix + "_"):
            return _KOHYA_READ_PREFIXES[prefix], name[len(prefix) + 1 :]
    raise ValueError(f"kohya key {name!r} has no known prefix ({sorted(p + '_' for p in _KOHYA_READ_PREFIXES)}).")


def _resolve(component: str, flat: str, resolvers: Mapping[str, FlatNameResolver]) -> str:
    resolver = resolvers.get(component)
    if resolver is not None:
        try:
            return resolver.resolve(flat)
        except KeyError as exc:
            raise ValueError(f"kohya name {flat!r} ({component}) matches no module of the given model.") from exc
    if component == "unet" and flat.startswith(LDM_BLOCK_NAMES):
        raise ValueError(
            f"kohya name {flat!r} uses LDM (A1111) UNet names; pass module_names={{'unet': unet}} to convert it."
        )
    return guess_path(flat)


def _config_for(configs: Any, module_component: str) -> Any:
    if configs is None:
        return None
    if isinstance(configs, Mapping) and "r" not in configs:
        return configs.get(module_component)
    return configs  # one config for every component


def _config_value(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _pattern_value(patterns: Mapping[str, Any], path: str, default: Any) -> Any:
    """The value of the first ``rank_pattern``/``alpha_pattern`` key matching module ``path``, as peft reads them: a
    key matches a dot-separated suffix of the path (``$`` implied); a leading ``^`` anchors it at the start."""
    for pattern, value in patterns.items():
        regex = pattern + "$" if pattern.startswith("^") else rf"(.*\.)?(?:{pattern})$"
        if re.match(regex, path):
            return value
    return default


def _alpha_from_config(config: Any, path: str, rank: int) -> float | int | None:
    """The alpha that gives module ``path`` its scale under ``config`` when the scale is ``alpha / rank`` (rsLoRA's
    ``lora_alpha / sqrt(rank)`` becomes ``lora_alpha * sqrt(rank)``); None without config."""
    if config is None:
        return None
    patterns = _config_value(config, "alpha_pattern") or {}
    alpha = float(_pattern_value(patterns, path, _config_value(config, "lora_alpha", 8)))
    if _config_value(config, "use_rslora", False):
        alpha *= math.sqrt(rank)
    return _as_number(alpha)


def _read_peft(
    state_dict: Mapping[str, torch.Tensor], configs: Any, component: str | None
) -> dict[str, LoraModuleWeights]:
    """Module weights of a PEFT-format state dict, keyed ``<component>.<path>``, alphas from ``configs``."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        module, part = _split_peft_key(key)
        module = module.removeprefix("base_model.model.")
        if module.split(".", 1)[0] not in COMPONENTS:
            if component is None:
                raise ValueError(
                    f"Key {key!r} has no component prefix ({', '.join(COMPONENTS)}); pass component=... to say "
                    "which model it belongs to."
                )
            module = f"{component}.{module}"
        grouped.setdefault(module, {})[part] = tensor
    modules = {}
    for module in sorted(grouped):
        parts = grouped[module]
        if "down" not in parts or "up" not in parts:
            raise ValueError(f"PEFT LoRA module {module!r} needs both lora_A and lora_B; has {sorted(parts)}.")
        module_component, path = module.split(".", 1)
        rank = int(parts["down"].shape[0])
        modules[module] = LoraModuleWeights(
            down=parts["down"],
            up=parts["up"],
            alpha=_alpha_from_config(_config_for(configs, module_component), path, rank),
            up_bias=parts.get("up_bias"),
            magnitude=parts.get("magnitude"),
        )
    return modules


def _split_peft_key(key: str) -> tuple[str, str]:
    for marker, part in _PEFT_MARKERS:
        if key.endswith(marker):
            return key[: -len(marker)], part
    raise ValueError(f"Key {key!r} is not a PEFT LoRA key (lora_A/lora_B/lora_magnitude_vector).")


def _write_peft(modules: Mapping[str, LoraModuleWeights]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key in sorted(modules):
        weights = modules[key]
        out[f"{key}.lora_A.weight"] = weights.down
        out[f"{key}.lora_B.weight"] = weights.up
        if weights.up_bias is not None:
            out[f"{key}.lora_B.bias"] = weights.up_bias
        if weights.magnitude is not None:
            out[f"{key}.lora_magnitude_vector"] = weights.magnitude
    return out
