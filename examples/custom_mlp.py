"""LoRA on a plain PyTorch model: a multilayer perceptron trained on a synthetic classification task.

The workflow for any custom model:

1. look at ``named_modules()`` to find the names of the layers to adapt;
2. put LoRA on the hidden layers (``seq.0``, ``seq.2``) and train the new output layer (``seq.4``) in full through
   ``modules_to_save``;
3. train with an ordinary PyTorch loop;
4. save the adapter (a few kilobytes) and load it onto a fresh copy of the base model.

Run:  python examples/custom_mlp.py [--epochs 10] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn
from tqdm.auto import tqdm

from peft import LoraConfig, PeftModel, get_peft_model

SEED = 0
N_FEATURES, HIDDEN, N_CLASSES = 20, 64, 2


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            nn.Linear(N_FEATURES, HIDDEN),  # seq.0
            nn.ReLU(),  # seq.1
            nn.Linear(HIDDEN, HIDDEN),  # seq.2
            nn.ReLU(),  # seq.3
            nn.Linear(HIDDEN, N_CLASSES),  # seq.4: the output layer (logits), trained in full
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


def make_base_model() -> MLP:
    """The "pretrained" model; the same seed gives the same weights every time, like loading a checkpoint."""
    torch.manual_seed(SEED)
    return MLP()


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Points whose label says whether the first five features sum to more than the next five."""
    x = torch.randn(n, N_FEATURES, generator=generator)
    y = (x[:, :5].sum(dim=1) > x[:, 5:10].sum(dim=1)).long()
    return x, y


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(dim=-1) == y).float().mean().item()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 64) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    progress = tqdm(range(epochs), desc="training", unit="epoch")
    for _ in progress:
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item() * len(batch)
        progress.set_postfix(loss=f"{total / len(x):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output-dir", default=None, help="where to save the adapter (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the models are tiny: extra threads cost more than they save

    generator = torch.Generator().manual_seed(SEED)
    x_train, y_train = make_data(1024, generator)
    x_test, y_test = make_data(512, generator)

    base = make_base_model()
    print("Modules of the base model:")
    for name, module in base.named_modules():
        if name and not list(module.children()):  # leaves only
            print(f"  {name:6s} {module}")
    print(f"Base model accuracy: {accuracy(base, x_test, y_test):.3f}")

    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["seq.0", "seq.2"],  # LoRA on the hidden layers
        modules_to_save=["seq.4"],  # the output layer is trained and saved in full
    )
    model = get_peft_model(base, config)
    model.print_trainable_parameters()

    train(model, x_train, y_train, args.epochs)
    trained_accuracy = accuracy(model, x_test, y_test)
    print(f"Accuracy after training: {trained_accuracy:.3f}")
    model.eval()
    with torch.no_grad():
        trained_output = model(x_test)

    output_dir = args.output_dir or tempfile.mkdtemp(prefix="custom_mlp_")
    model.save_pretrained(output_dir)
    sizes = {name: os.path.getsize(os.path.join(output_dir, name)) for name in sorted(os.listdir(output_dir))}
    print(f"Saved to {output_dir}: " + ", ".join(f"{name} ({size:,} bytes)" for name, size in sizes.items()))

    loaded = PeftModel.from_pretrained(make_base_model(), output_dir)
    loaded.eval()
    with torch.no_grad():
        same = torch.allclose(loaded(x_test), trained_output, atol=1e-6)
    print(f"Loaded adapter reproduces the trained model: {same}")
    print(f"Accuracy of the loaded model: {accuracy(loaded, x_test, y_test):.3f}")
    if not same or trained_accuracy < 0.9:
        raise SystemExit("unexpected result: the adapter did not train or did not reload correctly")


if __name__ == "__main__":
    main()
