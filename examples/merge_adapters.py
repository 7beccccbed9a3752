"""Combine two LoRA adapters trained on different tasks into one with ``add_weighted_adapter``.

A small regression network with two outputs is first "pretrained" in full on simple targets. Then adapter ``task_a``
learns a harder target for output 0 and adapter ``task_b`` one for output 1; while training, each adapter is asked
to leave the other output as the base model computes it (as fine-tuning data usually keeps some general data). The
two adapters are combined with several ``combination_type``s (``cat``, ``linear``, ``svd``, ``ties``,
``dare_linear``), and every combination is evaluated on both tasks. Finally one combination is merged into the base
weights.

Run:  python examples/merge_adapters.py [--steps 300]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

from peft import LoraConfig, get_peft_model

SEED = 0
N_FEATURES = 8


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


def pretrain_base_model(x: torch.Tensor, steps: int = 300) -> Regressor:
    """Full training on the easy part of both targets: output 0 ~ sin(x0), output 1 ~ x3."""
    torch.manual_seed(SEED)
    model = Regressor()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        prediction = model(x)
        loss = (prediction[:, 0] - torch.sin(x[:, 0])).pow(2).mean() + (prediction[:, 1] - x[:, 3]).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def task_targets(x: torch.Tensor) -> dict[str, tuple[int, torch.Tensor]]:
    """For each task, the output it is trained on and the value that output should take."""
    return {
        "task_a": (0, torch.sin(x[:, 0]) + x[:, 1] * x[:, 2]),
        "task_b": (1, x[:, 3] - 0.5 * x[:, 4] ** 2),
    }


def lora_config() -> LoraConfig:
    # the same rank everywhere, so that the factor-wise combination types (linear, ties, dare_*) apply
    return LoraConfig(r=4, lora_alpha=8, target_modules=["seq.0", "seq.2", "seq.4"])


def train(model, task: str, x: torch.Tensor, steps: int) -> None:
    """Train the active adapter on ``task``'s output while keeping the other output at the base model's value."""
    output_index, target = task_targets(x)[task]
    with torch.no_grad(), model.disable_adapter():
        other_output = model(x)[:, 1 - output_index]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        prediction = model(x)
        loss = (prediction[:, output_index] - target).pow(2).mean()
        loss = loss + (prediction[:, 1 - output_index] - other_output).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@torch.no_grad()
def errors(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Mean squared error on each task."""
    model.eval()
    prediction = model(x)
    return {task: (prediction[:, i] - t).pow(2).mean().item() for task, (i, t) in task_targets(x).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per adapter")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the models are tiny: extra threads cost more than they save

    generator = torch.Generator().manual_seed(SEED)
    x_train = torch.randn(512, N_FEATURES, generator=generator)
    x_test = torch.randn(512, N_FEATURES, generator=generator)

    model = get_peft_model(pretrain_base_model(x_train), lora_config(), adapter_name="task_a")
    model.add_adapter("task_b", lora_config())
    for task in ("task_a", "task_b"):
        model.set_adapter(task)  # activates the adapter and makes only it trainable
        train(model, task, x_train, args.steps)

    results = {}
    with model.disable_adapter():
        results["base model"] = errors(model, x_test)
    for task in ("task_a", "task_b"):
        model.set_adapter(task)
        results[f"{task} alone"] = errors(model, x_test)

    # task arithmetic: weight 1 for each adapter keeps each task's full update
    combinations = {
        "cat": {},
        "linear": {},
        "svd": {},  # truncated to the sources' rank (4)
        "svd_rank_8": {"combination_type": "svd", "svd_rank": 8},
        "ties": {"density": 0.5},  # keep the largest half of each adapter's entries, resolve sign conflicts
        "dare_linear": {"density": 0.9},  # drop 10% of the entries at random, rescale the rest
    }
    torch.manual_seed(SEED)  # dare_linear drops entries at random
    for name, options in combinations.items():
        options = {"combination_type": name, **options}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. notes about densities
            model.add_weighted_adapter(["task_a", "task_b"], [1.0, 1.0], adapter_name=name, **options)
        model.set_adapter(name)
        rank = model.base_model.model.seq[0].r[name]
        results[f"{name} (rank {rank})"] = errors(model, x_test)

    print(f"{'model':22s} {'MSE task_a':>11s} {'MSE task_b':>11s}")
    for label, mse in results.items():
        print(f"{label:22s} {mse['task_a']:11.4f} {mse['task_b']:11.4f}")

    # a combined adapter is an ordinary adapter: merge it into the base weights
    model.set_adapter("cat")
    with torch.no_grad():
        expected = model(x_test)
    merged = model.merge_and_unload(adapter_names=["cat"])
    with torch.no_grad():
        same = torch.allclose(merged(x_test), expected, atol=1e-5)
    print(f"\nMerged 'cat' into the base weights ({type(merged).__name__}); same outputs: {same}")
    if not same:
        raise SystemExit("merging changed the outputs")


if __name__ == "__main__":
    main()
