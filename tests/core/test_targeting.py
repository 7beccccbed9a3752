"""Which modules an adapter targets (REQUIREMENTS TGT-1..11, TGT-13, OPEN-5).

What was targeted is read from the module tree (which modules became LoRA layers), not from the tuner's own records,
except where the records themselves are the behaviour under test (TGT-11).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from peft import LoraConfig, PeftWarning, get_peft_model, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import _find_minimal_target_modules
from peft.utils import ModulesToSaveWrapper


def _lora_layer_names(model: nn.Module) -> list[str]:
    """Names (relative to ``model``) of the LoRA layers in it, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def _targets(model: nn.Module, **config_kwargs) -> list[str]:
    peft_model = get_peft_model(model, LoraConfig(**config_kwargs))
    return _lora_layer_names(peft_model.get_base_model())


def _container(**children: nn.Module) -> nn.Module:
    module = nn.Module()
    for name, child in children.items():
        setattr(module, name, child)
    return module


def _nested_model() -> nn.Module:
    """Modules: seq.0, seq.2, block.seq.0, q_proj, xq_proj."""
    return _container(
        seq=nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)),
        block=_container(seq=nn.Sequential(nn.Linear(4, 4))),
        q_proj=nn.Linear(4, 4),
        xq_proj=nn.Linear(4, 4),
    )


def _tiny_llama_config(**kwargs):
    from tiny_transformers import tiny_llama_config

    return tiny_llama_config(**kwargs)


def _tiny_llama():
    from tiny_transformers import tiny_llama

    return tiny_llama()


LLAMA_LINEAR_NAMES = sorted(
    f"model.layers.{i}.{kind}"
    for i in range(2)
    for kind in (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
)


# --------------------------------------------------------------------------------------------------------------- TGT-1


def test_tgt_1_list_entry_matches_full_name():
    assert _targets(_nested_model(), target_modules=["seq.2"]) == ["seq.2"]


def test_tgt_1_list_entry_matches_dotted_suffix():
    assert _targets(_nested_model(), target_modules=["seq.0"]) == ["seq.0", "block.seq.0"]


def test_tgt_1_numeric_entry_matches_every_module_with_that_last_segment():
    assert _targets(_nested_model(), target_modules=["0"]) == ["seq.0", "block.seq.0"]


def test_tgt_1_list_entry_only_matches_whole_name_segments():
    # "q_proj" is a suffix of "xq_proj" as a string, but not as a name segment
    assert _targets(_nested_model(), target_modules=["q_proj"]) == ["q_proj"]


def test_tgt_1_str_target_is_a_regex_fullmatch():
    assert _targets(_nested_model(), target_modules=r"seq\.[02]") == ["seq.0", "seq.2"]


def test_tgt_1_str_target_must_match_the_whole_name():
    assert _targets(_nested_model(), target_modules=r".*seq\.0") == ["seq.0", "block.seq.0"]


def test_tgt_1_none_target_without_default_raises():
    with pytest.raises(ValueError, match="Please specify target_modules in peft_config"):
        get_peft_model(_nested_model(), LoraConfig())


def test_tgt_1_none_target_uses_the_default_for_the_model_type():
    names = _targets(_tiny_llama())
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]


# --------------------------------------------------------------------------------------------------------------- TGT-2


def test_tgt_2_exclude_modules_list_removes_matches():
    names = _targets(_nested_model(), target_modules=["0", "2"], exclude_modules=["block.seq.0"])
    assert names == ["seq.0", "seq.2"]


def test_tgt_2_exclude_modules_str_is_a_regex_fullmatch():
    names = _targets(_nested_model(), target_modules=["0", "2"], exclude_modules=r"seq\.[0-9]")
    assert names == ["block.seq.0"]


def test_tgt_2_all_matches_excluded_raises():
    with pytest.raises(ValueError, match="All modules were excluded"):
        get_peft_model(_nested_model(), LoraConfig(target_modules=["seq.0"], exclude_modules=["0"]))


def test_tgt_2_exclude_modules_excluding_nothing_warns():
    with pytest.warns(UserWarning, match="exclude_modules"):
        names = _targets(_nested_model(), target_modules=["seq.2"], exclude_modules=["does_not_exist"])
    assert names == ["seq.2"]


# --------------------------------------------------------------------------------------------------------------- TGT-3


def test_tgt_3_unmatched_target_names_the_entry_and_close_names():
    with pytest.raises(ValueError) as excinfo:
        get_peft_model(_tiny_llama(), LoraConfig(target_modules=["q_prj"]))
    message = str(excinfo.value)
    assert "'q_prj'" in message
    assert "'q_proj'" in message


def test_tgt_3_unmatched_target_mentions_layers_to_transform():
    config = LoraConfig(target_modules=["q_proj"], layers_to_transform=[7], layers_pattern="layers")
    with pytest.raises(ValueError, match="layers_to_transform"):
        get_peft_model(_tiny_llama(), config)


def test_tgt_3_unmatched_target_mentions_modules_to_save_as_possible_cause():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x)

    with pytest.raises(ValueError, match="modules_to_save"):
        get_peft_model(Net(), LoraConfig(target_modules=["lin"], modules_to_save=["lin"]))


def test_tgt_3_unmatched_target_parameters_warn_when_modules_matched():
    config = LoraConfig(target_modules=["lin1"], target_parameters=["nope.weight"])
    with pytest.warns(
        RuntimeWarning, match=r"target_parameters=\['nope.weight'\] were set but no parameter was matched"
    ):
        peft_model = get_peft_model(_two_linears(), config)
    assert _lora_layer_names(peft_model.get_base_model()) == ["lin1"]


def test_tgt_3_unmatched_target_modules_warn_when_parameters_matched():
    config = LoraConfig(target_modules=["nope"], target_parameters=["lin2.weight"])
    with pytest.warns(RuntimeWarning, match=r"target_modules=\{'nope'\} were set but no module was matched"):
        peft_model = get_peft_model(_two_linears(), config)
    assert _lora_layer_names(peft_model.get_base_model()) == ["lin2"]


@pytest.mark.parametrize("target_modules", [None, [], ""])
def test_tgt_3_neither_target_modules_nor_target_parameters_matching_raises_the_references_error(target_modules):
    config = LoraConfig(target_modules=target_modules, target_parameters=["foo", "bar"])
    message = r"No `target_modules` passed but also no `target_parameters` found.*\['bar', 'foo'\] matched no param"
    with pytest.raises(ValueError, match=message):
        get_peft_model(_two_linears(), config)


def test_lora_layer_errors_carry_the_references_wording():
    conv = _container(conv=nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="groups=2 and rank 1. Currently, support is limited to conv layers where"):
        get_peft_model(conv, LoraConfig(target_modules=["conv"], r=1))
    embedding = _container(emb=nn.Embedding(5, 4))
    with pytest.raises(ValueError, match="lora_bias=True is not supported for Embedding"):
        get_peft_model(embedding, LoraConfig(target_modules=["emb"], lora_bias=True))


def test_tgt_12_module_targeted_by_modules_and_parameters_raises():
    config = LoraConfig(target_modules=["lin1"], target_parameters=["lin1.weight"])
    with pytest.raises(ValueError, match="lin1"):
        get_peft_model(_two_linears(), config)


# --------------------------------------------------------------------------------------------------------------- TGT-4


def test_tgt_4_all_linear_targets_every_linear_but_lm_head():
    model = get_peft_model(_tiny_llama(), LoraConfig(target_modules="all-linear"))
    assert sorted(_lora_layer_names(model.get_base_model())) == LLAMA_LINEAR_NAMES
    assert type(model.get_base_model().lm_head) is nn.Linear


def test_tgt_4_all_linear_is_case_insensitive():
    model = get_peft_model(_tiny_llama(), LoraConfig(target_modules="ALL-Linear"))
    assert sorted(_lora_layer_names(model.get_base_model())) == LLAMA_LINEAR_NAMES


def test_tgt_4_all_linear_is_saved_expanded_to_full_names(tmp_path):
    model = get_peft_model(_tiny_llama(), LoraConfig(target_modules="all-linear"))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["target_modules"] == LLAMA_LINEAR_NAMES


def test_tgt_4_all_linear_excludes_seq_cls_head():
    from transformers import LlamaForSequenceClassification

    base = LlamaForSequenceClassification(_tiny_llama_config(num_labels=3, pad_token_id=0))
    model = get_peft_model(base, LoraConfig(target_modules="all-linear", task_type="SEQ_CLS"))
    names = _lora_layer_names(model.get_base_model())
    assert sorted(names) == LLAMA_LINEAR_NAMES
    assert not any(name.endswith("score") for name in names)


def test_tgt_4_all_linear_without_seq_cls_task_keeps_the_head():
    # the exclusion above is due to task_type, not to the head being unreachable
    from transformers import LlamaForSequenceClassification

    base = LlamaForSequenceClassification(_tiny_llama_config(num_labels=3, pad_token_id=0))
    names = _targets(base, target_modules="all-linear")
    assert "score" in names


def test_tgt_4_all_linear_expands_to_full_names_so_suffixes_do_not_leak(tmp_path):
    # "lin.baz" is linear, "conv.baz" a Conv2d; a saved suffix "baz" would hit the conv on reload
    model = _container(lin=_container(baz=nn.Linear(4, 4)), conv=_container(baz=nn.Conv2d(4, 4, 1)))
    peft_model = get_peft_model(model, LoraConfig(target_modules="all-linear"))
    assert _lora_layer_names(peft_model.get_base_model()) == ["lin.baz"]
    assert type(peft_model.get_base_model().conv.baz) is nn.Conv2d
    peft_model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["target_modules"] == ["lin.baz"]


def test_tgt_4_all_linear_on_plain_module_may_hit_the_output_layer():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert _targets(model, target_modules="all-linear") == ["0", "2"]


def test_tgt_4_all_linear_second_adapter_reuses_lora_layers_not_their_children():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    peft_model = get_peft_model(model, LoraConfig(target_modules=["0"]))
    peft_model.add_adapter("other", LoraConfig(target_modules="all-linear"))
    base = peft_model.get_base_model()
    assert _lora_layer_names(base) == ["0", "2"]
    assert sorted(base[0].lora_A) == ["default", "other"]
    assert type(base[0].base_layer) is nn.Linear
    assert type(base[0].lora_A["default"]) is nn.Linear


# --------------------------------------------------------------------------------------------------------------- TGT-5


def _layered_model() -> nn.Module:
    def block():
        return _container(proj=nn.Linear(4, 4))

    inner = _container(
        blocks=nn.ModuleList([block() for _ in range(3)]), other=nn.ModuleList([block() for _ in range(3)])
    )
    return _container(model=inner)


def test_tgt_5_layers_to_transform_restricts_to_listed_layers():
    names = _targets(_tiny_llama(), target_modules=["q_proj"], layers_to_transform=[1])
    assert names == ["model.layers.1.self_attn.q_proj"]


def test_tgt_5_layers_to_transform_accepts_an_int():
    names = _targets(_tiny_llama(), target_modules=["q_proj", "v_proj"], layers_to_transform=0)
    assert names == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


def test_tgt_5_without_layers_pattern_any_numbered_list_counts():
    names = _targets(_layered_model(), target_modules=["proj"], layers_to_transform=[1])
    assert names == ["model.blocks.1.proj", "model.other.1.proj"]


def test_tgt_5_layers_pattern_selects_the_layer_list():
    names = _targets(_layered_model(), target_modules=["proj"], layers_to_transform=[1], layers_pattern="blocks")
    assert names == ["model.blocks.1.proj"]


def test_tgt_5_layers_pattern_may_be_a_list():
    names = _targets(
        _layered_model(), target_modules=["proj"], layers_to_transform=[0, 2], layers_pattern=["other", "blocks"]
    )
    assert names == ["model.blocks.0.proj", "model.blocks.2.proj", "model.other.0.proj", "model.other.2.proj"]


# --------------------------------------------------------------------------------------------------------------- TGT-6

PATTERN_MODULES = ["foo", "module.foo", "module.foobar", "module.module.foo", "module.module.barfoo"]


def _pattern_model() -> nn.Module:
    return _container(
        foo=nn.Linear(4, 4),
        module=_container(
            foo=nn.Linear(4, 4),
            foobar=nn.Linear(4, 4),
            module=_container(foo=nn.Linear(4, 4), barfoo=nn.Linear(4, 4)),
        ),
    )


def _ranks(rank_pattern: dict) -> dict[str, int]:
    model = get_peft_model(
        _pattern_model(), LoraConfig(r=8, target_modules=["foo", "foobar", "barfoo"], rank_pattern=rank_pattern)
    ).get_base_model()
    ranks = {name: model.get_submodule(name).r["default"] for name in PATTERN_MODULES}
    # the rank is the real shape, not only the recorded number
    for name in PATTERN_MODULES:
        assert model.get_submodule(name).lora_A["default"].weight.shape[0] == ranks[name]
    return ranks


@pytest.mark.parametrize(
    "rank_pattern, expected",
    [
        ({"foo": 42}, {"foo": 42, "module.foo": 42, "module.module.foo": 42}),
        ({"^foo": 42}, {"foo": 42}),
        ({"^module.foo": 42}, {"module.foo": 42}),
        ({"module.foo": 42}, {"module.foo": 42, "module.module.foo": 42}),
        ({"^foo": 42, "^module.module.foo": 55}, {"foo": 42, "module.module.foo": 55}),
    ],
    ids=["suffix", "anchored-top", "anchored-nested", "dotted-suffix", "two-anchored"],
)
def test_tgt_6_rank_pattern_matches_full_segment_suffixes(rank_pattern, expected):
    assert _ranks(rank_pattern) == {name: expected.get(name, 8) for name in PATTERN_MODULES}


def test_tgt_6_alpha_pattern_sets_alpha_and_scaling():
    model = get_peft_model(
        _pattern_model(),
        LoraConfig(r=8, lora_alpha=8, target_modules=["foo", "foobar", "barfoo"], alpha_pattern={"foo": 32}),
    ).get_base_model()
    alphas = {name: model.get_submodule(name).lora_alpha["default"] for name in PATTERN_MODULES}
    scalings = {name: model.get_submodule(name).scaling["default"] for name in PATTERN_MODULES}
    expected = {"foo": 32, "module.foo": 32, "module.foobar": 8, "module.module.foo": 32, "module.module.barfoo": 8}
    assert alphas == expected
    assert scalings == {name: alpha / 8 for name, alpha in expected.items()}


# --------------------------------------------------------------------------------------------------------------- TGT-7


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x)


def test_tgt_7_modules_inside_modules_to_save_are_never_targeted():
    model = _container(lin=nn.Linear(4, 4), head=_Head())
    peft_model = get_peft_model(model, LoraConfig(target_modules=["lin"], modules_to_save=["head"]))
    base = peft_model.get_base_model()
    assert _lora_layer_names(base) == ["lin"]
    assert isinstance(base.head, ModulesToSaveWrapper)
    assert type(base.head.original_module.lin) is nn.Linear
    assert type(base.head.modules_to_save["default"].lin) is nn.Linear


@pytest.mark.filterwarnings("ignore:target_modules entries")
def test_tgt_7_a_module_listed_in_modules_to_save_is_not_targeted_itself():
    model = _container(lin=nn.Linear(4, 4), head=nn.Linear(4, 2))
    peft_model = get_peft_model(model, LoraConfig(target_modules=["lin", "head"], modules_to_save=["head"]))
    base = peft_model.get_base_model()
    assert _lora_layer_names(base) == ["lin"]
    assert type(base.head.modules_to_save["default"]) is nn.Linear


# --------------------------------------------------------------------------------------------------------------- TGT-8


def test_tgt_8_second_adapter_wildcard_never_wraps_lora_a_or_b():
    model = _container(proj=nn.Linear(4, 4), other=nn.Linear(4, 4))
    peft_model = get_peft_model(model, LoraConfig(target_modules=["proj"]))
    # this regex also matches "proj.lora_A.default", "proj.base_layer", ...
    peft_model.add_adapter("second", LoraConfig(target_modules=r".*proj.*"))
    base = peft_model.get_base_model()
    assert _lora_layer_names(base) == ["proj"]
    assert sorted(base.proj.lora_A) == ["default", "second"]
    assert type(base.proj.base_layer) is nn.Linear  # updated in place, not nested
    assert all(type(m) is nn.Linear for m in [*base.proj.lora_A.values(), *base.proj.lora_B.values()])


# --------------------------------------------------------------------------------------------------------------- TGT-9


def _assert_same_matches(minimal: set[str], targets: list[str], others: list[str]) -> None:
    def matched(name):
        return any(name == entry or name.endswith("." + entry) for entry in minimal)

    assert [n for n in targets if not matched(n)] == []
    assert [n for n in others if matched(n)] == []


def test_tgt_9_minimal_target_modules_finds_common_suffixes():
    targets = [f"model.decoder.layers.{i}.self_attn.{p}" for i in range(30) for p in ("q_proj", "v_proj")]
    others = [f"model.decoder.layers.{i}.self_attn.k_proj" for i in range(30)]
    assert _find_minimal_target_modules(targets, others) == {"q_proj", "v_proj"}


def test_tgt_9_minimal_target_modules_respects_prefix_lookalikes():
    # "bar.0.query" is targeted, "foo_bar.0.query" is not: comparing without a "." boundary would conflate them
    targets = [f"bar.{i}.query" for i in range(3)] + [f"bar.{i}.value" for i in range(3)]
    others = [f"foo_bar.{i}.query" for i in range(3)] + [f"bar.{i}.key" for i in range(3)]
    minimal = _find_minimal_target_modules(targets, others)
    _assert_same_matches(minimal, targets, others)
    assert "query" not in minimal
    assert len(minimal) <= len(targets)


def test_tgt_9_minimal_target_modules_returns_input_when_not_shorter():
    targets = ["a.x", "b.y"]
    others = ["a.y", "b.x"]
    minimal = _find_minimal_target_modules(targets, others)
    _assert_same_matches(minimal, targets, others)
    assert minimal == set(targets)


def test_tgt_9_minimal_target_modules_rejects_a_str():
    with pytest.raises(ValueError):
        _find_minimal_target_modules("q_proj", ["k_proj"])


def test_tgt_9_long_target_lists_are_compressed_and_target_the_same_modules():
    model = _container(layers=nn.ModuleList([_container(q=nn.Linear(4, 4), k=nn.Linear(4, 4)) for _ in range(24)]))
    full_names = [f"layers.{i}.q" for i in range(24)]
    peft_model = get_peft_model(model, LoraConfig(target_modules=full_names))
    assert _lora_layer_names(peft_model.get_base_model()) == full_names
    assert peft_model.peft_config["default"].target_modules == {"q"}


# -------------------------------------------------------------------------------------------------------------- TGT-10


def _two_linears() -> nn.Module:
    torch.manual_seed(0)
    return _container(lin1=nn.Linear(4, 4), lin2=nn.Linear(4, 4))


def _sd_for(*module_names: str, prefix: str = "") -> dict[str, torch.Tensor]:
    sd = {}
    for name in module_names:
        sd[f"{prefix}{name}.lora_A.weight"] = torch.full((8, 4), 7.0)
        sd[f"{prefix}{name}.lora_B.weight"] = torch.full((4, 8), 7.0)
    return sd


def test_tgt_10_state_dict_decides_the_targets():
    config = LoraConfig(target_modules=["lin1", "lin2"])
    with pytest.warns(RuntimeWarning, match="lin2"):
        model = inject_adapter_in_model(config, _two_linears(), state_dict=_sd_for("lin1"))
    assert _lora_layer_names(model) == ["lin1"]


def test_tgt_10_state_dict_targets_modules_the_config_misses():
    config = LoraConfig(target_modules=["lin1"])
    with pytest.warns(RuntimeWarning, match="lin2"):
        model = inject_adapter_in_model(config, _two_linears(), state_dict=_sd_for("lin1", "lin2"))
    assert _lora_layer_names(model) == ["lin1", "lin2"]


def test_tgt_10_state_dict_weights_are_not_loaded():
    model = inject_adapter_in_model(LoraConfig(target_modules=["lin1"]), _two_linears(), state_dict=_sd_for("lin1"))
    assert not torch.equal(model.lin1.lora_A["default"].weight, torch.full((8, 4), 7.0))


def test_tgt_10_state_dict_agreeing_with_config_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = inject_adapter_in_model(
            LoraConfig(target_modules=["lin1"]), _two_linears(), state_dict=_sd_for("lin1")
        )
    assert _lora_layer_names(model) == ["lin1"]


def test_tgt_10_compiled_prefix_is_stripped():
    model = inject_adapter_in_model(
        LoraConfig(target_modules=["lin2"]), _two_linears(), state_dict=_sd_for("lin2", prefix="_orig_mod.")
    )
    assert _lora_layer_names(model) == ["lin2"]


def test_tgt_10_state_dict_with_target_parameters_raises():
    config = LoraConfig(target_modules=None, target_parameters=["lin1.weight"])
    with pytest.raises(ValueError, match="target_parameters"):
        inject_adapter_in_model(config, _two_linears(), state_dict=_sd_for("lin1"))


# -------------------------------------------------------------------------------------------------------------- TGT-11


def test_tgt_11_targeted_module_names_records_what_was_adapted():
    peft_model = get_peft_model(_nested_model(), LoraConfig(target_modules=["0", "q_proj"]))
    assert peft_model.base_model.targeted_module_names == ["seq.0", "block.seq.0", "q_proj"]
    assert peft_model.base_model.targeted_parameter_names == []


def test_tgt_11_targeted_parameter_names_records_adapted_parameters():
    peft_model = get_peft_model(_two_linears(), LoraConfig(target_parameters=["lin2.weight"]))
    assert peft_model.base_model.targeted_parameter_names == ["lin2.weight"]
    assert peft_model.base_model.targeted_module_names == []


# -------------------------------------------------------------------------------------------------------------- TGT-13


def test_tgt_13_get_peft_model_twice_warns_and_suggests_unload():
    model = _two_linears()
    get_peft_model(model, LoraConfig(target_modules=["lin1"]))
    with pytest.warns(PeftWarning) as record:
        get_peft_model(model, LoraConfig(target_modules=["lin2"]))
    assert any("unload()" in str(w.message) for w in record)


def test_tgt_13_first_get_peft_model_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftWarning)
        get_peft_model(_two_linears(), LoraConfig(target_modules=["lin1"]))


# -------------------------------------------------------------------------------------------------------------- OPEN-5

_DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile, warnings
    import torch
    from torch import nn
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    def container(**children):
        module = nn.Module()
        for name, child in children.items():
            setattr(module, name, child)
        return module

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    blocks = [container(q=nn.Linear(4, 4), k=nn.Linear(4, 4), v=nn.Linear(4, 4), o=nn.Linear(4, 4)) for _ in range(8)]
    model = container(layers=nn.ModuleList(blocks), head_b=Head(), head_a=Head(), head_c=Head())
    targets = [f"layers.{i}.{p}" for i in range(8) for p in ("v", "q", "k")]
    config = LoraConfig(
        target_modules=targets, modules_to_save=["head_c", "head_a", "head_b"], exclude_modules=["zz", "yy", "xx"]
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        peft_model = get_peft_model(model, config)
        peft_model.add_adapter("other", LoraConfig(target_modules=["o", "q", "v", "k"], exclude_modules=["b", "a"]))
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        saved_config = open(tmp + "/adapter_config.json").read()
    json.dump(
        {
            "state_dict": list(peft_model.state_dict()),
            "adapter_keys": list(get_peft_model_state_dict(peft_model)),
            "targeted": peft_model.base_model.targeted_module_names,
            "saved_config": json.loads(saved_config)["target_modules"],
            "warnings": [str(w.message) for w in record],
        },
        sys.stdout,
    )
    """
)


def _run_with_hash_seed(seed: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    proc = subprocess.run(
        [sys.executable, "-c", _DETERMINISM_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_open_5_injection_is_independent_of_the_hash_seed():
    first, second = _run_with_hash_seed("1"), _run_with_hash_seed("2024")
    assert first["targeted"], "the script targeted nothing"
    assert first["state_dict"] == second["state_dict"]
    assert first["adapter_keys"] == second["adapter_keys"]
    assert first["targeted"] == second["targeted"]
    assert first["saved_config"] == second["saved_config"]
    assert first["warnings"] == second["warnings"]


# ------------------------------------------------------------------------------------------ fan_in_fan_out


def _methods_with_fan_in_fan_out() -> list[str]:
    import dataclasses

    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return sorted(
        peft_type
        for peft_type, config_cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()
        if any(field.name == "fan_in_fan_out" for field in dataclasses.fields(config_cls))
    )


@pytest.mark.parametrize("peft_type", _methods_with_fan_in_fan_out())
def test_method_common_fan_in_fan_out_on_a_linear_layer_is_corrected_with_a_warning(peft_type):
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    extra = {"ADALORA": {"total_step": 10}, "IA3": {"feedforward_modules": []}}.get(peft_type, {})
    config = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type](target_modules=["lin"], fan_in_fan_out=True, **extra)
    model = _container(lin=nn.Linear(256, 256))
    message = (
        "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False."
    )
    with pytest.warns(UserWarning, match=message.replace(".", r"\.")):
        peft_model = get_peft_model(model, config)
    assert peft_model.peft_config["default"].fan_in_fan_out is False
    assert getattr(peft_model.base_model.model.lin, "fan_in_fan_out", False) is False


def test_pattern_keys_that_match_no_targeted_module_are_reported_by_name():
    """A typo in rank_pattern/alpha_pattern would leave the module at the default rank silently."""
    config = LoraConfig(
        target_modules=["a", "b"], rank_pattern={"a": 2, "typo": 3}, alpha_pattern={"^b": 4, "other.b": 5}
    )
    with pytest.warns(RuntimeWarning) as record:
        model = get_peft_model(_container(a=nn.Linear(4, 4), b=nn.Linear(4, 4)), config)
    messages = [str(w.message) for w in record if "did not match any targeted module" in str(w.message)]
    assert len(messages) == 2
    assert any(m.startswith("Some rank_pattern keys") and m.endswith("ignored: ['typo']") for m in messages)
    assert any(m.startswith("Some alpha_pattern keys") and m.endswith("ignored: ['other.b']") for m in messages)
    assert model.base_model.model.a.r["default"] == 2 and model.base_model.model.b.lora_alpha["default"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_peft_model(_container(a=nn.Linear(4, 4)), LoraConfig(target_modules=["a"], rank_pattern={"a": 2}))


@pytest.mark.parametrize(
    ("option", "value"), [("modules_to_save", ["foobar"]), ("trainable_token_indices", {"foobar": [1, 2]})]
)
def test_auxiliary_entries_matching_adapter_internals_are_refused_naming_the_adapter(option, value):
    """An entry equal to the adapter name matches the adapter's own containers (``lora_dropout.foobar``...)."""
    model = _container(emb=nn.Embedding(10, 4), lin=nn.Linear(4, 4))
    config = LoraConfig(target_modules=["emb", "lin"], **{option: value})
    message = (
        r"child of <class 'peft\.tuners\.lora\.layer\.\w+'>.*the adapter name, 'foobar', does not conflict.*"
        rf"{option} entry 'foobar' matches '\w+\.lora_\w+\.foobar'"
    )
    with pytest.raises(ValueError, match=message):
        get_peft_model(model, config, adapter_name="foobar")


def test_adapters_targeting_the_same_parameters_stack_on_one_wrapper_and_round_trip(tmp_path):
    """Several adapters may use target_parameters if they target the same parameters (which parameter a tensor
    belongs to is the wrappers' nesting, not in the checkpoint); others are refused, naming each adapter's set."""
    from peft import PeftModel

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(x))

    def model() -> nn.Module:
        torch.manual_seed(0)
        return Net()

    peft_model = get_peft_model(model(), LoraConfig(target_modules=[], target_parameters=["a.weight"]))
    peft_model.add_adapter(
        "other", LoraConfig(target_modules=[], target_parameters=["a.weight"], init_lora_weights=False)
    )
    wrapper = peft_model.base_model.model.a
    assert sorted(wrapper.lora_A) == ["default", "other"] and isinstance(wrapper.base_layer, nn.Linear)
    peft_model.save_pretrained(tmp_path)
    x = torch.randn(3, 4)
    peft_model.set_adapter("other")
    expected = peft_model(x)

    loaded = PeftModel.from_pretrained(model(), tmp_path)
    loaded.load_adapter(tmp_path / "other", adapter_name="other")
    loaded.set_adapter("other")
    torch.testing.assert_close(loaded(x), expected)

    with pytest.raises(ValueError, match=r"all adapters must target the same set of parameters; got .*'b\.weight'"):
        peft_model.add_adapter("third", LoraConfig(target_modules=[], target_parameters=["b.weight"]))
    assert "third" not in peft_model.peft_config


def test_target_parameters_on_a_layer_adapted_through_target_modules_is_refused():
    peft_model = get_peft_model(_container(a=nn.Linear(4, 4)), LoraConfig(target_modules=["a"]))
    with pytest.raises(ValueError, match=r"Trying to wrap an `nn\.Parameter` of layer 'a' of type Linear"):
        peft_model.add_adapter("b", LoraConfig(target_modules=[], target_parameters=["a.weight"]))
