"""DreamBooth-style LoRA fine-tuning of a Stable Diffusion UNet, on a tiny pipeline built in code.

DreamBooth teaches a text-to-image model a new subject from a few pictures, bound to a rare token ("a photo of sks
toy"). With LoRA only small low-rank updates of the UNet's attention projections are trained; the result is a file
of a few kilobytes that ``pipe.load_lora_weights`` applies to the base model. The steps:

1. build the pipeline (tiny components from configs, so nothing is downloaded) and freeze all of it;
2. add a LoRA adapter to the UNet with ``unet.add_adapter(default_lora_config(unet, ...))`` (the attention
   projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0``; ``--train-text-encoder`` adds one to the CLIP encoder);
3. train on synthetic "subject" images with the usual denoising loss (optionally with DreamBooth's prior
   preservation on class images the base model generates);
4. save with diffusers' ``save_lora_weights`` (the LoraConfig goes into the safetensors metadata), load the file
   into a fresh pipeline with ``load_lora_weights`` and check that it generates exactly what the trained one does.

``--method`` picks another PEFT method for the UNet (``loha``, ``lokr``, ``oft``, ``boft``) where peft provides it.

Run:  python examples/dreambooth_lora.py [--max-train-steps 40] [--output-dir DIR] [--with-prior-preservation]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import peft
from peft.utils import get_peft_model_state_dict
from peft_diffusers.targets import DEFAULT_TEXT_ENCODER_TARGETS, default_lora_config

INSTANCE_PROMPT = "a photo of sks toy"
CLASS_PROMPT = "a photo of toy"
# config class and its size arguments per method (LoRA's are set in adapter_config)
METHOD_CONFIGS = {
    "lora": ("LoraConfig", {}),
    "loha": ("LoHaConfig", {"r": 4, "alpha": 4}),
    "lokr": ("LoKrConfig", {"r": 4, "alpha": 4}),
    "oft": ("OFTConfig", {"r": 0, "oft_block_size": 8}),
    "boft": ("BOFTConfig", {"boft_block_size": 8}),
}


# ------------------------------------------------------------------------------------------------ the pipeline
def build_tiny_pipeline(work_dir: str, seed: int = 0) -> StableDiffusionPipeline:
    """A Stable Diffusion pipeline of tiny components (16x16 images); the same seed gives the same weights."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + [letter + end for end in ("", "</w>") for letter in letters]
    vocab = {token: index for index, token in enumerate(tokens)}  # single letters, no merges: enough for prompts
    os.makedirs(work_dir, exist_ok=True)
    vocab_file, merges_file = os.path.join(work_dir, "vocab.json"), os.path.join(work_dir, "merges.txt")
    with open(vocab_file, "w") as f:
        json.dump(vocab, f)
    with open(merges_file, "w") as f:
        f.write("#version: 0.2\n")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=16,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(vocab),
            max_position_embeddings=16,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer(vocab_file, merges_file, model_max_length=16),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def subject_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` pictures of the synthetic subject: an orange square with a blue stripe on grey, at random places.

    Returns a ``(n, 3, size, size)`` tensor in ``[-1, 1]``, as the VAE expects.
    """
    images = torch.full((n, 3, size, size), -0.2)
    side = size // 2
    for i in range(n):
        top, left = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=generator))
        images[i, :, top : top + side, left : left + side] = torch.tensor([0.9, 0.3, -0.8])[:, None, None]
        images[i, :, top + side // 2, left : left + side] = torch.tensor([-0.8, -0.2, 0.9])[:, None]
    return images + 0.05 * torch.randn(images.shape, generator=generator)


@torch.no_grad()
def generate(pipe: StableDiffusionPipeline, prompt: str, seed: int = 0, steps: int = 4) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, num_inference_steps=steps, generator=generator, output_type="np").images


# ------------------------------------------------------------------------------------------------ training
def adapter_config(method: str, unet: torch.nn.Module, rank: int):
    """The PEFT config for ``method`` on the UNet's default targets (the attention projections); ``rank`` is
    LoRA's (the other methods use the sizes in ``METHOD_CONFIGS``)."""
    if method == "lora":
        return default_lora_config(unet, r=rank, lora_alpha=rank, init_lora_weights="gaussian")
    class_name, sizes = METHOD_CONFIGS[method]
    config_cls = getattr(peft, class_name)  # AttributeError where this peft lacks the method
    return config_cls(target_modules=sorted(default_lora_config(unet).target_modules), **sizes)


@torch.no_grad()
def encode(pipe: StableDiffusionPipeline, images: torch.Tensor, prompts: Sequence[str]):
    latents = pipe.vae.encode(images).latent_dist.mean * pipe.vae.config.scaling_factor
    ids = pipe.tokenizer(
        list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    return latents, ids


def denoising_loss(pipe, noise_scheduler, latents, ids, generator) -> torch.Tensor:
    """The diffusion training loss: predict the noise added at a random timestep."""
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    encoder_hidden_states = pipe.text_encoder(ids)[0]
    prediction = pipe.unet(noisy, timesteps, encoder_hidden_states).sample
    return F.mse_loss(prediction, noise)


@torch.no_grad()
def evaluation_loss(pipe, noise_scheduler, latents, ids, repeats: int = 8) -> float:
    """The denoising loss on fixed noise and timesteps: comparable before and after training."""
    generator = torch.Generator().manual_seed(1234)
    return float(
        np.mean([denoising_loss(pipe, noise_scheduler, latents, ids, generator).item() for _ in range(repeats)])
    )


def train(args: argparse.Namespace, pipe: StableDiffusionPipeline) -> tuple[list[float], float, float]:
    generator = torch.Generator().manual_seed(args.seed)
    for model in (pipe.unet, pipe.vae, pipe.text_encoder):
        model.requires_grad_(False)
    pipe.unet.add_adapter(adapter_config(args.method, pipe.unet, args.rank))
    if args.train_text_encoder:
        text_config = peft.LoraConfig(
            r=args.rank,
            lora_alpha=args.rank,
            init_lora_weights="gaussian",
            target_modules=DEFAULT_TEXT_ENCODER_TARGETS,
        )
        pipe.text_encoder.add_adapter(text_config)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    latents, ids = encode(pipe, subject_images(args.num_instance_images, size, generator), [INSTANCE_PROMPT])
    ids = ids.expand(latents.shape[0], -1)
    if args.with_prior_preservation:
        # DreamBooth's prior preservation: keep the base model's idea of the class ("toy") while learning "sks toy"
        with _AdapterDisabled(pipe.unet):
            class_images = pipe(
                [CLASS_PROMPT] * args.num_instance_images,
                num_inference_steps=4,
                generator=torch.Generator().manual_seed(args.seed + 1),
                output_type="pt",
            ).images
        class_latents, class_ids = encode(pipe, class_images * 2 - 1, [CLASS_PROMPT])
        latents = torch.cat([latents, class_latents])
        ids = torch.cat([ids, class_ids.expand(class_latents.shape[0], -1)])
    trainable = [p for m in (pipe.unet, pipe.text_encoder) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate)
    noise_scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    loss_before = evaluation_loss(pipe, noise_scheduler, latents, ids)
    pipe.unet.train()
    losses = []
    progress = tqdm(range(args.max_train_steps), desc="DreamBooth LoRA", disable=args.quiet)
    for _ in progress:
        loss = denoising_loss(pipe, noise_scheduler, latents, ids, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{loss.item():.4f}")
    pipe.unet.eval()
    return losses, loss_before, evaluation_loss(pipe, noise_scheduler, latents, ids)


class _AdapterDisabled:
    """Within the block the UNet computes without its adapter (for generating class images)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet

    def __enter__(self) -> None:
        self.unet.disable_adapters()

    def __exit__(self, *exc) -> None:
        self.unet.enable_adapters()


def save(args: argparse.Namespace, pipe: StableDiffusionPipeline) -> None:
    """diffusers' ``save_lora_weights``, with each LoraConfig in the file's metadata so reloading is exact."""
    text_layers = text_metadata = None
    if args.train_text_encoder:
        text_layers = get_peft_model_state_dict(pipe.text_encoder)
        text_metadata = pipe.text_encoder.peft_config["default"].to_dict()
    StableDiffusionPipeline.save_lora_weights(
        args.output_dir,
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=text_layers,
        unet_lora_adapter_metadata=pipe.unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=text_metadata,
    )


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=None, help="where the LoRA is saved (default: a temporary folder)")
    parser.add_argument("--method", choices=sorted(METHOD_CONFIGS), default="lora")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--max-train-steps", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--num-instance-images", type=int, default=4)
    parser.add_argument("--train-text-encoder", action="store_true")
    parser.add_argument("--with-prior-preservation", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Train, save, reload and check; returns the losses, the output folder and the generated images."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        args.output_dir = args.output_dir or os.path.join(scratch, "dreambooth-lora")
        pipe = build_tiny_pipeline(os.path.join(scratch, "tokenizer"), seed=args.seed)
        base_image = generate(pipe, INSTANCE_PROMPT)
        losses, loss_before, loss_after = train(args, pipe)
        trained_image = generate(pipe, INSTANCE_PROMPT)
        if args.method != "lora":
            print(f"trained {args.method}: evaluation loss {loss_before:.4f} -> {loss_after:.4f}")
            return {"losses": losses, "loss_before": loss_before, "loss_after": loss_after, "output_dir": None}
        save(args, pipe)

        fresh = build_tiny_pipeline(os.path.join(scratch, "tokenizer-fresh"), seed=args.seed)
        fresh.load_lora_weights(args.output_dir)
        reloaded_image = generate(fresh, INSTANCE_PROMPT)
        if not np.isfinite(losses).all() or not loss_after < loss_before:
            raise SystemExit(f"training did not lower the loss: {loss_before:.4f} -> {loss_after:.4f}")
        if np.abs(trained_image - base_image).max() < 1e-4:
            raise SystemExit("the LoRA did not change the generated image")
        if not np.allclose(reloaded_image, trained_image, atol=1e-5):
            raise SystemExit("the saved LoRA, loaded into a fresh pipeline, generates a different image")
        size = os.path.getsize(os.path.join(args.output_dir, "pytorch_lora_weights.safetensors"))
        print(f"evaluation loss {loss_before:.4f} -> {loss_after:.4f}")
        print(f"LoRA saved to {args.output_dir} ({size / 1024:.1f} KiB)")
        print("reloaded with pipe.load_lora_weights: same image as the trained pipeline")
        return {
            "losses": losses,
            "loss_before": loss_before,
            "loss_after": loss_after,
            "output_dir": args.output_dir,
            "base": base_image,
            "trained": trained_image,
        }


if __name__ == "__main__":
    main()
