"""Lifecycle rules that hold for every non-prompt method (REQUIREMENTS LIFE-14, LIFE-16; issue 11, items 2 and 4).

Outputs of the base model come from an independently built base with the same seed.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from method_cases import METHOD_CASES, inputs, perturb, tiny_net

from peft import get_peft_model
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper


def _out(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs())


def _adapted(method: str):
    model = get_peft_model(tiny_net(), METHOD_CASES[method]())
    perturb(model)
    return model


def _lifecycle_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_deleting_the_last_adapter_gives_base_outputs_until_another_is_active(method):
    model = _adapted(method)
    adapted = _out(model)
    base = _out(tiny_net())
    assert not torch.allclose(adapted, base)
    model.delete_adapter("default")
    assert model.active_adapters == [] and model.peft_config == {}
    assert all(m.active_adapters == [] for m in _lifecycle_modules(model))
    torch.testing.assert_close(_out(model), base, atol=0, rtol=0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "PEFT applied a second time" warning: the empty layers hold nothing
        model.add_adapter("again", METHOD_CASES[method]())
    torch.testing.assert_close(_out(model), base, atol=0, rtol=0)  # added, not active yet
    model.set_adapter("again")
    perturb(model)
    assert not torch.allclose(_out(model), base)


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_disable_adapter_gives_base_outputs_and_restores_each_layer(method):
    model = _adapted(method)
    adapted = _out(model)
    modules = _lifecycle_modules(model)
    modules[0].enable_adapters(False)
    partly = _out(model)
    before = [m.disable_adapters for m in modules]
    grads = [p.requires_grad for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning about layers that disagree is tested elsewhere
        with model.disable_adapter():
            torch.testing.assert_close(_out(model), _out(tiny_net()), atol=0, rtol=0)
    assert [m.disable_adapters for m in modules] == before
    assert [p.requires_grad for p in model.parameters()] == grads
    torch.testing.assert_close(_out(model), partly, atol=0, rtol=0)
    modules[0].enable_adapters(True)
    torch.testing.assert_close(_out(model), adapted, atol=0, rtol=0)


@pytest.mark.parametrize("method", sorted(m for m in METHOD_CASES if m not in ("ln_tuning", "trainable_tokens")))
def test_a_merged_adapter_cannot_be_deleted(method):
    model = _adapted(method)
    model.merge_adapter()
    with pytest.raises(ValueError, match=re.escape("Cannot delete adapter(s) ['default'] while they are merged")):
        model.delete_adapter("default")
    assert "default" in model.peft_config
    model.unmerge_adapter()
    model.delete_adapter("default")
    torch.testing.assert_close(_out(model), _out(tiny_net()), atol=1e-4, rtol=1e-4)  # merge round trip
