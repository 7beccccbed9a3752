"""AdaMSS, BEFT, DEFT, FRoD, OSF, PEANuT, PSOFT and Super-Tuning on a tiny Llama with their default targets: the
modules they adapt, generation, and a save/load round trip (issue 16 part B; REQUIREMENTS TGT-2, SAVE-2)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("sklearn")

from tiny_transformers import tiny_llama  # noqa: E402

import peft  # noqa: E402
from peft import PeftModel, get_peft_model  # noqa: E402

# config class -> (settings that fit the tiny Llama, the module names adapted by default)
_QV = ("q_proj", "v_proj")
DEFAULTS = {
    "AdamssConfig": ({"r": 8, "num_subspaces": 2}, _QV),
    "BeftConfig": ({}, ("v_proj",)),
    "DeftConfig": ({"r": 4}, _QV),
    "FrodConfig": ({"progressbar": False}, _QV),
    "OSFConfig": ({}, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    "PeanutConfig": ({"r": 4}, _QV),
    "PsoftConfig": ({"r": 4}, _QV),
    "SupertuningConfig": ({"sparsity": 0.9}, _QV),
}


@pytest.mark.parametrize("config_name", sorted(DEFAULTS))
def test_tgt_2_default_targets_generate_and_round_trip(config_name, tmp_path):
    settings, expected_targets = DEFAULTS[config_name]
    config_cls = getattr(peft, config_name)
    init = {"init_weights": None} if config_name == "AdamssConfig" else {"init_weights": False}
    model = get_peft_model(tiny_llama(), config_cls(task_type="CAUSAL_LM", **settings, **init)).eval()
    targeted = {name.rsplit(".", 1)[-1] for name in model.base_model.targeted_module_names}
    assert targeted == set(expected_targets)
    input_ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        with model.disable_adapter():
            assert not torch.allclose(model(input_ids=input_ids).logits, logits, atol=1e-5)
    generated = model.generate(input_ids=input_ids, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, 7)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=input_ids).logits, logits, atol=1e-5, rtol=1e-5)
