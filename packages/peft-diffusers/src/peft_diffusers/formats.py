"""The LoRA file formats of Stable Diffusion tools, as ``peft convert`` sees them (registered with the core).

Each format converts with :mod:`peft_diffusers.convert`; ``base`` (a diffusers pipeline folder, or one model's
folder) gives the module names that exact kohya name resolution and LDM (A1111) UNet names need. The models are
built on the meta device from their ``config.json``: no weights are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peft.hosts import LoraFileFormat
from peft_diffusers import convert


def module_names(base: str | None) -> dict[str, list[str]] | None:
    """Module names per pipeline component of the model(s) at ``base``, or None without ``base``.

    ``base`` is a pipeline folder (``model_index.json`` and one folder per component) or a single model folder
    (taken as the UNet).

    Raises:
        ValueError: if ``base`` holds neither.
    """
    if base is None:
        return None
    root = Path(base)
    if (root / "model_index.json").is_file():
        folders = {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}
    elif (root / "config.json").is_file():
        folders = {"unet": root}
    else:
        raise ValueError(f"{base!r} is neither a diffusers pipeline folder (model_index.json) nor a model folder.")
    return {component: _names_of_model(folder) for component, folder in folders.items()}


def _names_of_model(folder: Path) -> list[str]:
    import torch

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        if "_class_name" in config:  # a diffusers model
            import diffusers

            model = getattr(diffusers, config["_class_name"]).from_config(config)
        else:  # a transformers model (text encoders)
            import transformers

            hf_config = transformers.AutoConfig.from_pretrained(folder)
            model_cls = getattr(transformers, (hf_config.architectures or ["AutoModel"])[0])
            model = model_cls._from_config(hf_config)
    return [name for name, _ in model.named_modules()]


def _detect(name: str) -> Any:
    def detect(state_dict: dict) -> bool:
        try:
            return convert.detect_format(state_dict) == name
        except ValueError:
            return False

    return detect


def _a1111_to_peft(state_dict: dict, base: str | None) -> tuple[dict, dict]:
    names = module_names(base)
    if not names or "unet" not in names:
        raise ValueError("the A1111 format names UNet modules the LDM way: pass --base with the UNet or pipeline.")
    return convert.a1111_to_peft(state_dict, module_names=names)


def _peft_to_a1111(state_dict: dict, configs: dict, base: str | None) -> dict:
    names = module_names(base)
    if not names or "unet" not in names:
        raise ValueError("the A1111 format names UNet modules the LDM way: pass --base with the UNet or pipeline.")
    return convert.peft_to_a1111(state_dict, names["unet"], configs=configs)


FORMATS = (
    LoraFileFormat(
        name="kohya",
        description="kohya-ss sd-scripts (lora_unet_*/lora_te_* keys, .alpha per module)",
        to_peft=lambda sd, base: convert.kohya_to_peft(sd, module_names=module_names(base)),
        from_peft=lambda sd, configs, base: convert.peft_to_kohya(sd, configs),
        detect=_detect("kohya"),
    ),
    LoraFileFormat(
        name="a1111",
        description="AUTOMATIC1111 / kohya SDXL (kohya keys with the original LDM UNet names; needs --base)",
        to_peft=_a1111_to_peft,
        from_peft=_peft_to_a1111,
        detect=_detect("a1111"),
    ),
    LoraFileFormat(
        name="diffusers",
        description="diffusers' older formats (lora.down/lora.up, lora_linear_layer, attention processors)",
        to_peft=lambda sd, base: convert.diffusers_to_peft(sd),
        from_peft=lambda sd, configs, base: convert.peft_to_diffusers(sd, configs),
        detect=_detect("diffusers"),
    ),
)
