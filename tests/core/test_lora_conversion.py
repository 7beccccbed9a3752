"""Writing another method's adapter as LoRA (``convert_to_lora``, ``save_as_lora``), intruder-dimension reduction
and KappaTune target selection. Expected values come from numpy's SVD and condition numbers of the same matrices."""

from __future__ import annotations

import copy
from functools import partial
from io import StringIO

import numpy as np
import pytest
import torch
from torch import nn

from peft import (
    IA3Config,
    LoHaConfig,
    LoraConfig,
    PeftModel,
    PeftWarning,
    convert_to_lora,
    find_kappa_target_modules,
    get_peft_model,
    save_as_lora,
)
from peft.helpers import KappaTuneSelector
from peft.tuners.lora.intruders import reduce_intruder_dimension
from tests.tiny_models import Chain, mlp


def _mlp() -> Chain:
    torch.manual_seed(0)
    return mlp(12, 10, 8, 3, names=("lin0", "lin1", "head"))


def _loha(r: int = 2, **kwargs) -> PeftModel:
    torch.manual_seed(1)
    return get_peft_model(_mlp(), LoHaConfig(r=r, target_modules=["lin0", "lin1"], init_weights=False, **kwargs))


def test_a_loha_of_rank_r_converts_exactly_at_rank_r_squared():
    loha = _loha(r=2)  # (B1 A1) * (B2 A2) has rank <= 4
    x = torch.randn(5, 12)
    lora_config, state_dict = convert_to_lora(loha, rank=4)
    assert (lora_config.r, lora_config.lora_alpha) == (4, 4)
    assert {"lin0", "lin1"} <= set(lora_config.target_modules)
    lora = get_peft_model(_mlp(), lora_config)
    result = lora.load_state_dict({k.replace(".weight", ".default.weight"): v for k, v in state_dict.items()}, False)
    assert not result.unexpected_keys
    torch.testing.assert_close(lora(x), loha(x), atol=1e-5, rtol=0)


def test_converted_factors_are_the_truncated_svd_of_the_update():
    loha = _loha(r=3)
    delta = loha.base_model.model.lin0.get_delta_weight("default").detach().double().numpy()
    _, state_dict = convert_to_lora(loha, rank=2)
    b = state_dict["base_model.model.lin0.lora_B.weight"].double().numpy()
    a = state_dict["base_model.model.lin0.lora_A.weight"].double().numpy()
    u, s, vh = np.linalg.svd(delta, full_matrices=False)
    np.testing.assert_allclose(b @ a, (u[:, :2] * s[:2]) @ vh[:2], atol=1e-5)


def test_a_float_rank_keeps_that_share_of_the_energy_per_layer():
    loha = _loha(r=3)
    lora_config, state_dict = convert_to_lora(loha, rank=0.9)
    assert lora_config.rank_pattern == lora_config.alpha_pattern
    for name in ("lin0", "lin1"):
        values = np.linalg.svd(
            getattr(loha.base_model.model, name).get_delta_weight("default").detach().double().numpy()
        )[1]
        energy = np.cumsum(values**2) / np.sum(values**2)
        expected = int(np.searchsorted(energy, 0.9) + 1)
        assert lora_config.rank_pattern[name] == expected
        assert state_dict[f"base_model.model.{name}.lora_A.weight"].shape[0] == expected


def test_save_as_lora_writes_a_checkpoint_that_loads_with_modules_to_save(tmp_path):
    loha = _loha(r=2, modules_to_save=["head"])
    with torch.no_grad():
        loha.base_model.model.head.modules_to_save["default"].weight += 1.0
    x = torch.randn(5, 12)
    save_as_lora(tmp_path / "as-lora", loha, rank=4)
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path / "as-lora")
    assert loaded.peft_config["default"].modules_to_save == ["head"]
    torch.testing.assert_close(loaded(x), loha(x), atol=1e-5, rtol=0)


def test_conversion_of_the_named_adapter_with_several_present():
    loha = _loha(r=2)
    torch.manual_seed(2)
    loha.add_adapter("other", LoHaConfig(r=2, target_modules=["lin1"], init_weights=False))
    _, state_dict = convert_to_lora(loha, rank=4, adapter_name="other")
    assert sorted(state_dict) == ["base_model.model.lin1.lora_A.weight", "base_model.model.lin1.lora_B.weight"]


def test_conversion_refuses_what_it_cannot_represent():
    with pytest.raises(TypeError, match="Could not detect any layer that supports LoRA conversion"):
        convert_to_lora(_mlp(), rank=4)
    ia3 = get_peft_model(_mlp(), IA3Config(target_modules=["lin0"], feedforward_modules=[]))
    assert not ia3.supports_lora_conversion()
    with pytest.raises(TypeError, match="do not support LoRA conversion"):
        convert_to_lora(ia3, rank=4)
    loha = _loha()
    assert loha.supports_lora_conversion()
    with pytest.raises(ValueError, match="Passing a rank of 0 doesn't make sense"):
        convert_to_lora(loha, rank=0)
    with pytest.raises(ValueError, match="must be between 0 and 1 but got 1.5"):
        convert_to_lora(loha, rank=1.5)
    with pytest.raises(ValueError, match="larger than the weight shape"):
        convert_to_lora(loha, rank=11)
    dora = get_peft_model(_mlp(), LoraConfig(target_modules=["lin0"], use_dora=True))
    assert not dora.supports_lora_conversion()


def test_converting_a_lora_adapter_warns():
    lora = get_peft_model(_mlp(), LoraConfig(r=2, target_modules=["lin0"], init_lora_weights=False))
    with pytest.warns(PeftWarning, match="already a LoRA adapter"):
        convert_to_lora(lora, rank=2)


# ---------------------------------------------------------------------------------------------------- intruders
def _trained_lora(target: str = "lin0") -> PeftModel:
    torch.manual_seed(3)
    return get_peft_model(_mlp(), LoraConfig(r=2, target_modules=[target], init_lora_weights=False))


def test_intruder_reduction_scales_the_intruder_directions_into_a_new_adapter():
    model = _trained_lora()
    layer = model.base_model.model.lin0
    original_b = layer.lora_B["default"].weight.detach().clone()
    log = StringIO()
    reduce_intruder_dimension(
        model, threshold_epsilon=2.0, top_k=1, mitigation_lambda=0.5, logging_sink=partial(print, file=log)
    )
    assert model.active_adapters == ["intruder_reduced"]
    assert torch.equal(layer.lora_B["default"].weight, original_b)
    assert "lin0: Intruders: 1" in log.getvalue()
    # independently: halve the top direction of W + dW, refactor (W + dW') - W at rank r
    weight = layer.base_layer.weight.detach().double().numpy()
    delta = layer.get_delta_weight("default").detach().double().numpy()
    u, s, vh = np.linalg.svd(weight + delta, full_matrices=False)
    mitigated = weight + delta - 0.5 * s[0] * np.outer(u[:, 0], vh[0])
    expected = (mitigated - weight) / layer.scaling["default"]
    u2, s2, vh2 = np.linalg.svd(expected, full_matrices=False)
    expected_update = layer.scaling["default"] * (u2[:, :2] * s2[:2]) @ vh2[:2]
    np.testing.assert_allclose(
        layer.get_delta_weight("intruder_reduced").detach().double().numpy(), expected_update, atol=1e-5
    )


def test_without_intruders_the_adapter_is_copied_and_embeddings_keep_their_shapes():
    model = _trained_lora()
    reduce_intruder_dimension(model, threshold_epsilon=0.0, logging_sink=None)
    layer = model.base_model.model.lin0
    assert torch.equal(layer.lora_A["intruder_reduced"].weight, layer.lora_A["default"].weight)
    embedding_model = get_peft_model(
        nn.Sequential(nn.Embedding(20, 6)), LoraConfig(r=2, target_modules=["0"], init_lora_weights=False)
    )
    reduce_intruder_dimension(embedding_model, threshold_epsilon=2.0, logging_sink=None)
    embedding = embedding_model.base_model.model[0]
    assert embedding.lora_embedding_B["intruder_reduced"].shape == embedding.lora_embedding_B["default"].shape
    ids = torch.arange(10).view(2, 5)
    assert embedding_model(ids).shape == (2, 5, 6)


def test_intruder_reduction_needs_lora():
    with pytest.raises(ValueError, match="not using LoRA"):
        reduce_intruder_dimension(_loha(), logging_sink=None)


# ---------------------------------------------------------------------------------------------------- KappaTune
class _Experts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.gate_up_proj = nn.Parameter(torch.randn(3, 6, 4))


def test_kappa_selection_picks_the_best_conditioned_weights():
    model = _mlp()
    model.experts = _Experts()
    with torch.no_grad():
        model.lin1.weight.copy_(torch.eye(8, 10))  # kappa 1: the best conditioned
    kappas = {
        name: np.linalg.cond(module.weight.detach().double().numpy())
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }
    selector = KappaTuneSelector(model, show_progress=False)
    assert selector.get_best_targets() == sorted(kappas, key=kappas.get)
    assert selector.get_best_targets(num_modules=1) == ["lin1"]
    assert selector.get_best_targets(threshold=1.01) == ["lin1"]
    result = find_kappa_target_modules(model, top_p=0.4, show_progress=False)
    assert result == {"target_modules": ["lin1"], "target_parameters": ["experts.gate_up_proj"]}
    expert_kappa = np.mean([np.linalg.cond(e) for e in model.experts.gate_up_proj.detach().double().numpy()])
    assert selector._parameter_condition_numbers["experts.gate_up_proj"] == pytest.approx(expert_kappa, rel=1e-4)
    assert find_kappa_target_modules(_mlp(), show_progress=False)["target_parameters"] is None


def test_kappa_skips_weights_larger_than_the_limit():
    selector = KappaTuneSelector(copy.deepcopy(_mlp()), max_dim_size_to_analyze=10, show_progress=False)
    assert set(selector.get_best_targets()) == {"lin0", "lin1", "head"} - {"lin0"}
