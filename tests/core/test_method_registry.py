"""Method registration (CFG-10) and the lazily filled registries behind it (ARCH-3, PERF-2)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest

from peft import PeftConfig, register_peft_method, registry
from peft.mapping import (
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
)
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.peft_types import BUILTIN_METHODS

REGISTRIES = (
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
)

_LAZY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import peft
    from peft import registry
    from peft.utils.peft_types import BUILTIN_METHODS

    def loaded():
        return sorted(m for m in BUILTIN_METHODS if f"peft.tuners.{m}" in sys.modules)

    steps = {"import peft": loaded()}
    registry.config_class("VERA")
    steps["config_class VERA"] = loaded()
    found = registry.load_method("BOFT")
    steps["load_method BOFT"] = loaded()
    peft.LoHaConfig
    steps["peft.LoHaConfig"] = loaded()
    try:
        peft.register_peft_method(name="c3a", config_cls=object, model_cls=object)
    except ValueError as error:
        clash = str(error)
    steps["c3a clash"] = loaded()
    keys = sorted(peft.PEFT_TYPE_TO_PREFIX_MAPPING)
    steps["complete dict"] = loaded()
    json.dump({"steps": steps, "boft_found": found, "clash": clash, "keys": keys}, sys.stdout)
    """
)


def test_arch_3_import_peft_imports_no_method_until_it_is_used():
    proc = subprocess.run([sys.executable, "-c", _LAZY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    steps = result["steps"]
    assert steps["import peft"] == []
    assert steps["config_class VERA"] == ["vera"]
    assert steps["load_method BOFT"] == ["boft", "vera"] and result["boft_found"]
    assert steps["peft.LoHaConfig"] == ["boft", "loha", "vera"]
    # a built-in that nothing imported yet still counts as registered, and is not imported to find out
    assert "already a PEFT method called 'c3a'" in result["clash"]
    assert steps["c3a clash"] == ["boft", "loha", "vera"]
    # the reference's dicts are complete: reading one registers every method, those of host packages too
    assert steps["complete dict"] == sorted(BUILTIN_METHODS)
    assert set(result["keys"]) == {name.upper() for name in BUILTIN_METHODS} | {"ADAPTION_PROMPT"}


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: str(len(dict.keys(r))))
def test_cfg_10_registries_read_as_complete_dicts(registry):
    assert isinstance(registry, dict)
    assert set(registry) == set(registry.keys()) == {k for k, _ in registry.items()}
    assert len(registry) == len(list(registry.values()))
    assert registry.get("NOT_A_METHOD") is None and registry.get("NOT_A_METHOD", 1) == 1
    assert "NOT_A_METHOD" not in registry
    with pytest.raises(KeyError, match="NOT_A_METHOD"):
        registry["NOT_A_METHOD"]


def test_cfg_10_every_builtin_method_is_registered_under_its_name():
    for name in BUILTIN_METHODS:
        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[name.upper()]
        assert (
            config_cls.__module__.startswith(f"peft.tuners.{name}.") or config_cls.__module__ == f"peft.tuners.{name}"
        )
        assert PEFT_TYPE_TO_TUNER_MAPPING[name.upper()].__module__.startswith(f"peft.tuners.{name}")


@dataclasses.dataclass
class _ToyConfig(PeftConfig):
    target_modules: list[str] | None = None


class _ToyModel(BaseTuner):
    prefix = "toy_method_"


@pytest.fixture
def unregister_toy():
    yield
    for table in REGISTRIES:
        dict.pop(table, "TOY_METHOD", None)


def test_cfg_10_registering_a_method_fills_every_registry(unregister_toy):
    register_peft_method(name="toy_method", config_cls=_ToyConfig, model_cls=_ToyModel, is_mixed_compatible=True)
    assert PEFT_TYPE_TO_CONFIG_MAPPING["TOY_METHOD"] is _ToyConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["TOY_METHOD"] is _ToyModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING["TOY_METHOD"] == "toy_method_"
    assert PEFT_TYPE_TO_MIXED_MODEL_MAPPING["TOY_METHOD"] is _ToyModel
    assert isinstance(PeftConfig.from_peft_type(peft_type="TOY_METHOD"), _ToyConfig)
    with pytest.raises(ValueError, match="already a PEFT method called 'toy_method'"):
        register_peft_method(name="toy_method", config_cls=_ToyConfig, model_cls=_ToyModel)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "Toy_Method"}, "must be lower case, got 'Toy_Method'"),
        ({"name": "toy_method", "prefix": "toy_"}, "must be 'toy_method_', got 'toy_'"),
        ({"name": "lora"}, "already a PEFT method called 'lora'"),
    ],
)
def test_cfg_10_bad_registrations_are_refused(kwargs, message, unregister_toy):
    with pytest.raises(ValueError, match=message):
        register_peft_method(config_cls=_ToyConfig, model_cls=_ToyModel, **kwargs)


def test_cfg_10_the_tuner_prefix_must_match_the_registered_prefix(unregister_toy):
    with pytest.raises(ValueError, match="_ToyModel.prefix is 'toy_method_' but PEFT method 'toy_other' needs"):
        register_peft_method(name="toy_other", config_cls=_ToyConfig, model_cls=_ToyModel)


def test_the_method_table_gives_peft_type_exports_and_all():
    """PeftType, the exported names and ``__all__`` come from one table (``METHODS``)."""
    import importlib

    import peft
    import peft.tuners
    from peft.utils.peft_types import EXPORTS, METHODS, PeftType

    assert [member.value for member in PeftType] == [name.upper() for name in METHODS]
    assert str(PeftType.LORA) == "LORA" and PeftType("LORA") is PeftType.LORA
    assert set(EXPORTS) <= set(peft.__all__) and sorted(EXPORTS) == peft.tuners.__all__
    for export, method in EXPORTS.items():
        package = importlib.import_module(f"peft.tuners.{method}")
        assert getattr(peft, export) is getattr(package, export), export
        assert export in package.__all__, (method, export)
    for name in peft.__all__:
        assert getattr(peft, name) is not None, name


def test_registration_gives_the_tuner_its_prefix_and_the_config_its_peft_type(unregister_toy):
    class _PrefixlessModel(BaseTuner):
        pass

    register_peft_method(name="toy_method", config_cls=_ToyConfig, model_cls=_PrefixlessModel)
    assert _PrefixlessModel.prefix == "toy_method_" and BaseTuner.prefix == ""
    assert _ToyConfig().peft_type == "TOY_METHOD"
    assert registry.is_registered("TOY_METHOD") and not registry.is_registered("TOY_OTHER")


def test_targeting_configs_have_exactly_their_format_fields():
    """Configs declare the targeting field groups their checkpoint format has; shared code reads the others as their
    neutral values."""
    from peft import C3AConfig, LoraConfig, RoadConfig, TrainableTokensConfig

    targeting = {"exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save"}
    assert targeting <= set(LoraConfig().to_dict())
    c3a = C3AConfig(target_modules=["a"], layers_to_transform=[0])
    assert "exclude_modules" not in c3a.to_dict() and c3a.exclude_modules is None
    assert c3a.target_modules == {"a"} and c3a.layers_to_transform == [0]
    with pytest.raises(TypeError, match="exclude_modules"):
        C3AConfig(exclude_modules=["a"])
    road = RoadConfig()
    assert {"layers_to_transform", "exclude_modules"}.isdisjoint(road.to_dict()) and road.bias == "none"
    tokens = TrainableTokensConfig(token_indices=[0])
    assert "modules_to_save" not in tokens.to_dict() and tokens.modules_to_save is None
