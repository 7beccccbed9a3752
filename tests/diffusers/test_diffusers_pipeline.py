"""A tiny Stable Diffusion pipeline runs diffusers' LoRA API on our peft (issue #5; HOST-DIFF-1/2/4).

Numerical claims are checked against independent computations: a pipeline whose base weights were changed by hand
to ``W + scale * B @ A`` (no peft involved) must generate the same image as the pipeline with the LoRA loaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_diffusers import (
    TEXT_ATTENTION,
    UNET_ATTENTION,
    generate,
    make_pipeline,
    prefixed,
    random_lora_state_dict,
)

from peft import LoraConfig, get_layer_status
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from peft_diffusers.convert import kohya_to_peft, peft_to_a1111, peft_to_diffusers, peft_to_kohya

UNET_TARGETS = UNET_ATTENTION + ("proj_in", "ff.net.2", "conv1")
TEXT_TARGETS = TEXT_ATTENTION + ("fc1", "fc2")
ATOL = 2e-5


def _unet_config() -> LoraConfig:
    # attention layers share the most common alpha; the others differ (alpha_pattern) and conv1 has its own rank
    return LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=list(UNET_TARGETS),
        rank_pattern={"conv1": 2},
        alpha_pattern={"proj_in": 2, "ff.net.2": 6, "conv1": 3},
    )


def _text_config() -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=2, target_modules=list(TEXT_TARGETS))


class _Lora:
    """Random LoRA weights for the pipeline's UNet and text encoder, with their configs."""

    def __init__(self, pipe, seed: int) -> None:
        self.unet_config, self.text_config = _unet_config(), _text_config()
        self.unet = random_lora_state_dict(
            pipe.unet, UNET_TARGETS, rank=lambda n: 2 if n.endswith("conv1") else 4, seed=seed
        )
        self.text = random_lora_state_dict(pipe.text_encoder, TEXT_TARGETS, seed=seed + 100)

    @property
    def peft_state_dict(self) -> dict[str, torch.Tensor]:
        return prefixed(self.unet, "unet") | prefixed(self.text, "text_encoder")

    @property
    def configs(self) -> dict[str, LoraConfig]:
        return {"unet": self.unet_config, "text_encoder": self.text_config}

    def save(self, pipe, directory) -> str:
        type(pipe).save_lora_weights(
            directory,
            unet_lora_layers=self.unet,
            text_encoder_lora_layers=self.text,
            unet_lora_adapter_metadata=self.unet_config.to_dict(),
            text_encoder_lora_adapter_metadata=self.text_config.to_dict(),
        )
        return str(directory)


def _scale(config: LoraConfig, path: str) -> float:
    """alpha / r of module ``path`` under ``config``, read from the patterns by suffix (independently of peft)."""

    def pick(patterns: dict, default):
        for key, value in patterns.items():
            if path == key or path.endswith("." + key):
                return value
        return default

    return pick(config.alpha_pattern, config.lora_alpha) / pick(config.rank_pattern, config.r)


@torch.no_grad()
def _merge_by_hand(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], config: LoraConfig, weight=1.0):
    """W <- W + weight * scale * B @ A for every module of ``state_dict`` (Conv2d: B is 1x1, A has the kernel)."""
    for name, module in model.named_modules():
        key = f"{name}.lora_A.weight"
        if key not in state_dict:
            continue
        down, up = state_dict[key], state_dict[f"{name}.lora_B.weight"]
        delta = torch.einsum("or,r...->o...", up.flatten(1), down)
        module.weight += weight * _scale(config, name) * delta


def _merged_pipeline(tmp_path, lora: _Lora, weight: float = 1.0):
    pipe = make_pipeline(_tokenizer_dir(tmp_path, "merged"))
    _merge_by_hand(pipe.unet, lora.unet, lora.unet_config, weight)
    _merge_by_hand(pipe.text_encoder, lora.text, lora.text_config, weight)
    return pipe


def _tokenizer_dir(tmp_path, name: str):
    directory = tmp_path / f"tokenizer-{name}"
    directory.mkdir(exist_ok=True)
    return directory


def _assert_same_image(actual, expected, atol: float = ATOL):
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def _adapter_layers(model: torch.nn.Module) -> list[BaseTunerLayer]:
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


# ------------------------------------------------------------------------------------------------ formats
def test_host_diff_1_peft_format_file_matches_weights_merged_by_hand(sd_pipe, tmp_path):
    base = generate(sd_pipe)
    lora = _Lora(sd_pipe, seed=1)
    sd_pipe.load_lora_weights(lora.save(sd_pipe, tmp_path / "lora"), adapter_name="a")
    image = generate(sd_pipe)
    assert np.abs(image - base).max() > 1e-2
    _assert_same_image(image, generate(_merged_pipeline(tmp_path, lora)))
    assert sd_pipe.unet.peft_config["a"].alpha_pattern == {"proj_in": 2, "ff.net.2": 6, "conv1": 3}
    assert sd_pipe.text_encoder.peft_config["a"].lora_alpha == 2


def test_kohya_file_with_alphas_loads_like_the_merged_weights(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=2)
    kohya = peft_to_kohya(lora.peft_state_dict, lora.configs)
    assert all(k.startswith(("lora_unet_", "lora_te_")) for k in kohya) and any(k.endswith(".alpha") for k in kohya)
    sd_pipe.load_lora_weights(kohya, adapter_name="kohya")
    _assert_same_image(generate(sd_pipe), generate(_merged_pipeline(tmp_path, lora)))


def test_kohya_file_converted_by_peft_diffusers_loads_like_the_merged_weights(sd_pipe, tmp_path):
    # per-module alphas on attention layers and text-encoder layers, which diffusers' own kohya reader drops
    lora = _Lora(sd_pipe, seed=3)
    lora.unet_config.alpha_pattern |= {"attn2.to_k": 1}
    lora.text_config.alpha_pattern = {"out_proj": 5}
    kohya = peft_to_kohya(lora.peft_state_dict, lora.configs)
    peft_sd, configs = kohya_to_peft(kohya, module_names={"unet": sd_pipe.unet, "text_encoder": sd_pipe.text_encoder})
    type(sd_pipe).save_lora_weights(
        tmp_path / "converted",
        unet_lora_layers={k.removeprefix("unet."): v for k, v in peft_sd.items() if k.startswith("unet.")},
        text_encoder_lora_layers={
            k.removeprefix("text_encoder."): v for k, v in peft_sd.items() if k.startswith("text_encoder.")
        },
        unet_lora_adapter_metadata=configs["unet"],
        text_encoder_lora_adapter_metadata=configs["text_encoder"],
    )
    sd_pipe.load_lora_weights(str(tmp_path / "converted"), adapter_name="converted")
    _assert_same_image(generate(sd_pipe), generate(_merged_pipeline(tmp_path, lora)))


def test_a1111_file_with_ldm_unet_names_loads_like_the_merged_weights(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=4)
    a1111 = peft_to_a1111(lora.peft_state_dict, sd_pipe.unet, lora.configs)
    assert any(k.startswith("lora_unet_input_blocks_1_1_") for k in a1111)
    # the SD 1.x loader maps LDM block names only when given the UNet config (the SDXL loader passes it itself)
    sd_pipe.load_lora_weights(a1111, adapter_name="a1111", unet_config=sd_pipe.unet.config)
    _assert_same_image(generate(sd_pipe), generate(_merged_pipeline(tmp_path, lora)))


def test_old_diffusers_format_loads_like_the_merged_weights(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=5)
    old = peft_to_diffusers(lora.peft_state_dict, lora.configs)
    assert any(".lora.down.weight" in k for k in old) and any(".lora_linear_layer.up." in k for k in old)
    sd_pipe.load_lora_weights(old, adapter_name="old")
    _assert_same_image(generate(sd_pipe), generate(_merged_pipeline(tmp_path, lora)))


def test_save_lora_weights_then_load_lora_weights_is_bit_identical(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=6)
    sd_pipe.load_lora_weights(lora.save(sd_pipe, tmp_path / "first"), adapter_name="a")
    image = generate(sd_pipe)
    unet_sd = get_peft_model_state_dict(sd_pipe.unet, adapter_name="a")
    text_sd = get_peft_model_state_dict(sd_pipe.text_encoder, adapter_name="a")
    sd_pipe.save_lora_weights(
        tmp_path / "second",
        unet_lora_layers=unet_sd,
        text_encoder_lora_layers=text_sd,
        unet_lora_adapter_metadata=sd_pipe.unet.peft_config["a"].to_dict(),
        text_encoder_lora_adapter_metadata=sd_pipe.text_encoder.peft_config["a"].to_dict(),
    )
    reloaded = make_pipeline(_tokenizer_dir(tmp_path, "reloaded"))
    reloaded.load_lora_weights(str(tmp_path / "second"), adapter_name="a")
    for model, saved in ((reloaded.unet, unet_sd), (reloaded.text_encoder, text_sd)):
        again = get_peft_model_state_dict(model, adapter_name="a")
        assert again.keys() == saved.keys()
        assert all(torch.equal(again[k], saved[k]) for k in saved)
    assert unet_sd.keys() == lora.unet.keys() and all(torch.equal(unet_sd[k], lora.unet[k]) for k in lora.unet)
    assert np.array_equal(generate(reloaded), image)


# ------------------------------------------------------------------------------------------------ lifecycle
def _load_two(pipe, tmp_path) -> tuple[_Lora, _Lora]:
    a, b = _Lora(pipe, seed=7), _Lora(pipe, seed=8)
    b.unet_config.lora_alpha = 3
    pipe.load_lora_weights(a.save(pipe, tmp_path / "a"), adapter_name="a")
    pipe.load_lora_weights(b.save(pipe, tmp_path / "b"), adapter_name="b")
    return a, b


def test_set_adapters_with_weights_then_fuse_gives_the_weighted_sum_of_deltas(sd_pipe, tmp_path):
    a, b = _load_two(sd_pipe, tmp_path)
    sd_pipe.set_adapters(["a", "b"], adapter_weights=[0.7, -0.4])
    assert sd_pipe.get_active_adapters() == ["a", "b"]
    unfused = generate(sd_pipe)
    originals = {n: p.detach().clone() for n, p in sd_pipe.unet.named_parameters() if "base_layer" in n}
    sd_pipe.fuse_lora(adapter_names=["a", "b"])
    expected = make_pipeline(_tokenizer_dir(tmp_path, "expected"))
    for lora, weight in ((a, 0.7), (b, -0.4)):
        _merge_by_hand(expected.unet, lora.unet, lora.unet_config, weight)
        _merge_by_hand(expected.text_encoder, lora.text, lora.text_config, weight)
    to_q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    torch.testing.assert_close(
        sd_pipe.unet.get_submodule(to_q).get_base_layer().weight, expected.unet.get_submodule(to_q).weight
    )
    fused = generate(sd_pipe)
    _assert_same_image(fused, unfused)
    _assert_same_image(fused, generate(expected))
    sd_pipe.unfuse_lora()
    for name, value in originals.items():
        torch.testing.assert_close(sd_pipe.unet.get_parameter(name), value)
    _assert_same_image(generate(sd_pipe), unfused)


def test_fuse_lora_with_lora_scale_merges_the_scaled_delta(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=12)
    sd_pipe.load_lora_weights(lora.save(sd_pipe, tmp_path / "lora"), adapter_name="a")
    sd_pipe.fuse_lora(lora_scale=0.5)
    assert all(layer.merged_adapters == ["a"] for layer in _adapter_layers(sd_pipe.unet))
    _assert_same_image(generate(sd_pipe), generate(_merged_pipeline(tmp_path, lora, weight=0.5)))


def test_set_adapters_with_block_weights_scales_each_layer(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=11)
    sd_pipe.load_lora_weights(lora.save(sd_pipe, tmp_path / "lora"), adapter_name="a")
    sd_pipe.set_adapters("a", {"unet": {"down": 0.0, "mid": 0.5, "up": 1.5}, "text_encoder": 0.25})

    def block_weight(name: str) -> float:
        # diffusers weighs whole cross-attention blocks (down_blocks.0 and up_blocks.1 here), only the attention of
        # the mid block, and leaves blocks without attention at 1
        if name.startswith("mid_block."):
            return 0.5 if ".attentions." in name else 1.0
        return {"down_blocks.0": 0.0, "up_blocks.1": 1.5}.get(".".join(name.split(".")[:2]), 1.0)

    expected = make_pipeline(_tokenizer_dir(tmp_path, "expected"))
    for name in sorted({k.rsplit(".lora_", 1)[0] for k in lora.unet}):
        one = {k: v for k, v in lora.unet.items() if k.rsplit(".lora_", 1)[0] == name}
        _merge_by_hand(expected.unet, one, lora.unet_config, block_weight(name))
    _merge_by_hand(expected.text_encoder, lora.text, lora.text_config, 0.25)
    _assert_same_image(generate(sd_pipe), generate(expected))


def test_disable_lora_gives_the_base_image_and_enable_lora_brings_it_back(sd_pipe, tmp_path):
    base = generate(sd_pipe)
    _load_two(sd_pipe, tmp_path)
    with_lora = generate(sd_pipe)
    sd_pipe.disable_lora()
    assert np.array_equal(generate(sd_pipe), base)
    sd_pipe.enable_lora()
    assert np.array_equal(generate(sd_pipe), with_lora)


def test_cross_attention_kwargs_scale_scales_the_adapters_for_one_call(sd_pipe, tmp_path):
    base = generate(sd_pipe)
    lora = _Lora(sd_pipe, seed=9)
    sd_pipe.load_lora_weights(lora.save(sd_pipe, tmp_path / "lora"), adapter_name="a")
    full = generate(sd_pipe)
    _assert_same_image(generate(sd_pipe, cross_attention_kwargs={"scale": 0.0}), base, atol=1e-6)
    half = generate(sd_pipe, cross_attention_kwargs={"scale": 0.5})
    _assert_same_image(half, generate(_merged_pipeline(tmp_path, lora, weight=0.5)))
    assert np.array_equal(generate(sd_pipe), full)  # the scale was undone after the call


def test_delete_adapters_removes_one_adapter_everywhere(sd_pipe, tmp_path):
    a, b = _load_two(sd_pipe, tmp_path)
    sd_pipe.set_adapters(["a", "b"])
    sd_pipe.delete_adapters("a")
    assert sd_pipe.get_list_adapters() == {"unet": ["b"], "text_encoder": ["b"]}
    for model in (sd_pipe.unet, sd_pipe.text_encoder):
        assert all("a" not in layer.lora_A and layer.active_adapters == ["b"] for layer in _adapter_layers(model))
        assert not any(".lora_A.a." in name for name, _ in model.named_parameters())
    only_b = make_pipeline(_tokenizer_dir(tmp_path, "only-b"))
    only_b.load_lora_weights(str(tmp_path / "b"), adapter_name="b")
    assert np.array_equal(generate(sd_pipe), generate(only_b))


def test_unload_lora_weights_puts_the_original_modules_back(sd_pipe, tmp_path):
    base = generate(sd_pipe)
    to_q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    originals = {
        "unet": sd_pipe.unet.get_submodule(to_q),
        "conv1": sd_pipe.unet.get_submodule("down_blocks.0.resnets.0.conv1"),
        "text": sd_pipe.text_encoder.get_submodule("encoder.layers.0.self_attn.q_proj"),
    }
    _load_two(sd_pipe, tmp_path)
    assert sd_pipe.unet.get_submodule(to_q).get_base_layer() is originals["unet"]
    sd_pipe.unload_lora_weights()
    assert sd_pipe.unet.get_submodule(to_q) is originals["unet"]
    assert sd_pipe.unet.get_submodule("down_blocks.0.resnets.0.conv1") is originals["conv1"]
    assert sd_pipe.text_encoder.get_submodule("encoder.layers.0.self_attn.q_proj") is originals["text"]
    assert not _adapter_layers(sd_pipe.unet) and not _adapter_layers(sd_pipe.text_encoder)
    assert not hasattr(sd_pipe.unet, "peft_config")
    assert np.array_equal(generate(sd_pipe), base)


def test_host_diff_4_get_layer_status_works_on_a_diffusers_unet(sd_pipe, tmp_path):
    _load_two(sd_pipe, tmp_path)
    sd_pipe.set_adapters(["b"])
    status = {s.name: s for s in get_layer_status(sd_pipe.unet)}
    to_q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    assert len(status) == len(_adapter_layers(sd_pipe.unet))
    assert status[to_q].active_adapters == ["b"]
    assert status[to_q].available_adapters == ["a", "b"]
    assert status[to_q].merged_adapters == []


def test_host_diff_2_layerwise_casting_keeps_adapter_weights_in_full_precision(sd_pipe, tmp_path):
    lora = _Lora(sd_pipe, seed=10)
    sd_pipe.load_lora_weights(lora.save(sd_pipe, tmp_path / "lora"), adapter_name="a")
    sd_pipe.unet.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    layer = sd_pipe.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")
    assert layer.get_base_layer().weight.dtype == torch.bfloat16
    assert layer.lora_A["a"].weight.dtype == torch.float32
    generate(sd_pipe)


# ------------------------------------------------------------------------------------------------ load errors
def test_load_lora_weights_of_the_wrong_shape_raises_what_diffusers_catches(sd_pipe, tmp_path):
    """Issue #19: diffusers expects a ``RuntimeError`` naming ``size mismatch for <live key>`` (its Flux Control
    tests load a LoRA of the wrong input size into ``x_embedder`` the same way), and cleans the failed adapter up
    itself, so the pipeline keeps computing with the adapter it had."""
    lora = _Lora(sd_pipe, seed=1)
    sd_pipe.load_lora_weights(lora.peft_state_dict, adapter_name="adapter-1")
    before = generate(sd_pipe)
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    wrong = dict(lora.unet)
    wrong[f"{path}.lora_A.weight"] = torch.randn(4, 2 * wrong[f"{path}.lora_A.weight"].shape[1])
    with pytest.raises(RuntimeError, match=rf"size mismatch for {path}\.lora_A\.adapter-2\.weight"):
        sd_pipe.load_lora_weights(prefixed(wrong, "unet"), adapter_name="adapter-2")
    assert sd_pipe.get_list_adapters()["unet"] == ["adapter-1"]
    assert np.array_equal(generate(sd_pipe), before)
