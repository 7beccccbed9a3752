"""``LoraModel``: injects LoRA layers; everything else is the shared ``BaseTuner`` lifecycle."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.quantization import is_linear_layer
from peft.tuners._targeting import fit_fan_in_fan_out, get_pattern_key, is_transformers_conv1d
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.init_configs import BASE_CHANGING_INITS, init_method
from peft.tuners.lora.initialization import initialisation_progress
from peft.tuners.lora.kasa import kasa_regularization
from peft.tuners.lora.layer import (
    Conv1d,
    Conv2d,
    Conv3d,
    Embedding,
    Linear,
    LoraLayer,
    is_lora_layer,
    lora_variant_options,
)
from peft.tuners.lora.mha import MultiheadAttention
from peft.tuners.lora.param_wrapper import ParamWrapper
from peft.tuners.lora.residual_conversion import convert_to_original_base, subtract_initial_adapter
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils.save_and_load import get_peft_model_state_dict
from peft.utils.warnings import warn

_SUPPORTED = "torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, "
_SUPPORTED += "transformers.pytorch_utils.Conv1D, torch.nn.MultiheadAttention"


class LoraModel(BaseTuner):
    """Creates LoRA adapters on a model (see ``LoraConfig``)."""

    prefix: str = "lora_"
    tuner_layer_cls = LoraLayer
    target_module_mapping: dict[str, list[str]] = {}

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        # decomposition-based inits can take minutes on large models: show their progress
        with initialisation_progress(self.peft_config[adapter_name].init_lora_weights):
            super().inject_adapter(model, adapter_name, *args, **kwargs)

    def _check_new_adapter_config(self, config: LoraConfig) -> None:
        super()._check_new_adapter_config(config)
        _warn_base_changing_init_with_other_adapters(list(self.peft_config.values()))
        with_parameters = sorted(
            name for name, cfg in self.peft_config.items() if getattr(cfg, "target_parameters", None)
        )
        if len(with_parameters) > 1:
            raise ValueError(
                f"Only one adapter per model may use target_parameters; adapters {with_parameters} do. Use "
                "target_modules for the others."
            )
        uses_kasa = getattr(config, "kasa_config", None) is not None
        for name, other in self.peft_config.items():
            if other is not config and (getattr(other, "kasa_config", None) is not None) != uses_kasa:
                raise ValueError(
                    f"KaSA cannot be combined with adapters that don't use KaSA on one model: KaSA truncates the "
                    f"base weights. The new adapter {'uses' if uses_kasa else 'does not use'} KaSA, adapter {name!r} "
                    f"{'does not' if uses_kasa else 'does'}."
                )

    def _get_monteclora_loss(self, adapter_names: str | list[str] | None = None) -> torch.Tensor | float:
        """MonteCLoRA's variational loss, averaged over the layers' samplers of ``adapter_names`` (default: the
        active adapters); add it to the task loss in training. 0.0 where no MonteCLoRA adapter is involved."""
        losses = [
            layer.lora_monteclora_sampler[name].variational_loss()
            for layer, name in self._variant_layers("lora_monteclora_sampler", adapter_names)
        ]
        return sum(losses) / len(losses) if losses else 0.0

    def _get_kasa_loss(self, adapter_names: str | list[str] | None = None) -> torch.Tensor | float:
        """KaSA's regularisation (see ``KasaConfig``), summed over the layers of ``adapter_names`` (default: the
        active adapters); add it to the task loss in training. 0.0 where no KaSA adapter is involved."""
        total: torch.Tensor | float = 0.0
        for layer, name in self._variant_layers("lora_diag", adapter_names):
            config = self.peft_config[name].kasa_config
            total = total + kasa_regularization(layer, name, config.beta, config.gamma)
        return total

    def _variant_layers(self, container: str, adapter_names: str | list[str] | None) -> list[tuple[LoraLayer, str]]:
        """``(layer, adapter)`` for each LoRA layer whose ``container`` holds one of ``adapter_names``."""
        if adapter_names is None:
            adapter_names = self.active_adapters
        names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
        found = []
        for module in self.model.modules():
            entries = module.adapter_container(container) if isinstance(module, LoraLayer) else None
            found.extend((module, name) for name in names if entries is not None and name in entries)
        return found

    def add_weighted_adapter(
        self,
        adapters: list[str],
        weights: list[float],
        adapter_name: str,
        combination_type: str = "svd",
        svd_rank: int | None = None,
        svd_clamp: float | None = None,
        svd_full_matrices: bool = True,
        svd_driver: str | None = None,
        density: float | None = None,
        majority_sign_method: str = "total",
    ) -> None:
        """Add ``adapter_name``, a weighted combination of ``adapters`` (LIFE-23; see ``peft.tuners.lora.weighted``).

        ``combination_type``: ``svd``, ``linear``, ``cat``, ``ties``, ``ties_svd``, ``dare_linear``, ``dare_ties``,
        ``dare_linear_svd``, ``dare_ties_svd``, ``magnitude_prune`` or ``magnitude_prune_svd``. Weights may be
        negative. ``svd_*`` options apply to the SVD types, ``density`` to the pruning types (fraction kept),
        ``majority_sign_method`` (``"total"``/``"frequency"``) to the TIES types. The new adapter is not activated.
        """
        from peft.tuners.lora.weighted import add_weighted_adapter

        add_weighted_adapter(
            self,
            adapters,
            weights,
            adapter_name,
            combination_type=combination_type,
            svd_rank=svd_rank,
            svd_clamp=svd_clamp,
            svd_full_matrices=svd_full_matrices,
            svd_driver=svd_driver,
            density=density,
            majority_sign_method=majority_sign_method,
        )

    @staticmethod
    def _convert_state_dict_for_initial_model(
        config: LoraConfig, state_dict: dict[str, Any], path_initial_model: str
    ) -> tuple[LoraConfig, dict[str, Any]]:
        """The plain LoRA equivalent of an adapter trained on a base its init changed (PiSSA, OLoRA, CorDA,
        LoRA-GA), for ``save_pretrained(path_initial_model_for_weight_conversion=...)``; see
        ``peft.tuners.lora.residual_conversion``."""
        return convert_to_original_base(config, state_dict, path_initial_model)

    def subtract_mutated_init(
        self, output_state_dict: dict[str, Any], adapter_name: str, kwargs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``output_state_dict`` (file keys of an adapter trained from a PiSSA/OLoRA/CorDA/LoRA-GA start) as a
        plain LoRA of twice the rank for the original base, its start taken from the loaded adapter
        ``adapter_name`` (the initial adapter): ``A' = [A; A0]``, ``B' = [B, -B0]``."""
        initial = get_peft_model_state_dict(
            self.model, state_dict=(kwargs or {}).get("state_dict"), adapter_name=adapter_name
        )
        initial = {f"base_model.model.{key}": value for key, value in initial.items()}
        return subtract_initial_adapter(output_state_dict, initial, f"adapter {adapter_name!r}")

    def _prepare_model(self, peft_config: LoraConfig, model: nn.Module) -> None:
        if peft_config.layer_replication:
            replicate_layers(model, peft_config.layer_replication)

    @staticmethod
    def _layer_kwargs(config: LoraConfig, current_key: str) -> dict[str, Any]:
        rank_key = get_pattern_key(config.rank_pattern.keys(), current_key)
        alpha_key = get_pattern_key(config.alpha_pattern.keys(), current_key)
        return {
            "r": config.rank_pattern.get(rank_key, config.r),
            "lora_alpha": config.alpha_pattern.get(alpha_key, config.lora_alpha),
            "lora_dropout": config.lora_dropout,
            "fan_in_fan_out": config.fan_in_fan_out,
            "init_lora_weights": config.init_lora_weights,
            "use_rslora": config.use_rslora,
            "use_dora": config.use_dora,
            "use_qalora": config.use_qalora,
            "qalora_group_size": config.qalora_group_size,
            "loftq_config": config.loftq_config,
            "lora_bias": config.lora_bias,
            "lora_ga_config": config.lora_ga_config,
            "ephemeral_gpu_offload": config.runtime_config.ephemeral_gpu_offload,
            "target_name": current_key,
            **{option: getattr(config, option) for option in lora_variant_options()},
        }

    def _create_and_replace(
        self,
        peft_config: LoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        layer_kwargs = self._layer_kwargs(peft_config, current_key)
        self._create_or_update_layer(peft_config, adapter_name, target, target_name, parent, layer_kwargs)

    def _create_or_update_layer(
        self,
        peft_config: LoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        layer_kwargs: dict[str, Any],
    ) -> nn.Module:
        if is_lora_layer(target) and not isinstance(target, ParamWrapper):
            target.update_layer(adapter_name, **layer_kwargs)
            return target
        new_module = self._create_new_module(peft_config, adapter_name, target, **layer_kwargs)
        self._replace_module(parent, target_name, new_module, target)
        return new_module

    def _tie_target(
        self, model: nn.Module, peft_config: LoraConfig, adapter_name: str, key: str, embedding_name: str
    ) -> None:
        """LoRA on ``key`` (an output layer tied to the input embedding) reusing the embedding's LoRA."""
        from peft.tuners.lora.tied import tie_to_embedding
        from peft.utils.other import _get_submodules

        embedding = model.get_submodule(embedding_name)
        parent, target, target_name = _get_submodules(model, key)
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if not isinstance(embedding, Embedding) or adapter_name not in embedding.lora_embedding_A:
            raise ValueError(
                f"ensure_weight_tying ties {key!r} to the LoRA of the input embedding {embedding_name!r}, which has "
                f"none for adapter {adapter_name!r}."
            )
        if not isinstance(base, nn.Linear):
            raise ValueError(
                "ensure_weight_tying can tie LoRA to torch.nn.Linear output layers; "
                f"{key!r} is a {type(base).__name__}."
            )
        # the tied layer has the embedding's rank and alpha; its values come from the embedding
        layer_kwargs = {**self._layer_kwargs(peft_config, embedding_name), "init_lora_weights": False}
        layer = self._create_or_update_layer(peft_config, adapter_name, target, target_name, parent, layer_kwargs)
        tie_to_embedding(layer, embedding, adapter_name)

    def _create_and_replace_parameter(
        self,
        peft_config: LoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        parameter_names: list[str],
    ) -> None:
        module = target
        for parameter_name in parameter_names:
            layer_kwargs = self._layer_kwargs(peft_config, f"{current_key}.{parameter_name}")
            layer_kwargs.pop("fan_in_fan_out")
            module = ParamWrapper(module, adapter_name, parameter_name=parameter_name, **layer_kwargs)
        self._replace_module(parent, target_name, module, target)

    @staticmethod
    def _create_new_module(config: PeftConfig, adapter_name: str, target: nn.Module, **kwargs: Any) -> nn.Module:
        """The LoRA layer class for ``target``'s base type (custom modules first), built around ``target``."""
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        for base_cls, layer_cls in (getattr(config, "_custom_modules", None) or {}).items():
            if isinstance(base, base_cls):
                return layer_cls(target, adapter_name, **kwargs)
        if isinstance(base, nn.Embedding):
            kwargs.pop("fan_in_fan_out", None)
            return Embedding(target, adapter_name, **kwargs)
        for conv_cls, layer_cls in ((nn.Conv1d, Conv1d), (nn.Conv2d, Conv2d), (nn.Conv3d, Conv3d)):
            if isinstance(base, conv_cls):
                kwargs.pop("fan_in_fan_out", None)
                return layer_cls(target, adapter_name, **kwargs)
        if isinstance(base, nn.MultiheadAttention):
            kwargs.pop("fan_in_fan_out", None)
            return MultiheadAttention(target, adapter_name, **kwargs)
        if is_linear_layer(base) or is_transformers_conv1d(base):
            conv1d = kwargs["fan_in_fan_out"] = fit_fan_in_fan_out(config, base)
            return Linear(target, adapter_name, is_target_conv_1d_layer=conv1d, **kwargs)
        raise ValueError(
            f"Target module {base} is not supported. Currently, only the following modules are supported: "
            f"{_SUPPORTED}."
            " Register a custom layer with config._register_custom_module({ModuleType: LayerClass}) for others."
        )


_CONVERSION_GUIDES = {
    "pissa": ("PiSSA", "pissa_finetuning#convert-pissa-to-lora"),
    "corda": ("CorDA", "corda_finetuning#convert-corda-to-lora"),
    "olora": ("OLoRA", "olora_finetuning#olora-and-lora"),
    "lora_ga": ("LoRA-GA", "lora_ga_finetuning"),
}


def _warn_base_changing_init_with_other_adapters(configs: list[LoraConfig]) -> None:
    """PiSSA, CorDA, OLoRA and LoRA-GA change the base weight: other adapters on the same model see that change."""
    if len(configs) < 2:
        return
    inits = [getattr(config, "init_lora_weights", None) for config in configs]
    methods = [init_method(init) for init in inits if isinstance(init, str)]
    for method in BASE_CHANGING_INITS:
        if method in methods:
            name, guide = _CONVERSION_GUIDES[method]
            warn(
                f"{name} changes the base weights of the model and should thus not be used with other adapters. "
                f"Consider converting the {name} adapter into a normal LoRA adapter: "
                f"https://github.com/huggingface/peft/tree/main/examples/{guide} (save_pretrained with "
                "path_initial_model_for_weight_conversion)."
            )
            return


def _find_layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    owner = model
    while hasattr(owner, "model") and isinstance(owner.model, nn.Module):
        owner = owner.model
    for holder_path, attr in (
        ("", "layers"),
        ("bert.encoder", "layer"),
        ("encoder", "layer"),
        ("", "h"),
        ("transformer", "h"),
    ):
        holder = owner
        try:
            holder = owner.get_submodule(holder_path) if holder_path else owner
        except AttributeError:
            continue
        if isinstance(getattr(holder, attr, None), nn.ModuleList):
            return holder, attr
    raise ValueError(
        "layer_replication could not find the model's layers: looked for model(.model)*.layers, .bert.encoder.layer "
        "and .h."
    )


def replicate_layers(model: nn.Module, layer_map: list[list[int]]) -> None:
    """Rebuild the model's layer list from ``[start, end)`` ranges; repeated layers share their base weights.

    ``[[0, 4], [2, 5]]`` turns layers ``0..4`` into ``0, 1, 2, 3, 2, 3, 4``. Each position is its own module (so it
    gets its own adapter); ``layer_idx`` attributes and ``config.num_hidden_layers`` follow the new order.
    """
    holder, attr = _find_layer_list(model)
    layers = getattr(holder, attr)
    new_layers, used = [], set()
    for start, end in layer_map:
        if end > len(layers):
            raise ValueError(f"layer_replication range [{start}, {end}) exceeds the model's {len(layers)} layers.")
        for index in range(start, end):
            layer = layers[index]
            if index in used:
                shared = {id(t): t for t in list(layer.parameters()) + list(layer.buffers())}
                layer = copy.deepcopy(layer, memo=shared)
            used.add(index)
            new_layers.append(layer)
    for position, layer in enumerate(new_layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    setattr(holder, attr, nn.ModuleList(new_layers))
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(new_layers)


def __getattr__(name: str) -> Any:
    # the reference's default-target table, importable from here as from peft.utils.constants
    if name == "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING":
        from peft.utils import constants

        return getattr(constants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
