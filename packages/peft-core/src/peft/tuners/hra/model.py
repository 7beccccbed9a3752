"""``HRAModel``: injects HRA layers; beyond the declarative recipe, it offers the orthogonality regulariser of the
reflection vectors (``orthogonality_loss``)."""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners.hra.layer import Conv2d, HRALayer, Linear
from peft.tuners.tuners_utils import BaseTuner


class HRAModel(BaseTuner):
    """Creates HRA adapters on a model (see ``HRAConfig``; paper: https://huggingface.co/papers/2405.17484).

    Example:
        >>> from peft import HRAConfig, get_peft_model
        >>> model = get_peft_model(model, HRAConfig(r=8, target_modules=["q_proj", "v_proj"]))
        >>> loss = task_loss + model.orthogonality_loss(weight=1e-4)  # optional regulariser
    """

    tuner_layer_cls = HRALayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Linear: Linear}
    layer_options = ("r", "apply_GS", "init_weights")

    def orthogonality_loss(self, weight: float = 1.0, adapter_name: str | None = None) -> torch.Tensor:
        """``weight`` (the paper's lambda) times the mean over adapted layers of ``||U^T U - I||_F^2``, the deviation
        of the normalised reflection vectors from mutual orthogonality; add it to the training loss.

        Args:
            weight: the regularisation strength.
            adapter_name: the adapter to regularise (default: the active adapters; the mean runs over every
                layer-adapter pair).

        Raises:
            ValueError: if no layer holds the adapter(s).
        """
        names = self.active_adapters if adapter_name is None else [adapter_name]
        losses = [
            module.orthogonality_loss(name)
            for module in self.model.modules()
            if isinstance(module, HRALayer)
            for name in names
            if name in module.hra_u
        ]
        if not losses:
            raise ValueError(f"No HRA layer holds adapter(s) {names}; adapters present: {sorted(self.peft_config)}.")
        return weight * torch.stack(losses).mean()
