"""Auxiliary modules: ``modules_to_save`` copies and trainable tokens (REQUIREMENTS AUX-1..15, OPEN-2, OPEN-3).

Expected values are computed by hand from an independently built base model with the same seed (weights plus the
deltas a test writes), never by asking the wrapper under test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peft import (
    LoraConfig,
    PeftModel,
    TrainableTokensConfig,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from peft.tuners.trainable_tokens import TrainableTokensLayer
from peft.utils import ModulesToSaveWrapper, TrainableTokensWrapper
from peft.utils.other import AuxiliaryTrainingWrapper
from tests.tiny_models import TinyLM

VOCAB, DIM = 32, 8


class _TinyLM(TinyLM):
    """The input embedding is called ``tok`` (found via the getter)."""

    def __init__(self) -> None:
        super().__init__(embedding="tok")

    def get_input_embeddings(self) -> nn.Module:
        return self.tok


class _ScaledEmbedding(nn.Embedding):
    """An embedding that multiplies its output by ``embed_scale`` (like Gemma3's)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, embed_scale) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.embed_scale = embed_scale

    def forward(self, input_ids):
        return super().forward(input_ids) * self.embed_scale


class _ScaledLM(nn.Module):
    def __init__(self, embed_scale=3.0) -> None:
        super().__init__()
        self.embed_tokens = _ScaledEmbedding(VOCAB, DIM, embed_scale)
        self.lin0 = nn.Linear(DIM, DIM)

    def forward(self, input_ids):
        return self.lin0(self.embed_tokens(input_ids))


class _NoForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(DIM))


class _Containers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(DIM, DIM)
        self.blocks = nn.ModuleList([nn.Linear(DIM, DIM)])
        self.table = nn.ModuleDict({"a": nn.Linear(DIM, DIM)})
        self.no_forward = _NoForward()
        self.head = nn.Linear(DIM, 5)

    def forward(self, x):
        return self.head(self.blocks[0](self.lin0(x)))


def _base(cls=_TinyLM, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kwargs).eval()


def _lora(**kwargs) -> LoraConfig:
    return LoraConfig(**{"r": 2, "target_modules": ["lin0"], "init_lora_weights": False, **kwargs})


def _ids() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 5], [7, 5, 2, 0]])


def _out(model: nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(_ids() if x is None else x)


def _trainable(model: nn.Module) -> list[str]:
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


def _set_copy(wrapper: ModulesToSaveWrapper, adapter_name: str, weight_shift: float, bias_shift: float = 0.0) -> None:
    """Make an adapter's copy differ from the original, as training would."""
    with torch.no_grad():
        wrapper.modules_to_save[adapter_name].weight.add_(weight_shift)
        wrapper.modules_to_save[adapter_name].bias.add_(bias_shift)


def _shift_tokens(layer: TrainableTokensLayer, adapter_name: str, shift: float | torch.Tensor) -> None:
    with torch.no_grad():
        layer.trainable_tokens_delta[adapter_name].add_(shift)


def _embedding_with(rows_and_shifts: list[tuple[list[int], float]], seed: int = 0) -> torch.Tensor:
    """The base embedding weight with ``shift`` added to the given rows (several entries add up)."""
    weight = _base(seed=seed).tok.weight.detach().clone()
    for rows, shift in rows_and_shifts:
        weight[rows] += shift
    return weight


# ------------------------------------------------------------------------------------------------- AUX-4: copies


def test_aux_4_copy_is_created_only_for_adapters_that_list_the_module():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["lin1"]))
    model.add_adapter("plain", _lora())
    base = model.get_base_model()
    assert isinstance(base.head, ModulesToSaveWrapper) and isinstance(base.lin1, ModulesToSaveWrapper)
    assert sorted(base.head.modules_to_save) == ["default"]
    assert sorted(base.lin1.modules_to_save) == ["other"]


def test_aux_4_copy_is_an_independent_deep_copy_and_the_original_is_frozen():
    original = _base().head
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    copy = head.modules_to_save["default"]
    assert copy is not head.original_module
    assert copy.weight.data_ptr() != head.original_module.weight.data_ptr()
    torch.testing.assert_close(copy.weight, original.weight, atol=0, rtol=0)
    assert copy.weight.requires_grad and not head.original_module.weight.requires_grad


def test_aux_4_forward_uses_the_active_copy():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    _set_copy(head, "default", 0.5, 1.0)
    hidden = torch.randn(3, DIM)
    expected = hidden @ (_base().head.weight + 0.5).T + _base().head.bias + 1.0
    torch.testing.assert_close(head(hidden), expected.detach(), atol=1e-6, rtol=1e-5)


def test_aux_4_adapter_without_copy_uses_the_original_and_reactivation_restores_the_copy():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("plain", _lora())
    head = model.get_base_model().head
    _set_copy(head, "default", 0.5)
    hidden = torch.randn(3, DIM)
    with torch.no_grad():
        adapted = head(hidden)
        model.set_adapter("plain")
        torch.testing.assert_close(head(hidden), _base().head(hidden), atol=0, rtol=0)
        model.set_adapter("default")
        torch.testing.assert_close(head(hidden), adapted, atol=0, rtol=0)


def test_aux_5_modules_to_save_classifier_does_not_wrap_classifier2_for_any_adapter():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(DIM, DIM)
            self.classifier = nn.Linear(DIM, 2)
            self.classifier2 = nn.Linear(DIM, 2)

        def forward(self, x):
            return self.classifier(self.body(x)) + self.classifier2(self.body(x))

    config = {"r": 2, "target_modules": ["body"]}
    model = get_peft_model(_base(TwoHeads), LoraConfig(modules_to_save=["classifier"], **config))
    model.add_adapter("second", LoraConfig(modules_to_save=["classifier2"], **config))
    base = model.get_base_model()
    assert sorted(base.classifier.modules_to_save) == ["default"]
    assert sorted(base.classifier2.modules_to_save) == ["second"]


# ----------------------------------------------------------------------------------------- AUX-7: attributes


def test_aux_7_attributes_come_from_the_active_copy_and_from_the_original_when_disabled():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    head.modules_to_save["other"].custom_tag = "other-copy"
    head.original_module.custom_tag = "original"
    assert head.weight is head.modules_to_save["default"].weight
    model.set_adapter("other")
    assert head.weight is head.modules_to_save["other"].weight
    assert head.custom_tag == "other-copy"
    assert head.in_features == DIM
    with model.disable_adapter():
        assert head.weight is head.original_module.weight
        assert head.custom_tag == "original"
    with pytest.raises(AttributeError):
        head.does_not_exist  # noqa: B018


def test_aux_7_attributes_with_several_active_copies_describe_the_combined_module():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    _set_copy(head, "default", 0.5)
    _set_copy(head, "other", -0.25)
    model.base_model.set_adapter(["default", "other"])
    assert head.in_features == DIM
    torch.testing.assert_close(head.weight, _base().head.weight + 0.25, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------- AUX-2/6: what is refused


@pytest.mark.parametrize(
    "entry, class_path",
    [
        ("blocks", "torch.nn.modules.container.ModuleList"),
        ("table", "torch.nn.modules.container.ModuleDict"),
        ("no_forward", "_NoForward"),
    ],
)
def test_aux_6_modules_without_forward_are_refused_naming_the_class(entry, class_path):
    with pytest.raises(ValueError, match=class_path):
        get_peft_model(_base(_Containers), _lora(modules_to_save=[entry]))


def test_aux_6_wrapping_an_adapter_layer_is_refused_with_the_full_class_path():
    model = get_peft_model(_base(_Containers), _lora())
    with pytest.raises(ValueError, match=r"peft\.tuners\.lora\.layer\.Linear"):
        model.add_adapter("other", _lora(target_modules=["head"], modules_to_save=["lin0"]))


def test_aux_2_wrapping_adapter_internals_is_refused():
    with pytest.raises(ValueError, match="lin0.lora_A"):
        get_peft_model(_base(), _lora(modules_to_save=["lin0.lora_A"]))


def test_aux_2_unmatched_modules_to_save_entry_raises_naming_it():
    with pytest.raises(ValueError, match="'hed'.*closest names.*head"):
        get_peft_model(_base(), _lora(modules_to_save=["hed"]))


def test_aux_2_unmatched_trainable_token_indices_entry_raises_naming_it():
    with pytest.raises(ValueError, match="'tokk'.*closest names.*tok"):
        get_peft_model(_base(), _lora(trainable_token_indices={"tokk": [1]}))


@pytest.mark.parametrize("entry", ["blocks", "lin0", "missing"])
def test_aux_6_refused_modules_to_save_leave_no_half_added_adapter(entry):
    model = get_peft_model(_base(_Containers), _lora())
    with pytest.raises(ValueError):
        model.add_adapter("other", _lora(target_modules=["head"], modules_to_save=[entry]))
    assert sorted(model.peft_config) == ["default"]
    assert type(model.get_base_model().head) is nn.Linear


# ---------------------------------------------------------------------------------------- AUX-1, SAVE-5: naming


def test_aux_1_modules_to_save_live_and_file_keys():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["head"]))
    live = sorted(k for k in model.state_dict() if ".head." in k)
    assert live == [
        "base_model.model.head.modules_to_save.default.bias",
        "base_model.model.head.modules_to_save.default.weight",
        "base_model.model.head.modules_to_save.other.bias",
        "base_model.model.head.modules_to_save.other.weight",
        "base_model.model.head.original_module.bias",
        "base_model.model.head.original_module.weight",
    ]
    saved = get_peft_model_state_dict(model, adapter_name="other")
    assert sorted(k for k in saved if ".head." in k) == ["base_model.model.head.bias", "base_model.model.head.weight"]
    head = model.get_base_model().head
    assert saved["base_model.model.head.weight"] is not None
    torch.testing.assert_close(saved["base_model.model.head.weight"], head.modules_to_save["other"].weight)


def test_aux_1_adapter_state_dict_load_map_of_each_wrapper():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"], trainable_token_indices=[1, 2]))
    base = model.get_base_model()
    assert base.head.adapter_state_dict_load_map("default") == {
        "weight": "modules_to_save.default.weight",
        "bias": "modules_to_save.default.bias",
    }
    assert base.head.adapter_state_dict_load_map("absent") == {}
    assert base.tok.adapter_state_dict_load_map("default") == {
        "token_adapter.trainable_tokens_delta": "token_adapter.trainable_tokens_delta.default"
    }


def test_aux_1_adapter_state_dict_is_built_from_the_given_state_dict():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    external = {
        "modules_to_save.default.weight": torch.full((5, DIM), 7.0),
        "modules_to_save.default.bias": torch.zeros(5),
        "original_module.weight": torch.zeros(5, DIM),
    }
    own = head.adapter_state_dict("default", external)
    assert sorted(own) == ["bias", "weight"]
    assert own["weight"] is external["modules_to_save.default.weight"]


def test_aux_1_wrappers_share_the_auxiliary_base_class():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"], trainable_token_indices=[1]))
    base = model.get_base_model()
    assert isinstance(base.head, AuxiliaryTrainingWrapper) and isinstance(base.tok, AuxiliaryTrainingWrapper)


def test_aux_9_adapters_with_different_modules_to_save_save_and_toggle_without_errors():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["lin1"]))
    model.state_dict()
    assert sorted(k for k in get_peft_model_state_dict(model, adapter_name="other") if "lin1" in k) == [
        "base_model.model.lin1.bias",
        "base_model.model.lin1.weight",
    ]
    model.base_model.disable_adapter_layers()
    model.base_model.enable_adapter_layers()
    model.set_adapter("other")
    torch.testing.assert_close(_out(model), _out(model), atol=0, rtol=0)


# ---------------------------------------------------------------------------------- OPEN-2/3: several active


def test_open_2_several_active_copies_add_their_changes():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    _set_copy(head, "default", 0.5, 1.0)
    _set_copy(head, "other", -0.2, 3.0)
    model.base_model.set_adapter(["default", "other"])
    expected_head = _base().head
    with torch.no_grad():  # original + sum(copy_i - original)
        expected_head.weight.add_(0.5 - 0.2)
        expected_head.bias.add_(1.0 + 3.0)
    hidden = torch.randn(4, DIM)
    with torch.no_grad():
        torch.testing.assert_close(head(hidden), expected_head(hidden), atol=1e-6, rtol=1e-5)


def test_open_2_a_second_active_adapter_without_copy_does_not_change_the_head():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("plain", _lora())
    head = model.get_base_model().head
    _set_copy(head, "default", 0.5)
    hidden = torch.randn(4, DIM)
    with torch.no_grad():
        single = head(hidden)
        model.base_model.set_adapter(["default", "plain"])
        torch.testing.assert_close(head(hidden), single, atol=0, rtol=0)


def test_open_3_merge_and_unload_of_two_adapters_with_copies_combines_them():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["head"]))
    head = model.get_base_model().head
    _set_copy(head, "default", 1.0, 1.0)  # the reference's silent pick would give +1 only (OPEN-3: 111 vs 222)
    _set_copy(head, "other", 2.0, 2.0)
    merged = model.merge_and_unload(adapter_names=["default", "other"])
    assert type(merged.head) is nn.Linear
    torch.testing.assert_close(merged.head.weight, _base().head.weight + 3.0, atol=1e-6, rtol=0)
    torch.testing.assert_close(merged.head.bias, _base().head.bias + 3.0, atol=1e-6, rtol=0)


def test_aux_11_merge_and_unload_uses_the_active_copy():
    model = get_peft_model(_base(), _lora(modules_to_save=["head"]))
    model.add_adapter("other", _lora(modules_to_save=["head"]))
    _set_copy(model.get_base_model().head, "other", 2.0)
    model.set_adapter("other")
    merged = model.merge_and_unload()
    torch.testing.assert_close(merged.head.weight, _base().head.weight + 2.0, atol=1e-6, rtol=0)


def test_open_2_trainable_token_changes_add_up_on_overlapping_rows():
    model = get_peft_model(_base(), _lora(trainable_token_indices=[1, 2]))
    model.add_adapter("other", _lora(trainable_token_indices=[2, 5]))
    tok = model.get_base_model().tok
    _shift_tokens(tok.token_adapter, "default", 1.0)
    _shift_tokens(tok.token_adapter, "other", 10.0)
    model.base_model.set_adapter(["default", "other"])
    expected = _embedding_with([([1, 2], 1.0), ([2, 5], 10.0)])
    ids = torch.tensor([[1, 2, 5, 3]])
    with torch.no_grad():
        torch.testing.assert_close(tok(ids), expected[ids], atol=1e-6, rtol=0)
        torch.testing.assert_close(tok.weight, expected, atol=1e-6, rtol=0)


def test_open_2_trainable_tokens_of_two_adapters_merge_and_unload_into_one_embedding():
    model = get_peft_model(_base(), _lora(trainable_token_indices=[1, 2]))
    model.add_adapter("other", _lora(trainable_token_indices=[2, 5]))
    tok = model.get_base_model().tok
    _shift_tokens(tok.token_adapter, "default", 1.0)
    _shift_tokens(tok.token_adapter, "other", 10.0)
    merged = model.merge_and_unload(adapter_names=["default", "other"])
    assert type(merged.tok) is nn.Embedding
    torch.testing.assert_close(merged.tok.weight, _embedding_with([([1, 2], 1.0), ([2, 5], 10.0)]), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------- AUX-12/13: trainable tokens


def test_aux_12_standalone_config_trains_only_the_selected_rows():
    model = get_peft_model(_base(), TrainableTokensConfig(target_modules=["tok"], token_indices=[0, 1, 2]))
    assert _trainable(model) == ["base_model.model.tok.trainable_tokens_delta.default"]
    delta = model.get_base_model().tok.trainable_tokens_delta["default"]
    assert delta.shape == (3, DIM)
    torch.testing.assert_close(_out(model), _out(_base()), atol=0, rtol=0)


def test_aux_12_standalone_config_output_uses_the_trained_rows():
    model = get_peft_model(_base(), TrainableTokensConfig(target_modules=["tok"], token_indices=[1, 5]))
    tok = model.get_base_model().tok
    _shift_tokens(tok, "default", 2.0)
    expected = _embedding_with([([1, 5], 2.0)])
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(tok(ids), expected[ids], atol=1e-6, rtol=0)


def test_aux_12_standalone_config_defaults_to_the_input_embedding():
    model = get_peft_model(_base(), TrainableTokensConfig(token_indices=[1]))
    assert isinstance(model.get_base_model().tok, TrainableTokensLayer)


def test_aux_12_init_weights_false_changes_only_the_selected_rows():
    model = get_peft_model(
        _base(), TrainableTokensConfig(target_modules=["tok"], token_indices=[3, 4], init_weights=False)
    )
    tok = model.get_base_model().tok
    everything = torch.arange(VOCAB)[None]
    with torch.no_grad():
        changed = (tok(everything)[0] != _base().tok(everything)[0]).any(dim=-1)
    assert changed.nonzero().flatten().tolist() == [3, 4]


def test_aux_12_list_indices_wrap_the_input_embedding_found_by_its_getter():
    model = get_peft_model(_base(), _lora(trainable_token_indices=[1, 2]))
    tok = model.get_base_model().tok
    assert isinstance(tok, TrainableTokensWrapper)
    assert tok.token_adapter.token_indices["default"] == [1, 2]
    assert _trainable(model) == [
        "base_model.model.lin0.lora_A.default.weight",
        "base_model.model.lin0.lora_B.default.weight",
        "base_model.model.tok.token_adapter.trainable_tokens_delta.default",
    ]


def test_aux_12_dict_indices_wrap_the_named_modules_with_their_own_rows():
    class TwoEmbeddings(_TinyLM):
        def __init__(self) -> None:
            super().__init__()
            self.pos = nn.Embedding(VOCAB, DIM)

        def forward(self, input_ids):
            return super().forward(input_ids) + self.head(self.pos(input_ids))

    model = get_peft_model(_base(TwoEmbeddings), _lora(trainable_token_indices={"tok": [1], "pos": [4, 6]}))
    base = model.get_base_model()
    assert base.tok.token_adapter.token_indices["default"] == [1]
    assert base.pos.token_adapter.token_indices["default"] == [4, 6]


def test_aux_13_weight_through_the_wrapper_is_the_merged_weight():
    model = get_peft_model(_base(), _lora(trainable_token_indices=[2, 7]))
    tok = model.get_base_model().tok
    _shift_tokens(tok.token_adapter, "default", 1.5)
    torch.testing.assert_close(tok.weight, _embedding_with([([2, 7], 1.5)]), atol=1e-6, rtol=0)
    with model.disable_adapter():
        torch.testing.assert_close(tok.weight, _base().tok.weight, atol=0, rtol=0)


def test_aux_13_no_other_attribute_is_forwarded_through_the_wrapper():
    model = get_peft_model(_base(), _lora(trainable_token_indices=[2]))
    with pytest.raises(AttributeError):
        model.get_base_model().tok.num_embeddings  # noqa: B018


def test_aux_13_merge_and_unmerge_into_the_embedding():
    model = get_peft_model(_base(), _lora(trainable_token_indices=[2, 7]))
    tok = model.get_base_model().tok
    _shift_tokens(tok.token_adapter, "default", 1.5)
    adapted = _out(model)
    model.merge_adapter()
    torch.testing.assert_close(tok.original_module.weight, _embedding_with([([2, 7], 1.5)]), atol=1e-6, rtol=0)
    torch.testing.assert_close(_out(model), adapted, atol=1e-5, rtol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(tok.original_module.weight, _base().tok.weight, atol=1e-6, rtol=0)


def test_aux_13_loaded_rows_are_not_overwritten_by_initialisation(tmp_path):
    model = get_peft_model(_base(), _lora(trainable_token_indices=[2, 7]))
    _shift_tokens(model.get_base_model().tok.token_adapter, "default", 1.5)
    expected = _out(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    torch.testing.assert_close(_out(loaded), expected, atol=0, rtol=0)


# -------------------------------------------------------------------------------------------- AUX-14: scale


@pytest.mark.parametrize("embed_scale", [3.0, torch.tensor(3.0)], ids=["float", "tensor"])
def test_aux_14_trainable_tokens_apply_the_embed_scale(embed_scale):
    model = get_peft_model(
        _base(_ScaledLM, embed_scale=embed_scale), _lora(trainable_token_indices={"embed_tokens": [1, 4]})
    )
    embedding = model.get_base_model().embed_tokens
    _shift_tokens(embedding.token_adapter, "default", 1.0)
    weight = _base(_ScaledLM, embed_scale=embed_scale).embed_tokens.weight.detach().clone()
    weight[[1, 4]] += 1.0
    ids = torch.tensor([[1, 2, 4]])
    with torch.no_grad():
        torch.testing.assert_close(embedding(ids), weight[ids] * 3.0, atol=1e-6, rtol=0)


def test_aux_14_standalone_trainable_tokens_apply_the_embed_scale():
    model = get_peft_model(
        _base(_ScaledLM), TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=[1, 4])
    )
    embedding = model.get_base_model().embed_tokens
    _shift_tokens(embedding, "default", 1.0)
    weight = _base(_ScaledLM).embed_tokens.weight.detach().clone()
    weight[[1, 4]] += 1.0
    ids = torch.tensor([[1, 2, 4]])
    with torch.no_grad():
        torch.testing.assert_close(embedding(ids), weight[ids] * 3.0, atol=1e-6, rtol=0)


def test_aux_14_lora_on_a_scaled_embedding_scales_the_adapter_output():
    model = get_peft_model(_base(_ScaledLM), _lora(target_modules=["embed_tokens"]))
    layer = model.get_base_model().embed_tokens
    ids = torch.tensor([[1, 2, 4]])
    with torch.no_grad():
        weight = _base(_ScaledLM).embed_tokens.weight
        lora_delta = layer.lora_embedding_A["default"].T[ids] @ layer.lora_embedding_B["default"].T
        expected = (weight[ids] + layer.scaling["default"] * lora_delta) * 3.0
        torch.testing.assert_close(layer(ids), expected, atol=1e-5, rtol=1e-5)


def test_aux_14_per_feature_embed_scale_applies_to_trained_tokens_exactly():
    """The trainable-token layer calls the base embedding, so any scaling it does (here per feature) applies."""
    scale = torch.arange(1.0, DIM + 1)
    model = get_peft_model(_base(_ScaledLM, embed_scale=scale), _lora(trainable_token_indices={"embed_tokens": [1]}))
    wrapper = model.get_base_model().embed_tokens
    with torch.no_grad():
        wrapper.token_adapter.trainable_tokens_delta["default"].add_(0.5)
    ids = torch.tensor([[1, 2]])
    weight = wrapper.original_module.weight.detach().clone()
    weight[1] += 0.5
    torch.testing.assert_close(wrapper(ids), weight[ids] * scale)


def test_aux_14_per_feature_embed_scale_leaves_the_freshly_initialised_model_unchanged():
    scale = torch.full((DIM,), 3.0)
    model = get_peft_model(_base(_ScaledLM, embed_scale=scale), _lora(trainable_token_indices={"embed_tokens": [1]}))
    embedded = model.get_base_model().embed_tokens(torch.tensor([[1, 2]]))
    torch.testing.assert_close(embedded, _base(_ScaledLM, embed_scale=scale).embed_tokens(torch.tensor([[1, 2]])))


def test_aux_14_lora_on_a_per_feature_scaled_embedding_scales_the_update_per_feature():
    scale = torch.arange(1.0, DIM + 1)
    model = get_peft_model(_base(_ScaledLM, embed_scale=scale), _lora(target_modules=["embed_tokens"]))
    layer = model.get_base_model().embed_tokens
    with torch.no_grad():
        layer.lora_embedding_A["default"].normal_()
        layer.lora_embedding_B["default"].normal_()
    ids = torch.tensor([[1, 2]])
    delta = (layer.lora_embedding_B["default"] @ layer.lora_embedding_A["default"]).T * layer.scaling["default"]
    expected = (layer.get_base_layer().weight + delta)[ids] * scale
    torch.testing.assert_close(layer(ids), expected, atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------------- AUX-15: tied


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    sizes = {"vocab_size": VOCAB, "n_positions": 16, "n_embd": DIM, "n_layer": 1, "n_head": 2}
    config = GPT2Config(**sizes, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


# not a constant: GPT-2's final layer norm centres the hidden state, so a constant row shift would not show in logits
_ROW_SHIFT = torch.linspace(-1.0, 1.0, DIM)


def _logits_with_rows(model: nn.Module, rows: list[int], shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, expected)``: the expected logits use the last hidden state and a hand-shifted tied matrix."""
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        weight = _tiny_gpt2().transformer.wte.weight.clone()
        weight[rows] += shift
        return out.logits, out.hidden_states[-1] @ weight.T


def test_aux_15_tied_head_shares_the_embedding_delta():
    model = get_peft_model(_tiny_gpt2(), LoraConfig(r=2, target_modules=["c_attn"], trainable_token_indices=[1, 3]))
    base = model.get_base_model()
    wte, lm_head = base.transformer.wte, base.lm_head
    assert isinstance(lm_head, TrainableTokensWrapper)
    assert (
        lm_head.token_adapter.trainable_tokens_delta["default"] is wte.token_adapter.trainable_tokens_delta["default"]
    )
    assert [n for n in _trainable(model) if "trainable_tokens" in n] == [
        "base_model.model.transformer.wte.token_adapter.trainable_tokens_delta.default"
    ]


def test_aux_15_tied_head_reflects_trained_tokens():
    model = get_peft_model(_tiny_gpt2(), LoraConfig(r=2, target_modules=["c_attn"], trainable_token_indices=[1, 3]))
    _shift_tokens(model.get_base_model().transformer.wte.token_adapter, "default", _ROW_SHIFT)
    logits, expected = _logits_with_rows(model, [1, 3], _ROW_SHIFT)
    assert not torch.allclose(expected, _logits_with_rows(model, [], _ROW_SHIFT)[1], atol=1e-2)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_aux_15_tied_embeddings_save_one_delta():
    model = get_peft_model(_tiny_gpt2(), LoraConfig(r=2, target_modules=["c_attn"], trainable_token_indices=[1, 3]))
    keys = [k for k in get_peft_model_state_dict(model) if "trainable_tokens" in k]
    assert keys == ["base_model.model.transformer.wte.token_adapter.trainable_tokens_delta"]
    fresh = get_peft_model(_tiny_gpt2(), LoraConfig(r=2, target_modules=["c_attn"], trainable_token_indices=[1, 3]))
    result = set_peft_model_state_dict(fresh, get_peft_model_state_dict(model))
    assert result.missing_keys == []


def test_aux_15_standalone_trainable_tokens_tied_head_reflects_trained_tokens():
    model = get_peft_model(_tiny_gpt2(), TrainableTokensConfig(token_indices=[1, 3]))
    _shift_tokens(model.get_base_model().transformer.wte, "default", _ROW_SHIFT)
    logits, expected = _logits_with_rows(model, [1, 3], _ROW_SHIFT)
    assert not torch.allclose(expected, _logits_with_rows(model, [], _ROW_SHIFT)[1], atol=1e-2)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
