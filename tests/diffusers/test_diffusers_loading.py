"""Loading LoRAs the way diffusers does: injection from a state dict with ``low_cpu_mem_usage=True``, and many
adapters in one UNet without the per-adapter cost growing (issue #5; HOST-DIFF-1/4, LIFE-26).

benchmarks/bench_diffusers_loading.py measures the same against the reference peft.
"""

from __future__ import annotations

import numpy as np
import torch
from tiny_diffusers import (
    UNET_ATTENTION,
    generate,
    make_pipeline,
    make_unet,
    prefixed,
    random_lora_state_dict,
    unet_inputs,
)

from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

ALL_LAYERS = UNET_ATTENTION + ("proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "time_emb_proj")


def _lora_params(model: torch.nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if f".{adapter}." in n and ".lora_" in n}


def test_life_26_injection_from_a_state_dict_with_low_cpu_mem_usage():
    unet = make_unet()
    state_dict = random_lora_state_dict(unet, ALL_LAYERS, seed=1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=[k.rsplit(".lora_", 1)[0] for k in state_dict][::2])
    inject_adapter_in_model(config, unet, adapter_name="a", state_dict=state_dict, low_cpu_mem_usage=True)
    params = _lora_params(unet, "a")
    assert len(params) == len(state_dict)
    assert all(p.device.type == "meta" for p in params.values())

    result = set_peft_model_state_dict(unet, state_dict, adapter_name="a", low_cpu_mem_usage=True)
    # what diffusers checks: no adapter key missing, no key unexpected
    assert [k for k in result.missing_keys if ".lora_" in k] == [] and result.unexpected_keys == []
    params = _lora_params(unet, "a")
    assert all(p.device.type == "cpu" for p in params.values())
    for key, value in state_dict.items():
        module, factor = key.rsplit(".lora_", 1)
        assert torch.equal(params[f"{module}.lora_{factor.replace('.weight', '.a.weight')}"], value)

    eager = make_unet()
    inject_adapter_in_model(config, eager, adapter_name="a")
    set_peft_model_state_dict(eager, state_dict, adapter_name="a")
    with torch.no_grad():
        assert torch.equal(unet(**unet_inputs()).sample, eager(**unet_inputs()).sample)


def test_load_lora_weights_with_low_cpu_mem_usage_gives_the_same_image(tmp_path):
    pipes = []
    for name in ("default", "low-memory"):
        (tmp_path / name).mkdir()
        pipes.append(make_pipeline(tmp_path / name))
    state_dict = prefixed(random_lora_state_dict(pipes[0].unet, ALL_LAYERS, seed=2), "unet")
    pipes[0].load_lora_weights(dict(state_dict), adapter_name="a")
    pipes[1].load_lora_weights(dict(state_dict), adapter_name="a", low_cpu_mem_usage=True)
    assert not any(p.device.type == "meta" for p in pipes[1].unet.parameters())
    assert np.array_equal(generate(pipes[0]), generate(pipes[1]))


def test_host_diff_4_full_path_targets_of_a_loaded_lora_are_compressed():
    unet = make_unet()
    state_dict = random_lora_state_dict(unet, ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "conv1"), seed=4)
    unet.load_lora_adapter(state_dict, adapter_name="a", prefix=None)  # diffusers passes 44 full module paths
    assert sorted(unet.peft_config["a"].target_modules) == ["conv1", "proj_in", "to_k", "to_out.0", "to_q", "to_v"]
