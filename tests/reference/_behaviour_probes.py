"""Behaviour probes run by both libraries: this file imports only torch, transformers and the `peft` of the running
interpreter, so that `test_reference_behaviour.py` runs it here and in the reference environment and compares.

    python _behaviour_probes.py OUT.json

Each probe returns JSON-ready values describing what a user observes (states, names, error types and messages,
warnings), never internals.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sys
import tempfile
import warnings

import torch
from torch import nn

import peft
from peft import LoraConfig, PeftModel, get_peft_model


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.lin0 = nn.Linear(8, 8)
        self.lin1 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.lin1(torch.relu(self.lin0(self.emb(x)))))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return _Net().eval()


def _x() -> torch.Tensor:
    return torch.tensor([[1, 2, 3], [4, 5, 6]])


def _lora(**kwargs) -> LoraConfig:
    return LoraConfig(**{"r": 2, "target_modules": ["lin0", "lin1"], "init_lora_weights": False, **kwargs})


def _error(fn) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001  (the probe reports what was raised)
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _warnings(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return sorted({str(w.message)[:90] for w in caught if issubclass(w.category, UserWarning)})


def probe_eval_after_loading() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        get_peft_model(_net(), _lora(lora_dropout=0.5)).save_pretrained(folder)
        inference = PeftModel.from_pretrained(_net().train(), folder)
        trainable = PeftModel.from_pretrained(_net().train(), folder, is_trainable=True)
        return {"inference": inference.training, "trainable": trainable.training}


def probe_delete_merged_adapter() -> dict:
    model = get_peft_model(_net(), _lora())
    model.merge_adapter()
    return {"error": _error(lambda: model.delete_adapter("default")), "configs": sorted(model.peft_config)}


def probe_delete_last_adapter() -> dict:
    model = get_peft_model(_net(), _lora())
    model.delete_adapter("default")
    return {"active_adapters": model.active_adapters, "configs": sorted(model.peft_config)}


def probe_forward_after_deleting_the_last_adapter() -> dict:
    model = get_peft_model(_net(), _lora())
    model.delete_adapter("default")

    def forward():
        with torch.no_grad():
            if not torch.equal(model(_x()), _net()(_x())):
                raise AssertionError("not the base model's outputs")

    return {"forward": _error(forward).split(":")[0]}


def _disabled_flags(model) -> list[bool]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m.disable_adapters for m in model.modules() if isinstance(m, BaseTunerLayer)]


def probe_disable_adapter_after_disabling_all() -> dict:
    model = get_peft_model(_net(), _lora())
    model.base_model.disable_adapter_layers()
    with model.disable_adapter():
        inside = _disabled_flags(model)
    return {"inside": inside, "after": _disabled_flags(model)}


def probe_disable_adapter_irregular() -> dict:
    model = get_peft_model(_net(), _lora())
    layers = [m for m in model.modules() if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)]
    layers[0].enable_adapters(False)

    def enter():
        with model.disable_adapter():
            pass

    caught = _warnings(enter)
    return {"warns": any("enabled and others that are disabled" in w for w in caught), "after": _disabled_flags(model)}


def probe_peft_version_at_creation() -> dict:
    config = LoraConfig()
    return {"starts_with_version": str(config.peft_version).startswith(peft.__version__)}


def probe_model_card_of_a_custom_module() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        get_peft_model(_net(), _lora(base_model_name_or_path="MyNet")).save_pretrained(folder)
        text = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    front = text.split("---")[1]
    return {"base_model": "base_model:" in front, "library_name": "library_name: peft" in front}


def _status_model():
    model = get_peft_model(_net(), _lora(modules_to_save=["head"], trainable_token_indices={"emb": [1, 2]}))
    model.add_adapter("other", _lora(target_modules=["lin1"]))
    return model


def probe_layer_status() -> list:
    return [[s.name, s.module_type, s.active_adapters, s.available_adapters, s.quantization_backend]
            for s in _status_model().get_layer_status()]  # fmt: skip


def probe_model_status() -> dict:
    status = _status_model().get_model_status()
    fields = ["base_model_type", "adapter_model_type", "peft_types", "trainable_params", "total_params",
              "num_adapter_layers", "enabled", "active_adapters", "merged_adapters", "requires_grad",
              "available_adapters", "quantization_backend"]  # fmt: skip
    return {field: getattr(status, field) for field in fields}


def probe_find_minimal_target_modules() -> list:
    from peft.tuners.tuners_utils import _find_minimal_target_modules

    generator = random.Random(0)
    results = []
    for _ in range(200):
        parts = ["a", "b", "c", "d"]
        names = sorted({".".join(generator.choice(parts) for _ in range(generator.randint(1, 4))) for _ in range(12)})
        generator.shuffle(names)
        split = generator.randint(1, len(names) - 1)
        targets, others = names[:split], names[split:]
        results.append(
            [targets, others, _error_or_value(lambda t=targets, o=others: _find_minimal_target_modules(t, o))]
        )
    return results


def _error_or_value(fn):
    try:
        return sorted(fn())
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}"


def probe_adalora_in_a_mixed_model() -> dict:
    model = get_peft_model(_net(), _lora(), mixed=True)
    config = peft.AdaLoraConfig(init_r=2, target_r=1, total_step=10, target_modules=["head"])
    return {"add": _error(lambda: model.add_adapter("ada", config))}


def probe_wrapper_active_adapters() -> dict:
    model = get_peft_model(_net(), _lora(modules_to_save=["head"], target_modules=["lin0"]))
    model.add_adapter("other", _lora(modules_to_save=["lin1"], target_modules=["lin0"]))
    model.base_model.set_adapter(["default", "other"])
    base = model.get_base_model()
    return {"head": base.head.active_adapters, "lin1": base.lin1.active_adapters}


def probe_configs_with_open_fields() -> dict:
    results = {}
    for name, kwargs in [("AdaptionPromptConfig", {}), ("TrainableTokensConfig", {})]:
        config_cls = getattr(peft, name)
        results[name] = _error(lambda c=config_cls, k=kwargs: copy.deepcopy(c(**k)))
    return results


def probe_sanity_checks() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "adapter_config.json"), "w") as f:
            json.dump({"foo": "bar"}, f)
        junk = _error(lambda: peft.PeftConfig.from_pretrained(folder)).split(" is not")[0]
    return {
        "junk_config": junk.split(".")[0],
        "target_parameters_str_is_a_type_error": _raises(
            TypeError, lambda: LoraConfig(target_parameters="lin0.weight")
        ),
        "merge_str_is_a_type_error": _raises(
            TypeError, lambda: get_peft_model(_net(), _lora()).merge_adapter(adapter_names="default")
        ),
    }


def _raises(error: type[Exception], fn) -> bool:
    try:
        fn()
    except error:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


def probe_prompt_learning_sanity_checks() -> dict:
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    model = get_peft_model(
        transformers.LlamaForCausalLM(config), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)
    )
    return {
        "set_requires_grad": _error(lambda: model.set_requires_grad("default"))[:90],
        "layer_status": _error(lambda: peft.get_layer_status(model)),
    }


def probe_get_submodules_of_the_empty_key() -> dict:
    from peft.utils import _get_submodules

    model = _net()
    parent, target, name = _get_submodules(model, "")
    return {"parent_is_model": parent is model, "target_is_model": target is model, "name": name}


def probe_base_model_state_dict() -> dict:
    model = get_peft_model(_net(), _lora(modules_to_save=["head"], trainable_token_indices={"emb": [1, 2]}))
    state_dict = peft.get_base_model_state_dict(model)
    same = all(torch.equal(state_dict[k], v) for k, v in _net().state_dict().items())
    return {"keys": sorted(state_dict), "same_tensors": same}


def probe_quantized_weight_helpers() -> dict:
    """Issue 12: the helpers of ``peft.utils`` for quantized weights, on bitsandbytes layers quantized on CPU."""
    import bitsandbytes as bnb

    from peft.utils import get_quantization_config, quantization_extra_repr
    from peft.utils.integrations import dequantize_bnb_weight, dequantize_module_weight, get_bnb_param_type

    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    four_bit = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    eight_bit = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False)
    four_bit.load_state_dict(linear.state_dict())
    eight_bit.load_state_dict(linear.state_dict())
    four_bit, eight_bit = four_bit.to("cpu"), eight_bit.to("cpu")
    # SHiRA: a method whose reference layers name their quantization backend too
    peft_model = get_peft_model(nn.Sequential(eight_bit), peft.ShiraConfig(r=2, target_modules=["0"]))
    return {
        "param_types": [get_bnb_param_type(p) for p in (four_bit.weight, eight_bit.weight, linear.weight)],
        "dequantized_4bit": dequantize_module_weight(four_bit).tolist(),
        "dequantized_8bit": dequantize_module_weight(eight_bit).tolist(),
        "bnb_4bit": dequantize_bnb_weight(four_bit.weight).tolist(),
        "bnb_8bit": dequantize_bnb_weight(eight_bit.weight, eight_bit.state).tolist(),
        "float": dequantize_module_weight(linear).tolist(),
        "extra_repr": [quantization_extra_repr(peft_model.base_model.model[0]), quantization_extra_repr(linear)],
        "config_of_an_unquantized_model": get_quantization_config(linear, "bitsandbytes"),
    }


PROBES = {name[len("probe_") :]: fn for name, fn in sorted(globals().items()) if name.startswith("probe_")}


def main() -> None:
    warnings.filterwarnings("ignore")
    results = {}
    for name, probe in PROBES.items():
        try:
            results[name] = probe()
        except Exception as exc:  # noqa: BLE001  (reported, and compared, as the probe's result)
            results[name] = f"probe failed: {type(exc).__name__}: {exc}"
    results["__peft_version__"] = peft.__version__
    with open(sys.argv[1], "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
