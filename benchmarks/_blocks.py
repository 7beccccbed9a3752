"""The plain torch model both benchmarks adapt: ``blocks`` blocks of eight ``Linear(hidden, hidden)`` layers."""

LAYER_NAMES = ("q", "k", "v", "o", "gate", "up", "down", "proj")


def build_blocks_model(blocks: int, hidden: int):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name in LAYER_NAMES:
                setattr(self, name, nn.Linear(hidden, hidden))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for name in LAYER_NAMES:
                x = getattr(self, name)(x)
            return x

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(blocks))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return x

    torch.manual_seed(0)
    return Model()
