"""Adding an additive method is a config, a layer and one registration (issue 15; docs/adding_a_method.md).

The method defined here, a rank-one shift ``y = W x + b + s * (v . x) u``, is exactly that: a config dataclass, a
layer that says what it adds to the base output and what that is as a weight, and a declarative tuner handed to
``register_peft_method``. Everything else (targeting, injection, activation, save and load, merging, deleting) must
come from the base classes. Expected outputs are computed by hand from the base weights and the adapter's tensors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from peft import PeftModel, get_peft_model, inject_adapter_in_model, register_peft_method, registry
from peft.config import TargetingConfig
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner

NAME = "outer_shift"


# ------------------------------------------------------------------------------------------------ the method
@dataclass
class OuterShiftConfig(TargetingConfig):
    scale: float = field(default=1.0, metadata={"help": "Multiplies the update."})


class OuterShiftLayer(BaseTunerLayer):
    adapter_layer_names = ("outer_shift_u", "outer_shift_v")
    other_param_names = ("outer_shift_scale",)

    def update_layer(self, adapter_name: str, scale: float = 1.0) -> None:
        factory = self._factory_kwargs()
        self.outer_shift_u[adapter_name] = nn.Parameter(torch.zeros(self.out_features, **factory))
        self.outer_shift_v[adapter_name] = nn.Parameter(torch.ones(self.in_features, **factory))
        self.outer_shift_scale[adapter_name] = scale

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        u, v = self.outer_shift_u[adapter_name], self.outer_shift_v[adapter_name]
        return (x @ v).unsqueeze(-1) * u * self.outer_shift_scale[adapter_name]

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        u, v = self.outer_shift_u[adapter_name], self.outer_shift_v[adapter_name]
        return torch.outer(u, v) * self.outer_shift_scale[adapter_name]


class OuterShiftLinear(OuterShiftLayer, nn.Module):
    pass


class OuterShiftModel(BaseTuner):
    tuner_layer_cls = OuterShiftLayer
    layers_mapping = {nn.Linear: OuterShiftLinear}
    layer_options = ("scale",)


@pytest.fixture(autouse=True)
def registered():
    register_peft_method(name=NAME, config_cls=OuterShiftConfig, model_cls=OuterShiftModel)
    yield
    for table in (registry._CONFIGS, registry._TUNERS, registry._PREFIXES, registry._MIXED_TUNERS):
        table.pop(NAME.upper(), None)


# ------------------------------------------------------------------------------------------------ using it
def _base() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


def _trained(model: nn.Module) -> None:
    """Give every adapter tensor a value of its own, as training would."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if NAME in name:
                param.copy_(torch.randn(param.shape, generator=generator))


def _by_hand(base: nn.Sequential, model: nn.Module, x: torch.Tensor, scale: float) -> torch.Tensor:
    """``W x + b + s * (v . x) u`` on both linears, from the base's weights and the adapter's tensors."""
    hidden = x
    for index in (0, 2):
        layer = model.get_submodule(f"base_model.model.{index}")
        u, v = layer.outer_shift_u["default"].detach(), layer.outer_shift_v["default"].detach()
        hidden = hidden @ base[index].weight.T + base[index].bias + scale * (hidden @ v).unsqueeze(-1) * u
        hidden = torch.relu(hidden) if index == 0 else hidden
    return hidden


def test_the_method_injects_computes_saves_loads_merges_and_deletes(tmp_path):
    base, x = _base(), torch.randn(4, 6)
    model = get_peft_model(copy.deepcopy(base), OuterShiftConfig(target_modules=["0", "2"], scale=0.5))
    assert (
        isinstance(model.base_model.model[0], OuterShiftLinear)
        and model.peft_config["default"].peft_type == "OUTER_SHIFT"
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x))  # u = 0: the identity at the start
        _trained(model)
        expected = _by_hand(base, model, x, 0.5)
        torch.testing.assert_close(model(x), expected)
        with model.disable_adapter():
            torch.testing.assert_close(model(x), base(x))

    model.save_pretrained(tmp_path)
    assert sorted(load_file(tmp_path / "adapter_model.safetensors")) == [
        f"base_model.model.{index}.outer_shift_{vector}" for index in (0, 2) for vector in ("u", "v")
    ]
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected)
        merged = loaded.merge_and_unload()
        assert isinstance(merged[0], nn.Linear) and not isinstance(merged[0], BaseTunerLayer)
        torch.testing.assert_close(merged(x), expected, atol=1e-5, rtol=0)

    model.delete_adapter("default")
    assert not any(NAME in name for name, _ in model.named_parameters())


def test_the_method_works_without_a_peft_model_and_refuses_unsupported_layers():
    base, x = _base(), torch.randn(4, 6)
    model = inject_adapter_in_model(OuterShiftConfig(target_modules=["0"]), copy.deepcopy(base))
    assert [name for name, p in model.named_parameters() if p.requires_grad] == [
        "0.outer_shift_u.default",
        "0.outer_shift_v.default",
    ]
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x))
    with pytest.raises(
        ValueError, match=r"Target module Embedding\(4, 3\) is not supported\. .*Linear.*OuterShiftModel adapts"
    ):
        get_peft_model(nn.Sequential(nn.Embedding(4, 3)), OuterShiftConfig(target_modules=["0"]))
