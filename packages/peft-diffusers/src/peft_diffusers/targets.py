"""Default LoRA targets for diffusers models: the attention projections, as diffusers' training scripts use them.

Diffusers models have no ``config.model_type``; they are keyed here by class name. :func:`default_target_modules`
finds the entry for a model (falling back on its module names for classes not listed), and
:func:`default_lora_config` builds a ``LoraConfig`` with it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

# UNet2DConditionModel (SD 1.x/2.x/XL): self- and cross-attention projections of every transformer block
DEFAULT_UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# single-stream DiTs (PixArt, DiT, Sana, ...): the same projections
DEFAULT_DIT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# joint-attention (MM-)DiTs (SD3, Flux, ...): image-stream and text-stream projections
DEFAULT_JOINT_DIT_TARGETS = DEFAULT_DIT_TARGETS + ["add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
# CLIP text encoders of Stable Diffusion pipelines
DEFAULT_TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]

DIFFUSERS_LORA_TARGET_MODULES: dict[str, list[str]] = {
    "UNet2DConditionModel": DEFAULT_UNET_TARGETS,
    "UNetMotionModel": DEFAULT_UNET_TARGETS,
    "UNet3DConditionModel": DEFAULT_UNET_TARGETS,
    "Transformer2DModel": DEFAULT_DIT_TARGETS,
    "DiTTransformer2DModel": DEFAULT_DIT_TARGETS,
    "PixArtTransformer2DModel": DEFAULT_DIT_TARGETS,
    "SanaTransformer2DModel": DEFAULT_DIT_TARGETS,
    "HunyuanDiT2DModel": DEFAULT_DIT_TARGETS,
    "LTXVideoTransformer3DModel": DEFAULT_DIT_TARGETS,
    "SD3Transformer2DModel": DEFAULT_JOINT_DIT_TARGETS,
    "FluxTransformer2DModel": DEFAULT_JOINT_DIT_TARGETS,
    "AuraFlowTransformer2DModel": DEFAULT_JOINT_DIT_TARGETS,
    "CogVideoXTransformer3DModel": DEFAULT_DIT_TARGETS,
    "CLIPTextModel": DEFAULT_TEXT_ENCODER_TARGETS,
    "CLIPTextModelWithProjection": DEFAULT_TEXT_ENCODER_TARGETS,
}


def default_target_modules(model: nn.Module) -> list[str] | None:
    """The default LoRA targets of ``model``: by class name, else by its modules (joint attention if it has
    ``add_q_proj``, attention projections if it has ``to_q``); None if neither fits."""
    for cls in type(model).__mro__:
        if cls.__name__ in DIFFUSERS_LORA_TARGET_MODULES:
            return list(DIFFUSERS_LORA_TARGET_MODULES[cls.__name__])
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if "add_q_proj" in leaves:
        return list(DEFAULT_JOINT_DIT_TARGETS)
    if "to_q" in leaves:
        return list(DEFAULT_DIT_TARGETS)
    return None


def default_lora_config(model: nn.Module, **kwargs: Any):
    """A ``LoraConfig`` targeting ``model``'s default modules (``kwargs`` go to ``LoraConfig``).

    Raises:
        ValueError: if ``model`` has no default targets and ``target_modules`` is not given.

    Example:
        >>> unet.add_adapter(default_lora_config(unet, r=4, lora_alpha=4, init_lora_weights="gaussian"))
    """
    from peft import LoraConfig

    if kwargs.get("target_modules") is None:
        targets = default_target_modules(model)
        if targets is None:
            raise ValueError(
                f"No default LoRA targets for {type(model).__name__}; pass target_modules (known classes: "
                f"{sorted(DIFFUSERS_LORA_TARGET_MODULES)})."
            )
        kwargs["target_modules"] = targets
    return LoraConfig(**kwargs)
