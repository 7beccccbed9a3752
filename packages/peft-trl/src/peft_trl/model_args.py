"""A ``LoraConfig`` from TRL-style model arguments (``trl.ModelConfig`` and the ``--lora_*`` command-line flags)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# trl.ModelConfig's defaults for the fields read here
_DEFAULTS: dict[str, Any] = {
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_target_modules": None,
    "lora_target_parameters": None,
    "lora_modules_to_save": None,
    "lora_task_type": "CAUSAL_LM",
    "use_rslora": False,
    "use_dora": False,
}

# a bare module name or dotted path: no regular-expression syntax besides the dots
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]+")


def lora_config_from_model_args(model_args: Any) -> Any:
    """Build the ``LoraConfig`` that TRL's ``--use_peft --lora_*`` arguments describe.

    Reads ``lora_r`` (-> ``r``), ``lora_alpha``, ``lora_dropout``, ``lora_target_modules`` (-> ``target_modules``),
    ``lora_target_parameters`` (-> ``target_parameters``), ``lora_modules_to_save`` (-> ``modules_to_save``),
    ``lora_task_type`` (-> ``task_type``), ``use_rslora`` and ``use_dora``; a field that is absent takes
    ``trl.ModelConfig``'s default. ``bias`` is ``"none"``.

    ``trl.ModelConfig`` turns a one-element ``lora_target_modules`` list into a plain string, which ``LoraConfig``
    would read as a regular expression matched against full module paths (so ``"q_proj"`` would match nothing).
    A string without regular-expression syntax is therefore read as one module name; ``"all-linear"`` and real
    regular expressions are kept as strings.

    Args:
        model_args: a ``trl.ModelConfig``, an ``argparse.Namespace`` or any object with these attributes, or a
            mapping with these keys.

    Returns:
        A ``peft.LoraConfig``, or ``None`` when ``model_args.use_peft`` is ``False`` (so the result can go straight
        to a trainer's ``peft_config``).

    Raises:
        ValueError: for a field the ``LoraConfig`` rejects (the message names the field).

    Example:
        >>> args = argparse.Namespace(use_peft=True, lora_r=8, lora_target_modules=["q_proj", "v_proj"])
        >>> lora_config_from_model_args(args).r
        8
    """
    from peft import LoraConfig

    def read(name: str) -> Any:
        if isinstance(model_args, Mapping):
            return model_args.get(name, _DEFAULTS.get(name))
        return getattr(model_args, name, _DEFAULTS.get(name))

    if read("use_peft") is False:
        return None
    kwargs: dict[str, Any] = {
        "r": read("lora_r"),
        "lora_alpha": read("lora_alpha"),
        "lora_dropout": read("lora_dropout"),
        "target_modules": _target_modules(read("lora_target_modules")),
        "modules_to_save": _as_list(read("lora_modules_to_save")),
        "task_type": read("lora_task_type"),
        "use_rslora": bool(read("use_rslora")),
        "use_dora": bool(read("use_dora")),
        "bias": "none",
    }
    target_parameters = _as_list(read("lora_target_parameters"))
    if target_parameters is not None:
        kwargs["target_parameters"] = target_parameters
    return LoraConfig(**kwargs)


def _target_modules(value: Any) -> Any:
    if value is None or value == "all-linear":
        return value
    if isinstance(value, str):
        return [value] if _PLAIN_NAME.fullmatch(value) else value
    names = list(value)
    return "all-linear" if names == ["all-linear"] else names  # the shorthand only works as a string


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)
