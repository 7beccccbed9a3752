"""Dispatch of the backends whose libraries need CUDA or Gaudi and do not install on the CPU machines the project is
tested on (GPTQ, AWQ, EETQ, INC, Megatron): the matching and the errors, with stand-in layer classes.

The stand-ins below are NOT the libraries' layers: they only carry the class names, module paths and attributes the
libraries document, so that peft's matching and dispatch logic can be exercised. That these backends compute
correctly with the real kernels is not claimed by these tests (docs/quantization.md records what ran where).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from peft import LoraConfig, get_peft_model
from peft.quantization import _BACKENDS, register_quantization_backend
from peft.quantization.awq import AwqBackend
from peft.quantization.eetq import EetqBackend
from peft.quantization.gptq import GptqBackend
from peft.quantization.inc import IncBackend
from peft.quantization.megatron import MegatronBackend


def _stand_in(class_name: str, module: str, bases: tuple[type, ...] = (nn.Module,), **attributes) -> type[nn.Module]:
    """A layer class named and placed like the library's (a stand-in, see the module docstring): int32 packed
    weights, a float computation from a hidden float weight."""

    def __init__(self, in_features: int = 16, out_features: int = 8) -> None:
        nn.Module.__init__(self)
        torch.manual_seed(0)
        self.register_buffer("qweight", torch.zeros(in_features // 8, out_features, dtype=torch.int32))
        self.register_buffer("_float_weight", torch.randn(out_features, in_features))
        for name, value in attributes.items():
            setattr(self, name, value)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._float_weight.T

    return type(class_name, bases, {"__init__": __init__, "forward": forward, "__module__": module})


CASES = [
    (GptqBackend(), _stand_in("QuantLinear", "auto_gptq.nn_modules.qlinear.qlinear_cuda")),
    (AwqBackend(), _stand_in("WQLinear_GEMM", "awq.modules.linear.gemm")),
    (EetqBackend(), _stand_in("EetqLinear", "eetq.modules.qlinear")),
    (IncBackend(), _stand_in("PatchedLinear", "neural_compressor.torch.algorithms.fp8_quant._quant_common")),
]


@pytest.fixture
def registered():
    added = []

    def register(backend):
        register_quantization_backend(backend)
        added.append(backend)

    yield register
    for backend in added:
        _BACKENDS.remove(backend)


@pytest.mark.parametrize(("backend", "layer_cls"), CASES, ids=[b.name for b, _ in CASES])
def test_forward_only_backend_trains_and_refuses_merging_by_name(registered, backend, layer_cls) -> None:
    registered(backend)
    model = nn.Sequential(layer_cls())
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["0"], init_lora_weights=False))
    layer = peft_model.base_model.model[0]
    assert layer.quantization_backend is backend and (layer.in_features, layer.out_features) == (16, 8)
    assert f"quantization_backend='{backend.name}'" in repr(layer)
    x = torch.randn(3, 16)
    peft_model(x).sum().backward()
    assert layer.lora_A["default"].weight.grad is not None
    with pytest.raises(
        TypeError, match=rf"\({backend.name}\) cannot be dequantized: this format supports forward and"
    ):
        peft_model.merge_and_unload()


@pytest.mark.parametrize(("backend", "layer_cls"), CASES, ids=[b.name for b, _ in CASES])
def test_without_its_backend_the_packed_layer_is_refused_at_injection(backend, layer_cls) -> None:
    with pytest.raises(TypeError, match=r"stores its weight as torch.int32, and no quantization backend handles it"):
        get_peft_model(nn.Sequential(layer_cls()), LoraConfig(r=2, target_modules=["0"]))


def test_dora_on_a_forward_only_backend_says_the_weight_cannot_be_read(registered) -> None:
    backend, layer_cls = CASES[0]
    registered(backend)
    with pytest.raises(TypeError, match=r"\(gptq\) cannot be dequantized"):
        get_peft_model(nn.Sequential(layer_cls()), LoraConfig(r=2, target_modules=["0"], use_dora=True))


def test_megatron_parallel_layers_are_refused_at_injection(registered) -> None:
    registered(MegatronBackend())
    layer_cls = _stand_in("RowParallelLinear", "megatron.core.tensor_parallel.layers")
    with pytest.raises((TypeError, ValueError), match="RowParallelLinear"):
        get_peft_model(nn.Sequential(layer_cls()), LoraConfig(r=2, target_modules=["0"]))


def test_gptqmodel_layers_are_recognised_by_the_references_helpers(monkeypatch) -> None:
    """``is_gptqmodel_quant_linear`` / ``is_gptqmodel_awq_layer`` (peft.utils.other) are the gptq backends' matching:
    checked here with a stand-in ``gptqmodel.nn_modules.qlinear.BaseQuantLinear`` (see the module docstring)."""
    from peft.utils.other import is_gptqmodel_awq_layer, is_gptqmodel_quant_linear

    qlinear = types.ModuleType("gptqmodel.nn_modules.qlinear")
    qlinear.BaseQuantLinear = type("BaseQuantLinear", (nn.Module,), {})
    gptq_layer = _stand_in("TorchQuantLinear", qlinear.__name__ + ".torch", bases=(qlinear.BaseQuantLinear,))()
    awq_layer = _stand_in("AwqTorchQuantLinear", qlinear.__name__ + ".torch_awq", bases=(qlinear.BaseQuantLinear,))()
    assert not is_gptqmodel_quant_linear(gptq_layer)  # gptqmodel not imported: no layer of it can exist
    monkeypatch.setitem(sys.modules, "gptqmodel", types.ModuleType("gptqmodel"))
    monkeypatch.setitem(sys.modules, "gptqmodel.nn_modules", types.ModuleType("gptqmodel.nn_modules"))
    monkeypatch.setitem(sys.modules, qlinear.__name__, qlinear)

    assert is_gptqmodel_quant_linear(gptq_layer) and not is_gptqmodel_awq_layer(gptq_layer)
    assert is_gptqmodel_quant_linear(awq_layer) and is_gptqmodel_awq_layer(awq_layer)
    assert not is_gptqmodel_quant_linear(nn.Linear(2, 2)) and not is_gptqmodel_quant_linear(None)
