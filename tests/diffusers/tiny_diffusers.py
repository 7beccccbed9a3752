"""Tiny diffusers objects built from configs (no download): a Stable Diffusion pipeline, its UNet and CLIP text
encoder, an SD3 transformer, inputs for them, and LoRA state dicts with random weights."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import diffusers
import torch
import transformers

UNET_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
PROMPT = "a cat"


def make_unet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
    ).eval()


def make_sd3_transformer(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    ).eval()


def sd3_inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 4, 8, 8, generator=generator),
        "encoder_hidden_states": torch.randn(1, 5, 32, generator=generator),
        "pooled_projections": torch.randn(1, 64, generator=generator),
        "timestep": torch.tensor([10]),
    }


def unet_inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "sample": torch.randn(1, 4, 8, 8, generator=generator),
        "timestep": torch.tensor([10]),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=generator),
    }


def _write_tokenizer_files(directory) -> tuple[str, str, int]:
    """A CLIP BPE vocabulary of single letters (no merges): enough to tokenize lowercase prompts."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for letter in letters:
            vocab[letter + suffix] = len(vocab)
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n")
    return str(vocab_file), str(merges_file), len(vocab)


def make_pipeline(directory, seed: int = 0):
    """A Stable Diffusion pipeline of tiny components: 16x16 images, 77-free 16-token prompts."""
    vocab_file, merges_file, vocab_size = _write_tokenizer_files(directory)
    tokenizer = transformers.CLIPTokenizer(vocab_file, merges_file, model_max_length=16)
    unet = make_unet(seed)
    torch.manual_seed(seed + 1)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=16,
    )
    torch.manual_seed(seed + 2)
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=vocab_size,
            max_position_embeddings=16,
            layer_norm_eps=1e-5,
        )
    ).eval()
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, **kwargs):
    """Two DDIM steps from a fixed seed; a float image array."""
    generator = torch.Generator().manual_seed(0)
    return pipe(PROMPT, num_inference_steps=2, generator=generator, output_type="np", **kwargs).images


def random_lora_state_dict(
    model: torch.nn.Module,
    targets: Iterable[str],
    rank: Callable[[str], int] | int = 4,
    seed: int = 0,
    std: float = 0.1,
) -> dict[str, torch.Tensor]:
    """PEFT-format LoRA weights (``<path>.lora_A.weight`` ...) for the modules whose name ends with a target."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, module in model.named_modules():
        if not name.endswith(tuple(targets)):
            continue
        r = rank(name) if callable(rank) else rank
        if isinstance(module, torch.nn.Conv2d):
            down_shape, up_shape = (r, module.in_channels, *module.kernel_size), (module.out_channels, r, 1, 1)
        elif isinstance(module, torch.nn.Linear):
            down_shape, up_shape = (r, module.in_features), (module.out_features, r)
        else:
            continue
        out[f"{name}.lora_A.weight"] = torch.randn(down_shape, generator=generator) * std
        out[f"{name}.lora_B.weight"] = torch.randn(up_shape, generator=generator) * std
    return out


def prefixed(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value for key, value in state_dict.items()}
