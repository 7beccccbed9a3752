"""peft_diffusers.convert / naming: LoRA state dicts between the PEFT, kohya, A1111 and diffusers formats, without
pipelines (issue #5, "peft_diffusers holds the diffusers conventions as a library")."""

from __future__ import annotations

import diffusers
import pytest
import torch
from tiny_diffusers import (
    TEXT_ATTENTION,
    UNET_ATTENTION,
    make_pipeline,
    make_sd3_transformer,
    make_unet,
    prefixed,
    random_lora_state_dict,
)

from peft import LoraConfig, inject_adapter_in_model
from peft_diffusers.convert import (
    a1111_to_peft,
    detect_format,
    diffusers_to_peft,
    kohya_to_peft,
    peft_to_a1111,
    peft_to_diffusers,
    peft_to_kohya,
    to_peft,
)
from peft_diffusers.naming import LdmUNetNames, flatten_name, guess_path


def _weight_module_names(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def _scales_of(model: torch.nn.Module, adapter: str = "default") -> dict[str, float]:
    return {n: float(m.scaling[adapter]) for n, m in model.named_modules() if hasattr(m, "scaling")}


# ------------------------------------------------------------------------------------------------ naming
@pytest.mark.parametrize("build", [make_unet, make_sd3_transformer], ids=["unet", "sd3"])
def test_kohya_names_of_every_weight_module_resolve_without_the_model(build):
    for name in _weight_module_names(build()):
        assert guess_path(flatten_name(name)) == name


def test_kohya_names_of_clip_text_encoder_resolve_without_the_model(tmp_path):
    text_encoder = make_pipeline(tmp_path).text_encoder
    for name in _weight_module_names(text_encoder):
        assert guess_path(flatten_name("text_model." + name)) == "text_model." + name


def _sd15_layout_unet() -> torch.nn.Module:
    """The block layout of Stable Diffusion 1.5's UNet (4 blocks, 2 layers each), with tiny channels."""
    return diffusers.UNet2DConditionModel(
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=2,
        norm_num_groups=8,
        sample_size=8,
        cross_attention_dim=16,
        attention_head_dim=2,
    )


def test_ldm_names_follow_the_original_unet_numbering():
    ldm = LdmUNetNames(n for n, _ in _sd15_layout_unet().named_modules())
    expected = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "down_blocks.0.resnets.0.conv1": "input_blocks.1.0.in_layers.2",
        "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q": (
            "input_blocks.2.1.transformer_blocks.0.attn1.to_q"
        ),
        "down_blocks.0.downsamplers.0.conv": "input_blocks.3.0.op",
        "down_blocks.1.attentions.0.proj_in": "input_blocks.4.1.proj_in",
        "down_blocks.1.resnets.0.conv_shortcut": "input_blocks.4.0.skip_connection",
        "down_blocks.3.resnets.1.time_emb_proj": "input_blocks.11.0.emb_layers.1",
        "mid_block.resnets.0.conv2": "middle_block.0.out_layers.3",
        "mid_block.attentions.0.proj_out": "middle_block.1.proj_out",
        "mid_block.resnets.1.norm1": "middle_block.2.in_layers.0",
        "up_blocks.0.resnets.2.conv1": "output_blocks.2.0.in_layers.2",
        "up_blocks.0.upsamplers.0.conv": "output_blocks.2.1.conv",
        "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2": "output_blocks.3.1.transformer_blocks.0.ff.net.2",
        "up_blocks.1.upsamplers.0.conv": "output_blocks.5.2.conv",
        "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0": (
            "output_blocks.11.1.transformer_blocks.0.attn2.to_out.0"
        ),
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for path, ldm_path in expected.items():
        assert ldm.to_ldm[path] == ldm_path
        assert ldm.from_ldm[ldm_path] == path


# ------------------------------------------------------------------------------------------------ kohya
def _unet_lora_with_patterns() -> tuple[torch.nn.Module, dict[str, torch.Tensor], LoraConfig]:
    unet = make_unet()
    targets = UNET_ATTENTION + ("proj_in", "conv1", "ff.net.2")
    state_dict = random_lora_state_dict(unet, targets, rank=lambda n: 2 if n.endswith("conv1") else 4)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=list(targets),
        rank_pattern={"conv1": 2},
        alpha_pattern={"proj_in": 3, "conv1": 1},
    )
    return unet, state_dict, config


def test_kohya_keys_and_alphas_are_written_per_module():
    _, state_dict, config = _unet_lora_with_patterns()
    kohya = peft_to_kohya(state_dict, {"unet": config}, component="unet")
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
    assert torch.equal(
        kohya[f"{name}.lora_down.weight"],
        state_dict["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight"],
    )
    assert kohya[f"{name}.alpha"].item() == 8
    assert kohya["lora_unet_down_blocks_0_attentions_0_proj_in.alpha"].item() == 3
    assert kohya["lora_unet_up_blocks_0_resnets_1_conv1.alpha"].item() == 1
    assert len(kohya) == len(state_dict) // 2 * 3


def test_kohya_round_trip_keeps_weights_and_every_module_scale():
    unet, state_dict, config = _unet_lora_with_patterns()
    peft_sd, configs = kohya_to_peft(peft_to_kohya(state_dict, config, component="unet"))
    assert peft_sd.keys() == prefixed(state_dict, "unet").keys()
    assert all(torch.equal(peft_sd["unet." + k], v) for k, v in state_dict.items())

    reference = make_unet()
    inject_adapter_in_model(config, reference)
    converted = make_unet()
    inject_adapter_in_model(LoraConfig(**configs["unet"]), converted)
    assert _scales_of(converted) == _scales_of(reference)
    assert {n: m.r["default"] for n, m in converted.named_modules() if hasattr(m, "r")} == {
        n: m.r["default"] for n, m in reference.named_modules() if hasattr(m, "r")
    }


def test_kohya_to_peft_reads_rank_and_alpha_patterns():
    kohya = {
        "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 64),
        "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": torch.zeros(64, 4),
        "lora_unet_mid_block_attentions_0_proj_in.alpha": torch.tensor(2.0),
        "lora_unet_mid_block_attentions_0_proj_out.lora_down.weight": torch.zeros(4, 64),
        "lora_unet_mid_block_attentions_0_proj_out.lora_up.weight": torch.zeros(64, 4),
        "lora_unet_mid_block_attentions_0_proj_out.alpha": torch.tensor(2.0),
        "lora_unet_mid_block_resnets_0_conv1.lora_down.weight": torch.zeros(8, 64, 3, 3),
        "lora_unet_mid_block_resnets_0_conv1.lora_up.weight": torch.zeros(64, 8, 1, 1),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(2, 32),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(32, 2),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha": torch.tensor(0.5),
    }
    peft_sd, configs = kohya_to_peft(kohya)
    assert "unet.mid_block.resnets.0.conv1.lora_B.weight" in peft_sd
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in peft_sd
    assert configs["unet"] == {
        "r": 4,
        "lora_alpha": 2,
        "rank_pattern": {"^mid_block.resnets.0.conv1": 8},
        "alpha_pattern": {"^mid_block.resnets.0.conv1": 8},  # no .alpha entry: scale 1, alpha = rank
        "target_modules": [
            "mid_block.attentions.0.proj_in",
            "mid_block.attentions.0.proj_out",
            "mid_block.resnets.0.conv1",
        ],
        "use_dora": False,
        "lora_bias": False,
    }
    assert configs["text_encoder"]["lora_alpha"] == 0.5 and configs["text_encoder"]["r"] == 2


def test_kohya_names_resolve_exactly_against_the_model(tmp_path):
    pipe = make_pipeline(tmp_path)
    text_sd = random_lora_state_dict(pipe.text_encoder, TEXT_ATTENTION + ("fc1",))
    kohya = peft_to_kohya(text_sd, component="text_encoder")
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj.") for k in kohya)
    peft_sd, _ = kohya_to_peft(kohya, module_names={"text_encoder": pipe.text_encoder})
    # transformers' flattened CLIPTextModel has no "text_model": the model's own paths come back
    assert peft_sd.keys() == prefixed(text_sd, "text_encoder").keys()


def test_sdxl_style_text_encoders_are_written_te1_and_te2():
    down, up = torch.zeros(2, 8), torch.zeros(8, 2)
    peft_sd = {
        "text_encoder.encoder.layers.0.self_attn.q_proj.lora_A.weight": down,
        "text_encoder.encoder.layers.0.self_attn.q_proj.lora_B.weight": up,
        "text_encoder_2.encoder.layers.0.self_attn.q_proj.lora_A.weight": down,
        "text_encoder_2.encoder.layers.0.self_attn.q_proj.lora_B.weight": up,
    }
    kohya = peft_to_kohya(peft_sd)
    assert sorted({k.split(".")[0] for k in kohya}) == [
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj",
    ]
    back, _ = kohya_to_peft(kohya)
    assert sorted(k.split(".")[0] for k in back) == ["text_encoder"] * 2 + ["text_encoder_2"] * 2


def test_rslora_scale_is_carried_into_kohya_alpha():
    state_dict = {
        "unet.conv_in.lora_A.weight": torch.zeros(4, 4, 3, 3),
        "unet.conv_in.lora_B.weight": torch.zeros(32, 4, 1, 1),
    }
    kohya = peft_to_kohya(state_dict, LoraConfig(r=4, lora_alpha=3, use_rslora=True))
    # rsLoRA scale 3 / sqrt(4) = 1.5 = alpha / rank
    assert kohya["lora_unet_conv_in.alpha"].item() == pytest.approx(6.0)


# ------------------------------------------------------------------------------------------------ A1111 (LDM names)
def test_a1111_round_trip_through_ldm_names():
    unet, state_dict, config = _unet_lora_with_patterns()
    a1111 = peft_to_a1111(state_dict, unet, config, component="unet")
    assert "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in a1111
    assert "lora_unet_output_blocks_0_0_in_layers_2.alpha" in a1111  # up_blocks.0.resnets.0.conv1
    assert detect_format(a1111) == "a1111"
    with pytest.raises(ValueError, match="LDM"):
        kohya_to_peft(a1111)
    peft_sd, configs = a1111_to_peft(a1111, module_names={"unet": unet})
    assert all(torch.equal(peft_sd["unet." + k], v) for k, v in state_dict.items())
    assert configs["unet"]["alpha_pattern"]["^down_blocks.0.attentions.0.proj_in"] == 3


# ------------------------------------------------------------------------------------------------ diffusers formats
def test_old_diffusers_formats_convert_to_peft():
    down, up = torch.randn(4, 32), torch.randn(32, 4)
    attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    old = {
        f"{attn}.processor.to_q_lora.down.weight": down,
        f"{attn}.processor.to_q_lora.up.weight": up,
        f"{attn}.processor.to_out_lora.down.weight": down,
        f"{attn}.processor.to_out_lora.up.weight": up,
        "text_encoder.encoder.layers.0.self_attn.to_k_lora.down.weight": down,
        "text_encoder.encoder.layers.0.self_attn.to_k_lora.up.weight": up,
        "text_encoder.encoder.layers.1.mlp.fc1.lora_linear_layer.down.weight": down,
        "text_encoder.encoder.layers.1.mlp.fc1.lora_linear_layer.up.weight": up,
        f"unet.{attn}.to_v.lora.down.weight": down,
        f"unet.{attn}.to_v.lora.up.weight": up,
        f"unet.{attn}.to_v.alpha": torch.tensor(2.0),
    }
    assert detect_format(old) == "diffusers"
    peft_sd, configs = diffusers_to_peft(old)
    assert sorted(peft_sd) == sorted(
        [f"unet.{attn}.{m}.lora_{ab}.weight" for m in ("to_q", "to_out.0", "to_v") for ab in "AB"]
        + [f"text_encoder.encoder.layers.0.self_attn.k_proj.lora_{ab}.weight" for ab in "AB"]
        + [f"text_encoder.encoder.layers.1.mlp.fc1.lora_{ab}.weight" for ab in "AB"]
    )
    assert configs["unet"]["lora_alpha"] == 4 and configs["unet"]["alpha_pattern"] == {f"^{attn}.to_v": 2}


def test_peft_to_diffusers_multiplies_the_scale_into_up():
    _, state_dict, config = _unet_lora_with_patterns()
    converted = peft_to_diffusers(state_dict, config, component="unet")
    name = "down_blocks.0.attentions.0.proj_in"
    assert torch.equal(converted[f"unet.{name}.lora.down.weight"], state_dict[f"{name}.lora_A.weight"])
    torch.testing.assert_close(converted[f"unet.{name}.lora.up.weight"], state_dict[f"{name}.lora_B.weight"] * 3 / 4)
    back, configs = diffusers_to_peft(converted)
    assert configs["unet"]["lora_alpha"] == 4 and configs["unet"]["alpha_pattern"] == configs["unet"]["rank_pattern"]
    assert back.keys() == prefixed(state_dict, "unet").keys()


def test_to_peft_dispatches_on_the_detected_format():
    _, state_dict, config = _unet_lora_with_patterns()
    peft_sd = prefixed(state_dict, "unet")
    assert detect_format(peft_sd) == "peft"
    from_kohya, _ = to_peft(peft_to_kohya(peft_sd, config))
    from_diffusers, _ = to_peft(peft_to_diffusers(peft_sd))
    same, configs = to_peft(peft_sd)
    for converted in (from_kohya, from_diffusers, same):
        assert all(torch.equal(converted[k], v) for k, v in peft_sd.items())
    assert configs["unet"]["alpha_pattern"] == configs["unet"]["rank_pattern"]


# ------------------------------------------------------------------------------------------------ errors
def test_conversion_errors_name_the_problem():
    with pytest.raises(ValueError, match="no component prefix"):
        peft_to_kohya({"conv_in.lora_A.weight": torch.zeros(1, 1), "conv_in.lora_B.weight": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match="lora_up"):
        kohya_to_peft({"lora_unet_conv_in.lora_down.weight": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match="no known prefix"):
        kohya_to_peft(
            {"lora_prior_conv_in.lora_down.weight": torch.zeros(1, 1)} | {"lora_unet_x.alpha": torch.ones(())}
        )
    with pytest.raises(ValueError, match="DoRA"):
        kohya_to_peft({"lora_unet_conv_in.dora_scale": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match="matches no module"):
        kohya_to_peft(
            {
                "lora_unet_conv_inn.lora_down.weight": torch.zeros(1, 1),
                "lora_unet_conv_inn.lora_up.weight": torch.zeros(1, 1),
            },
            module_names={"unet": make_unet()},
        )
    with pytest.raises(ValueError, match="Unrecognised"):
        detect_format({"weight": torch.zeros(1)})
