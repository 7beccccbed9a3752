"""Every field of every config is type- and range-checked where the config is built or read (issue #14 item 4).

The probes are derived here from each registered config class's annotations, independently of the checker: a value
no annotation admits, JSON strings where a bool or a number is expected, a float for an int, an int for a bool,
and values just outside a declared ``Range``. Each must be refused with a ``ValueError`` naming the class, the field,
the value and what is valid. Adapters saved by the reference must still load.
"""

from __future__ import annotations

import json
import types
import typing
import warnings
from pathlib import Path

import pytest

from peft import (
    PEFT_TYPE_TO_CONFIG_MAPPING,
    KasaConfig,
    LoraConfig,
    PeftConfig,
    TrainableTokensConfig,
    VeloraConfig,
    WaveFTConfig,
)
from peft.hosts import get_host_registry
from peft.utils.config_fields import Range

get_host_registry()  # methods that host packages register (adaption prompt)
DATA = Path(__file__).parents[1] / "data"
# fields a config class cannot be built without (the others have defaults)
REQUIRED = {
    "ADALORA": {"total_step": 10},
    "ADAPTION_PROMPT": {"adapter_len": 4, "adapter_layers": 1},
    "CPT": {"task_type": "CAUSAL_LM"},
    "TRAINABLE_TOKENS": {"token_indices": [0]},
}


def _leaves(hint) -> list:
    """The non-union members of ``hint``, ``Annotated`` kept."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(hint) for leaf in _leaves(arg)]
    return [hint]


def _base(hint):
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def _probes(hint) -> list[tuple[object, str]]:
    """``(value, why it is wrong)`` for a field annotated ``hint``."""
    leaves = _leaves(hint)
    bases = [_base(leaf) for leaf in leaves]
    if typing.Any in bases:
        return []
    admits_str = any(
        b is str
        or typing.get_origin(b) is typing.Literal
        and any(isinstance(a, str) for a in typing.get_args(b))
        or (isinstance(b, type) and issubclass(b, str))
        for b in bases
    )
    probes: list[tuple[object, str]] = [(object(), "no annotation admits an object")]
    if bool in bases and str not in bases:
        probes += [("false", "a JSON string, not a bool"), (1, "an int, not a bool")]
    numbers = [b for b in bases if b in (int, float)]
    if numbers and not admits_str:
        probes += [("0.1", "a JSON string, not a number"), ("8", "a JSON string, not a number")]
    if int in bases and float not in bases and bool not in bases:
        probes.append((1.5, "a float, not an int"))
    if float in bases:
        probes.append((float("nan"), "not a finite number"))
    for leaf in leaves:
        for bound in typing.get_args(leaf)[1:] if typing.get_origin(leaf) is typing.Annotated else ():
            if isinstance(bound, Range) and bound.min is not None:
                below = bound.min if bound.min_open else bound.min - (1 if _base(leaf) is int else 0.5)
                probes.append((below, f"outside {bound}"))
            if isinstance(bound, Range) and bound.max is not None:
                above = bound.max if bound.max_open else bound.max + 1
                probes.append((above, f"outside {bound}"))
    return probes


def _cases():
    for peft_type, cls in sorted(PEFT_TYPE_TO_CONFIG_MAPPING.items()):
        hints = typing.get_type_hints(cls, include_extras=True)
        for name, hint in sorted(hints.items()):
            if name.startswith("_") or name == "peft_type":  # each class sets its own peft_type
                continue
            if name not in {f.name for f in cls.__dataclass_fields__.values()}:
                continue
            for value, why in _probes(hint):
                yield pytest.param(peft_type, name, value, id=f"{peft_type}-{name}-{why}")


@pytest.mark.parametrize(("peft_type", "name", "value"), list(_cases()))
def test_every_field_refuses_values_of_the_wrong_type_or_range(peft_type, name, value):
    """The reference checks almost none of these and fails later, deep in a layer, or silently (``"false"`` turns
    DoRA on)."""
    cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls(**REQUIRED.get(peft_type, {}))  # the probe alone makes the config invalid
        with pytest.raises(ValueError) as excinfo:
            cls(**{**REQUIRED.get(peft_type, {}), name: value})
    message = str(excinfo.value)
    assert name in message and repr(value) in message, message
    assert "expected" in message or "must" in message or "should" in message, message


def test_the_issues_examples_name_the_field_the_value_and_what_is_valid():
    """The reference: ``lora_alpha=None``, ``lora_dropout="0.1"`` and ``target_modules=123`` fail with a TypeError
    deep in a layer; ``use_dora="false"`` turns DoRA on."""
    expected = {
        "lora_alpha": (None, "LoraConfig.lora_alpha=None is invalid: expected a finite number"),
        "lora_dropout": ("0.1", "LoraConfig.lora_dropout='0.1' is invalid: expected a finite number"),
        "target_modules": (123, "LoraConfig.target_modules=123 is invalid: expected a list of str or a str or None"),
        "use_dora": ("false", "LoraConfig.use_dora='false' is invalid: expected a bool, got the str 'false'"),
    }
    for name, (value, text) in expected.items():
        with pytest.raises(ValueError) as excinfo:
            LoraConfig(**{name: value})
        assert str(excinfo.value).startswith(text), str(excinfo.value)


def test_a_config_file_with_a_string_bool_is_refused_naming_the_file_and_field(tmp_path):
    """The reference loads ``"use_dora": "false"`` and computes DoRA."""
    LoraConfig(target_modules=["lin"]).save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "use_dora": "false"}))
    with pytest.raises(ValueError, match=r"adapter_config\.json: LoraConfig\.use_dora='false' is invalid") as excinfo:
        PeftConfig.from_pretrained(tmp_path)
    assert str(path) in str(excinfo.value)


def test_numbers_from_code_keep_working():
    """diffusers passes kohya alphas as floats and 0-dim tensors; ints are valid numbers; values are not changed."""
    import torch

    assert LoraConfig(lora_alpha=8.0).lora_alpha == 8.0
    alpha = torch.tensor(4.0)
    assert LoraConfig(lora_alpha=alpha).lora_alpha is alpha
    assert LoraConfig(lora_dropout=0).lora_dropout == 0
    assert LoraConfig(alpha_pattern={"lin": 2.5}).alpha_pattern == {"lin": 2.5}
    assert LoraConfig(layer_replication=[[0, 2], (2, 4)]).layer_replication == [[0, 2], [2, 4]]
    assert TrainableTokensConfig(token_indices=(0, 1)).token_indices == (0, 1)


def _reference_configs() -> list[Path]:
    found = sorted((DATA / "fixtures" / "reference").glob("*/adapter/**/adapter_config.json"))
    found += sorted((DATA / "method_reference").glob("*/adapter/**/adapter_config.json"))
    return found + sorted((DATA / "reference_configs").glob("*/adapter/**/adapter_config.json"))


@pytest.mark.parametrize("path", _reference_configs(), ids=lambda p: str(p.parent.relative_to(DATA)))
def test_configs_saved_by_the_reference_still_load(path):
    """All 57 reference cases (and the method fixtures): a config loads where its method exists, or is refused only
    for a feature this version does not implement (never for a field type)."""
    peft_type = json.loads(path.read_text())["peft_type"]
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        pytest.skip(f"{peft_type} is not implemented yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = PeftConfig.from_pretrained(path.parent)
        except ValueError as exc:
            assert "is not supported by this version of peft" in str(exc), str(exc)
            return
    assert str(config.peft_type) == peft_type


@pytest.mark.parametrize(
    ("build", "lead", "generic"),
    [
        (lambda: VeloraConfig(num_groups=0), "`num_groups` should be positive, got 0.", "num_groups=0 is invalid"),
        (lambda: VeloraConfig(scale=0.0), "`scale` should be positive, got 0.0.", "scale=0.0 is invalid"),
        (lambda: KasaConfig(gamma=-1.0), "`gamma` must be non-negative, got -1.0.", "gamma=-1.0 is invalid"),
        (
            lambda: WaveFTConfig(n_frequency=0),
            "`n_frequency` should be a positive integer value but the value passed is 0.",
            "WaveFTConfig.n_frequency=0 is invalid: expected an int >= 1",
        ),
        (
            lambda: LoraConfig(kasa_config=123),
            "`KasaConfig` must be a `KasaConfig`, a dict, or None.",
            "LoraConfig.kasa_config=123 is invalid",
        ),
    ],
)
def test_a_class_can_lead_a_fields_message_with_its_own_sentence(build, lead, generic):
    """``_field_messages``: the reference's sentence first, then the generic message naming value and valid range."""
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value).startswith(lead + " "), str(info.value)
    assert generic in str(info.value)
