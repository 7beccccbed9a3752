"""MonteCLoRA (``LoraConfig(monteclora_config=MontecloraConfig(...))``) as a ``LoraVariant``.

In training, ``A`` is replaced by a mixture of ``K = num_samples`` noisy copies of it:

    A' = sum_k w_k (A + c * E_k),     E_k[:, j] ~ N(0, v_j)  per input feature,    w = softmax(mu + L z)

The noise variances ``v = clip(diag(S W S), 1e-3)`` come from a Wishart draw ``W`` (identity scale, ``r`` degrees
of freedom) and the learned ``S = diag(exp(std_prior))``; the mixture weights from a Gaussian (Laplace)
approximation of a Dirichlet with concentrations ``exp(expert_weights_prior)``. ``c`` is ``sample_scaler``. The last
draw of ``v`` and ``w`` is kept (buffers ``gaussian_var_prior`` and ``expert_weights``, saved with the adapter) for
``LoraModel._get_monteclora_loss()``. In eval mode, and merged, the adapter is plain LoRA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant
from peft.tuners.lora.variant_configs import MontecloraConfig
from peft.utils.warnings import warn

_VARIANCE_FLOOR = 1e-3
_EPS = 1e-6


class MontecloraSampler(nn.Module):
    """The variational parameters of one MonteCLoRA adapter on one layer, and its random draws.

    Args:
        in_features: input features of the layer (rows of ``A^T``).
        rank: the adapter's rank (columns of ``A^T``).
        config: the adapter's ``MontecloraConfig``.
    """

    def __init__(
        self,
        in_features: int,
        rank: int,
        config: MontecloraConfig,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.rank, self.config = in_features, rank, config
        samples = config.num_samples
        self.std_prior = nn.Parameter(torch.rand(rank, device=device, dtype=dtype))
        self.expert_weights_prior = nn.Parameter(torch.rand(samples, device=device, dtype=dtype))
        self.register_buffer("gaussian_var_prior", torch.eye(rank, device=device, dtype=dtype))
        self.register_buffer("expert_weights", torch.full((samples,), 1 / samples, device=device, dtype=dtype))
        self._draws: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def _next_draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standard normal noise ``(K, in, r)``, a Wishart matrix's diagonal ``(r,)`` and normal ``(K,)``; drawn
        ``buffer_size`` at a time, in fp32."""
        if not self._draws:
            count, samples = self.config.buffer_size, self.config.num_samples
            device = self.std_prior.device
            noise = torch.randn(count, samples, self.in_features, self.rank, device=device)
            mixture = torch.randn(count, samples, device=device)
            # only the diagonal of the Wishart matrix is used: its entries are independent chi-squared(r) draws
            chi2 = torch.distributions.Chi2(torch.tensor(float(self.rank), device=device))
            wishart_diagonals = chi2.sample((count, self.rank))
            self._draws = list(zip(noise.unbind(), wishart_diagonals.unbind(), mixture.unbind()))[::-1]
        return self._draws.pop()

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noise (K, in, r), mixture weights (K,))`` for one training step."""
        dtype = self.std_prior.dtype
        noise, wishart_diagonal, mixture = (t.to(dtype) for t in self._next_draw())
        variances = torch.clamp(torch.exp(2 * self.std_prior) * wishart_diagonal, min=_VARIANCE_FLOOR)
        self.gaussian_var_prior = torch.diag(variances)
        scaled_noise = self.config.sample_scaler * noise * variances.sqrt()
        concentration = torch.clamp(torch.exp(self.expert_weights_prior), min=_EPS)
        log_concentration = torch.log(concentration)
        samples = self.config.num_samples
        laplace_variance = (1 - 2 / samples) / concentration + (1 / concentration).sum() / samples**2
        laplace_std = torch.sqrt(torch.clamp(laplace_variance, min=_EPS) + _EPS)
        logits = log_concentration - log_concentration.mean() + laplace_std * mixture
        self.expert_weights = torch.softmax(logits, dim=-1)
        return scaled_noise, self.expert_weights

    def variational_loss(self) -> torch.Tensor | float:
        """``kl_loss_weight * (KL of the mixture weights + KL of the noise scales + KL of the noise) (+ entropy)``,
        from the last draw; 0 in eval mode."""
        if not self.training:
            return 0.0
        samples, rank = self.config.num_samples, self.rank
        concentration = torch.exp(self.expert_weights_prior)
        prior = torch.full_like(concentration, self.config.dirichlet_prior)
        total = concentration.sum()
        dirichlet_kl = (
            torch.lgamma(total)
            - torch.lgamma(prior.sum())
            + (torch.lgamma(concentration) - torch.lgamma(prior)).sum()
            + ((concentration - prior) * (torch.digamma(concentration) - torch.digamma(total))).sum()
        )
        log_variance = 2 * self.std_prior
        wishart_kl = 0.5 * rank * (torch.exp(log_variance).sum() - log_variance.sum()) - 0.5 * rank**2
        noise_variances = torch.clamp(self.gaussian_var_prior.diagonal(), min=_EPS)
        noise_kl = samples * 0.5 * (noise_variances.sum() - torch.log(noise_variances).sum() - rank)
        loss = self.config.kl_loss_weight * (dirichlet_kl + wishart_kl + noise_kl)
        if self.config.use_entropy:
            loss = loss + (self.expert_weights**2).sum()
        return loss

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, rank={self.rank}, num_samples={self.config.num_samples}"


class MontecloraVariant(AdditiveLoraVariant):
    """MonteCLoRA for LoRA ``Linear`` layers."""

    @staticmethod
    def init(
        module: LoraLayer, adapter_name: str, monteclora_config: MontecloraConfig | None = None, **kwargs: Any
    ) -> None:
        weight_a = module.lora_A[adapter_name].weight
        module.lora_monteclora_sampler[adapter_name] = MontecloraSampler(
            module.in_features, weight_a.shape[0], monteclora_config, device=weight_a.device, dtype=weight_a.dtype
        )

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        x = module._cast_input_dtype(module.lora_dropout[adapter_name](x), lora_a.weight.dtype)
        weight_a = lora_a.weight
        if module.training:
            noise, mixture = module.lora_monteclora_sampler[adapter_name]()
            if torch.isnan(noise).any() or torch.isnan(mixture).any():
                warn("MonteCLoRA sampling produced NaNs; this step uses the adapter without noise.")
            else:  # sum_k w_k (A^T + E_k), transposed back
                weight_a = torch.einsum("k,kir->ri", mixture, weight_a.T + noise)
        return lora_b(F.linear(x, weight_a)) * module.scaling[adapter_name]


register_lora_variant("monteclora_config", MontecloraVariant, ["Linear"])
