"""``AdaLoraModel``: injects AdaLoRA layers and runs AdaLoRA's training-time extras.

More than a registration, because AdaLoRA changes training: the loss gets an orthogonality penalty on ``A`` and
``B`` (``forward``), ``update_and_allocate`` prunes singular triplets every step (``RankAllocator``), and a checkpoint
stores only the triplets kept in ``rank_pattern`` (``_adapter_state_dict_to_file``/``_from_file``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peft.adapter_keys import adapter_key_map
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.adalora.allocator import RankAllocator, _param_name, adalora_layers, lookup_rank_mask
from peft.tuners.adalora.config import AdaLoraConfig
from peft.tuners.adalora.layer import AdaLoraLayer, SVDConv2d, SVDLinear
from peft.tuners.lora.model import LoraModel
from peft.tuners.tuners_utils import BaseTuner, TargetModule

_PEFT_MODEL_PREFIX = "base_model.model."


class AdaLoraModel(LoraModel):
    """Creates AdaLoRA (adaptive LoRA) adapters on a model (see ``AdaLoraConfig``).

    Only one adapter may be trainable; others must be added with ``inference_mode=True``.

    Example:
        >>> config = AdaLoraConfig(init_r=12, target_r=8, total_step=1000, target_modules=["q_proj", "v_proj"])
        >>> model = get_peft_model(base, config)
        >>> for step, batch in enumerate(batches):
        ...     model(**batch).loss.backward()
        ...     optimizer.step()
        ...     model.base_model.update_and_allocate(step)
        ...     optimizer.zero_grad()
    """

    prefix: str = "lora_"
    tuner_layer_cls = AdaLoraLayer
    layers_mapping = {nn.Conv2d: SVDConv2d, nn.Linear: SVDLinear, TransformersConv1D: SVDLinear}
    layer_options = ("lora_alpha", "lora_dropout", "init_lora_weights")
    option_patterns: dict[str, str] = {}  # AdaLoRA's rank_pattern holds pruning masks, not ranks

    # ------------------------------------------------------------------------------------------ injection
    def _check_new_adapter_config(self, config: AdaLoraConfig) -> None:
        super()._check_new_adapter_config(config)
        # the rank allocator serves one AdaLoRA adapter; adapters of other types (in a mixed model) do not count
        trainable = sorted(
            name
            for name, cfg in self.peft_config.items()
            if str(cfg.peft_type) == str(config.peft_type) and not cfg.inference_mode
        )
        if len(trainable) > 1:
            raise ValueError(
                f"{type(self).__name__} supports only 1 trainable adapter, got {trainable}. When using multiple "
                "adapters, set inference_mode to True for all adapters except the one you want to train."
            )

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        super().inject_adapter(model, adapter_name, **kwargs)
        config = self.peft_config[adapter_name]
        if not config.inference_mode:  # the one trainable adapter gets the rank allocator
            self.trainable_adapter_name = adapter_name
            self.rankallocator = RankAllocator(model, config, adapter_name)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        return {**super()._layer_kwargs(target), "r": target.config.init_r}

    def _create_and_replace_parameter(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError("AdaLoRA does not support target_parameters; use target_modules.")

    def _tie_target(self, target: TargetModule, embedding_name: str) -> None:
        raise ValueError("AdaLoRA cannot tie adapters of tied weights; set ensure_weight_tying=False.")

    def add_weighted_adapter(self, *args: Any, **kwargs: Any) -> None:
        """Not supported for AdaLoRA; use LoRA."""
        raise TypeError(f"{type(self).__name__} does not support add_weighted_adapter method.")

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        if getattr(self, "trainable_adapter_name", None) == adapter_name:
            del self.trainable_adapter_name, self.rankallocator

    # ------------------------------------------------------------------------------------------ training
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The model's forward; a tensor ``loss`` in its output gets ``orth_reg_weight`` times the orthogonal
        regularisation of the trainable adapter added."""
        outputs = self.model.forward(*args, **kwargs)
        loss = getattr(outputs, "loss", None)
        name = getattr(self, "trainable_adapter_name", None)
        if isinstance(loss, torch.Tensor) and name is not None:
            weight = self.peft_config[name].orth_reg_weight
            if weight < 0:
                raise ValueError(f"orth_reg_weight should be greater than or equal to 0, got {weight}.")
            if weight > 0:
                outputs.loss = loss + weight * self._orthogonal_regularization(name)
        return outputs

    def _orthogonal_regularization(self, adapter_name: str) -> torch.Tensor | float:
        """Mean over ``A`` and ``B`` factors of ``||A A^T - I||_F`` and ``||B^T B - I||_F``: keeps ``A``'s rows and
        ``B``'s columns orthonormal, as singular vectors are."""
        penalties = []
        for _, layer in adalora_layers(self.model, adapter_name):
            lora_a, lora_b = layer.lora_A[adapter_name], layer.lora_B[adapter_name]
            for gram in (lora_a @ lora_a.T, lora_b.T @ lora_b):
                identity = torch.eye(*gram.shape, dtype=gram.dtype, device=gram.device)
                penalties.append(torch.norm(gram - identity, p="fro"))
        return sum(penalties) / len(penalties) if penalties else 0.0

    def update_and_allocate(self, global_step: int) -> None:
        """Update the importance scores and prune to the schedule's budget; call once per training step after
        ``loss.backward()`` and before ``optimizer.zero_grad()``.

        Before ``total_step - tfinal`` the scores are updated (and triplets masked every ``deltaT`` steps); at
        ``total_step - tfinal`` the final ``rank_pattern`` is fixed; afterwards it is re-applied each step.

        Raises:
            ValueError: if no adapter is trainable (all were added with ``inference_mode=True``), or a final-phase
                step comes before the final pattern was fixed.
        """
        name = getattr(self, "trainable_adapter_name", None)
        if name is None:
            raise ValueError(
                "update_and_allocate needs a trainable AdaLoRA adapter; all adapters are in inference mode."
            )
        config = self.peft_config[name]
        final_step = config.total_step - config.tfinal
        if global_step < final_step:
            _, rank_pattern = self.rankallocator.update_and_allocate(self.model, global_step)
            if rank_pattern:
                config.rank_pattern = rank_pattern
        elif global_step == final_step:
            _, rank_pattern = self.rankallocator.update_and_allocate(self.model, global_step, force_mask=True)
            config.rank_pattern = rank_pattern
            self.rankallocator.reset_ipt()
        elif config.rank_pattern is None:
            raise ValueError(
                f"Step {global_step} is in the final phase but no rank_pattern was fixed: call update_and_allocate "
                f"at every step, including step total_step - tfinal = {final_step}."
            )
        else:
            self.rankallocator.mask_using_rank_pattern(self.model, config.rank_pattern)

    # ------------------------------------------------------------------------------------------ pruned ranks
    def resize_modules_by_rank_pattern(self, rank_pattern: dict, adapter_name: str) -> None:
        """Shrink each layer of ``adapter_name`` to the triplets ``rank_pattern`` keeps (values and ``ranknum``
        preserved)."""
        _resize_layers(self.model, rank_pattern, adapter_name)

    def resize_state_dict_by_rank_pattern(
        self, rank_pattern: dict, state_dict: dict[str, torch.Tensor], adapter_name: str
    ) -> dict[str, torch.Tensor]:
        """``state_dict`` (keys as in ``PeftModel.state_dict()``) with ``adapter_name``'s factors cut to the
        triplets ``rank_pattern`` keeps."""
        return _pruned_state_dict(
            self.model, rank_pattern, adapter_name, state_dict, lambda live: _PEFT_MODEL_PREFIX + live
        )

    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: AdaLoraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Only the kept triplets go into the checkpoint, and ``rank_pattern`` is recorded without the adapter name
        (as peft 0.21.2 writes it)."""
        if config.rank_pattern is None:
            return state_dict
        config.rank_pattern = {_without_adapter_name(k, adapter_name): v for k, v in config.rank_pattern.items()}
        file_keys = {live: file for file, live in adapter_key_map(model, adapter_name).items()}
        inner, prefix = _tuner_model(model)
        return _pruned_state_dict(
            inner, config.rank_pattern, adapter_name, state_dict, lambda live: file_keys.get(prefix + live)
        )

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: AdaLoraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """A checkpoint with a ``rank_pattern`` holds only the kept triplets, so the layers shrink to them before
        loading (``ranknum`` keeps the initial rank, which the scaling was trained with)."""
        if config.rank_pattern is not None:
            _resize_layers(_tuner_model(model)[0], config.rank_pattern, adapter_name)
        return state_dict


def _tuner_model(model: nn.Module) -> tuple[nn.Module, str]:
    """The model that rank pattern names are relative to, and its path prefix within ``model``."""
    if isinstance(model, BaseTuner):
        return model.model, "model."
    tuner = getattr(model, "base_model", None)
    if isinstance(tuner, BaseTuner):
        return tuner.model, _PEFT_MODEL_PREFIX
    return model, ""


def _without_adapter_name(key: str, adapter_name: str) -> str:
    suffix = f".lora_E.{adapter_name}"
    return key[: -len(adapter_name) - 1] if key.endswith(suffix) else key


def _resize_layers(model: nn.Module, rank_pattern: dict, adapter_name: str) -> None:
    for path, layer in list(adalora_layers(model, adapter_name)):
        mask = lookup_rank_mask(rank_pattern, path, adapter_name)
        # a layer already holding only the kept triplets stays as it is
        if mask is not None and len(mask) == layer.lora_E[adapter_name].shape[0] and not all(mask):
            layer._keep_triplets(adapter_name, mask)


def _pruned_state_dict(
    model: nn.Module,
    rank_pattern: dict,
    adapter_name: str,
    state_dict: dict[str, torch.Tensor],
    key_of: Callable[[str], str | None],
) -> dict[str, torch.Tensor]:
    """``state_dict`` with the factors of each AdaLoRA layer of ``model`` cut to the kept triplets; ``key_of`` maps
    a live parameter name (relative to ``model``) to its key in ``state_dict``."""
    state_dict = dict(state_dict)
    for path, _ in adalora_layers(model, adapter_name):
        mask = lookup_rank_mask(rank_pattern, path, adapter_name)
        if mask is None:
            continue
        keep = torch.as_tensor(mask, dtype=torch.bool).nonzero().view(-1)
        for attr, dim in (("lora_E", 0), ("lora_A", 0), ("lora_B", 1)):
            key = key_of(_param_name(path, attr, adapter_name))
            tensor = state_dict.get(key) if key is not None else None
            # tensors already holding only the kept triplets (a pruned adapter loaded again) stay as they are
            if tensor is not None and tensor.shape[dim] == len(mask) != len(keep):
                state_dict[key] = tensor.index_select(dim, keep.to(tensor.device))
    return state_dict
