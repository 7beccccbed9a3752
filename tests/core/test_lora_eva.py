"""EVA: ``A`` from the principal components of each layer's inputs, ranks redistributed by explained variance
(REQUIREMENTS METHOD-LORAINIT-3), and the incremental PCA it streams the data through.

Components and ranks are checked against numpy's PCA of all inputs (EVA cycles through the same batches, so its
streamed PCA estimates the PCA of the data set) and the incremental PCA against scikit-learn's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import EvaConfig, get_eva_state_dict, initialize_lora_eva_weights
from peft.utils.incremental_pca import IncrementalPCA

R = 2


class _TwoInputs(nn.Module):
    """Two linear layers on two inputs, plus one (``lin_c``) on the same input as ``lin_a``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin_a = nn.Linear(8, 5)
        self.lin_b = nn.Linear(8, 5)
        self.lin_c = nn.Linear(8, 5)

    def forward(self, x, y):
        return self.lin_a(x) + self.lin_b(y) + self.lin_c(x)


def _data(batches: int = 4) -> list[dict[str, torch.Tensor]]:
    """``x`` has one dominant direction, ``y`` three of equal strength (plus small noise in all directions)."""
    torch.manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(8, 8))
    out = []
    for _ in range(batches):
        x = torch.randn(64, 1) * 6 @ basis[:1] + 0.05 * torch.randn(64, 8)
        y = (torch.randn(64, 3) * torch.tensor([2.0, 1.9, 1.8])) @ basis[3:6] + 0.05 * torch.randn(64, 8)
        out.append({"x": x, "y": y})
    return out


def _forward(model, batch):
    return model(batch["x"], batch["y"])


def _eva_model(**eva) -> PeftModel:
    config = LoraConfig(
        r=R,
        lora_alpha=4,
        target_modules=["lin_a", "lin_b", "lin_c"],
        init_lora_weights="eva",
        eva_config=EvaConfig(rho=2.0, tau=0.999, **eva),
    )
    return get_peft_model(_TwoInputs(), config)


def _state_dict(model, data):
    return get_eva_state_dict(
        model, data, forward_fn=_forward, prepare_model_inputs_fn=None, prepare_layer_inputs_fn=None,
        show_progress_bar=False,
    )  # fmt: skip


def _pca(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = rows - rows.mean(axis=0)
    _, values, right_t = np.linalg.svd(centred, full_matrices=False)
    return right_t, values**2 / (values**2).sum()


@pytest.fixture(scope="module")
def eva_state_dict() -> dict[str, torch.Tensor]:
    return _state_dict(_eva_model(), _data())


def test_eva_ranks_follow_the_explained_variance_across_layers(eva_state_dict):
    data, state_dict = _data(), eva_state_dict
    ratios = {
        "lin_a": _pca(np.concatenate([b["x"].numpy() for b in data]))[1],
        "lin_b": _pca(np.concatenate([b["y"].numpy() for b in data]))[1],
    }
    ratios["lin_c"] = ratios["lin_a"]
    # the budget (3 layers x r) goes to the largest ratios, at most rho * r per layer
    candidates = sorted(((v, layer) for layer, r in ratios.items() for v in r[: 2 * R]), reverse=True)[: 3 * R]
    expected = {layer: sum(1 for _, chosen in candidates if chosen == layer) for layer in ratios}
    ranks = {name.rsplit(".", 1)[-1]: tensor.shape[0] for name, tensor in state_dict.items()}
    assert ranks == expected
    assert ranks["lin_b"] > ranks["lin_a"]  # three strong directions beat one


def test_eva_components_are_the_principal_directions_of_the_inputs(eva_state_dict):
    data, state_dict = _data(), eva_state_dict
    directions, _ = _pca(np.concatenate([b["y"].numpy() for b in data]))
    components = state_dict["base_model.model.lin_b"].double().numpy()
    assert components.shape[0] >= 3
    # the three strong directions of y: the leading components span them, all components are orthonormal
    projector = directions[:3].T @ directions[:3]
    np.testing.assert_allclose(components[:3] @ projector, components[:3], atol=2e-2)
    np.testing.assert_allclose(components @ components.T, np.eye(components.shape[0]), atol=1e-4)


def test_layers_with_identical_inputs_share_their_components(eva_state_dict):
    a, c = eva_state_dict["base_model.model.lin_a"], eva_state_dict["base_model.model.lin_c"]
    k = min(a.shape[0], c.shape[0])
    torch.testing.assert_close(a[:k], c[:k])


def test_whitening_divides_by_the_square_root_of_the_singular_values(eva_state_dict):
    plain = eva_state_dict["base_model.model.lin_b"]
    whitened = _state_dict(_eva_model(whiten=True), _data())["base_model.model.lin_b"]
    ratios = plain.norm(dim=1) / whitened.norm(dim=1)
    assert (ratios > 1).all() and (ratios[:-1] >= ratios[1:] - 1e-4).all()  # sqrt of decreasing singular values


def test_initialize_lora_eva_weights_sets_a_and_the_patterns_and_keeps_the_output(tmp_path, eva_state_dict):
    data = _data()
    model = _eva_model()
    expected = _forward(model, data[0])
    state_dict = dict(eva_state_dict)
    initialize_lora_eva_weights(model, eva_state_dict=state_dict)
    config = model.peft_config["default"]
    for name, components in state_dict.items():
        layer = model.get_submodule(name)
        torch.testing.assert_close(layer.lora_A["default"].weight, components.float())
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
        rank = components.shape[0]
        short = name.removeprefix("base_model.model.")
        assert config.rank_pattern.get(short, config.r) == rank
        assert config.alpha_pattern.get(short, config.lora_alpha) == pytest.approx(4 * rank / R)  # alpha scaled
        assert layer.scaling["default"] == pytest.approx(4 / R)  # so the scaling stays alpha / r
    torch.testing.assert_close(_forward(model, data[0]), expected)
    # the updated config describes the adapter: it saves and loads with its new ranks
    for param in model.parameters():
        if param.requires_grad:
            param.data += 0.1
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_TwoInputs(), tmp_path)
    torch.testing.assert_close(_forward(loaded, data[0]), _forward(model, data[0]))


def test_a_layer_of_rank_zero_loses_its_adapter():
    model = _eva_model()
    state_dict = {
        "base_model.model.lin_a": torch.linalg.qr(torch.randn(8, 4))[0].T,
        "base_model.model.lin_b": torch.zeros(0, 8),
        "base_model.model.lin_c": torch.linalg.qr(torch.randn(8, 2))[0].T,
    }
    initialize_lora_eva_weights(model, eva_state_dict=state_dict)
    assert type(model.base_model.model.lin_b) is nn.Linear
    assert model.peft_config["default"].target_modules == {"lin_a", "lin_c"}


def test_eva_refuses_what_it_cannot_do():
    plain = get_peft_model(_TwoInputs(), LoraConfig(target_modules=["lin_a"]))
    with pytest.raises(ValueError, match="can only be used with `init_lora_weights='eva'`"):
        initialize_lora_eva_weights(plain, _data())
    with pytest.raises(ValueError, match="dataloader is required"):
        initialize_lora_eva_weights(_eva_model())
    with pytest.raises(ValueError, match="dataloader is empty"):
        _state_dict(_eva_model(), [])
    with pytest.raises(ValueError, match="peft_config is required"):
        get_eva_state_dict(_TwoInputs(), _data())
    with pytest.raises(ValueError, match="must be >= 1.0"):
        EvaConfig(rho=0.5)
    model = _eva_model()
    model.add_adapter("other", LoraConfig(target_modules=["lin_a"], init_lora_weights="eva", eva_config=EvaConfig()))
    model.base_model.set_adapter(["default", "other"])
    with pytest.raises(ValueError, match="single active adapter"):
        initialize_lora_eva_weights(model, _data())


def test_eva_on_a_plain_model_uses_the_config_targets():
    config = LoraConfig(r=R, target_modules=["lin_b"], init_lora_weights="eva", eva_config=EvaConfig(tau=0.999))
    state_dict = get_eva_state_dict(
        _TwoInputs(), _data(), peft_config=config, forward_fn=_forward, prepare_model_inputs_fn=None,
        prepare_layer_inputs_fn=None, show_progress_bar=False,
    )  # fmt: skip
    assert list(state_dict) == ["lin_b"] and state_dict["lin_b"].shape == (R, 8)  # rho applies between layers only


# ---------------------------------------------------------------------------------------------------- incremental PCA
@pytest.mark.parametrize("lowrank", [False, True])
def test_incremental_pca_matches_scikit_learn(lowrank):
    sklearn = pytest.importorskip("sklearn.decomposition")
    torch.manual_seed(0)
    data = torch.randn(300, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64) + 3
    ours = IncrementalPCA(n_components=4, batch_size=60, lowrank=lowrank, lowrank_q=12, lowrank_seed=0).fit(data)
    theirs = sklearn.IncrementalPCA(n_components=4, batch_size=60).fit(data.numpy())
    atol = 1e-8 if not lowrank else 1e-5
    np.testing.assert_allclose(ours.components_.numpy(), theirs.components_, atol=atol)
    np.testing.assert_allclose(ours.explained_variance_ratio_.numpy(), theirs.explained_variance_ratio_, atol=atol)
    np.testing.assert_allclose(ours.transform(data).numpy(), theirs.transform(data.numpy()), atol=1e-5)


def test_incremental_pca_validates_its_input():
    with pytest.raises(ValueError, match="n_components=4 invalid for n_features=3"):
        IncrementalPCA(4).fit(torch.randn(10, 3))
    with pytest.raises(ValueError, match="must be less or equal to the batch number of samples 2"):
        IncrementalPCA(3).partial_fit(torch.randn(2, 5))
    pca = IncrementalPCA().fit(torch.randn(20, 4))
    with pytest.raises(ValueError, match="Number of features"):
        pca.partial_fit(torch.randn(20, 5))
