"""The host packages and the packaging contract (ARCH-2, ARCH-3, ARCH-5)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

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
    """peft-trl is a library of helpers, not a host: it has nothing to register with the core."""
    entry_points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert entry_points == {
        "diffusers": "peft_diffusers:register",
        "transformers": "peft_transformers:register",
    }
    assert not hasattr(peft_trl, "register")


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


# packages the core imports only inside functions that need them and that a user installs for that purpose
_OPTIONAL_CORE_IMPORTS = {
    "transformers": "the `peft demo` command builds a transformers model",
    # peft.import_utils reports whether these are installed, importing them only when they are
    "bitsandbytes": "optional quantization backend",
    "transformer_engine": "optional quantization backend",
    "torch_npu": "optional accelerator",
    "torch_xla": "optional accelerator",
    "numpy": "UniLoRA draws its indices with numpy's generator, imported when a UniLoRA adapter is created",
    "deepspeed": "imported only to gather ZeRO-3-partitioned parameters, which exist only where DeepSpeed made them",
}


def _third_party_imports(source_root: Path) -> dict[str, list[str]]:
    """``{top-level package: files importing it}`` for the imports of every module under ``source_root``."""
    found: dict[str, list[str]] = {}
    for path in sorted(source_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "peft":
                    found.setdefault(top, []).append(str(path.relative_to(source_root)))
    return found


def test_peft_core_declares_every_package_it_imports():
    """peft-core installed alone must load adapters from the Hub: huggingface_hub is a dependency (issue 11, 17)."""
    import peft

    # required dependencies, and those of the optional extras (a feature's own packages, e.g. peft-core[adamss])
    declared = {
        re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        for requirement in importlib.metadata.requires("peft-core") or []
    }
    declared |= {"sklearn"} if "scikit_learn" in declared else set()  # scikit-learn's import name
    imported = _third_party_imports(Path(peft.__file__).parent)
    undeclared = {
        name: files
        for name, files in imported.items()
        if name.lower() not in declared and name not in _OPTIONAL_CORE_IMPORTS
    }
    assert not undeclared, f"peft-core imports packages it does not declare: {undeclared}"
    required = [r for r in importlib.metadata.requires("peft-core") or [] if "extra ==" not in r]
    assert any(r.startswith("huggingface_hub") for r in required)


def test_import_utils_availability_checks_carry_their_public_names():
    """The availability checks are made by one factory; each still answers to its own name (reprs, tracebacks)."""
    import peft.import_utils as import_utils

    checks = {n: f for n, f in vars(import_utils).items() if n.startswith("is_") and n.endswith("_available")}
    assert {"is_bnb_available", "is_inc_available", "is_hqq_available"} <= set(checks)
    assert {name: check.__name__ for name, check in checks.items()} == {name: name for name in checks}
    assert import_utils.is_bnb_available() is True  # installed by scripts/setup.sh
