"""Transformers' own entry points on this peft, and AutoPeftModel on every transformers fixture (HOST-TF-1/2)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

from tiny_transformers import MOE_CONFIGS, tiny_llama  # noqa: E402

from peft import AutoPeftModel, LoraConfig, PeftModel  # noqa: E402
from peft.hosts import get_host_registry  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "reference"
get_host_registry()


def _fixture_cases() -> list[str]:
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    cases = []
    for case in sorted(FIXTURES.iterdir()):
        meta = json.loads((case / "case.json").read_text())
        if meta["model"]["kind"] == "transformers" and meta["peft_type"] in PEFT_TYPE_TO_CONFIG_MAPPING:
            cases.append(case.name)
    return cases


def _build(meta: dict) -> torch.nn.Module:
    config = {k: v for k, v in meta["model"]["config"].items() if k not in ("transformers_version", "architectures")}
    model_config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    return getattr(transformers, meta["model"]["class"])(model_config)


@pytest.mark.parametrize("name", _fixture_cases())
def test_auto_peft_model_loads_every_transformers_fixture(name, tmp_path):
    """The adapter folder alone (its config naming a local base model) rebuilds base + adapter."""
    case = FIXTURES / name
    meta = json.loads((case / "case.json").read_text())
    base = _build(meta)
    base.load_state_dict(load_file(case / "base.safetensors"), strict=False)
    base.save_pretrained(tmp_path / "base")
    adapter_dir = tmp_path / "adapter"
    shutil.copytree(case / "adapter", adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "base")
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))

    model = AutoPeftModel.from_pretrained(adapter_dir)
    model.eval()
    io = load_file(case / "io.safetensors")
    inputs = {k[len("input.") :]: v for k, v in io.items() if k.startswith("input.")}
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, io["out_adapter"], atol=meta["atol"], rtol=meta["rtol"])


def _tiny_llama(**overrides) -> torch.nn.Module:
    return tiny_llama(**overrides)


IDS = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])


def _train_one_step(model: torch.nn.Module) -> None:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params
    optimizer = torch.optim.SGD(params, lr=0.5)
    model(input_ids=IDS, labels=IDS).loss.backward()
    optimizer.step()
    model.eval()


def test_host_tf_1_add_adapter_train_save_load_adapter_gives_identical_logits(tmp_path):
    model = _tiny_llama()
    model.add_adapter(LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    _train_one_step(model)
    expected = model(input_ids=IDS).logits
    model.save_pretrained(tmp_path)
    fresh = _tiny_llama()
    fresh.load_adapter(str(tmp_path), adapter_name="loaded")
    fresh.eval()
    torch.testing.assert_close(fresh(input_ids=IDS).logits, expected)
    assert fresh.active_adapters() == ["loaded"]
    assert not any(p.requires_grad for p in fresh.parameters())


def test_host_tf_2_modules_to_save_and_trainable_tokens_round_trip_through_transformers_loader(tmp_path):
    model = _tiny_llama()
    model.add_adapter(
        LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"], trainable_token_indices=[3, 7])
    )
    _train_one_step(model)
    expected = model(input_ids=IDS).logits
    model.save_pretrained(tmp_path)
    fresh = _tiny_llama()
    fresh.load_adapter(str(tmp_path))
    fresh.eval()
    torch.testing.assert_close(fresh(input_ids=IDS).logits, expected)
    # the same files load through PeftModel too
    peft_model = PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    torch.testing.assert_close(peft_model(input_ids=IDS).logits, expected)


def test_host_tf_1_from_pretrained_of_an_adapter_folder_builds_base_and_adapter(tmp_path):
    base = _tiny_llama()
    base.save_pretrained(tmp_path / "base")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    model.add_adapter(LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    expected = model(input_ids=IDS).logits
    model.save_pretrained(tmp_path / "adapter")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "adapter")
    torch.testing.assert_close(loaded(input_ids=IDS).logits, expected)


@pytest.mark.parametrize("kind", sorted(MOE_CONFIGS))
@pytest.mark.parametrize("experts", [False, True])
def test_host_tf_2_moe_adapter_round_trip_through_transformers_loader(kind, experts, tmp_path):
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(MOE_CONFIGS[kind]()).eval()
    kwargs = {"target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]} if experts else {}
    model = copy.deepcopy(base)
    model.add_adapter(LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **kwargs))
    expected = model(input_ids=IDS).logits
    assert not torch.allclose(expected, base(input_ids=IDS).logits)
    model.save_pretrained(tmp_path)
    fresh = copy.deepcopy(base)
    fresh.load_adapter(str(tmp_path))
    torch.testing.assert_close(fresh(input_ids=IDS).logits, expected)


def test_auto_peft_model_imports_the_base_class_of_auto_mapping_only_from_allowed_packages(tmp_path):
    """An adapter config without a task type names the module of its base model class (``auto_mapping``); a config
    from the hub must not make peft import any package: only those of the import allowlist."""
    from peft.auto import check_import_allowlist, get_default_import_allowlist

    base = _tiny_llama()
    base.save_pretrained(tmp_path / "base")
    model = PeftModel(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    model.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    model.save_pretrained(tmp_path / "adapter")
    config_file = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    assert config["auto_mapping"]["parent_library"].startswith("transformers.")
    assert check_import_allowlist(get_default_import_allowlist(), config["auto_mapping"]["parent_library"])

    loaded = AutoPeftModel.from_pretrained(tmp_path / "adapter")
    assert type(loaded.get_base_model()) is type(base)
    with pytest.raises(ValueError, match="not in the import allowlist"):
        AutoPeftModel.from_pretrained(tmp_path / "adapter", import_allowlist=["diffusers"])

    config["auto_mapping"]["parent_library"] = "transformers_lookalike.models"  # a prefix, not a subpackage
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'transformers_lookalike.models', which is not in the import allowlist"):
        AutoPeftModel.from_pretrained(tmp_path / "adapter")


def test_prepare_model_for_gradient_checkpointing_makes_the_frozen_embeddings_output_require_grad():
    """Reentrant checkpointing needs an input that requires grad, or the adapters inside the checkpointed blocks get
    no gradient; with frozen embeddings, the preparation provides it (quantized models are prepared otherwise)."""
    model = PeftModel(_tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"]))
    embeddings = model.get_input_embeddings()
    assert not embeddings(IDS).requires_grad
    assert model.prepare_model_for_gradient_checkpointing(model) is model
    assert embeddings(IDS).requires_grad

    quantized = _tiny_llama().requires_grad_(False)
    quantized.is_quantized = True
    model.prepare_model_for_gradient_checkpointing(quantized)
    assert not quantized.get_input_embeddings()(IDS).requires_grad
