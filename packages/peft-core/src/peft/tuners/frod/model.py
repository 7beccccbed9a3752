"""``FrodModel``: injects FRoD layers and owns the bases they share.

Why a model file with more than registration: the layers of one role (all modules whose names end alike, e.g.
``self_attn_q_proj``) share a basis ``V`` computed from all their weights together, and the positions of ``S``; the
model computes them when an adapter is injected, keeps them per role (``frod_V``, ``frod_s_indices``,
``frod_s_size``: containers keyed by role, then adapter) and saves them once per role
(``base_model.frod_V.<role>``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from peft.quantization import get_backend, resolve_quantization_backend
from peft.tuners._shared_projections import SharedBufferDict
from peft.tuners._targeting import TransformersConv1D, is_transformers_conv1d
from peft.tuners.frod.config import FrodConfig
from peft.tuners.frod.layer import FrodLayer, Linear
from peft.tuners.tuners_layer import BaseTunerLayer, walk_modules
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.distributed import read_whole
from peft.utils.error import check_tensor_fits
from peft.utils.warnings import warn

_PROJECTION_NAMES = ("frod_V", "frod_s_indices", "frod_s_size")
# settings all adapters of a model must share -> the sentence saying so (formatted with the sorted ``values``, the
# ``new`` adapter's value and a ``previous`` one)
_MIXED_SETTING_MESSAGES = {
    "projection_prng_key": "FRoD projection initialization key must be the same for all adapters. Got "
    "config.projection_prng_key={new} but previous config had {previous}.",
    "save_projection": "FRoD projection weights must be saved for all adapters or none, but got multiple different "
    "values: {values}.",
    "runtime_offload_base_weight": "FRoD runtime base-weight offloading must be enabled for all adapters or none, "
    "but got multiple different values: {values}.",
}


def role_of(key: str) -> str:
    """The role of module ``key`` that decides which basis it shares: its last two name segments joined by ``_``
    (the last one alone after a layer number); BERT's attention output ``...attention.output.dense`` is
    ``attention_output``, so that it does not share the MLP's ``output.dense`` basis."""
    parts = key.split(".")
    if len(parts) == 1:
        return parts[0]
    if parts[-2].isdigit():
        return parts[-1]
    role = f"{parts[-2]}_{parts[-1]}"
    if role == "output_dense" and len(parts) >= 3 and parts[-3] == "attention":
        return "attention_output"
    return role


def block_index(key: str, fallback: int) -> int:
    """The transformer block of module ``key``: the number after a ``layers`` segment, else the first number in the
    name, else ``fallback``."""
    parts = key.split(".")
    if "layers" in parts:
        position = parts.index("layers") + 1
        if position < len(parts) and parts[position].isdigit():
            return int(parts[position])
    return next((int(part) for part in parts if part.isdigit()), fallback)


def shared_basis(weights: list[torch.Tensor], regularization_alpha: float) -> torch.Tensor:
    """The ``in x in`` basis shared by ``(out_i, in)`` float32 weights: the right singular vectors of the stacked
    weights when they have fewer rows than columns; else ``R^T E`` from the QR ``[W_1; W_2; ...] = Q R``, with ``E``
    the eigenvectors of the mean of ``(Q_i^T Q_i + alpha I)^-1`` over the blocks ``Q_i`` of ``Q``."""
    stacked = torch.cat(weights, dim=0)
    if stacked.shape[0] < stacked.shape[1]:
        return torch.linalg.svd(stacked, full_matrices=True).Vh.T
    q, r = torch.linalg.qr(stacked)
    dim = r.shape[1]
    eye = torch.eye(dim, dtype=r.dtype)
    mean_inverse = torch.zeros((dim, dim), dtype=r.dtype)
    for block in torch.split(q, [w.shape[0] for w in weights]):
        mean_inverse += torch.linalg.inv(block.T @ block + regularization_alpha * eye)
    mean_inverse /= len(weights)
    return r.T @ torch.linalg.eigh(mean_inverse).eigenvectors


def sparse_positions(dim: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """``(2, n)`` positions of the trained entries of a ``dim x dim`` ``S``: ``n = int(dim^2 * rate)`` (at least 1
    when ``rate > 0``) off-diagonal entries drawn without replacement by ``generator``."""
    rows, cols = torch.meshgrid(torch.arange(dim), torch.arange(dim), indexing="ij")
    pairs = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    off_diagonal = pairs[pairs[:, 0] != pairs[:, 1]]
    count = min(int(dim * dim * rate), off_diagonal.shape[0])
    if rate > 0 and off_diagonal.shape[0] > 0:
        count = max(1, count)
    if not count:
        return torch.empty(2, 0, dtype=torch.long)
    chosen = torch.randperm(off_diagonal.shape[0], generator=generator)[:count]
    return off_diagonal[chosen].T.contiguous()


class FrodModel(BaseTuner):
    """Creates FRoD adapters on a model (see ``FrodConfig``)."""

    # the bases live on the tuner: injecting into a bare model (transformers' add_adapter) cannot keep them
    uses_shared_state = True
    tuner_layer_cls = FrodLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("frod_dropout", "init_weights", "runtime_offload_base_weight")

    # ------------------------------------------------------------------------------------------ shared bases
    def _containers(self, config: FrodConfig) -> dict[str, nn.ModuleDict]:
        """The model's ``{role: {adapter: tensor}}`` containers, created on first use."""
        if "frod_V" not in self._modules:
            for name in _PROJECTION_NAMES:
                setattr(self, name, nn.ModuleDict())
        return {name: self._modules[name] for name in _PROJECTION_NAMES}

    def _select_targets(
        self, model: nn.Module, peft_config: FrodConfig, state_dict: dict[str, torch.Tensor] | None
    ) -> list[str]:
        targets = super()._select_targets(model, peft_config, state_dict)
        adapter_name = next(name for name, config in self.peft_config.items() if config is peft_config)
        self._build_projections(model, peft_config, adapter_name, targets)
        return targets

    def _build_projections(self, model: nn.Module, config: FrodConfig, adapter_name: str, targets: list[str]) -> None:
        """Compute the basis and the positions of ``S`` of every role among ``targets`` for ``adapter_name``."""
        from tqdm.auto import tqdm

        by_block: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for fallback, key in enumerate(targets):
            layer = model.get_submodule(key)
            base = layer.get_base_layer() if isinstance(layer, BaseTunerLayer) else layer
            weight = _weight_out_in(base)
            if weight is not None:
                # one weight per role and block, as the reference groups them (the last one wins)
                by_block[block_index(key, fallback)][role_of(key)] = weight
        if not by_block:
            raise ValueError(
                "No layer types compatible with FRoD were found. Please check `peft_config.target_modules`."
            )
        containers = self._containers(config)
        generator = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
        roles = sorted({role for weights in by_block.values() for role in weights})
        for role in tqdm(roles, disable=not config.progressbar, desc="FRoD hierarchical joint decomposition"):
            weights = [weights[role] for _, weights in sorted(by_block.items()) if role in weights]
            example = weights[0]
            basis = shared_basis([w.detach().float().cpu() for w in weights], config.regularization_alpha)
            dim = basis.shape[0]
            tensors = {
                "frod_V": basis.to(dtype=example.dtype),
                "frod_s_indices": sparse_positions(dim, config.sparse_rate, generator),
                "frod_s_size": torch.tensor([dim, dim], dtype=torch.long),
            }
            for name, tensor in tensors.items():
                if role not in containers[name]:
                    containers[name][role] = SharedBufferDict(persistent=config.save_projection)
                containers[name][role][adapter_name] = _existing_equal(containers[name][role], tensor)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        role = role_of(target.key)
        containers = self._containers(target.config)
        projections = {name: containers[name][role] for name in _PROJECTION_NAMES}
        return {"projections": projections, **super()._layer_kwargs(target)}

    # ------------------------------------------------------------------------------------------ lifecycle
    def _check_new_adapter_config(self, config: FrodConfig) -> None:
        """All adapters of a model draw their positions from one key and save their bases alike.

        Raises:
            ValueError: if the new adapter's ``projection_prng_key``, ``save_projection`` or
                ``runtime_offload_base_weight`` differs from the others'.
        """
        super()._check_new_adapter_config(config)
        for name, lead in _MIXED_SETTING_MESSAGES.items():
            values = sorted({getattr(c, name) for c in self.peft_config.values()})
            if len(values) > 1:
                previous = next(getattr(c, name) for c in self.peft_config.values() if c is not config)
                lead = lead.format(values=values, new=getattr(config, name), previous=previous)
                raise ValueError(f"{lead} FRoD `{name}` must be the same for all adapters of a model, got {values}.")

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter everywhere, its bases included (see ``BaseTuner``)."""
        super().delete_adapter(adapter_name)
        for name in _PROJECTION_NAMES:
            for per_role in self._modules.get(name, {}).values():
                if adapter_name in per_role:
                    del per_role[adapter_name]

    # ------------------------------------------------------------------------------------------ checkpoints
    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: FrodConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """With ``save_projection`` each role's bases are saved once, as ``base_model.frod_V.<role>`` (and
        ``frod_s_indices``, ``frod_s_size``)."""
        if not config.save_projection:
            return state_dict
        prefix, tuner = cls._find_tuner(model)
        for name in _PROJECTION_NAMES:
            for role, per_adapter in tuner._modules[name].items():
                if adapter_name in per_adapter:
                    state_dict[f"{prefix}{name}.{role}"] = per_adapter[adapter_name]
        return state_dict

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: FrodConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Install the checkpoint's bases (``save_projection``) and rebuild the layers' ``U`` from them, or warn that
        they are computed again from the base weights.

        Raises:
            ValueError: if ``save_projection`` is set but the checkpoint holds no bases.
        """
        prefix, tuner = cls._find_tuner(model)
        loaded: dict[str, dict[str, torch.Tensor]] = {name: {} for name in _PROJECTION_NAMES}
        for key in list(state_dict):
            for name in _PROJECTION_NAMES:
                if key.startswith(f"{prefix}{name}."):
                    loaded[name][key[len(prefix) + len(name) + 1 :]] = state_dict.pop(key)
        if not config.save_projection:
            if any(loaded.values()):
                warn(
                    "Specified to not load FRoD projection tensors from state dictionary however they are present. "
                    "Consider using them to ensure checkpoint loading is correct by setting "
                    "`peft_config.save_projection = True`."
                )
            return state_dict
        if not loaded["frod_V"]:
            raise ValueError(
                "Specified to load FRoD projection tensors from state dictionary however they were not present. If "
                "this checkpoint was saved with `save_projection=False`, set `peft_config.save_projection` to `False` "
                "before loading so the projections are regenerated from the base model weights."
            )
        for name, per_role in loaded.items():
            for role, tensor in per_role.items():
                if role in tuner._modules[name] and adapter_name in tuner._modules[name][role]:
                    current = tuner._modules[name][role][adapter_name]
                    live_key = f"{name}.{role}.{adapter_name}"
                    check_tensor_fits(f"{prefix}{name}.{role}", live_key, tensor, current, adapter_name)
                    tensor = tensor.to(device=current.device, dtype=current.dtype)
                    tuner._modules[name][role][adapter_name] = _existing_equal(tuner._modules[name][role], tensor)
        for _, module in walk_modules(tuner.model):
            if isinstance(module, FrodLayer) and module._has_adapter(adapter_name):
                module.refresh_decomposition(adapter_name)
        return state_dict


def _existing_equal(per_adapter: SharedBufferDict, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor another adapter already holds for this role if it equals ``tensor`` (adapters with the same key on
    the same weights share one copy), else ``tensor``."""
    for existing in per_adapter.values():
        if existing.shape == tensor.shape and existing.dtype == tensor.dtype:
            if torch.equal(existing, tensor.to(existing.device)):
                return existing
    return tensor


def _weight_out_in(base: nn.Module) -> torch.Tensor | None:
    """The ``(out, in)`` weight of a linear layer or transformers' ``Conv1D``, through its quantization backend."""
    if is_transformers_conv1d(base):
        return _whole_weight(base).T
    if isinstance(base, nn.Linear) or resolve_quantization_backend(base) is not None:
        return _whole_weight(base)
    return None


def _whole_weight(base: nn.Module) -> torch.Tensor:
    """The dequantized weight, gathered when ZeRO-3 partitions it."""
    return read_whole(base, "weight", lambda: get_backend(base).get_weight(base))
