"""Checkpoint files, keys, saving and loading (REQUIREMENTS SAVE-1..5, SAVE-8/9, LIFE-26).

Adapters are saved into ``tmp_path`` as real safetensors/bin files and loaded onto a freshly built base model with
the same base weights, so nothing carries over in memory.
"""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from safetensors import safe_open
from saved_adapters import as_reference_saved
from torch import nn

from peft import (
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from tests.tiny_models import mlp


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        return self.seq(x)


def _base(cls=_MLP, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


def _config(**kwargs) -> LoraConfig:
    return LoraConfig(**{"r": 4, "target_modules": ["seq.0", "seq.2"], "init_lora_weights": False, **kwargs})


def _perturb_modules_to_save(model: nn.Module) -> None:
    """Make the trainable copies differ from the originals, as training would."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".modules_to_save." in name:
                param.add_(torch.randn_like(param))


def _x() -> torch.Tensor:
    return torch.randn(5, 20, generator=torch.Generator().manual_seed(123))


def _out(model: nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(_x() if x is None else x)


def _file_keys(path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return sorted(f.keys())


def _files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files)


# --------------------------------------------------------------------------------------------------------- SAVE-1


def test_save_1_default_adapter_at_root_other_adapters_in_subfolders(tmp_path):
    model = get_peft_model(_base(), _config())
    model.add_adapter("other", _config(r=2))
    model.save_pretrained(tmp_path)
    files = _files_under(tmp_path)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    assert {"other/adapter_config.json", "other/adapter_model.safetensors"} <= set(files)
    assert json.loads((tmp_path / "other" / "adapter_config.json").read_text())["r"] == 2


def test_save_1_selected_adapters_limits_what_is_written(tmp_path):
    model = get_peft_model(_base(), _config())
    model.add_adapter("other", _config(r=2))
    model.save_pretrained(tmp_path, selected_adapters=["other"])
    assert not (tmp_path / "adapter_model.safetensors").exists()
    assert (tmp_path / "other" / "adapter_model.safetensors").exists()


def test_save_1_safe_serialization_false_writes_a_bin_file_loadable_weights_only(tmp_path):
    model = get_peft_model(_base(), _config())
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "adapter_model.bin").exists()
    assert not (tmp_path / "adapter_model.safetensors").exists()
    loaded = torch.load(tmp_path / "adapter_model.bin", weights_only=True)
    assert sorted(loaded) == sorted(get_peft_model_state_dict(model))


def test_save_8_bin_checkpoint_loads_and_reproduces_outputs(tmp_path):
    model = get_peft_model(_base(), _config())
    model.save_pretrained(tmp_path, safe_serialization=False)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_1_is_main_process_false_writes_nothing(tmp_path):
    get_peft_model(_base(), _config()).save_pretrained(tmp_path / "out", is_main_process=False)
    assert _files_under(tmp_path) == []


# --------------------------------------------------------------------------------------------------------- SAVE-2

MLP_FILE_KEYS = [
    "base_model.model.seq.0.lora_A.weight",
    "base_model.model.seq.0.lora_B.weight",
    "base_model.model.seq.2.lora_A.weight",
    "base_model.model.seq.2.lora_B.weight",
    "base_model.model.seq.4.bias",
    "base_model.model.seq.4.weight",
]


def test_save_2_file_keys_have_no_adapter_name(tmp_path):
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]))
    model.save_pretrained(tmp_path)
    assert _file_keys(tmp_path / "adapter_model.safetensors") == MLP_FILE_KEYS


def test_save_2_non_default_adapter_file_keys_have_no_adapter_name(tmp_path):
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]), adapter_name="mine")
    model.save_pretrained(tmp_path)
    assert _file_keys(tmp_path / "mine" / "adapter_model.safetensors") == MLP_FILE_KEYS


def test_save_2_state_dict_holds_adapter_tensors_only():
    model = get_peft_model(_base(), _config())
    state_dict = get_peft_model_state_dict(model)
    assert sorted(state_dict) == [k for k in MLP_FILE_KEYS if ".lora_" in k]
    # the values are the live adapter tensors
    live = model.get_base_model().seq[0].lora_A["default"].weight
    assert torch.equal(state_dict["base_model.model.seq.0.lora_A.weight"], live)


def test_save_2_injected_plain_model_keys_have_no_prefix():
    model = inject_adapter_in_model(_config(), _base())
    assert sorted(get_peft_model_state_dict(model)) == [
        "seq.0.lora_A.weight",
        "seq.0.lora_B.weight",
        "seq.2.lora_A.weight",
        "seq.2.lora_B.weight",
    ]


class _EmbeddingModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.lin = nn.Linear(8, 2)

    def forward(self, x):
        return self.lin(self.emb(x))


def test_save_2_embedding_keys():
    model = get_peft_model(_base(_EmbeddingModel), LoraConfig(r=4, target_modules=["emb"]))
    assert sorted(get_peft_model_state_dict(model)) == [
        "base_model.model.emb.lora_embedding_A",
        "base_model.model.emb.lora_embedding_B",
    ]


def test_save_2_dora_magnitude_key_has_no_weight_suffix():
    model = get_peft_model(_base(), _config(target_modules=["seq.0"], use_dora=True))
    assert sorted(get_peft_model_state_dict(model)) == [
        "base_model.model.seq.0.lora_A.weight",
        "base_model.model.seq.0.lora_B.weight",
        "base_model.model.seq.0.lora_magnitude_vector",
    ]


def test_save_16_dora_round_trip_reproduces_outputs(tmp_path):
    model = get_peft_model(_base(), _config(target_modules=["seq.0"], use_dora=True))
    with torch.no_grad():
        model.get_base_model().seq[0].lora_magnitude_vector["default"].weight.mul_(1.5)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------------- SAVE-3


def _perturb_biases(model: nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.add_(1.0)


def test_save_3_bias_all_saves_every_bias(tmp_path):
    model = get_peft_model(_base(), _config(bias="all"))
    keys = sorted(get_peft_model_state_dict(model))
    assert [k for k in keys if k.endswith("bias")] == [
        "base_model.model.seq.0.base_layer.bias",
        "base_model.model.seq.2.base_layer.bias",
        "base_model.model.seq.4.bias",
    ]


def test_save_3_bias_lora_only_saves_biases_of_adapter_layers():
    model = get_peft_model(_base(), _config(bias="lora_only"))
    keys = sorted(get_peft_model_state_dict(model))
    assert [k for k in keys if k.endswith("bias")] == [
        "base_model.model.seq.0.base_layer.bias",
        "base_model.model.seq.2.base_layer.bias",
    ]


def test_save_3_bias_all_round_trips(tmp_path):
    model = get_peft_model(_base(), _config(bias="all"))
    _perturb_biases(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    assert torch.equal(loaded.get_base_model().seq[4].bias, model.get_base_model().seq[4].bias)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------------- SAVE-8


def test_save_8_round_trip_reproduces_outputs(tmp_path):
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]))
    _perturb_modules_to_save(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    assert not torch.allclose(_out(loaded), _out(_base()))
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_8_round_trip_restores_every_adapter_tensor(tmp_path):
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]))
    _perturb_modules_to_save(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    saved, restored = get_peft_model_state_dict(model), get_peft_model_state_dict(loaded)
    assert sorted(saved) == sorted(restored)
    for key in saved:
        assert torch.equal(saved[key], restored[key]), key


def test_save_8_second_adapter_loads_from_its_subfolder(tmp_path):
    model = get_peft_model(_base(), _config())
    torch.manual_seed(5)
    model.add_adapter("other", _config(r=2))
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    loaded.load_adapter(tmp_path / "other", adapter_name="other")
    loaded.set_adapter("other")
    model.set_adapter("other")
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_8_subfolder_argument(tmp_path):
    model = get_peft_model(_base(), _config(), adapter_name="other")
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path, subfolder="other")
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_8_loading_under_another_adapter_name(tmp_path):
    model = get_peft_model(_base(), _config())
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path, adapter_name="renamed")
    assert sorted(loaded.peft_config) == ["renamed"]
    assert loaded.active_adapters == ["renamed"]
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_8_missing_adapter_folder_raises(tmp_path):
    with pytest.raises(ValueError):
        PeftModel.from_pretrained(_base(), tmp_path / "nothing-here")


def test_save_8_load_adapter_from_missing_folder_raises(tmp_path):
    model = get_peft_model(_base(), _config())
    with pytest.raises(ValueError):
        model.load_adapter(tmp_path / "nothing-here", adapter_name="other")
    assert sorted(model.peft_config) == ["default"]


def test_save_8_folder_without_weights_raises_naming_the_files(tmp_path):
    _config().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="adapter_model"):
        PeftModel.from_pretrained(_base(), tmp_path)


def test_save_8_corrupt_safetensors_file_raises_naming_the_file(tmp_path):
    get_peft_model(_base(), _config()).save_pretrained(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00\x01 this is not a safetensors file")
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        PeftModel.from_pretrained(_base(), tmp_path)


def test_save_8_wrong_tensor_shape_raises_naming_key_and_shapes():
    model = get_peft_model(_base(), _config())
    state_dict = get_peft_model_state_dict(model)
    state_dict["base_model.model.seq.2.lora_A.weight"] = torch.zeros(3, 16)
    with pytest.raises(ValueError) as excinfo:
        set_peft_model_state_dict(model, state_dict)
    message = str(excinfo.value)
    assert "base_model.model.seq.2.lora_A.weight" in message
    assert "(3, 16)" in message and "(4, 16)" in message


def test_save_8_checkpoint_of_other_rank_raises_on_load(tmp_path):
    get_peft_model(_base(), _config(r=4)).save_pretrained(tmp_path)
    as_reference_saved(tmp_path)  # weights without the config they were saved with
    config_path = tmp_path / "adapter_config.json"
    saved = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**saved, "r": 8}))
    with pytest.raises(ValueError, match=r"lora_A\.weight.*\(4, 20\).*\(8, 20\)"):
        PeftModel.from_pretrained(_base(), tmp_path)


def test_save_9_ignore_mismatched_sizes_skips_the_tensor():
    model = get_peft_model(_base(), _config())
    before = model.get_base_model().seq[2].lora_A["default"].weight.detach().clone()
    state_dict = {k: v.clone() + 1 for k, v in get_peft_model_state_dict(model).items()}
    state_dict["base_model.model.seq.2.lora_A.weight"] = torch.zeros(3, 16)
    set_peft_model_state_dict(model, state_dict, ignore_mismatched_sizes=True)
    assert torch.equal(model.get_base_model().seq[2].lora_A["default"].weight, before)
    assert torch.equal(
        model.get_base_model().seq[2].lora_B["default"].weight, state_dict["base_model.model.seq.2.lora_B.weight"]
    )


# --------------------------------------------------------------------------------------------------------- SAVE-5


def test_save_5_set_state_dict_reports_missing_and_unexpected_keys():
    model = get_peft_model(_base(), _config())
    state_dict = get_peft_model_state_dict(model)
    del state_dict["base_model.model.seq.0.lora_B.weight"]
    state_dict["base_model.model.seq.0.lora_C.weight"] = torch.zeros(2, 2)
    result = set_peft_model_state_dict(model, state_dict)
    assert "base_model.model.seq.0.lora_B.default.weight" in result.missing_keys
    assert not any("lora_A" in k for k in result.missing_keys)
    assert result.unexpected_keys == ["base_model.model.seq.0.lora_C.weight"]


def test_save_5_set_state_dict_loads_into_the_named_adapter():
    model = get_peft_model(_base(), _config())
    model.add_adapter("other", _config())
    state_dict = {k: torch.full_like(v, 0.5) for k, v in get_peft_model_state_dict(model).items()}
    set_peft_model_state_dict(model, state_dict, adapter_name="other")
    seq = model.get_base_model().seq
    assert torch.all(seq[0].lora_A["other"].weight == 0.5)
    assert not torch.all(seq[0].lora_A["default"].weight == 0.5)


def test_save_5_modules_to_save_keys_load_into_the_adapter_copy():
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]))
    wrapper = model.get_base_model().seq[4]
    original_weight = wrapper.original_module.weight.detach().clone()
    state_dict = get_peft_model_state_dict(model)
    state_dict["base_model.model.seq.4.weight"] = torch.full((2, 16), 3.0)
    set_peft_model_state_dict(model, state_dict)
    assert torch.all(wrapper.modules_to_save["default"].weight == 3.0)
    assert torch.equal(wrapper.original_module.weight, original_weight)


# --------------------------------------------------------------------------------------------------------- SAVE-9


def test_save_9_complete_checkpoint_loads_without_missing_keys(tmp_path):
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]))
    model.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loaded = PeftModel.from_pretrained(_base(), tmp_path)
        result = loaded.load_adapter(tmp_path, adapter_name="again")
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    assert not [w for w in record if "missing" in str(w.message).lower()]


def test_save_9_from_pretrained_warns_about_genuinely_missing_adapter_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    get_peft_model(_base(), _config()).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    del weights["base_model.model.seq.2.lora_B.weight"]
    save_file(weights, tmp_path / "adapter_model.safetensors")
    with pytest.warns(UserWarning, match=r"seq\.2\.lora_B"):
        PeftModel.from_pretrained(_base(), tmp_path)


# --------------------------------------------------------------------------------------------------------- SAVE-4


class _WeightNamed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight_proj = nn.Linear(20, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.weight_proj(x))


def _lin() -> nn.Module:
    return mlp(20, 8, 2, names=("lin1", "lin2"))


class _TwoClassifiers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(20, 8)
        self.classifier = nn.Linear(8, 2)
        self.classifier2 = nn.Linear(8, 2)

    def forward(self, x):
        hidden = self.body(x)
        return self.classifier(hidden) + self.classifier2(hidden)


def test_save_4_layer_name_containing_weight_round_trips(tmp_path):
    config = LoraConfig(r=4, target_modules=["weight_proj"], init_lora_weights=False)
    model = get_peft_model(_base(_WeightNamed), config)
    model.save_pretrained(tmp_path)
    assert _file_keys(tmp_path / "adapter_model.safetensors") == [
        "base_model.model.weight_proj.lora_A.weight",
        "base_model.model.weight_proj.lora_B.weight",
    ]
    loaded = PeftModel.from_pretrained(_base(_WeightNamed), tmp_path)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_4_adapter_name_that_is_a_substring_of_a_layer_name_round_trips(tmp_path):
    config = LoraConfig(r=4, target_modules=["lin1", "lin2"], init_lora_weights=False)
    model = get_peft_model(_base(_lin), config, adapter_name="lin")
    model.save_pretrained(tmp_path)
    assert _file_keys(tmp_path / "lin" / "adapter_model.safetensors") == [
        "base_model.model.lin1.lora_A.weight",
        "base_model.model.lin1.lora_B.weight",
        "base_model.model.lin2.lora_A.weight",
        "base_model.model.lin2.lora_B.weight",
    ]
    loaded = PeftModel.from_pretrained(_base(_lin), tmp_path / "lin", adapter_name="lin")
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_save_4_modules_to_save_classifier_next_to_classifier2_round_trips(tmp_path):
    config = LoraConfig(r=4, target_modules=["body"], modules_to_save=["classifier"], init_lora_weights=False)
    model = get_peft_model(_base(_TwoClassifiers), config)
    assert type(model.get_base_model().classifier2) is nn.Linear
    _perturb_modules_to_save(model)
    model.save_pretrained(tmp_path)
    assert _file_keys(tmp_path / "adapter_model.safetensors") == [
        "base_model.model.body.lora_A.weight",
        "base_model.model.body.lora_B.weight",
        "base_model.model.classifier.bias",
        "base_model.model.classifier.weight",
    ]
    loaded = PeftModel.from_pretrained(_base(_TwoClassifiers), tmp_path)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ atomic saving

_ALLOWED_FILES = {"adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "README.md"}


@pytest.mark.parametrize("safe_serialization", [True, False])
def test_save_1_leaves_no_stray_temporary_files(tmp_path, safe_serialization):
    model = get_peft_model(_base(), _config())
    model.add_adapter("other", _config())
    model.save_pretrained(tmp_path, safe_serialization=safe_serialization)
    model.save_pretrained(tmp_path, safe_serialization=safe_serialization)  # overwriting, too
    for relative in _files_under(tmp_path):
        assert os.path.basename(relative) in _ALLOWED_FILES, relative


def test_save_1_failed_save_keeps_the_previous_file_intact(tmp_path, monkeypatch):
    import safetensors.torch

    model = get_peft_model(_base(), _config())
    model.save_pretrained(tmp_path)
    before = (tmp_path / "adapter_model.safetensors").read_bytes()

    def failing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == before
    for relative in _files_under(tmp_path):
        assert os.path.basename(relative) in _ALLOWED_FILES, relative


# -------------------------------------------------------------------------------------------- LIFE-26: low_cpu_mem


def _assert_no_meta(model: nn.Module) -> None:
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    assert meta == []


def test_life_26_low_cpu_mem_usage_load_gives_identical_outputs(tmp_path):
    model = get_peft_model(_base(), _config(modules_to_save=["seq.4"]))
    _perturb_modules_to_save(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path, low_cpu_mem_usage=True)
    _assert_no_meta(loaded)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_life_26_low_cpu_mem_usage_load_adapter_materialises_the_second_adapter(tmp_path):
    model = get_peft_model(_base(), _config())
    torch.manual_seed(3)
    model.add_adapter("other", _config())
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    loaded.load_adapter(tmp_path / "other", adapter_name="other", low_cpu_mem_usage=True)
    _assert_no_meta(loaded)
    loaded.set_adapter("other")
    model.set_adapter("other")
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


def test_life_26_get_peft_model_low_cpu_mem_usage_creates_meta_adapter_weights():
    model = get_peft_model(_base(), _config(), low_cpu_mem_usage=True)
    layer = model.get_base_model().seq[0]
    assert layer.lora_A["default"].weight.device.type == "meta"
    assert layer.get_base_layer().weight.device.type == "cpu"


def test_life_26_low_cpu_mem_usage_load_of_a_dora_adapter(tmp_path):
    model = get_peft_model(_base(), _config(target_modules=["seq.0"], use_dora=True))
    with torch.no_grad():
        model.get_base_model().seq[0].lora_magnitude_vector["default"].weight.mul_(1.3)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path, low_cpu_mem_usage=True)
    _assert_no_meta(loaded)
    torch.testing.assert_close(_out(loaded), _out(model), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------- model card


def _card_front_matter(folder) -> dict:
    import yaml

    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:].split("\n---", 1)[0])


def test_model_card_of_a_custom_module_names_no_base_model(tmp_path):
    """Issue 11, item 6: a module without a (transformers) config is no Hub model, whatever name its adapter config
    carries; the reference writes no ``base_model`` then either."""
    model = get_peft_model(_base(), _config(base_model_name_or_path="MLP"))
    model.save_pretrained(tmp_path)
    front = _card_front_matter(tmp_path)
    assert front["library_name"] == "peft"
    assert "base_model" not in front
    assert "lora" in front["tags"]


def test_model_card_of_a_transformers_model_names_its_base_model(tmp_path):
    pytest.importorskip("transformers")
    from tiny_transformers import tiny_llama

    base = tiny_llama()
    base.config._name_or_path = "org/tiny-llama"
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path)
    front = _card_front_matter(tmp_path)
    assert front["base_model"] == "org/tiny-llama"
    assert front["pipeline_tag"] == "text-generation"
    assert {"lora", "transformers"} <= set(front["tags"])


def test_model_card_keeps_an_existing_card(tmp_path):
    (tmp_path / "README.md").write_text("---\nmeta: hello\n---\nThis is a model card\n", encoding="utf-8")
    get_peft_model(_base(), _config()).save_pretrained(tmp_path)
    front = _card_front_matter(tmp_path)
    assert front["meta"] == "hello" and front["library_name"] == "peft"
    assert "This is a model card" in (tmp_path / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- base model state dict


class _Everything(nn.Module):
    """A base model for every kind of wrapper: adapter layers, nested adapters, a raw parameter, a trained copy and
    trainable tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.lin0 = nn.Linear(8, 8)
        self.lin1 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.lin1(self.lin0(self.emb(x))))


def _everything_adapted() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    base = _base(_Everything)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(
        base,
        LoraConfig(
            r=2,
            target_modules=["lin0"],
            target_parameters=["lin1.weight"],
            modules_to_save=["head"],
            trainable_token_indices={"emb": [1, 2]},
        ),
    )
    return model, original


def test_base_model_state_dict_has_the_base_models_keys_and_tensors():
    """Issue 11, item 8."""
    from peft import get_base_model_state_dict

    model, original = _everything_adapted()
    state_dict = get_base_model_state_dict(model)
    assert sorted(state_dict) == sorted(original)
    assert all(torch.equal(state_dict[k], original[k]) for k in original)
    # the same for the tuner, and for a plain model with injected adapters
    assert sorted(get_base_model_state_dict(model.base_model)) == sorted(original)
    injected = inject_adapter_in_model(LoraConfig(r=2, target_modules=["lin0", "lin1"]), _base(_Everything))
    assert sorted(get_base_model_state_dict(injected)) == sorted(original)


def test_base_model_state_dict_of_a_mixed_model_with_nested_adapters():
    from peft import LoHaConfig, get_base_model_state_dict

    base = _base(_Everything)
    original = sorted(base.state_dict())
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["lin0"]), mixed=True)
    model.add_adapter("loha", LoHaConfig(r=2, target_modules=["lin0", "lin1"]))
    assert sorted(get_base_model_state_dict(model)) == original


def test_set_base_model_state_dict_loads_base_weights_and_leaves_adapters_alone():
    from peft import set_base_model_state_dict

    model, original = _everything_adapted()
    adapters = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    new = {k: v + 1.0 for k, v in original.items()}
    result = set_base_model_state_dict(model, new)
    assert result.missing_keys == [] and result.unexpected_keys == []
    base = model.get_base_model()
    torch.testing.assert_close(base.lin0.base_layer.weight, new["lin0.weight"])
    torch.testing.assert_close(base.head.original_module.bias, new["head.bias"])
    torch.testing.assert_close(base.emb.original_module.weight, new["emb.weight"])
    torch.testing.assert_close(base.lin1.base_layer.weight, new["lin1.weight"])
    assert all(torch.equal(v, adapters[k]) for k, v in get_peft_model_state_dict(model).items())


def test_set_base_model_state_dict_reports_mismatched_keys():
    from peft import set_base_model_state_dict

    model, original = _everything_adapted()
    partial = {k: v for k, v in original.items() if k != "lin0.bias"} | {"nope.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \['lin0.bias'\]"):
        set_base_model_state_dict(model, partial)
    torch.testing.assert_close(model.get_base_model().lin0.base_layer.weight, original["lin0.weight"])
    result = set_base_model_state_dict(model, partial, strict=False)
    assert result.missing_keys == ["lin0.bias"] and result.unexpected_keys == ["nope.weight"]
