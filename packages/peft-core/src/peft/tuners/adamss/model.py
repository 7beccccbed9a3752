"""``AdamssModel``: injects AdaMSS layers; the lifecycle is the shared ``BaseTuner`` one.

Why a model file with more than registration: ASA (adaptive subspace allocation) ranks the subspaces of all layers
together, so its schedule lives on the model (``update_and_allocate``, called once per training step).
"""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.adamss.config import AdamssConfig
from peft.tuners.adamss.layer import AdamssLayer, Linear
from peft.tuners.tuners_layer import walk_modules
from peft.tuners.tuners_utils import BaseTuner


class AdamssModel(BaseTuner):
    """Creates AdaMSS adapters on a model (see ``AdamssConfig``).

    Example:
        >>> from peft import AdamssConfig, get_peft_model
        >>> model = get_peft_model(model, AdamssConfig(r=100, num_subspaces=5, target_modules=["query", "value"]))
        >>> for step, batch in enumerate(loader):  # with use_asa=True
        ...     model(**batch).loss.backward()
        ...     optimizer.step()
        ...     model.base_model.update_and_allocate(step)
        ...     optimizer.zero_grad()
    """

    tuner_layer_cls = AdamssLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = (
        "r",
        "num_subspaces",
        "subspace_rank",
        "init_weights",
        "use_asa",
        "use_dynamic_rank",
        "svd_threshold",
        "random_seed",
    )

    # ------------------------------------------------------------------------------------------ ASA
    def _asa_layers(self, adapter_name: str) -> list[AdamssLayer]:
        return [
            module
            for _, module in walk_modules(self.model)
            if isinstance(module, AdamssLayer) and adapter_name in module.exp_avg_ipt_A
        ]

    def update_and_allocate(self, global_step: int) -> None:
        """One ASA step for each active adapter created with ``use_asa``: call it every training step after
        ``loss.backward()`` and before ``optimizer.zero_grad()``.

        Between ``init_warmup`` and ``final_warmup`` the gradients are folded into each subspace's importance; every
        ``mask_interval`` steps the subspaces of all layers are ranked together, only the scheduled number of the
        most important stays trainable, and the importance is reset.

        Args:
            global_step: the current training step.
        """
        for adapter_name in self.active_adapters:
            config = self.peft_config[adapter_name]
            if not config.use_asa or not config.init_warmup <= global_step <= config.final_warmup:
                continue
            layers = self._asa_layers(adapter_name)
            for layer in layers:
                layer.update_importance(adapter_name, config.asa_importance_beta, config.asa_uncertainty_beta)
            if global_step % config.mask_interval == 0:
                count = self._scheduled_subspaces(global_step, config, adapter_name, layers)
                self._keep_most_important(adapter_name, count, layers)
                for layer in layers:
                    layer.reset_importance(adapter_name)

    @staticmethod
    def _scheduled_subspaces(step: int, config: AdamssConfig, adapter_name: str, layers: list[AdamssLayer]) -> int:
        """How many subspaces stay trainable at ``step``: from all of the adapter's subspaces at ``init_warmup``
        down to ``asa_target_subspaces`` at ``final_warmup``, along ``progress ** asa_schedule_exponent``."""
        total = sum(layer.num_subspaces[adapter_name] for layer in layers)
        if step > config.final_warmup:
            return config.asa_target_subspaces
        remaining = 1.0 - (step - config.init_warmup) / (config.final_warmup - config.init_warmup)
        remaining = max(0.0, min(1.0, remaining))
        target = config.asa_target_subspaces
        return int(target + (total - target) * remaining**config.asa_schedule_exponent)

    @staticmethod
    def _keep_most_important(adapter_name: str, count: int, layers: list[AdamssLayer]) -> None:
        """Leave exactly the ``count`` highest-scoring subspaces (over all ``layers``) trainable and freeze the others
        (the reference keeps only those scoring above the ``count``-th score, one fewer than its documentation says).
        """
        scored = [(layer, index, score) for layer in layers for index, score in layer.subspace_scores(adapter_name)]
        if not scored:
            return
        kept = set(torch.stack([score for _, _, score in scored]).topk(min(count, len(scored))).indices.tolist())
        for position, (layer, index, _) in enumerate(scored):
            layer.set_subspace_trainable(adapter_name, index, position in kept)
