"""Default LoRA targets of diffusers models (peft_diffusers.targets) and their registration with the core."""

from __future__ import annotations

import pytest
import torch
from tiny_diffusers import make_pipeline, make_sd3_transformer, make_unet

from peft import LoraConfig, inject_adapter_in_model
from peft.hosts import HostRegistry, get_host_registry
from peft.tuners.tuners_utils import BaseTunerLayer
from peft_diffusers import register
from peft_diffusers.targets import (
    DEFAULT_JOINT_DIT_TARGETS,
    DEFAULT_TEXT_ENCODER_TARGETS,
    DEFAULT_UNET_TARGETS,
    default_lora_config,
    default_target_modules,
)


def _adapted(model: torch.nn.Module) -> list[str]:
    return sorted(n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer))


def test_default_targets_by_model_class(tmp_path):
    assert DEFAULT_UNET_TARGETS == ["to_q", "to_k", "to_v", "to_out.0"]
    assert default_target_modules(make_unet()) == DEFAULT_UNET_TARGETS
    assert default_target_modules(make_sd3_transformer()) == DEFAULT_JOINT_DIT_TARGETS
    assert default_target_modules(make_pipeline(tmp_path).text_encoder) == DEFAULT_TEXT_ENCODER_TARGETS
    assert default_target_modules(torch.nn.Sequential(torch.nn.Linear(2, 2))) is None


def test_default_targets_of_an_unlisted_model_come_from_its_modules():
    class MyDiT(torch.nn.Module):  # a custom model reusing diffusers' joint attention block
        def __init__(self) -> None:
            super().__init__()
            self.block = make_sd3_transformer().transformer_blocks[0]

    assert default_target_modules(MyDiT()) == DEFAULT_JOINT_DIT_TARGETS


def test_default_lora_config_targets_only_the_attention_projections():
    unet = make_unet()
    unet.add_adapter(default_lora_config(unet, r=4, lora_alpha=4, init_lora_weights="gaussian"))
    adapted = _adapted(unet)
    assert adapted and all(name.endswith(tuple(DEFAULT_UNET_TARGETS)) for name in adapted)
    assert len(adapted) == sum(1 for n, _ in make_unet().named_modules() if n.endswith(tuple(DEFAULT_UNET_TARGETS)))
    with pytest.raises(ValueError, match="No default LoRA targets"):
        default_lora_config(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_register_adds_the_defaults_by_class_name_and_the_core_loads_them():
    registry = HostRegistry()
    register(registry)
    assert registry.default_target_modules["LORA"]["UNet2DConditionModel"] == DEFAULT_UNET_TARGETS
    assert get_host_registry().default_target_modules["LORA"]["SD3Transformer2DModel"] == DEFAULT_JOINT_DIT_TARGETS


def test_injection_without_target_modules_uses_the_registered_defaults():
    unet = make_unet()
    inject_adapter_in_model(LoraConfig(r=4), unet)
    assert all(name.endswith(tuple(DEFAULT_UNET_TARGETS)) for name in _adapted(unet))
