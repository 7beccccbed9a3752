"""One small adapter config for every non-prompt method, on the tiny model ``TinyNet``: tests that must hold for
every method (lifecycle, status, deletion) parametrize over ``METHOD_CASES``.

Each config targets ``lin0`` and ``lin1`` (16 x 16), or what the method adapts instead (layer norm, embedding).
``perturb`` moves every trainable adapter tensor off its initial value, so that each adapter changes the outputs.

Also shared by the method test files: ``per_adapter_rows`` and ``check_mixed_batch`` (what a mixed batch must give),
``close_in_float64``, and the SHiRA, RoAd and VB-LoRA configs on ``tiny_models.sequential_mlp``
(``SEQUENTIAL_MLP_CONFIGS``, ``moved_off_init``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import peft
from tests.tiny_models import sequential_mlp

DIM = 16


class TinyNet(nn.Module):
    """Token ids -> embedding -> linear -> layer norm -> linear -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, DIM)
        self.lin0 = nn.Linear(DIM, DIM)
        self.norm = nn.LayerNorm(DIM)
        self.lin1 = nn.Linear(DIM, DIM)
        self.head = nn.Linear(DIM, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lin1(self.norm(torch.relu(self.lin0(self.emb(x))))))


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().eval()


def inputs() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 4], [5, 6, 7, 19]])


_LINEAR = ["lin0", "lin1"]
METHOD_CASES: dict[str, Callable[[], peft.PeftConfig]] = {
    "lora": lambda: peft.LoraConfig(r=2, target_modules=_LINEAR),
    "dora": lambda: peft.LoraConfig(r=2, target_modules=_LINEAR, use_dora=True),
    "loha": lambda: peft.LoHaConfig(r=2, target_modules=_LINEAR),
    "lokr": lambda: peft.LoKrConfig(r=2, target_modules=_LINEAR),
    "adalora": lambda: peft.AdaLoraConfig(init_r=2, target_r=1, total_step=10, target_modules=_LINEAR),
    "ia3": lambda: peft.IA3Config(target_modules=_LINEAR, feedforward_modules=["lin1"]),
    "oft": lambda: peft.OFTConfig(r=0, oft_block_size=4, target_modules=_LINEAR),
    "boft": lambda: peft.BOFTConfig(boft_block_size=4, target_modules=_LINEAR),
    "vera": lambda: peft.VeraConfig(r=2, target_modules=_LINEAR),
    "randlora": lambda: peft.RandLoraConfig(r=2, target_modules=_LINEAR),
    "fourierft": lambda: peft.FourierFTConfig(n_frequency=8, target_modules=_LINEAR),
    "waveft": lambda: peft.WaveFTConfig(n_frequency=8, target_modules=_LINEAR),
    "c3a": lambda: peft.C3AConfig(block_size=4, target_modules=_LINEAR),
    "hra": lambda: peft.HRAConfig(r=2, target_modules=_LINEAR),
    "miss": lambda: peft.MissConfig(r=4, target_modules=_LINEAR),
    "shira": lambda: peft.ShiraConfig(r=2, target_modules=_LINEAR),
    "road": lambda: peft.RoadConfig(group_size=4, target_modules=_LINEAR),
    "vblora": lambda: peft.VBLoRAConfig(r=2, num_vectors=8, vector_length=4, target_modules=_LINEAR),
    "ln_tuning": lambda: peft.LNTuningConfig(target_modules=["norm"]),
    "trainable_tokens": lambda: peft.TrainableTokensConfig(target_modules=["emb"], token_indices=[1, 2, 5]),
    "lora_modules_to_save": lambda: peft.LoraConfig(r=2, target_modules=_LINEAR, modules_to_save=["head"]),
}


def perturb(model: nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Add seeded noise of standard deviation ``scale`` to every trainable tensor (the adapters under test)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))


def per_adapter_rows(model: peft.PeftModel, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    """What each row of ``x`` gives with its own adapter alone (``"__base__"``: adapters disabled): what a mixed batch
    called with ``adapter_names=names`` must give. The active adapter is restored afterwards."""
    active = model.active_adapter
    rows = []
    for row, name in zip(x.split(1), names, strict=True):
        if name == "__base__":
            with model.disable_adapter():
                rows.append(model(row))
        else:
            model.set_adapter(name)
            rows.append(model(row))
    model.set_adapter(active)
    return torch.cat(rows)


def shira_config(**kwargs: object) -> peft.ShiraConfig:
    """SHiRA on layers ``0`` and ``2`` of ``sequential_mlp``, starting away from the identity."""
    return peft.ShiraConfig(**{"r": 2, "init_weights": False, "target_modules": ["0", "2"], **kwargs})


def road_config(**kwargs: object) -> peft.RoadConfig:
    """RoAd on layers ``0`` and ``2`` of ``sequential_mlp``, starting away from the identity."""
    return peft.RoadConfig(**{"group_size": 4, "init_weights": False, "target_modules": ["0", "2"], **kwargs})


def vblora_config(**kwargs: object) -> peft.VBLoRAConfig:
    """VB-LoRA on layers ``0`` and ``2`` of ``sequential_mlp``, with a small bank."""
    return peft.VBLoRAConfig(**{"r": 2, "num_vectors": 8, "vector_length": 2, "target_modules": ["0", "2"], **kwargs})


SEQUENTIAL_MLP_CONFIGS: dict[str, Callable[..., peft.PeftConfig]] = {
    "shira": shira_config,
    "road": road_config,
    "vblora": vblora_config,
}


def moved_off_init(config: peft.PeftConfig, seed: int = 0) -> peft.PeftModel:
    """``config`` on ``sequential_mlp(seed)``, every trainable tensor moved by seeded noise (VB-LoRA starts random too:
    each method is moved well away from its start), in eval mode."""
    model = peft.get_peft_model(sequential_mlp(seed), config)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def close_in_float64(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    """``actual`` equals ``expected`` up to ``atol`` (and a relative 1e-4), both compared in float64."""
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=1e-4)


def check_mixed_batch(model: peft.PeftModel, names: list[str], features: int = 10) -> None:
    """One batch with ``adapter_names`` gives each row what the model gives it with that row's adapter alone."""
    x = torch.randn(len(names), features)
    close_in_float64(model(x, adapter_names=names), per_adapter_rows(model, x, names))
