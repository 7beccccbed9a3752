"""LoRA adapters trained on per-expert MoE layers (transformers 4.x) on models whose experts transformers 5 fuses.

Transformers 5 stores the experts of Mixtral-like models as 3-D parameters: ``experts.gate_up_proj`` (experts,
2 * intermediate, hidden) stacks each expert's ``w1`` and ``w3`` rows, ``experts.down_proj`` each expert's ``w2``.
An old adapter has per-expert factors ``A_e`` (r x in) and ``B_e`` (out x r) on every projection. They convert
exactly to LoRA on the fused parameters (``target_parameters``), whose factors are per expert too:

- ``lora_A`` (experts * R, in): expert-major rows; within an expert the fused projections' ``A`` stacked,
- ``lora_B`` (out, R * experts): column ``k * experts + e`` holds rank ``k`` of expert ``e``; within an expert the
  projections' ``B`` form a block-diagonal matrix, so each projection only sees its own rank block,

with ``R`` the sum of the fused projections' ranks. The scaling stays the same: the fused parameter gets ``r = R``
and a ``lora_alpha`` that keeps ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA) of the originals. The routers
(``gate``, ``nn.Linear`` in 4.x) became modules with a ``weight`` parameter and are adapted through it.

Three pieces use the table below: the config conversion (run by the core before injecting, through the host
registry), the state-dict conversion (before loading a state dict), and the rules of transformers' own loader
(``weight_conversion.py``). The config conversion also extends ``target_modules="all-linear"`` to the fused experts
and routers, which were linear layers in transformers 4.x.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class FusedExpertsLayout:
    """How one model family's per-expert layers became fused parameters.

    Attributes:
        old_parent: the MoE block's name in transformers 4.x (``block_sparse_moe``).
        new_parent: its name now (``mlp``).
        fused: fused parameter -> the per-expert projections it stacks (in order), in the order the experts module
            registers the parameters (LoRA wrappers nest in that order: the first is innermost).
        routers: old router module name -> the router parameter adapted now.
        convert_old_targets: whether configs naming the old projections are converted automatically. False where
            the old names still name other modules (Qwen2-MoE's shared expert), so old and new configs look alike.
    """

    old_parent: str
    new_parent: str
    fused: tuple[tuple[str, tuple[str, ...]], ...]
    routers: tuple[tuple[str, str], ...] = ()
    convert_old_targets: bool = True
    experts: str = "experts"

    def old_to_fused(self) -> dict[str, str]:
        return {old: fused for fused, olds in self.fused for old in olds}


FUSED_EXPERT_LAYOUTS: dict[str, FusedExpertsLayout] = {
    "mixtral": FusedExpertsLayout(
        old_parent="block_sparse_moe",
        new_parent="mlp",
        fused=(("gate_up_proj", ("w1", "w3")), ("down_proj", ("w2",))),
        routers=(("gate", "gate.weight"),),
    ),
}
# Qwen2-MoE and the families sharing its layout: the old expert names also name the shared expert's Linear layers
_QWEN2_MOE_LAYOUT = FusedExpertsLayout(
    old_parent="mlp",
    new_parent="mlp",
    fused=(("gate_up_proj", ("gate_proj", "up_proj")), ("down_proj", ("down_proj",))),
    routers=(("gate", "gate.weight"),),
    convert_old_targets=False,
)
FUSED_EXPERT_LAYOUTS.update(dict.fromkeys(("qwen2_moe", "qwen3_moe", "olmoe"), _QWEN2_MOE_LAYOUT))


def layout_for_model(model: nn.Module) -> FusedExpertsLayout | None:
    """The fused-experts layout of ``model`` (a transformers model, possibly wrapped), or None."""
    config = getattr(model, "config", None)
    layout = FUSED_EXPERT_LAYOUTS.get(getattr(config, "model_type", None))
    if layout is None:
        return None
    # only models that really hold fused experts (transformers >= 5)
    return layout if _experts_paths(model, layout) else None


# ---------------------------------------------------------------------------------------------------- the factors
def fuse_expert_lora_a(per_projection: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """``lora_A`` of a fused parameter from ``per_projection[p][e]`` = ``A`` (r_p x in) of projection ``p``,
    expert ``e``: shape (experts * R, in), expert-major."""
    num_experts = len(per_projection[0])
    return torch.cat([torch.cat([proj[e] for proj in per_projection]) for e in range(num_experts)])


def fuse_expert_lora_b(per_projection: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """``lora_B`` of a fused parameter from ``per_projection[p][e]`` = ``B`` (out_p x r_p): shape
    (sum of out_p, R * experts), column ``k * experts + e`` = rank ``k`` of expert ``e``."""
    num_experts = len(per_projection[0])
    per_expert = torch.stack([torch.block_diag(*[proj[e] for proj in per_projection]) for e in range(num_experts)])
    out_features, rank = per_expert.shape[1:]
    return per_expert.permute(1, 2, 0).reshape(out_features, rank * num_experts)


# ---------------------------------------------------------------------------------------------------- the config
def _experts_paths(model: nn.Module, layout: FusedExpertsLayout) -> dict[str, int]:
    """``{path of each experts module (current names): number of experts}``."""
    fused_names = {name for name, _ in layout.fused}
    paths = {}
    for name, param in model.named_parameters():
        module_path, _, leaf = name.rpartition(".")
        module_path = module_path.replace(".base_layer", "")  # the experts module may already carry adapters
        if leaf in fused_names and module_path.endswith(f"{layout.new_parent}.{layout.experts}"):
            paths[module_path] = param.shape[0]
    return paths


def _old_path(path: str, layout: FusedExpertsLayout) -> str:
    """The transformers 4.x name of the MoE block path ``path`` (``...mlp.experts`` -> ``...block_sparse_moe...``)."""
    head, _, tail = path.rpartition(f"{layout.new_parent}.")
    return f"{head}{layout.old_parent}.{tail}"


def _lora_setting(config: Any, key: str) -> tuple[int, float]:
    from peft.tuners._targeting import get_pattern_key

    rank = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), key), config.r)
    alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), key), config.lora_alpha)
    return rank, alpha


def _scaling(config: Any, rank: int, alpha: float) -> float:
    return alpha / (math.sqrt(rank) if config.use_rslora else rank)


def convert_config_for_fused_experts(peft_config: Any, model: nn.Module) -> None:
    """Rewrite, in place, a LoRA config written for per-expert layers so it adapts the fused parameters instead.

    Old projection names leave ``target_modules`` and their fused parameter joins ``target_parameters``, with
    ``rank_pattern``/``alpha_pattern`` entries that keep each expert's rank and scaling. Does nothing for other
    models, other methods, or configs that name no old projection.

    Raises:
        ValueError: where the old adapter has no exact equivalent on the fused parameters (only some experts or
            layers adapted, one of two fused projections adapted, different scalings on fused projections,
            lora_dropout, DoRA).
    """
    if str(getattr(peft_config, "peft_type", "")) != "LORA" or getattr(peft_config, "target_modules", None) is None:
        return
    layout = layout_for_model(model)
    if layout is None:
        return
    if isinstance(peft_config.target_modules, str) and peft_config.target_modules.lower() == "all-linear":
        _add_fused_experts_to_all_linear(peft_config, model, layout)
        return
    if not layout.convert_old_targets:
        return
    from peft.tuners._targeting import TargetSelector

    selector = TargetSelector(peft_config)
    settings: dict[str, tuple[int, float]] = {}
    for proj, keys in _old_module_keys(model, layout).items():
        matched = [k for k in keys if selector.is_target(k) and not selector.is_excluded(k)]
        if not matched:
            continue
        if len(matched) != len(keys):
            raise ValueError(
                f"The adapter targets {proj!r} of only some experts or layers (e.g. {matched[0]!r} but not "
                f"{sorted(set(keys) - set(matched))[0]!r}). transformers now stores all experts of a layer in one "
                "fused parameter, which is adapted for all of them; this adapter cannot be converted."
            )
        settings[proj] = _uniform_setting(peft_config, proj, keys)
    if not settings:
        return
    if peft_config.lora_dropout or peft_config.use_dora:
        raise ValueError(
            f"The adapter adapts per-expert layers {sorted(settings)}, which transformers now fuses into 3-D "
            "parameters; LoRA on those (target_parameters) supports neither lora_dropout nor DoRA (this adapter has "
            f"lora_dropout={peft_config.lora_dropout}, use_dora={peft_config.use_dora}). For inference, set "
            "lora_dropout=0 in adapter_config.json."
        )
    _rewrite_targets(peft_config, layout, settings)


def _old_module_keys(model: nn.Module, layout: FusedExpertsLayout) -> dict[str, list[str]]:
    """Every old (per-expert or router) module name of ``model``, by old projection (``w1``, ``gate``...)."""
    old_keys: dict[str, list[str]] = {}
    for path, num_experts in sorted(_experts_paths(model, layout).items()):
        old = _old_path(path, layout)
        for proj in layout.old_to_fused():
            old_keys.setdefault(proj, []).extend(f"{old}.{e}.{proj}" for e in range(num_experts))
        for router, _ in layout.routers:
            old_keys.setdefault(router, []).append(f"{old.rpartition('.')[0]}.{router}")
    return old_keys


def _uniform_setting(peft_config: Any, proj: str, keys: Sequence[str]) -> tuple[int, float]:
    """The one (r, lora_alpha) that ``rank_pattern``/``alpha_pattern`` give every module in ``keys``."""
    distinct = {_lora_setting(peft_config, k) for k in keys}
    if len(distinct) > 1:
        raise ValueError(
            f"rank_pattern/alpha_pattern give the experts' {proj!r} different (r, lora_alpha) values "
            f"{sorted(distinct)}; on the fused parameter all experts share one rank."
        )
    return distinct.pop()


def _add_fused_experts_to_all_linear(peft_config: Any, model: nn.Module, layout: FusedExpertsLayout) -> None:
    """``"all-linear"`` meant every ``nn.Linear``, the per-expert projections and routers included; on fused experts
    those are the experts' 3-D parameters and the routers' ``weight``, which join ``target_parameters`` (with the
    rank/alpha patterns that give each fused projection its own ``r``/``lora_alpha``, as peft 0.21.2 does).
    ``target_modules`` stays ``"all-linear"`` for the core to expand to the linear layers.

    Unlike peft 0.21.2 this honours ``exclude_modules`` (naming the kept parameters in full when only some layers
    keep them), keeps the shared experts' Linear layers (the reference's leaf-name remap drops them), keeps each
    projection's rsLoRA scaling, and also covers Qwen2-MoE itself (0.21.2's table misses it).

    Raises:
        ValueError: with lora_dropout or DoRA, which LoRA on parameters does not support.
    """
    from peft.tuners._targeting import NameMatcher

    exclude = NameMatcher(peft_config.exclude_modules) if peft_config.exclude_modules else None

    def kept(owner: str, parameter: str) -> bool:
        return exclude is None or not (exclude(owner) or exclude(f"{owner}.{parameter.rpartition('.')[2]}"))

    # new parameter (as the experts/router module names it) -> (its owners' paths, the old names it replaces)
    parameters = {f"{layout.experts}.{fused}": list(olds) for fused, olds in layout.fused}
    parameters.update({parameter: [router] for router, parameter in layout.routers})
    old_keys = _old_module_keys(model, layout)
    moe_blocks = sorted(path.rpartition(".")[0] for path in _experts_paths(model, layout))
    settings: dict[str, tuple[int, float]] = {}
    entries: dict[str, list[str]] = {}
    for parameter, olds in parameters.items():
        owner_name, _, leaf = parameter.rpartition(".")
        owners = [f"{block}.{owner_name}" for block in moe_blocks]
        included = [owner for owner in owners if kept(owner, parameter)]
        if not included:
            continue
        entries[parameter] = [parameter] if included == owners else [f"{o}.{leaf}" for o in included]
        old_owners = tuple(_old_path(o, layout) for o in included)
        for old in olds:
            keys = [k for k in old_keys[old] if k in old_owners or k.startswith(tuple(o + "." for o in old_owners))]
            settings[old] = _uniform_setting(peft_config, old, keys)
    if not settings:
        return
    if peft_config.lora_dropout or peft_config.use_dora:
        raise ValueError(
            "target_modules='all-linear' on this MoE model includes its fused experts and routers "
            f"{sorted(entries)}, adapted through target_parameters, which supports neither lora_dropout nor DoRA "
            f"(this config has lora_dropout={peft_config.lora_dropout}, use_dora={peft_config.use_dora}). Set "
            "lora_dropout=0 and use_dora=False, or exclude them with exclude_modules=['experts', 'gate']."
        )
    _rewrite_targets(peft_config, layout, settings, entries)


def _rewrite_targets(
    peft_config: Any,
    layout: FusedExpertsLayout,
    settings: dict[str, tuple[int, float]],
    entries: dict[str, list[str]] | None = None,
) -> None:
    """Replace the old projections of ``settings`` by their fused parameters (``entries`` gives the
    ``target_parameters`` entries for a parameter, default its short name) with rank/alpha patterns."""
    new_parameters: dict[str, list[str]] = {}  # new parameter -> the old names it replaces
    for fused, olds in layout.fused:
        present = [o for o in olds if o in settings]
        if present and len(present) != len(olds):
            raise ValueError(
                f"Cannot convert PEFT target(s) {', '.join(present)} without also targeting "
                f"{', '.join(sorted(set(olds) - set(present)))} because they are fused into {fused}."
            )
        if present:
            new_parameters[f"{layout.experts}.{fused}"] = list(olds)
    for router, parameter in layout.routers:
        if router in settings:
            new_parameters[parameter] = [router]
    for parameter, olds in new_parameters.items():
        ranks = [settings[o][0] for o in olds]
        scalings = {_scaling(peft_config, *settings[o]) for o in olds}
        if len(scalings) > 1:
            raise ValueError(
                f"{olds} are fused into {parameter!r} but have different LoRA scalings {sorted(scalings)}; a fused "
                "parameter has one scaling."
            )
        rank = sum(ranks)
        scaling = scalings.pop()
        alpha = scaling * (math.sqrt(rank) if peft_config.use_rslora else rank)
        if alpha == int(alpha):
            alpha = int(alpha)
        pattern = r".*\." + re.escape(parameter)
        if rank != peft_config.r:
            peft_config.rank_pattern = {**peft_config.rank_pattern, pattern: rank}
        if alpha != peft_config.lora_alpha:
            peft_config.alpha_pattern = {**peft_config.alpha_pattern, pattern: alpha}
    old_names = set(settings)
    if not isinstance(peft_config.target_modules, str):
        remaining = {t for t in peft_config.target_modules if t.rsplit(".", 1)[-1] not in old_names}
        peft_config.target_modules = remaining
    added = {entry for parameter in new_parameters for entry in (entries or {}).get(parameter, [parameter])}
    peft_config.target_parameters = sorted(set(peft_config.target_parameters or []) | added)


# ---------------------------------------------------------------------------------------------------- the weights
def _old_key_pattern(layout: FusedExpertsLayout) -> re.Pattern[str]:
    projections = "|".join(re.escape(p) for p in sorted(layout.old_to_fused()))
    return re.compile(
        rf"^(?P<path>(?:.*\.)?{re.escape(layout.experts)})\.(?P<expert>\d+)\.(?P<proj>{projections})\."
        r"(?P<factor>lora_A|lora_B)\.weight$"
    )


def _rename_old_parent(key: str, layout: FusedExpertsLayout) -> str:
    if layout.old_parent == layout.new_parent:
        return key
    return key.replace(f".{layout.old_parent}.", f".{layout.new_parent}.")


def convert_state_dict_for_fused_experts(
    model: nn.Module, peft_config: Any, state_dict: dict[str, torch.Tensor], adapter_name: str
) -> dict[str, torch.Tensor]:
    """Per-expert LoRA weights of ``state_dict`` (file keys) fused into the keys of the fused-parameter adapter
    ``adapter_name`` of ``model``; other keys pass unchanged (routers only renamed).

    Raises:
        ValueError: if experts are missing from the checkpoint, or the adapter has no LoRA on the fused parameter
            the weights belong to.
    """
    if str(getattr(peft_config, "peft_type", "")) != "LORA":
        return state_dict
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layout = layout_for_model(base)
    if layout is None:
        return state_dict
    pattern = _old_key_pattern(layout)
    old_to_fused = layout.old_to_fused()
    converted: dict[str, torch.Tensor] = {}
    groups: dict[tuple[str, str, str], dict[str, dict[int, torch.Tensor]]] = {}
    for key, tensor in state_dict.items():
        key = _rename_old_parent(key, layout)
        match = pattern.match(key)
        if match is None:
            converted[key] = tensor
            continue
        group = groups.setdefault((match["path"], old_to_fused[match["proj"]], match["factor"]), {})
        group.setdefault(match["proj"], {})[int(match["expert"])] = tensor
    if not groups:
        return converted
    file_keys = _fused_file_keys(model, adapter_name)
    fuse = {"lora_A": fuse_expert_lora_a, "lora_B": fuse_expert_lora_b}
    for (path, fused, factor), by_projection in sorted(groups.items()):
        olds = dict(layout.fused)[fused]
        file_key = file_keys.get((path, fused, factor))
        if file_key is None:
            raise ValueError(
                f"The checkpoint has per-expert LoRA weights {path}.<expert>.{{{','.join(olds)}}}.{factor} (the "
                f"transformers 4.x layout), but adapter {adapter_name!r} has no LoRA on the fused parameter "
                f"{path}.{fused} they now belong to. Load it with a config whose target_parameters include "
                f"'{layout.experts}.{fused}' (r = the sum of the fused projections' ranks, lora_alpha keeping "
                "lora_alpha / r)."
            )
        num_experts = _num_experts(model, path, fused)
        per_projection = []
        for old in olds:
            experts = by_projection.get(old, {})
            if sorted(experts) != list(range(num_experts)):
                raise ValueError(
                    f"The checkpoint has {factor} of {path}.<expert>.{old} for experts {sorted(experts)}, but all "
                    f"{num_experts} experts are needed to build the fused {path}.{fused}."
                )
            per_projection.append([experts[e] for e in range(num_experts)])
        converted[file_key] = fuse[factor](per_projection)
    return converted


def _fused_file_keys(model: nn.Module, adapter_name: str) -> dict[tuple[str, str, str], str]:
    """``{(experts path, fused parameter, factor): file key}`` of the adapter's fused-parameter LoRA weights."""
    from peft.adapter_keys import adapter_key_map
    from peft.tuners.lora.param_wrapper import ParamWrapper

    live_to_file = {live: file for file, live in adapter_key_map(model, adapter_name).items()}
    keys = {}
    for path, module in model.named_modules():
        if isinstance(module, ParamWrapper) and adapter_name in module.lora_A:
            owner = path.replace(".base_layer", "")
            for factor in ("lora_A", "lora_B"):
                file_key = live_to_file.get(f"{path}.{factor}.{adapter_name}.weight")
                if file_key is not None:
                    keys[(owner, module.parameter_name, factor)] = file_key
    return keys


def _num_experts(model: nn.Module, path: str, fused: str) -> int:
    module = model.get_submodule(path)
    while not hasattr(module, fused) and hasattr(module, "base_layer"):
        module = module.base_layer
    return getattr(module, fused).shape[0]


def fused_parameters_adapted(peft_config: Any, layout: FusedExpertsLayout) -> list[str]:
    """The fused parameters ``peft_config`` adapts (before or after :func:`convert_config_for_fused_experts`), in
    the experts module's registration order, which is the nesting order of their LoRA wrappers (first innermost)."""
    from peft.tuners._targeting import NameMatcher

    targets = getattr(peft_config, "target_modules", None)
    parameters = getattr(peft_config, "target_parameters", None) or []
    old_names = NameMatcher(targets) if targets is not None and layout.convert_old_targets else None
    old_block = f"model.layers.0.{layout.old_parent}.{layout.experts}.0"
    adapted = []
    for fused, olds in layout.fused:
        parameter = f"{layout.experts}.{fused}"
        if any(parameter == p or parameter.endswith("." + p) or p.endswith("." + parameter) for p in parameters) or (
            old_names is not None and any(old_names(f"{old_block}.{old}") for old in olds)
        ):
            adapted.append(fused)
    return adapted
