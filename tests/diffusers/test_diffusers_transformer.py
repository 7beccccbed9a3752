"""A tiny SD3 transformer (DiT) runs diffusers' model-level LoRA API on our peft: load_lora_adapter,
save_lora_adapter with the config in the safetensors metadata, and hotswapping into a compiled model
(issue #5; HOST-DIFF-1/3, LIFE-24/25)."""

from __future__ import annotations

import json

import pytest
import safetensors
import torch
from tiny_diffusers import make_sd3_transformer, make_unet, random_lora_state_dict, sd3_inputs, unet_inputs

from peft import LoraConfig

JOINT_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


@torch.no_grad()
def _output(model: torch.nn.Module, compiled: torch.nn.Module | None = None) -> torch.Tensor:
    return (model if compiled is None else compiled)(**sd3_inputs()).sample


def _adapter(seed: int, rank: int = 4, **config) -> tuple[dict[str, torch.Tensor], LoraConfig]:
    state_dict = random_lora_state_dict(make_sd3_transformer(), JOINT_ATTENTION, rank=rank, seed=seed)
    return state_dict, LoraConfig(r=rank, target_modules=list(JOINT_ATTENTION), **config)


def _with_adapter(state_dict, config, name: str = "default_0") -> torch.nn.Module:
    """Reference: the adapter added with diffusers' add_adapter, weights copied into the live parameters."""
    model = make_sd3_transformer()
    model.add_adapter(config, adapter_name=name)
    with torch.no_grad():
        for key, value in state_dict.items():
            module, kind = key.rsplit(".", 2)[0], key.rsplit(".", 2)[1]
            getattr(model.get_submodule(module), kind)[name].weight.copy_(value)
    return model


def _metadata(path) -> dict:
    with safetensors.safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["lora_adapter_metadata"])


def test_host_diff_1_load_lora_adapter_from_a_state_dict_with_metadata():
    state_dict, config = _adapter(seed=1, lora_alpha=8, alpha_pattern={"to_add_out": 2})
    model = make_sd3_transformer()
    base = _output(model)
    model.load_lora_adapter(state_dict, adapter_name="a", prefix=None, metadata=config.to_dict())
    assert model.peft_config["a"].lora_alpha == 8 and model.peft_config["a"].alpha_pattern == {"to_add_out": 2}
    out = _output(model)
    assert (out - base).abs().max() > 1e-2
    torch.testing.assert_close(out, _output(_with_adapter(state_dict, config)))


def test_save_lora_adapter_writes_the_config_into_the_metadata_and_reloads_from_it(tmp_path):
    config = LoraConfig(
        r=4, lora_alpha=6, rank_pattern={"to_q": 2}, alpha_pattern={"to_k": 1}, target_modules=list(JOINT_ATTENTION)
    )
    state_dict = random_lora_state_dict(
        make_sd3_transformer(), JOINT_ATTENTION, rank=lambda n: 2 if n.endswith("to_q") else 4, seed=2
    )
    model = _with_adapter(state_dict, config, name="a")
    expected = _output(model)
    model.save_lora_adapter(str(tmp_path), adapter_name="a")
    metadata = _metadata(tmp_path / WEIGHT_NAME)
    assert metadata["r"] == 4 and metadata["lora_alpha"] == 6 and metadata["peft_type"] == "LORA"
    assert metadata["rank_pattern"] == {"to_q": 2} and metadata["alpha_pattern"] == {"to_k": 1}

    reloaded = make_sd3_transformer()
    reloaded.load_lora_adapter(str(tmp_path), weight_name=WEIGHT_NAME, adapter_name="b", prefix=None)
    assert reloaded.peft_config["b"].to_dict() | {"peft_version": None} == config.to_dict() | {"peft_version": None}
    assert torch.equal(_output(reloaded), expected)


def test_host_diff_3_hotswap_replaces_the_weights_in_place():
    first, first_config = _adapter(seed=3, lora_alpha=8)
    second, second_config = _adapter(seed=4, lora_alpha=2)
    model = make_sd3_transformer()
    model.load_lora_adapter(first, adapter_name="default_0", prefix=None, metadata=first_config.to_dict())
    layer = model.get_submodule("transformer_blocks.0.attn.to_q")
    parameter = layer.lora_A["default_0"].weight
    model.load_lora_adapter(
        second, adapter_name="default_0", prefix=None, metadata=second_config.to_dict(), hotswap=True
    )
    assert layer.lora_A["default_0"].weight is parameter  # same tensor, new values
    torch.testing.assert_close(_output(model), _output(_with_adapter(second, second_config)))


def test_host_diff_3_hotswap_refuses_an_adapter_with_new_target_layers():
    first, first_config = _adapter(seed=5)
    model = make_sd3_transformer()
    model.load_lora_adapter(first, adapter_name="default_0", prefix=None, metadata=first_config.to_dict())
    extra = random_lora_state_dict(model, ("ff.net.2",), seed=6)
    wider = LoraConfig(r=4, target_modules=list(JOINT_ATTENTION) + ["ff.net.2"])
    with pytest.raises(RuntimeError, match="ff.net.2"):
        model.load_lora_adapter(
            first | extra, adapter_name="default_0", prefix=None, metadata=wider.to_dict(), hotswap=True
        )


class _CountingBackend:
    """A torch.compile backend that counts graph compilations and runs the graphs eagerly."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs):
        self.compilations += 1
        return graph_module.forward


def test_life_25_hotswap_of_another_rank_into_a_compiled_model_does_not_recompile():
    first, first_config = _adapter(seed=7, rank=4, lora_alpha=8)
    second, second_config = _adapter(seed=8, rank=8, lora_alpha=3)
    model = make_sd3_transformer()
    model.enable_lora_hotswap(target_rank=8)
    model.load_lora_adapter(first, adapter_name="default_0", prefix=None, metadata=first_config.to_dict())
    assert model.get_submodule("transformer_blocks.0.attn.to_q").lora_A["default_0"].weight.shape[0] == 8  # padded
    torch._dynamo.reset()
    backend = _CountingBackend()
    compiled = torch.compile(model, backend=backend, fullgraph=False)
    torch.testing.assert_close(_output(model, compiled), _output(_with_adapter(first, first_config)))
    compilations = backend.compilations
    assert compilations > 0

    model.load_lora_adapter(
        second, adapter_name="default_0", prefix=None, metadata=second_config.to_dict(), hotswap=True
    )
    torch.testing.assert_close(_output(model, compiled), _output(_with_adapter(second, second_config)))
    assert backend.compilations == compilations  # no recompilation
    # diffusers' set_adapters recomputes scalings from the layers' alpha and rank: they describe the new adapter
    # (activating a list instead of one name recompiles once; changing weights afterwards does not)
    reference = _with_adapter(second, second_config)
    compilations_after_activation = None
    for weight in (0.5, 0.25):
        model.set_adapters(["default_0"], weights=[weight])
        reference.set_adapters(["default_0"], weights=[weight])
        torch.testing.assert_close(_output(model, compiled), _output(reference))
        compilations_after_activation = compilations_after_activation or backend.compilations
    assert backend.compilations == compilations_after_activation
    torch._dynamo.reset()


def test_host_diff_3_compiled_hotswap_covers_conv2d_layers_of_a_unet():
    targets = ("to_q", "to_out.0", "conv1", "conv2")
    state_dicts = [random_lora_state_dict(make_unet(), targets, rank=r, seed=r) for r in (2, 6)]
    configs = [LoraConfig(r=r, lora_alpha=a, target_modules=list(targets)) for r, a in ((2, 4), (6, 3))]
    expected = []
    for state_dict, config in zip(state_dicts, configs):
        reference = make_unet()
        reference.load_lora_adapter(state_dict, adapter_name="default_0", prefix=None, metadata=config.to_dict())
        with torch.no_grad():
            expected.append(reference(**unet_inputs()).sample)
    unet = make_unet()
    unet.enable_lora_hotswap(target_rank=6)
    unet.load_lora_adapter(state_dicts[0], adapter_name="default_0", prefix=None, metadata=configs[0].to_dict())
    assert unet.get_submodule("down_blocks.0.resnets.0.conv1").lora_A["default_0"].weight.shape[0] == 6
    torch._dynamo.reset()
    backend = _CountingBackend()
    compiled = torch.compile(unet, backend=backend)
    with torch.no_grad():
        torch.testing.assert_close(compiled(**unet_inputs()).sample, expected[0])
    compilations = backend.compilations
    metadata = configs[1].to_dict()
    unet.load_lora_adapter(state_dicts[1], adapter_name="default_0", prefix=None, metadata=metadata, hotswap=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(**unet_inputs()).sample, expected[1])
    assert backend.compilations == compilations
    torch._dynamo.reset()


def test_life_25_preparing_a_model_compiled_from_the_inside_is_refused():
    first, first_config = _adapter(seed=9)
    model = make_sd3_transformer()
    model.compile(backend=_CountingBackend())  # in place: the model itself is compiled
    model.enable_lora_hotswap(target_rank=8)
    with pytest.raises(ValueError, match="compil"):
        model.load_lora_adapter(first, adapter_name="default_0", prefix=None, metadata=first_config.to_dict())
