"""``UniLoraModel``: injects UniLoRA layers around one shared trainable vector per adapter, assigns every layer's
indices into it, and stores checkpoints in the reference layout.

Why a model file with more than registration: ``theta_d`` belongs to the model (``base_model.unilora_theta_d``, saved
once, not per layer), and the indices are assigned across all layers at once (each entry of ``theta_d`` used equally
often), which no single layer can do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.tuners_layer import walk_modules
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.tuners.unilora.config import UniLoraConfig
from peft.tuners.unilora.layer import Linear, UniLoraLayer

_THETA_D = "unilora_theta_d"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # numpy's generator defines the indices of every UniLoRA checkpoint
        raise ImportError(
            "UniLoRA draws its indices with numpy's random generator (as the checkpoints it loads were drawn); "
            "install numpy (`pip install numpy`), or use adapters saved with save_indices=True."
        ) from exc
    return numpy


class UniLoraModel(BaseTuner):
    """Creates UniLoRA adapters on a model (see ``UniLoraConfig``; paper: https://arxiv.org/abs/2506.00799).

    ``unilora_theta_d`` holds one vector per adapter; every UniLoRA layer refers to it.
    """

    tuner_layer_cls = UniLoraLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "unilora_dropout", "save_indices")
    shared_containers = (_THETA_D,)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        return {**super()._layer_kwargs(target), "theta_d": self.unilora_theta_d}

    def _create_adapter_modules(
        self,
        model: nn.Module,
        peft_config: UniLoraConfig,
        adapter_name: str,
        low_cpu_mem_usage: bool,
        state_dict: dict[str, torch.Tensor] | None,
    ) -> None:
        if _THETA_D not in self._modules:
            self.unilora_theta_d = nn.ParameterDict()
        if peft_config.init_weights:
            bound = peft_config.init_theta_d_bound
            theta_d = torch.empty(peft_config.theta_d_length).uniform_(-bound, bound)
        else:
            theta_d = torch.randn(peft_config.theta_d_length)
        self.unilora_theta_d[adapter_name] = nn.Parameter(theta_d)
        try:
            super()._create_adapter_modules(model, peft_config, adapter_name, low_cpu_mem_usage, state_dict)
            self._assign_indices(peft_config, adapter_name)
        except Exception:
            if adapter_name in self.unilora_theta_d:
                del self.unilora_theta_d[adapter_name]
            raise

    @staticmethod
    def generate_index(lora_param_count: int, theta_d_length: int, proj_seed: int) -> torch.Tensor:
        """Which entry of ``theta_d`` each of ``lora_param_count`` factor entries uses: every entry of ``theta_d``
        ``floor(count / length)`` times, the remainder on distinct entries chosen at random, all shuffled, with numpy's
        generator seeded by ``proj_seed`` (the reference's draw, so checkpoints without indices load identically).

        Raises:
            ValueError: for a negative count or a non-positive length.
        """
        if lora_param_count < 0:
            raise ValueError(f"lora_param_count must be non-negative, got {lora_param_count}.")
        if theta_d_length <= 0:
            raise ValueError(f"theta_d_length must be positive, got {theta_d_length}.")
        numpy = _numpy()
        generator = numpy.random.default_rng(proj_seed)
        full_rounds, remainder = divmod(lora_param_count, theta_d_length)
        indices = numpy.repeat(numpy.arange(theta_d_length), full_rounds)
        if remainder:
            extra = generator.choice(theta_d_length, size=remainder, replace=False)
            indices = numpy.concatenate([indices, extra])
        generator.shuffle(indices)
        return torch.as_tensor(indices, dtype=torch.long)

    def _assign_indices(self, config: UniLoraConfig, adapter_name: str) -> None:
        """Give every layer of ``adapter_name`` its indices (``A`` then ``B``, layer after layer in module order) and
        scales (``1 / sqrt(uses)`` of each entry)."""
        layers = [
            module
            for _, module in walk_modules(self.model)
            if isinstance(module, UniLoraLayer) and module._has_adapter(adapter_name)
        ]
        shapes = [
            (tuple(layer.unilora_indices_A[adapter_name].shape), tuple(layer.unilora_indices_B[adapter_name].shape))
            for layer in layers
        ]
        count = sum(shape_a[0] * shape_a[1] + shape_b[0] * shape_b[1] for shape_a, shape_b in shapes)
        if not count:
            return
        indices = self.generate_index(count, config.theta_d_length, config.proj_seed)
        uses = torch.bincount(indices, minlength=config.theta_d_length).float()
        inverse_sqrt_uses = torch.where(uses > 0, uses.rsqrt(), torch.zeros_like(uses))
        start = 0
        for layer, shape_pair in zip(layers, shapes):
            layer_indices = {}
            for factor, shape in zip(("A", "B"), shape_pair):
                size = shape[0] * shape[1]
                layer_indices[factor] = indices[start : start + size].view(shape)
                start += size
            scales = {factor: inverse_sqrt_uses[values] for factor, values in layer_indices.items()}
            layer.assign_indices(adapter_name, layer_indices, scales)
