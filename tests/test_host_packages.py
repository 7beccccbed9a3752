"""The host packages and the packaging contract (ARCH-2, ARCH-3, ARCH-5)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import peft_diffusers
import peft_transformers
import peft_trl
from peft.hosts import ENTRY_POINT_GROUP, HostRegistry
from peft_transformers.target_modules import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA_TARGETS


def test_arch_2_peft_distribution_version_matches_every_package():
    version = importlib.metadata.version("peft")
    assert version == "1.0.0.dev0"
    for dist in ("peft-core", "peft-transformers", "peft-diffusers", "peft-trl"):
        assert importlib.metadata.version(dist) == version
    for module in (peft_transformers, peft_diffusers, peft_trl):
        assert module.__version__ == version


def test_arch_2_transformers_sees_peft():
    from transformers.utils.import_utils import is_peft_available

    assert is_peft_available()


def test_arch_5_every_host_has_an_entry_point():
    entry_points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert entry_points == {
        "diffusers": "peft_diffusers:register",
        "transformers": "peft_transformers:register",
        "trl": "peft_trl:register",
    }


@pytest.mark.parametrize("host", ["peft_transformers", "peft_diffusers", "peft_trl"])
def test_arch_3_importing_a_host_package_imports_no_framework(host):
    code = (
        f"import sys, {host}; "
        "heavy = sorted(m for m in ('transformers', 'diffusers', 'trl', 'accelerate', 'torch') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_arch_5_transformers_host_registers_default_lora_targets():
    registry = HostRegistry()
    peft_transformers.register(registry)
    lora = registry.default_target_modules["LORA"]
    assert lora["llama"] == ["q_proj", "v_proj"]
    assert lora["gpt2"] == ["c_attn"]
    assert lora["bert"] == ["query", "value"]
    assert lora["t5"] == ["q", "v"]
    assert lora["bloom"] == ["query_key_value"]
    # the registry holds its own lists: editing them must not change the package's table
    lora["llama"].append("k_proj")
    assert LORA_TARGETS["llama"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize("peft_type", ["DELORA", "GLORA", "GRALORA", "HIRA", "LILY", "TINYLORA", "UNILORA", "POLY"])
def test_methods_that_adapt_what_lora_adapts_register_its_defaults(peft_type):
    registry = HostRegistry()
    peft_transformers.register(registry)
    assert registry.default_target_modules[peft_type] == LORA_TARGETS


def test_pvera_defaults_are_veras_with_dinov2():
    registry = HostRegistry()
    peft_transformers.register(registry)
    pvera, vera = registry.default_target_modules["PVERA"], registry.default_target_modules["VERA"]
    assert pvera["dinov2"] == ["query", "value"]
    assert {k: v for k, v in pvera.items() if k != "dinov2"} == vera


def test_lora_target_table_is_sorted_and_non_empty():
    assert list(LORA_TARGETS) == sorted(LORA_TARGETS)
    assert all(modules and all(isinstance(name, str) for name in modules) for modules in LORA_TARGETS.values())


@pytest.mark.parametrize(
    "model_type",
    ["llama", "gpt2", "bert", "t5", "opt", "bloom", "falcon", "gpt_neox", "phi3", "distilbert", "deberta-v2", "vit"],
)
def test_lora_targets_name_real_modules(model_type):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type)
    with torch.device("meta"):  # default-sized configs: build on the meta device, no memory or init cost
        model = transformers.AutoModel.from_config(config)
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(LORA_TARGETS[model_type]) <= leaf_names
