"""``VBLoRAModel``: injects VB-LoRA layers around one shared vector bank per adapter, and stores checkpoints in the
reference layout.

Why a model file with more than registration: the bank belongs to the model (``base_model.vblora_vector_bank``,
saved once, not per layer), and ``save_only_topk_weights`` checkpoints store the logits compressed to their top-k
softmax weights and indices (``<module>.vblora_logits_A_topk_weights`` / ``_topk_indices``), rebuilt on loading
with ``-inf`` for every other logit. Both are translated in the two checkpoint-layout hooks of ``BaseTuner``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.adapter_keys import shared_tensors_from_file
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.tuners.vblora.config import VBLoRAConfig
from peft.tuners.vblora.layer import Linear, VBLoRALayer
from peft.utils.error import CheckpointMismatchError
from peft.utils.warnings import warn

VECTOR_BANK_FILE_KEY = "base_model.vblora_vector_bank"
_LOGITS = ("vblora_logits_A", "vblora_logits_B")
_BANK = "vblora_vector_bank"
_TOPK_INDICES = tuple(f"{name}_topk_indices" for name in _LOGITS)


def topk_indices_dtype(num_vectors: int) -> torch.dtype:
    """The smallest integer dtype that holds indices below ``num_vectors`` (as the reference saves them)."""
    if num_vectors < 2**8:
        return torch.uint8
    if num_vectors < 2**15:
        return torch.int16
    if num_vectors < 2**31:
        return torch.int32
    return torch.int64


def logits_from_topk(weights: torch.Tensor, indices: torch.Tensor, num_vectors: int) -> torch.Tensor:
    """Logits whose top-k softmax is ``weights`` (the last of the k implied: they sum to one) at ``indices``, and
    ``-inf`` elsewhere, so the top-k selection and its softmax are exactly those of the saved adapter."""
    weights = torch.cat([weights, 1 - weights.sum(-1, keepdim=True)], dim=-1)
    logits = torch.full((*weights.shape[:-1], num_vectors), float("-inf"), dtype=weights.dtype, device=weights.device)
    return logits.scatter(-1, indices.long(), weights.log())


def _split_key(key: str) -> tuple[str, str]:
    """``(module path with trailing dot, or "", last key segment)``."""
    path, _, name = key.rpartition(".")
    return (path + "." if path else ""), name


class VBLoRAModel(BaseTuner):
    """Creates VB-LoRA adapters on a model (see ``VBLoRAConfig``; paper: https://huggingface.co/papers/2405.15179).

    ``vblora_vector_bank`` holds one bank per adapter; every VB-LoRA layer refers to it.

    Example:
        >>> from peft import VBLoRAConfig, get_peft_model
        >>> config = VBLoRAConfig(r=4, num_vectors=60, vector_length=256, target_modules=["q_proj", "v_proj"])
        >>> model = get_peft_model(model, config)
        >>> model.print_savable_parameters()
    """

    tuner_layer_cls = VBLoRALayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = (
        "r",
        "topk",
        "num_vectors",
        "vector_length",
        "vblora_dropout",
        "init_logits_std",
        "init_vector_bank_bound",
    )

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        if "vblora_vector_bank" not in self._modules:
            self.vblora_vector_bank = nn.ParameterDict()
        # a failed injection needs no cleanup here: deleting the adapter from the layers created so far (the base
        # class does) removes its bank, one of their adapter containers
        super().inject_adapter(model, adapter_name, *args, **kwargs)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        return {**super()._layer_kwargs(target), "vector_bank": self.vblora_vector_bank}

    # ------------------------------------------------------------------------------------------ savable size
    def get_nb_savable_parameters(self, adapter: str = "default") -> tuple[int, int]:
        """``(VB-LoRA values to save as float32 equivalents, other trainable values to save)`` for ``adapter``;
        with ``save_only_topk_weights`` the logits count as their ``topk - 1`` weights plus ``topk`` indices (in the
        index dtype's share of 4 bytes)."""
        config = self.peft_config[adapter]
        logits = 0
        for module in self.model.modules():
            if isinstance(module, VBLoRALayer) and adapter in module.vblora_logits_A:
                logits += module.vblora_logits_A[adapter].numel() + module.vblora_logits_B[adapter].numel()
        bank = self.vblora_vector_bank[adapter].numel() if adapter in self.vblora_vector_bank else 0
        if config.save_only_topk_weights:
            index_share = torch.empty(0, dtype=topk_indices_dtype(config.num_vectors)).element_size() / 4
            sub_vectors = logits / config.num_vectors
            vblora = int(bank + sub_vectors * (config.topk - 1) + sub_vectors * config.topk * index_share)
        else:
            vblora = bank + logits
        others = sum(p.numel() for name, p in self.named_parameters() if p.requires_grad and "vblora_" not in name)
        return vblora, others

    def print_savable_parameters(self, adapter: str = "default") -> None:
        """Print the number of VB-LoRA values to save (float32 equivalents) and the total to save."""
        vblora, others = self.get_nb_savable_parameters(adapter)
        print(
            f"VB-LoRA params to-be-saved (float32-equivalent): {vblora:,d} || total params to-be-saved: "
            f"{vblora + others:,d}"
        )

    # ------------------------------------------------------------------------------------------ checkpoint layout
    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: VBLoRAConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Per-layer views of the shared bank become one ``base_model.vblora_vector_bank``; with
        ``save_only_topk_weights`` each logits tensor becomes its top-k softmax weights (the smallest dropped: they
        sum to one) and indices."""
        result: dict[str, torch.Tensor] = {}
        bank = None
        for key, tensor in state_dict.items():
            path, name = _split_key(key)
            if name == _BANK:
                bank = tensor
            elif name in _LOGITS and config.save_only_topk_weights:
                top_logits, indices = tensor.topk(config.topk, dim=-1)
                result[f"{path}{name}_topk_indices"] = indices.to(topk_indices_dtype(config.num_vectors))
                result[f"{path}{name}_topk_weights"] = torch.softmax(top_logits, dim=-1)[..., :-1].contiguous()
            else:
                result[key] = tensor
        if bank is not None:
            result[VECTOR_BANK_FILE_KEY] = bank
        return result

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: VBLoRAConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`_adapter_state_dict_to_file`: the bank goes to every layer's view of it, top-k
        weights and indices become full logits (``-inf`` outside the top-k, so forward and merge are unchanged)."""
        topk_files = [key for key in state_dict if _split_key(key)[1] in _TOPK_INDICES]
        if topk_files and not config.inference_mode:
            warn(
                "This VB-LoRA checkpoint was saved with save_only_topk_weights=True: it can be used for inference and "
                "merging, but training it further is refused."
            )
        for key in topk_files:
            logits_key = key.removesuffix("_topk_indices")
            weights, indices = state_dict.pop(f"{logits_key}_topk_weights", None), state_dict.pop(key)
            if weights is None:
                raise CheckpointMismatchError(
                    f"The checkpoint has {key!r} but not {logits_key + '_topk_weights'!r}, written with it.",
                    missing_keys=[f"{logits_key}_topk_weights"],
                )
            state_dict[logits_key] = logits_from_topk(weights, indices, config.num_vectors)
        return shared_tensors_from_file(model, adapter_name, state_dict, _BANK)
