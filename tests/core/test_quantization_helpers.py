"""The reference's helpers for quantized weights (``peft.utils.integrations``, ``peft.utils.quantization_utils``,
``peft.utils.loftq_utils``), on real layers quantized on CPU, against each library's own dequantization or an
independent computation (issue 12)."""

from __future__ import annotations

import pytest
import torch
from quantized_layers import KINDS, available, dequantized_weight
from torch import nn

from peft import LoraConfig, get_peft_model
from peft.utils import quantization_extra_repr
from peft.utils.integrations import dequantize_bnb_weight, dequantize_module_weight, get_bnb_param_type
from peft.utils.other import is_gptqmodel_awq_layer, is_gptqmodel_quant_linear

needs_bnb = pytest.mark.skipif(not available("bnb-8bit"), reason="needs bitsandbytes (installed by scripts/setup.sh)")


def _quantized(kind: str, seed: int = 0) -> nn.Module:
    if not available(kind):
        pytest.skip(f"{kind} needs {KINDS[kind][0]} (installed by scripts/setup.sh)")
    torch.manual_seed(seed)
    return KINDS[kind][2](nn.Linear(64, 32))


@pytest.mark.parametrize(
    "kind", ["bnb-nf4", "bnb-fp4-bf16-storage", "bnb-8bit", "torchao-int8-weight-only", "hqq-4bit"]
)
def test_dequantize_module_weight_is_the_librarys_dequantization_before_and_after_a_forward(kind: str) -> None:
    layer = _quantized(kind)
    expected = dequantized_weight(layer)
    weight_before = layer.weight if hasattr(layer, "weight") else None
    torch.testing.assert_close(dequantize_module_weight(layer).float(), expected, rtol=0, atol=0)
    assert (layer.weight if hasattr(layer, "weight") else None) is weight_before  # reading leaves the layer alone
    # the first inference forward moves bitsandbytes' 8-bit row scales into the layer state and repacks 4-bit weights
    # for the CPU kernel (with bfloat16 block scales): the weight still reads back, within that precision
    with torch.no_grad():
        layer.eval()(torch.randn(2, 64))
    atol = 2**-8 * expected.abs().max().item()
    torch.testing.assert_close(dequantize_module_weight(layer).float(), expected, rtol=0, atol=atol)


def test_dequantize_module_weight_of_a_float_layer_is_its_weight_and_an_unreadable_one_is_refused() -> None:
    linear = nn.Linear(4, 3)
    assert torch.equal(dequantize_module_weight(linear), linear.weight)

    class PackedLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("weight", torch.zeros(3, 4, dtype=torch.int8))

    with pytest.raises(TypeError, match=r"Cannot dequantize the weight of PackedLinear: it has a torch.int8 weight"):
        dequantize_module_weight(PackedLinear())


@needs_bnb
def test_dequantize_bnb_weight_and_get_bnb_param_type() -> None:
    four_bit, eight_bit = _quantized("bnb-nf4"), _quantized("bnb-8bit")
    assert get_bnb_param_type(four_bit.weight) == "4bit"
    assert get_bnb_param_type(eight_bit.weight) == "8bit"
    assert get_bnb_param_type(nn.Linear(4, 3).weight) is False
    torch.testing.assert_close(dequantize_bnb_weight(four_bit.weight), dequantized_weight(four_bit), rtol=0, atol=0)
    expected = dequantized_weight(eight_bit)
    torch.testing.assert_close(dequantize_bnb_weight(eight_bit.weight), expected, rtol=0, atol=0)
    # after a forward the 8-bit row scales live in the layer state, which the caller passes
    with torch.no_grad():
        eight_bit(torch.randn(2, 64))
    with pytest.raises(ValueError, match=r"no row scales \(SCB\)"):
        dequantize_bnb_weight(eight_bit.weight)
    torch.testing.assert_close(dequantize_bnb_weight(eight_bit.weight, eight_bit.state), expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"takes a bitsandbytes Params4bit or Int8Params, not a Parameter"):
        dequantize_bnb_weight(nn.Linear(4, 3).weight)


@needs_bnb
def test_quantization_extra_repr_names_the_backend_of_an_adapter_layer() -> None:
    model = get_peft_model(nn.Sequential(_quantized("bnb-nf4")), LoraConfig(r=2, target_modules=["0"]))
    layer = model.base_model.model[0]
    assert quantization_extra_repr(layer) == "quantization_backend='bnb 4bit'"
    linear = nn.Linear(4, 3)
    assert quantization_extra_repr(linear) == ""  # no backend
    assert not is_gptqmodel_quant_linear(layer.get_base_layer()) and not is_gptqmodel_awq_layer(None)


@needs_bnb
@pytest.mark.parametrize("num_bits", [4, 8])
def test_loftq_init_quantizes_like_bitsandbytes_and_keeps_the_best_low_rank_residual(num_bits: int) -> None:
    from peft.utils.loftq_utils import loftq_init

    torch.manual_seed(0)
    weight = torch.randn(32, 64, dtype=torch.bfloat16)
    rank = 4
    quantized, lora_a, lora_b = loftq_init(weight, num_bits=num_bits, reduced_rank=rank, num_iter=1)
    assert quantized.dtype == torch.bfloat16 and lora_a.shape == (rank, 64) and lora_b.shape == (32, rank)
    # one step: Q is the library's round trip of W; B A the truncated SVD of W - Q (Eckart-Young: the error left is
    # the norm of the discarded singular values)
    kind = "bnb-nf4-fp32-storage" if num_bits == 4 else "bnb-8bit"
    linear = nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight.float())
    expected_q = dequantized_weight(KINDS[kind][2](linear))
    torch.testing.assert_close(quantized.float(), expected_q.to(torch.bfloat16).float(), rtol=0, atol=0)
    residual = weight.float() - expected_q
    discarded = torch.linalg.svdvals(residual)[rank:].norm()
    torch.testing.assert_close(torch.linalg.norm(residual - lora_b @ lora_a), discarded, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_bits": 2}, r"num_bits=2 is not supported; valid: \[4, 8\]"),
        ({"num_iter": 0}, r"`num_iter` should be a positive integer value but the value passed is 0"),
        ({"reduced_rank": 0}, r"`reduced_rank` should be a positive integer value but the value passed is 0"),
    ],
)
def test_loftq_init_refuses_invalid_settings(kwargs: dict, message: str) -> None:
    from peft.utils.loftq_utils import loftq_init

    with pytest.raises(ValueError, match=message):
        loftq_init(torch.randn(8, 8), **{"num_bits": 4, "reduced_rank": 2, **kwargs})
