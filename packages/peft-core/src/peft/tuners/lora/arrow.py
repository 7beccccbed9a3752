"""Arrow routing over trained LoRA adapters, with GenKnowSub (``create_arrow_model``, ``arrow_config``).

The task adapters ("experts") ``e`` of a layer each get a prototype ``p_e``: the leading right singular vector of
``B_e A_e`` (found by power iteration, 15 steps from a random start). Per token ``x``, the router adapter adds

    sum_{e in top_k(|x . p_e|)} softmax_e(|x . p_e| / T) * s_e * B_e A_e x

(then its own dropout). With GenKnowSub (``use_gks``), the mean ``A`` and mean ``B`` of the general adapters are
subtracted from every task adapter's factors before the first routing. The router itself is a LoRA adapter
(``"arrow_router"``) whose variant holds this routing; its own factors are not used. Adapters added to the model
later join the experts at the next forward pass (and get GenKnowSub if it is on). Routing per token cannot be
merged into the weights.
"""

from __future__ import annotations

from typing import Any

import torch

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant, variant_state
from peft.tuners.lora.variant_configs import ArrowConfig
from peft.utils.reference_paths import reference_path_getattr

TASK_ADAPTER_PREFIX = "task_"
GKS_ADAPTER_PREFIX = "gks_"
ROUTER_ADAPTER_NAME = "arrow_router"
_POWER_ITERATIONS = 15
_EPS = 1e-8


def leading_right_singular_vector(
    weight_a: torch.Tensor, weight_b: torch.Tensor, seed: int | None = None
) -> torch.Tensor:
    """The leading right singular vector of ``B A`` (fp32, sign arbitrary), by power iteration on ``A^T (B^T B) A``
    without forming ``B A``; ``seed`` seeds the random start (None: the global generator)."""
    weight_a, weight_b = weight_a.float(), weight_b.float()
    gram_b = weight_b.T @ weight_b
    generator = None
    if seed is not None:
        generator = torch.Generator(device=weight_a.device.type).manual_seed(int(seed))
    vector = torch.randn(weight_a.shape[1], device=weight_a.device, generator=generator)
    vector = vector / (vector.norm() + _EPS)
    for _ in range(_POWER_ITERATIONS):
        vector = weight_a.T @ (gram_b @ (weight_a @ vector))
        vector = vector / (vector.norm() + _EPS)
    return vector


class _RouterState:
    """What a router adapter keeps on one layer: its settings, the experts it routes over and their prototypes."""

    def __init__(self, config: ArrowConfig) -> None:
        self.config = config
        self.experts: list[str] = []
        self.prototypes: torch.Tensor | None = None
        self.subtracted: set[str] = set()  # experts GenKnowSub has been applied to


def _experts_of(module: LoraLayer, router: str, state: _RouterState) -> list[str]:
    """The layer's task adapters: all but the routers and the general adapters, in order of creation."""
    general = set(state.config.gks_adapter_names or [])
    routers = set(getattr(module, "_arrow", {}))
    return [name for name in module.lora_A if name not in general and name not in routers and name in module.lora_B]


@torch.no_grad()
def _refresh(module: LoraLayer, router: str, state: _RouterState) -> None:
    """Apply GenKnowSub to experts that have not had it, and rebuild the prototypes when the experts changed."""
    experts = _experts_of(module, router, state)
    if not experts:
        raise ValueError(f"Arrow router {router!r} has no task adapters to route over on this layer.")
    if state.config.use_gks and any(name not in state.subtracted for name in experts):
        general = state.config.gks_adapter_names or []
        mean_a = torch.stack([module.lora_A[n].weight for n in general]).mean(0)
        mean_b = torch.stack([module.lora_B[n].weight for n in general]).mean(0)
        for name in experts:
            if name not in state.subtracted:
                module.lora_A[name].weight.sub_(mean_a)
                module.lora_B[name].weight.sub_(mean_b)
                state.subtracted.add(name)
        state.prototypes = None
    device = module.lora_A[experts[0]].weight.device
    if experts != state.experts or state.prototypes is None or state.prototypes.device != device:
        prototypes = [
            leading_right_singular_vector(module.lora_A[n].weight, module.lora_B[n].weight, state.config.rng_seed)
            for n in experts
        ]
        state.prototypes = torch.stack(prototypes).to(module.lora_A[experts[0]].weight.dtype)
        state.experts = experts


class ArrowVariant(AdditiveLoraVariant):
    """The Arrow router on LoRA ``Linear`` layers."""

    mergeable = False
    merge_refusal = "Cannot merge an active Arrow router adapter: it mixes the task adapters per token."

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, arrow_config: ArrowConfig | None = None, **kwargs: Any) -> None:
        variant_state(module, "_arrow", dict)[adapter_name] = _RouterState(arrow_config)

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        state = module._arrow[adapter_name]
        _refresh(module, adapter_name, state)
        weights_a = torch.stack([module.lora_A[n].weight for n in state.experts])  # (E, r, in)
        weights_b = torch.stack([module.lora_B[n].weight for n in state.experts])  # (E, out, r)
        scalings = torch.tensor([float(module.scaling[n]) for n in state.experts], dtype=weights_a.dtype)
        tokens = module._cast_input_dtype(x, weights_a.dtype).reshape(-1, x.shape[-1])
        similarity = (tokens @ state.prototypes.T).abs()  # (t, E), sign-agnostic
        top_values, top_experts = similarity.topk(min(state.config.top_k, len(state.experts)), dim=1)
        coefficients = torch.zeros_like(similarity).scatter_(
            1, top_experts, torch.softmax(top_values / state.config.router_temperature, dim=1)
        )
        per_expert = torch.einsum("ter,eor->teo", torch.einsum("ti,eri->ter", tokens, weights_a), weights_b)
        update = torch.einsum("te,teo->to", coefficients * scalings.to(tokens.device), per_expert)
        return module.lora_dropout[adapter_name](update).reshape(*x.shape[:-1], -1)


register_lora_variant("arrow_config", ArrowVariant, ["Linear"])


# create_arrow_model builds a PeftModel, a layer above the methods; the reference's path of it resolves here
__getattr__ = reference_path_getattr(__name__, {"create_arrow_model": "peft.arrow_model"})
