"""Configs: fields, (de)serialisation, forward-compatible loading and validation (REQUIREMENTS CFG-1..7, CFG-13).

Every test writes real ``adapter_config.json`` files into ``tmp_path`` and reads them back through the public API.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import warnings
from pathlib import Path

import pytest
from torch import nn

import peft
import peft.config
from peft import (
    LoraConfig,
    LoraRuntimeConfig,
    PeftConfig,
    PeftWarning,
    PromptTuningConfig,
    TaskType,
    TrainableTokensConfig,
    get_peft_model,
)
from peft.utils.peft_types import PeftType


def _write_config(folder: Path, content: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(content))
    return folder


def _read_saved(folder: Path) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


def _full_config() -> LoraConfig:
    return LoraConfig(
        r=4,
        lora_alpha=16,
        lora_dropout=0.1,
        target_modules=["v_proj", "q_proj"],
        exclude_modules=["lm_head"],
        bias="lora_only",
        use_rslora=True,
        modules_to_save=["classifier"],
        init_lora_weights="gaussian",
        layers_to_transform=[0, 2],
        layers_pattern="layers",
        rank_pattern={"q_proj": 2},
        alpha_pattern={"v_proj": 32},
        task_type=TaskType.CAUSAL_LM,
        base_model_name_or_path="some/model",
        revision="main",
    )


# --------------------------------------------------------------------------------------------------------------- CFG-1


def test_cfg_1_common_fields_and_defaults():
    config = LoraConfig()
    assert config.peft_type == PeftType.LORA
    assert config.task_type is None
    assert config.inference_mode is False
    assert config.base_model_name_or_path is None
    assert config.revision is None
    assert config.auto_mapping is None
    assert config.peft_version.startswith(peft.__version__)


def test_method_lora_1_lora_config_defaults():
    config = LoraConfig()
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 8, 0.0)
    assert config.fan_in_fan_out is False
    assert config.bias == "none"
    assert config.use_rslora is False and config.use_dora is False and config.lora_bias is False
    assert config.init_lora_weights is True
    assert config.rank_pattern == {} and config.alpha_pattern == {}
    assert config.megatron_core == "megatron.core"
    assert config.runtime_config == LoraRuntimeConfig(ephemeral_gpu_offload=False)


def test_cfg_2_lora_is_not_prompt_learning():
    config = LoraConfig()
    assert config.is_prompt_learning is False
    assert config.is_adaption_prompt is False


# --------------------------------------------------------------------------------------------------------------- CFG-2


def test_cfg_2_to_dict_round_trips_through_constructor():
    config = _full_config()
    as_dict = config.to_dict()
    assert LoraConfig(**as_dict) == config


def test_cfg_2_to_dict_is_json_ready():
    as_dict = _full_config().to_dict()
    # plain JSON types only: enums as their string values, sets as lists
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["peft_type"] == "LORA"
    assert as_dict["task_type"] == "CAUSAL_LM"


def test_cfg_2_save_pretrained_writes_adapter_config_json(tmp_path):
    _full_config().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json"]
    saved = _read_saved(tmp_path)
    assert saved["r"] == 4 and saved["lora_alpha"] == 16 and saved["peft_type"] == "LORA"


def test_cfg_2_json_round_trip_via_save_and_from_pretrained(tmp_path):
    config = _full_config()
    config.save_pretrained(tmp_path)
    loaded = LoraConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LoraConfig)
    expected = {k: v for k, v in config.to_dict().items() if k != "peft_version"}
    got = {k: v for k, v in loaded.to_dict().items() if k != "peft_version"}
    assert got == expected


def test_cfg_2_from_pretrained_with_subfolder(tmp_path):
    LoraConfig(r=3, target_modules=["a"]).save_pretrained(tmp_path / "sub")
    loaded = LoraConfig.from_pretrained(tmp_path, subfolder="sub")
    assert loaded.r == 3


def test_cfg_2_from_pretrained_missing_folder_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        PeftConfig.from_pretrained(tmp_path / "does-not-exist")


def test_cfg_2_from_json_file_returns_the_dict(tmp_path):
    _write_config(tmp_path, {"peft_type": "LORA", "r": 5, "target_modules": ["x"]})
    loaded = LoraConfig.from_json_file(tmp_path / "adapter_config.json")
    assert loaded == {"peft_type": "LORA", "r": 5, "target_modules": ["x"]}


def test_cfg_2_from_peft_type_builds_the_concrete_class():
    config = PeftConfig.from_peft_type(peft_type="LORA", r=6, target_modules=["q"])
    assert isinstance(config, LoraConfig)
    assert config.r == 6


# --------------------------------------------------------------------------------------------------------------- CFG-3


def test_cfg_3_peft_config_from_pretrained_returns_lora_config_with_its_fields(tmp_path):
    LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj"]).save_pretrained(tmp_path)
    with warnings.catch_warnings():
        # r, lora_alpha ... must not be reported as unknown keys of PeftConfig
        warnings.simplefilter("error", PeftWarning)
        loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is LoraConfig
    assert (loaded.r, loaded.lora_alpha, loaded.target_modules) == (4, 32, {"q_proj"})


def test_cfg_3_peft_config_and_lora_config_load_identically(tmp_path):
    _full_config().save_pretrained(tmp_path)
    assert PeftConfig.from_pretrained(tmp_path) == LoraConfig.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------------------- CFG-4


def test_cfg_4_unknown_keys_are_dropped_with_a_warning_naming_them(tmp_path):
    _write_config(
        tmp_path,
        {"peft_type": "LORA", "target_modules": ["q"], "r": 4, "zz_future_option": 3, "another_new_key": "x"},
    )
    with pytest.warns(PeftWarning) as record:
        loaded = PeftConfig.from_pretrained(tmp_path)
    message = " ".join(str(w.message) for w in record)
    assert "zz_future_option" in message and "another_new_key" in message
    assert loaded.r == 4
    assert not hasattr(loaded, "zz_future_option")


def test_cfg_4_unknown_keys_never_raise_type_error_via_from_peft_type():
    with pytest.warns(PeftWarning, match="brand_new_field"):
        config = PeftConfig.from_peft_type(peft_type="LORA", target_modules=["q"], brand_new_field=True)
    assert isinstance(config, LoraConfig)


def test_cfg_4_known_unimplemented_fields_load_with_their_inert_values(tmp_path):
    _write_config(
        tmp_path,
        {
            "peft_type": "LORA",
            "target_modules": ["q"],
            "use_qalora": False,
            "qalora_group_size": 16,
            "kasa_config": None,
            "lora_ga_config": None,
            "velora_config": None,
            "use_bdlora": None,
            "loftq_config": {},
            "megatron_config": None,
            "alora_invocation_tokens": None,
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftWarning)  # known fields are not "unknown keys"
        loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LoraConfig)
    assert loaded.use_qalora is False and loaded.kasa_config is None


@pytest.mark.parametrize(
    "field, value",
    [("kasa_config", {"enabled": True}), ("megatron_config", {"tp": 2})],
)
def test_cfg_4_known_unimplemented_field_switched_on_raises_naming_it(tmp_path, field, value):
    _write_config(tmp_path, {"peft_type": "LORA", "target_modules": ["q"], field: value})
    with pytest.raises(ValueError, match=field):
        PeftConfig.from_pretrained(tmp_path)


def test_cfg_4_dora_with_megatron_config_is_refused_as_the_reference_words_it():
    with pytest.raises(ValueError, match="DoRA does not support megatron_core; megatron_config must be None"):
        LoraConfig(target_modules=["q"], use_dora=True, megatron_config={"tp": 2})


def test_prompt_tuning_text_init_names_the_missing_field():
    with pytest.raises(ValueError, match="When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be None"):
        PromptTuningConfig(prompt_tuning_init="TEXT", prompt_tuning_init_text="hello")
    with pytest.raises(ValueError, match="When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None"):
        PromptTuningConfig(prompt_tuning_init="TEXT", tokenizer_name_or_path="t5-base")


def test_cfg_4_qalora_and_loftq_fields_are_implemented_and_load(tmp_path):
    _write_config(
        tmp_path,
        {"peft_type": "LORA", "target_modules": ["q"], "use_qalora": True, "qalora_group_size": 8, "loftq_config": {}},
    )
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert loaded.use_qalora is True and loaded.qalora_group_size == 8


# --------------------------------------------------------------------------------------------------------------- CFG-5


def test_cfg_5_peft_version_is_stamped_on_save(tmp_path):
    config = LoraConfig(target_modules=["q"])
    config.save_pretrained(tmp_path)
    saved = _read_saved(tmp_path)["peft_version"]
    # this checkout is a dev version, so the stamp carries "@<commit>" or "@UNKNOWN"
    assert saved.startswith(peft.__version__ + "@")
    assert len(saved) > len(peft.__version__) + 1


def test_cfg_5_commit_hash_is_appended_when_known(tmp_path, monkeypatch):
    monkeypatch.setattr(peft.config, "_get_commit_hash", lambda pkg: "abc123")
    LoraConfig(target_modules=["q"]).save_pretrained(tmp_path)
    assert _read_saved(tmp_path)["peft_version"] == f"{peft.__version__}@abc123"


def test_cfg_5_failing_commit_lookup_gives_unknown_and_never_raises(tmp_path, monkeypatch):
    def broken(pkg):
        raise RuntimeError("metadata is broken")

    monkeypatch.setattr(peft.config, "_get_commit_hash", broken)
    LoraConfig(target_modules=["q"]).save_pretrained(tmp_path)
    assert _read_saved(tmp_path)["peft_version"] == f"{peft.__version__}@UNKNOWN"


def _all_config_classes() -> list[type]:
    from peft.hosts import get_host_registry

    get_host_registry()  # host packages register methods of their own (adaption prompt)
    return sorted(set(peft.PEFT_TYPE_TO_CONFIG_MAPPING.values()), key=lambda cls: cls.__name__)


# the arguments without which a config class refuses to be created (as in the reference)
_REQUIRED_CONFIG_KWARGS = {"AdaLoraConfig": {"total_step": 10}, "CPTConfig": {"task_type": "CAUSAL_LM"}}


def _new_config(config_cls: type) -> PeftConfig:
    return config_cls(**_REQUIRED_CONFIG_KWARGS.get(config_cls.__name__, {}))


@pytest.mark.parametrize("config_cls", _all_config_classes(), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("version", ["0.10", "0.17.0", "1"])
def test_cfg_5_a_new_config_carries_the_version_that_created_it(config_cls, version, tmp_path, monkeypatch):
    """CFG-5: the version is recorded when the config is created, written on save and kept when loaded."""
    monkeypatch.setattr(peft.config, "__version__", version)
    config = _new_config(config_cls)
    assert config.peft_version == version
    config.save_pretrained(tmp_path)
    assert _read_saved(tmp_path)["peft_version"] == version

    # a loaded config keeps the version that saved it, also when it is saved again by a newer version
    monkeypatch.setattr(peft.config, "__version__", "0.1.another-version")
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert loaded.peft_version == version
    loaded.save_pretrained(tmp_path / "again")
    assert _read_saved(tmp_path / "again")["peft_version"] == version


@pytest.mark.parametrize("config_cls", _all_config_classes(), ids=lambda cls: cls.__name__)
def test_cfg_5_a_dev_version_records_the_commit_at_creation(config_cls, tmp_path, monkeypatch):
    monkeypatch.setattr(peft.config, "__version__", "0.15.0.dev7")
    monkeypatch.setattr(peft.config, "_get_commit_hash", lambda pkg: "abcdef012345")
    config = _new_config(config_cls)
    assert config.peft_version == "0.15.0.dev7@abcdef012345"
    config.save_pretrained(tmp_path)
    assert PeftConfig.from_pretrained(tmp_path).peft_version == "0.15.0.dev7@abcdef012345"


def test_cfg_5_a_failing_commit_lookup_warns_and_records_unknown(monkeypatch):
    def broken(pkg):
        raise RuntimeError("metadata is broken")

    monkeypatch.setattr(peft.config, "__version__", "0.15.0.dev7")
    monkeypatch.setattr(peft.config, "_get_commit_hash", broken)
    with pytest.warns(UserWarning, match="error while trying to determine the commit hash"):
        config = LoraConfig()
    assert config.peft_version == "0.15.0.dev7@UNKNOWN"


def test_cfg_5_a_config_dict_without_version_gets_the_current_one(tmp_path):
    # files written before peft recorded versions have none; saving them again records this version
    _write_config(tmp_path, {"peft_type": "LORA", "target_modules": ["q"]})
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert loaded.peft_version.startswith(peft.__version__)


# --------------------------------------------------------------------------------------------------------------- CFG-6


def test_cfg_6_minimal_config_loads(tmp_path):
    _write_config(tmp_path, {"target_modules": ["query", "value"], "peft_type": "LORA"})
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LoraConfig)
    assert loaded.target_modules == {"query", "value"}
    assert loaded.r == 8 and loaded.lora_alpha == 8


# --------------------------------------------------------------------------------------------------------------- CFG-7


@pytest.mark.parametrize("r", [0, -1])
def test_cfg_7_non_positive_r_raises_naming_the_value(r):
    with pytest.raises(ValueError, match=rf"`r`.*{r}"):
        LoraConfig(r=r)


def test_cfg_7_non_positive_rank_pattern_raises_naming_the_key():
    with pytest.raises(ValueError, match="q_proj"):
        LoraConfig(rank_pattern={"q_proj": 0})


def test_cfg_7_unknown_bias_raises_naming_the_value():
    with pytest.raises(ValueError, match="bias.*'everything'"):
        LoraConfig(bias="everything")


def test_cfg_7_invalid_task_type_raises_naming_the_value():
    with pytest.raises(ValueError, match="task_type.*'NOT_A_TASK'"):
        LoraConfig(task_type="NOT_A_TASK")


def test_cfg_7_layers_pattern_without_layers_to_transform_raises():
    with pytest.raises(ValueError, match="layers_pattern"):
        LoraConfig(target_modules=["q"], layers_pattern="layers")


def test_cfg_7_layers_to_transform_with_str_target_modules_raises():
    with pytest.raises(ValueError, match="layers_to_transform"):
        LoraConfig(target_modules=r".*\.q", layers_to_transform=[0])


def test_cfg_7_list_target_and_exclude_modules_are_stored_as_sets():
    config = LoraConfig(target_modules=["v", "q", "k", "q"], exclude_modules=["b", "a"])
    assert config.target_modules == {"q", "k", "v"}
    assert isinstance(config.target_modules, set)
    assert config.exclude_modules == {"a", "b"}


def test_cfg_7_sets_are_serialised_as_sorted_lists(tmp_path):
    config = LoraConfig(target_modules=["v", "q", "k"], exclude_modules=["b", "a"])
    assert config.to_dict()["target_modules"] == ["k", "q", "v"]
    config.save_pretrained(tmp_path)
    saved = _read_saved(tmp_path)
    assert saved["target_modules"] == ["k", "q", "v"]
    assert saved["exclude_modules"] == ["a", "b"]


def test_cfg_7_str_target_modules_stays_a_str():
    config = LoraConfig(target_modules=r".*\.(q|v)_proj")
    assert config.target_modules == r".*\.(q|v)_proj"


# -------------------------------------------------------------------------------------------------------------- CFG-13


def test_cfg_13_runtime_config_is_not_written(tmp_path):
    config = LoraConfig(target_modules=["q"], runtime_config=LoraRuntimeConfig(ephemeral_gpu_offload=True))
    assert "runtime_config" not in config.to_dict()
    config.save_pretrained(tmp_path)
    assert "runtime_config" not in _read_saved(tmp_path)
    # the in-memory value is untouched by saving
    assert config.runtime_config.ephemeral_gpu_offload is True


def test_cfg_13_runtime_config_in_a_file_is_ignored_on_load(tmp_path):
    _write_config(
        tmp_path, {"peft_type": "LORA", "target_modules": ["q"], "runtime_config": {"ephemeral_gpu_offload": True}}
    )
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert loaded.runtime_config.ephemeral_gpu_offload is False


# ---------------------------------------------------------------------------------------------- fields filled in later


@pytest.mark.parametrize("config_cls", _all_config_classes(), ids=lambda cls: cls.__name__)
def test_every_config_is_created_with_its_defaults_and_copied(config_cls):
    """Fields the reference fills in after creation (sizes, indices) may be left open: creating and copying a config
    never validates them (issue 11, item 13); the model checks them where it uses them."""
    config = _new_config(config_cls)
    assert copy.deepcopy(config).to_dict() == config.to_dict()
    assert dataclasses.replace(config).to_dict() == config.to_dict()


def test_trainable_tokens_indices_left_open_are_checked_at_injection():
    config = TrainableTokensConfig(target_modules=["emb"])
    model = nn.Sequential()
    model.add_module("emb", nn.Embedding(10, 4))
    with pytest.raises(ValueError, match=r"token_indices must be a non-empty list of non-negative ints, got \[\]"):
        get_peft_model(model, config)
    assert not any(type(m).__name__ == "TrainableTokensLayer" for m in model.modules())
    config.token_indices = [1, 2]
    peft_model = get_peft_model(model, config)
    assert peft_model.emb.token_indices["default"] == [1, 2]


# ------------------------------------------------------------------------------------------------- sanity checks


@pytest.mark.parametrize("config_cls", [PeftConfig, LoraConfig], ids=lambda cls: cls.__name__)
def test_a_json_file_without_peft_type_is_no_adapter_config(config_cls, tmp_path):
    """Issue 11, item 14: any JSON file named adapter_config.json is not accepted as a config (as in the reference)."""
    _write_config(tmp_path, {"foo": "bar", "baz": 123})
    msg = f"The {config_cls.__name__} config that is trying to be loaded is missing required keys: {{'peft_type'}}."
    with pytest.raises(TypeError, match=re.escape(msg)):
        config_cls.from_pretrained(tmp_path)


def test_target_parameters_given_as_a_str_raises_a_type_error():
    # the field check of every config (a TypeError and a ValueError) says what the reference's message says
    with pytest.raises(
        TypeError, match=re.escape("target_parameters='lin0.weight' is invalid: expected a list of str")
    ):
        LoraConfig(target_parameters="lin0.weight")
