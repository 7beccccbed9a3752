"""Megatron-core tensor-parallel layers (``ColumnParallelLinear``, ``RowParallelLinear``).

Their forward returns ``(output, output_bias)`` and each rank holds one shard of the weight, so an adapter needs the
layer's parallel layout (which input or output dimension is split) and collective communication in its own forward.
This backend recognises the layers and refuses them at injection with a clear error instead of computing a wrong
update on the local shard.
"""

from __future__ import annotations

from torch import nn

from peft.quantization import ForwardOnlyBackend

_PARALLEL_LINEAR = ("ColumnParallelLinear", "RowParallelLinear")


class MegatronBackend(ForwardOnlyBackend):
    """Megatron tensor-parallel linear layers."""

    name = "megatron"
    library = "megatron"
    install = "pip install megatron-core"
    is_linear = False

    def matches(self, module: nn.Module) -> bool:
        return type(module).__name__ in _PARALLEL_LINEAR and type(module).__module__.startswith("megatron.")

    def check_adaptable(self, module: nn.Module) -> None:
        raise TypeError(
            f"Adapters on Megatron tensor-parallel layers ({type(module).__name__}) are not supported: the update "
            "would need the layer's parallel layout and communication. Target the model before it is sharded by "
            "Megatron, or use torch tensor parallelism (DTensor)."
        )


BACKENDS = (MegatronBackend(),)
