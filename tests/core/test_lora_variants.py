"""LoRA variants selected by config options (REQUIREMENTS 7.x, issue 17): BD-LoRA, KaSA and MonteCLoRA. Their
reference checkpoints load and reproduce the reference's outputs in tests/core/test_reference_fixtures.py
(``lora_mlp_bdlora``, ``lora_mlp_kasa``, ``lora_mlp_monteclora``); here each formula is checked against an
independent computation, and the combinations the reference refuses are refused."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from peft import BdLoraConfig, KasaConfig, LoraConfig, MontecloraConfig, PeftModel, VeloraConfig, get_peft_model


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8)).eval()


def _x() -> torch.Tensor:
    return torch.randn(5, 12, generator=torch.Generator().manual_seed(1))


def _bd_config(**kwargs) -> LoraConfig:
    bd = BdLoraConfig(target_modules_bd_a=["2"], target_modules_bd_b=["0"], nblocks=2)
    return LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"], init_lora_weights=False, use_bdlora=bd, **kwargs)


def _block_diagonal(weight: torch.Tensor, nblocks: int) -> torch.Tensor:
    out_block = weight.shape[0] // nblocks
    in_block = weight.shape[1]
    dense = torch.zeros(weight.shape[0], in_block * nblocks)
    for i in range(nblocks):
        dense[i * out_block : (i + 1) * out_block, i * in_block : (i + 1) * in_block] = weight[
            i * out_block : (i + 1) * out_block
        ]
    return dense


# ---------------------------------------------------------------------------------------------------- BD-LoRA
@pytest.mark.parametrize("use_rslora", [False, True])
def test_bdlora_forward_and_merge_are_lora_with_a_block_diagonal_factor(use_rslora):
    model = get_peft_model(_mlp(), _bd_config(use_rslora=use_rslora))
    first, second = model.base_model.model[0], model.base_model.model[2]
    # "0" has a block-diagonal B (16 x 4 in 2 blocks of 8 x 2), "2" a block-diagonal A (4 x 16 in 2 blocks of 2 x 8)
    assert first.lora_B["default"].weight.shape == (16, 2) and first.lora_A["default"].weight.shape == (4, 12)
    assert second.lora_A["default"].weight.shape == (4, 8) and second.lora_B["default"].weight.shape == (8, 4)
    scaling = 8 / (math.sqrt(4) if use_rslora else 4)
    x = _x()
    dense_b = _block_diagonal(first.lora_B["default"].weight.detach(), 2)
    hidden = first.base_layer(x) + scaling * x @ first.lora_A["default"].weight.T @ dense_b.T
    torch.testing.assert_close(first(x), hidden)
    dense_a = _block_diagonal(second.lora_A["default"].weight.detach(), 2)
    h = torch.relu(hidden)
    expected = second.base_layer(h) + scaling * h @ dense_a.T @ second.lora_B["default"].weight.T
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
        merged = model.merge_and_unload()
        torch.testing.assert_close(merged(x), expected, atol=1e-5, rtol=1e-5)


def test_bdlora_checkpoint_keys_and_shapes_are_the_references(tmp_path):
    model = get_peft_model(_mlp(), _bd_config())
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert {k: tuple(v.shape) for k, v in saved.items()} == {
        "base_model.model.0.lora_A.weight": (4, 12),
        "base_model.model.0.lora_B.weight": (16, 2),
        "base_model.model.2.lora_A.weight": (4, 8),
        "base_model.model.2.lora_B.weight": (8, 4),
    }
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path)
    assert isinstance(loaded.peft_config["default"].use_bdlora, BdLoraConfig)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_x()), model(_x()))


def test_bdlora_gradients_stay_block_diagonal():
    model = get_peft_model(_mlp(), _bd_config())
    model(_x()).sum().backward()
    grad = model.base_model.model[2].lora_A["default"].weight.grad
    assert grad.shape == (4, 8) and grad.abs().sum() > 0


def test_bdlora_in_a_mixed_batch_with_a_plain_adapter():
    model = get_peft_model(_mlp(), _bd_config())
    model.add_adapter("plain", LoraConfig(r=2, target_modules=["0", "2"], init_lora_weights=False))
    model.eval()
    x = _x()
    with torch.no_grad():
        alone = {}
        for name in ("default", "plain"):
            model.set_adapter(name)
            alone[name] = model(x)
        names = ["default", "plain", "__base__", "default", "plain"]
        mixed = model(x, adapter_names=names)
        with model.disable_adapter():
            base = model(x)
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], base[row] if name == "__base__" else alone[name][row])


@pytest.mark.parametrize(
    ("bd", "message"),
    [
        (
            {"target_modules_bd_a": ["2"], "nblocks": 2},
            r"module '0' matches neither A nor B block-diagonal patterns \(target_modules_bd_a \['2'\], "
            r"target_modules_bd_b None\).*match_strict",
        ),
        ({"target_modules_bd_a": ["0"], "target_modules_bd_b": ["2"], "nblocks": 3}, r"divisible by nblocks=3"),
    ],
)
def test_bdlora_refuses_what_it_cannot_build(bd, message):
    config = LoraConfig(r=4, target_modules=["0", "2"], use_bdlora=BdLoraConfig(**bd))
    with pytest.raises(ValueError, match=message):
        get_peft_model(_mlp(), config)


def test_bdlora_without_strict_matching_gives_unmatched_modules_plain_lora():
    bd = BdLoraConfig(target_modules_bd_a=["2"], nblocks=2, match_strict=False)
    model = get_peft_model(_mlp(), LoraConfig(r=4, target_modules=["0", "2"], use_bdlora=bd))
    assert type(model.base_model.model[0].lora_A["default"]) is nn.Linear


def test_bdlora_config_refuses_a_module_in_both_lists():
    with pytest.raises(
        ValueError, match=r"Found overlapping modules in target_modules_bd lists: \['q'\] appear in both"
    ):
        BdLoraConfig(target_modules_bd_a=["q", "k"], target_modules_bd_b=["q"])


@pytest.mark.parametrize(
    "options",
    [
        {"use_dora": True, "use_bdlora": BdLoraConfig(["0"], nblocks=2, match_strict=False)},
        {"use_dora": True, "kasa_config": KasaConfig()},
        {"use_dora": True, "monteclora_config": MontecloraConfig()},
        {"kasa_config": KasaConfig(), "monteclora_config": MontecloraConfig()},
    ],
    ids=["dora+bdlora", "dora+kasa", "dora+monteclora", "kasa+monteclora"],
)
def test_variants_do_not_combine_in_one_adapter(options):
    """The reference refuses every combination of two variants (DoRA included) in one adapter."""
    with pytest.raises(ValueError, match=r"The LoRA variants \[.*\] cannot be combined in one adapter"):
        get_peft_model(_mlp(), LoraConfig(r=4, target_modules=["0"], **options))


@pytest.mark.parametrize(
    "option",
    [
        {"kasa_config": KasaConfig()},
        {"monteclora_config": MontecloraConfig()},
        {"use_bdlora": BdLoraConfig(["emb"], nblocks=2)},
    ],
    ids=["kasa", "monteclora", "bdlora"],
)
def test_linear_only_variants_refuse_other_layer_types(option):
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"is not supported on Embedding layers .* supports LoRA layers of type"):
        get_peft_model(model, LoraConfig(r=2, target_modules=["0"], **option))


# ------------------------------------------------------------------------------------------------------- KaSA
def test_kasa_truncates_the_base_weight_and_scales_the_ranks_by_the_learned_diagonal():
    original = _mlp()[0].weight.detach().clone()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["0"], kasa_config=KasaConfig(), init_lora_weights=False)
    model = get_peft_model(_mlp(), config)
    layer = model.base_model.model[0]
    u, s, vh = torch.linalg.svd(original, full_matrices=False)
    truncated = (u[:, :8] * s[:8]) @ vh[:8]  # min(12, 16) - r components kept
    torch.testing.assert_close(layer.base_layer.weight.detach(), truncated, atol=1e-5, rtol=1e-5)
    x = _x()
    a, b, d = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.lora_diag["default"]
    expected = x @ truncated.T + layer.base_layer.bias + 2 * ((x @ a.T) * d) @ b.T
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        merged = layer.get_base_weight() + layer.get_delta_weight("default")
        torch.testing.assert_close(x @ merged.T + layer.base_layer.bias, expected, atol=1e-5, rtol=1e-5)


def test_kasa_loss_is_the_papers_regularisation():
    config = LoraConfig(r=4, target_modules=["0", "2"], kasa_config=KasaConfig(beta=0.5, gamma=0.25))
    model = get_peft_model(_mlp(), config)
    expected = 0.0
    for index in (0, 2):
        layer = model.base_model.model[index]
        a, b, d = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.lora_diag["default"]
        eye = torch.eye(4)
        orthogonality = ((b.T @ b - eye) ** 2).sum().sqrt() + ((a @ a.T - eye) ** 2).sum().sqrt()
        expected = expected + 0.5 * (d**2).sum() + 0.25 * orthogonality
    loss = model.base_model._get_kasa_loss()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model.base_model.model[0].lora_diag["default"].grad is not None
    assert model.base_model._get_kasa_loss(adapter_names="other") == 0.0


def test_kasa_and_other_adapters_do_not_mix():
    model = get_peft_model(_mlp(), LoraConfig(r=2, target_modules=["0"], kasa_config=KasaConfig()))
    with pytest.raises(ValueError, match="KaSA cannot be combined with adapters that don't use KaSA.*'default' does"):
        model.add_adapter("plain", LoraConfig(r=2, target_modules=["0"]))


@pytest.mark.parametrize(
    ("r", "message"), [(12, r"KaSA requires `r` \(12\) < min\(in_features, out_features\) \(12\)")]
)
def test_kasa_refuses_a_rank_that_would_drop_the_whole_weight(r, message):
    with pytest.raises(ValueError, match=message):
        get_peft_model(_mlp(), LoraConfig(r=r, target_modules=["0"], kasa_config=KasaConfig()))


def test_kasa_loaded_on_the_meta_device_truncates_at_the_first_forward(tmp_path):
    config = LoraConfig(r=4, target_modules=["0", "2"], kasa_config=KasaConfig(), init_lora_weights=False)
    model = get_peft_model(_mlp(), config)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        expected = model(_x())
        loaded = PeftModel.from_pretrained(_mlp(), tmp_path, low_cpu_mem_usage=True)
        torch.testing.assert_close(loaded(_x()), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(_x()), expected, atol=1e-5, rtol=1e-5)  # truncated once only


# ------------------------------------------------------------------------------------------------ MonteCLoRA
def _monteclora_model(**kwargs) -> nn.Module:
    monte = MontecloraConfig(num_samples=4, buffer_size=3, sample_scaler=0.5, **kwargs)
    config = LoraConfig(r=4, target_modules=["0", "2"], monteclora_config=monte, init_lora_weights=False)
    return get_peft_model(_mlp(), config)


def test_monteclora_is_plain_lora_in_eval_mode_and_noisy_in_training():
    model = _monteclora_model()
    plain = get_peft_model(_mlp(), LoraConfig(r=4, target_modules=["0", "2"], init_lora_weights=False))
    plain.load_state_dict(model.state_dict(), strict=False)
    x = _x()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain.eval()(x))
    assert model.base_model._get_monteclora_loss() == 0.0
    model.train()
    first, second = model(x), model(x)
    assert not torch.allclose(first, second)  # a new draw per step
    loss = model.base_model._get_monteclora_loss()
    (first.sum() + loss).backward()
    sampler = model.base_model.model[0].lora_monteclora_sampler["default"]
    assert sampler.std_prior.grad is not None and sampler.expert_weights_prior.grad is not None
    assert torch.isclose(sampler.expert_weights.sum(), torch.tensor(1.0))


def test_monteclora_checkpoint_keys_are_the_references(tmp_path):
    model = _monteclora_model()
    model.save_pretrained(tmp_path)
    keys = {k: tuple(v.shape) for k, v in load_file(tmp_path / "adapter_model.safetensors").items()}
    assert {k: v for k, v in keys.items() if k.startswith("base_model.model.0.")} == {
        "base_model.model.0.lora_A.weight": (4, 12),
        "base_model.model.0.lora_B.weight": (16, 4),
        "base_model.model.0.lora_monteclora_sampler.expert_weights": (4,),
        "base_model.model.0.lora_monteclora_sampler.expert_weights_prior": (4,),
        "base_model.model.0.lora_monteclora_sampler.gaussian_var_prior": (4, 4),
        "base_model.model.0.lora_monteclora_sampler.std_prior": (4,),
    }


def test_monteclora_entropy_term_is_added_when_asked():
    with_entropy = _monteclora_model(use_entropy=True).train()
    with_entropy(_x())
    sampler = with_entropy.base_model.model[0].lora_monteclora_sampler["default"]
    without = sampler.variational_loss() - (sampler.expert_weights**2).sum()
    sampler.config = MontecloraConfig(num_samples=4, buffer_size=3, sample_scaler=0.5)
    torch.testing.assert_close(sampler.variational_loss(), without)


# ---------------------------------------------------------------------------------------------------- VeLoRA
def _velora_grads(velora: VeloraConfig | None, x: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 6))
    config = LoraConfig(r=3, target_modules=["0"], init_lora_weights=False, velora_config=velora)
    model = get_peft_model(base, config).train()
    model(x).square().sum().backward()
    return model.base_model.model[0].lora_A["default"].weight.grad, model


def test_velora_gradient_is_lora_s_when_the_groups_lie_on_the_projection_direction():
    """Each group of 3 features is a positive multiple of one vector: the compressed input is rebuilt exactly."""
    direction = torch.tensor([1.0, -2.0, 0.5])
    coefficients = torch.rand(5, 4, generator=torch.Generator().manual_seed(3)) + 0.5
    x = (coefficients[..., None] * direction).reshape(5, 12)
    plain, _ = _velora_grads(None, x)
    compressed, model = _velora_grads(VeloraConfig(num_groups=4), x)
    torch.testing.assert_close(compressed, plain)
    torch.testing.assert_close(model.base_model.model[0].lora_velora_embed["default"], direction / direction.norm())
    scaled, _ = _velora_grads(VeloraConfig(num_groups=4, scale=2.0), x)
    torch.testing.assert_close(scaled, 2 * plain)
    other, _ = _velora_grads(VeloraConfig(num_groups=4), torch.randn(5, 12))
    assert other.shape == plain.shape


@pytest.mark.parametrize(("init_type", "follows"), [("batch_average", True), ("batch_average_once", False)])
def test_velora_projection_follows_each_batch_or_only_the_first(init_type, follows):
    _, model = _velora_grads(VeloraConfig(num_groups=5, init_type=init_type), torch.rand(4, 12))
    layer = model.base_model.model[0]
    first = layer.lora_velora_embed["default"].clone()
    assert first.shape == (3,)  # ceil(12 / 5) features per group, the last group zero-padded
    model(-torch.rand(4, 12)).sum().backward()
    assert torch.allclose(layer.lora_velora_embed["default"], first) is not follows
    trained = layer.lora_velora_embed["default"].clone()
    model.eval()
    with torch.no_grad():
        model(torch.rand(4, 12))  # eval mode: plain LoRA, the direction is kept
    assert torch.equal(layer.lora_velora_embed["default"], trained)


def test_velora_saves_its_projection_and_forwards_as_lora(tmp_path):
    _, model = _velora_grads(VeloraConfig(num_groups=4, init_type="random"), torch.rand(4, 12))
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert tuple(saved["base_model.model.0.lora_velora_embed"].shape) == (3,)
    loaded = PeftModel.from_pretrained(nn.Sequential(nn.Linear(12, 6)), tmp_path)
    torch.testing.assert_close(
        loaded.base_model.model[0].lora_velora_embed["default"], saved["base_model.model.0.lora_velora_embed"]
    )


# ----------------------------------------------------------------------------------------------------- Arrow
def _save_experts(tmp_path, ranks=(1, 1, 1), alphas=(1, 2, 3)) -> list[str]:
    paths = []
    for i, (r, alpha) in enumerate(zip(ranks, alphas)):
        torch.manual_seed(10 + i)
        config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["0"], init_lora_weights=False)
        model = get_peft_model(_mlp(), config)
        model.save_pretrained(tmp_path / f"expert_{i}")
        paths.append(str(tmp_path / f"expert_{i}"))
    return paths


def test_arrow_mixes_the_top_k_experts_by_their_prototypes(tmp_path):
    """Rank-1 experts: the prototype of B A is its A row (up to sign), which power iteration finds exactly."""
    from peft import ArrowConfig, create_arrow_model

    paths = _save_experts(tmp_path)
    model = create_arrow_model(_mlp(), paths, ArrowConfig(top_k=2, router_temperature=0.5, rng_seed=0))
    layer = model.base_model.model[0]
    x = _x()
    experts = [f"task_{i}" for i in range(3)]
    a = torch.stack([layer.lora_A[n].weight[0] for n in experts])
    b = torch.stack([layer.lora_B[n].weight[:, 0] for n in experts])
    scalings = torch.tensor([layer.scaling[n] for n in experts])
    similarity = (x @ (a / a.norm(dim=1, keepdim=True)).T).abs()
    expected = layer.base_layer(x)
    for row in range(x.shape[0]):
        top = similarity[row].topk(2).indices
        weights = torch.softmax(similarity[row, top] / 0.5, dim=0)
        for weight, expert in zip(weights, top):
            expected[row] += weight * scalings[expert] * (x[row] @ a[expert]) * b[expert]
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_arrow_general_knowledge_subtraction_and_new_experts(tmp_path):
    from peft import ArrowConfig, create_arrow_model

    paths = _save_experts(tmp_path, ranks=(2, 2, 2, 2), alphas=(1, 2, 3, 4))
    original = PeftModel.from_pretrained(_mlp(), paths[0]).base_model.model[0]
    config = ArrowConfig(top_k=1, use_gks=True, rng_seed=0)
    model = create_arrow_model(_mlp(), paths[:2], config, general_adapter_paths=paths[2:])
    assert (config.task_adapter_names, config.gks_adapter_names) == (["task_0", "task_1"], ["gks_0", "gks_1"])
    layer = model.base_model.model[0]
    with torch.no_grad():
        model(_x())
    mean_a = (layer.lora_A["gks_0"].weight + layer.lora_A["gks_1"].weight) / 2
    torch.testing.assert_close(layer.lora_A["task_0"].weight, original.lora_A["default"].weight - mean_a)
    model.load_adapter(paths[0], adapter_name="task_2")  # joins the experts, with GenKnowSub, at the next forward
    model.set_adapter("arrow_router")
    with torch.no_grad():
        model(_x())
    assert layer._arrow["arrow_router"].experts == ["task_0", "task_1", "task_2"]
    torch.testing.assert_close(layer.lora_A["task_2"].weight, layer.lora_A["task_0"].weight)


def test_arrow_refuses_merging_and_incompatible_experts(tmp_path):
    from peft import ArrowConfig, create_arrow_model

    paths = _save_experts(tmp_path, ranks=(1, 1, 2))
    with pytest.raises(
        ValueError,
        match="Target modules or rank mismatch: Arrow needs adapters with the same target modules and rank; 'task_2'",
    ):
        create_arrow_model(_mlp(), paths, ArrowConfig(top_k=1))
    with pytest.raises(ValueError, match=r"ArrowConfig.top_k=3 exceeds the 2 task adapters"):
        create_arrow_model(_mlp(), paths[:2], ArrowConfig(top_k=3))
    with pytest.raises(ValueError, match="general LoRA paths"):
        create_arrow_model(_mlp(), paths[:2], ArrowConfig(use_gks=True))
    model = create_arrow_model(_mlp(), paths[:2], ArrowConfig(top_k=1))
    with pytest.raises(
        RuntimeError, match=r"Cannot merge an active Arrow router adapter.*Adapters \['arrow_router'\]"
    ):
        model.merge_and_unload()


# ------------------------------------------------------------------------------------- peft.tuners.lora.variants
def test_each_layer_holds_an_instance_of_its_variant_as_the_reference_module_path_names_it():
    from peft.tuners.lora.variants import BdLoraLinearVariant, DoraEmbeddingVariant, DoraLinearVariant

    base = nn.ModuleDict({"emb": nn.Embedding(10, 12), "lin": nn.Linear(12, 8)})
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["emb", "lin"], use_dora=True))
    assert isinstance(model.base_model.model["lin"].lora_variant["default"], DoraLinearVariant)
    assert isinstance(model.base_model.model["emb"].lora_variant["default"], DoraEmbeddingVariant)
    model = get_peft_model(_mlp(), _bd_config())
    assert isinstance(model.base_model.model[2].lora_variant["default"], BdLoraLinearVariant)


@pytest.mark.parametrize(
    ("rows", "tokens", "expected"),
    [
        ([[0, 1, 2, 3], [0, 4, 5, 6]], [1, 2], [3, None]),  # found in row 0 only
        ([[1, 2, 1, 2], [7, 1, 2, 7]], [1, 2], [2, 3]),  # the last occurrence counts
        ([[1, 2, 3, 4]], None, [None]),  # not an aLoRA adapter
    ],
)
def test_calculate_alora_offsets_counts_from_the_last_invocation_to_the_end(rows, tokens, expected):
    from peft.tuners.lora.variants import calculate_alora_offsets

    configs = {"default": LoraConfig(alora_invocation_tokens=tokens)}
    assert calculate_alora_offsets(configs, "default", torch.tensor(rows)) == expected


def test_alora_offsets_per_row_adapter_and_for_forward():
    from peft.tuners.lora.variants import calculate_alora_offsets, get_alora_offsets_for_forward

    configs = {"a": LoraConfig(alora_invocation_tokens=[1]), "b": LoraConfig(alora_invocation_tokens=[2])}
    ids = torch.tensor([[0, 1, 1], [0, 2, 5], [1, 1, 1]])
    assert calculate_alora_offsets(configs, "a", ids, adapter_names=["a", "b", "__base__"]) == [1, 2, None]

    model = get_peft_model(_mlp(), LoraConfig(target_modules=["0"], alora_invocation_tokens=[3]))
    assert get_alora_offsets_for_forward(model, torch.tensor([[3, 0, 0]]), foo=1) == {"alora_offsets": [3], "foo": 1}
    with pytest.warns(UserWarning, match="only inputs_embeds"):
        assert get_alora_offsets_for_forward(model, inputs_embeds=torch.ones(1, 3, 12)) == {"alora_offsets": None}
    plain = get_peft_model(_mlp(), LoraConfig(target_modules=["0"]))
    assert get_alora_offsets_for_forward(plain, torch.tensor([[3, 0, 0]])) == {}


def test_block_diagonal_linear_exposes_its_dense_matrix_and_computes_with_it():
    from peft.tuners.lora.variants import BlockDiagonalLinear

    layer = BlockDiagonalLinear(in_features=6, out_features=4, nblocks=2)
    nn.init.normal_(layer.weight)
    dense = layer.weight_as_blockdiagonal_matrix()
    torch.testing.assert_close(dense, _block_diagonal(layer.weight.detach(), 2))
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x @ dense.T)
    with pytest.raises(ValueError, match="not divisible by nblocks=4"):
        BlockDiagonalLinear(in_features=6, out_features=4, nblocks=4)


def test_alora_forward_refuses_beam_search_and_merging():
    model = get_peft_model(_mlp(), LoraConfig(target_modules=["0"], alora_invocation_tokens=[3]))
    with pytest.raises(ValueError, match=r"Beam search not yet supported for aLoRA\. Got num_beams=2"):
        model(_x(), num_beams=2, alora_offsets=[1] * 5)
    with pytest.raises(NotImplementedError, match=r"aLoRA does not support merging.*Adapters \['default'\]"):
        model.merge_and_unload()


def test_importing_lora_registers_every_variant_option():
    """A saved adapter with any variant option (``arrow_config`` included) selects its variant as soon as LoRA is
    imported, without ``create_arrow_model`` having been imported first (a fresh interpreter, so nothing else has
    imported the variants' modules)."""
    code = (
        "import sys, peft.tuners.lora\n"
        "from peft.tuners.lora.variant import lora_variant_options\n"
        "print(','.join(lora_variant_options()), 'peft.arrow_model' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    options, arrow_model_imported = proc.stdout.split()
    assert options.split(",") == [
        "alora_invocation_tokens",
        "arrow_config",
        "kasa_config",
        "monteclora_config",
        "use_bdlora",
        "use_dora",
        "use_qalora",
        "velora_config",
    ]
    assert arrow_model_imported == "False"
