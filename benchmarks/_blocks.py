"""The plain torch models the benchmarks adapt: ``blocks`` blocks of eight ``Linear(hidden, hidden)`` layers, and the
stack of blocks they are built from."""

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

    torch.manual_seed(0)
    return build_stack(Block, blocks, "blocks")


def build_stack(make_block, count: int, attribute: str):
    """``count`` blocks of ``make_block()`` in the ``nn.ModuleList`` ``attribute``, run one after the other."""
    import torch
    from torch import nn

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, attribute, nn.ModuleList(make_block() for _ in range(count)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in getattr(self, attribute):
                x = block(x)
            return x

    return Stack()
