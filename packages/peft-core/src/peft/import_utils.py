"""Which optional packages and devices are available, without importing the packages.

The names are those of the reference's ``peft.import_utils``, which downstream code imports. A package counts as
available when Python finds it and its installed version can be read (a package whose metadata is broken is treated
as absent, never a crash). ``is_transformers_ge_v5`` and its siblings are computed on first access from the
installed version: importing this module never imports transformers.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
from packaging.version import Version

__all__ = [
    "is_aqlm_available",
    "is_bnb_4bit_available",
    "is_bnb_available",
    "is_diffusers_available",
    "is_eetq_available",
    "is_gptqmodel_available",
    "is_hqq_available",
    "is_inc_available",
    "is_npu_available",
    "is_optimum_available",
    "is_te_available",
    "is_te_pytorch_available",
    "is_torch_tpu_available",
    "is_torchao_available",
    "is_torchao_ge_v0_18_0",
    "is_xpu_available",
]

_GPTQMODEL_MINIMUM = Version("7.0.0")
_OPTIMUM_MINIMUM_FOR_GPTQMODEL = Version("1.24.0")
_TORCHAO_MINIMUM = Version("0.16.0")


@lru_cache
def _installed_version(module_name: str, distribution: str | None = None) -> Version | None:
    """The installed version of a package, or None if it is absent or its metadata cannot be read."""
    if importlib.util.find_spec(module_name) is None:
        return None
    try:
        return Version(importlib.metadata.version(distribution or module_name))
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _installed_check(
    short: str, module_name: str | None = None, distribution: str | None = None
) -> Callable[[], bool]:
    """A cached ``is_<short>_available()``: whether ``module_name`` (default ``short``) is installed with readable
    metadata."""
    module_name = module_name or short

    @lru_cache
    def is_available() -> bool:
        return _installed_version(module_name, distribution) is not None

    is_available.__name__ = is_available.__qualname__ = f"is_{short}_available"
    return is_available


is_bnb_available = _installed_check("bnb", "bitsandbytes")
is_optimum_available = _installed_check("optimum")
is_aqlm_available = _installed_check("aqlm")
is_eetq_available = _installed_check("eetq")
is_hqq_available = _installed_check("hqq")
is_inc_available = _installed_check("inc", "neural_compressor", "neural-compressor")
is_diffusers_available = _installed_check("diffusers")


def _supported_version(module_name: str, minimum: Version) -> Version | None:
    """The installed version of ``module_name``, or None if it is absent.

    Raises:
        ImportError: if it is installed in a version older than ``minimum``.
    """
    version = _installed_version(module_name)
    if version is not None and version < minimum:
        raise ImportError(
            f"Found an incompatible version of {module_name}. Found version `{version}`, but only versions "
            f"`{minimum}` or higher are supported"
        )
    return version


@lru_cache
def is_bnb_4bit_available() -> bool:
    if not is_bnb_available():
        return False
    import bitsandbytes as bnb

    return hasattr(bnb.nn, "Linear4bit")


@lru_cache
def is_gptqmodel_available() -> bool:
    """Whether gptqmodel (>= 7.0.0, with optimum >= 1.24.0) is installed.

    Raises:
        ImportError: if gptqmodel is installed in a version (or with an optimum) too old to use.
    """
    if _supported_version("gptqmodel", _GPTQMODEL_MINIMUM) is None:
        return False
    optimum = _installed_version("optimum")
    if optimum is None:
        raise ImportError(f"gptqmodel requires optimum version `{_OPTIMUM_MINIMUM_FOR_GPTQMODEL}` or higher.")
    if optimum < _OPTIMUM_MINIMUM_FOR_GPTQMODEL:
        raise ImportError(
            f"gptqmodel requires optimum version `{_OPTIMUM_MINIMUM_FOR_GPTQMODEL}` or higher. Found version "
            f"`{optimum}`."
        )
    return True


@lru_cache
def is_torchao_available() -> bool:
    """Whether torchao (>= 0.16.0) is installed.

    Raises:
        ImportError: if torchao is installed in a version too old to use.
    """
    return _supported_version("torchao", _TORCHAO_MINIMUM) is not None


@lru_cache
def is_torchao_ge_v0_18_0() -> bool:
    """Whether torchao >= 0.18.0 (its v2 tensor subclasses) is installed."""
    return is_torchao_available() and _installed_version("torchao") >= Version("0.18.0")


@lru_cache
def is_te_available() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


@lru_cache
def is_te_pytorch_available() -> bool:
    if not is_te_available():
        return False
    import transformer_engine

    return hasattr(transformer_engine, "pytorch")


@lru_cache
def is_torch_tpu_available(check_device: bool = True) -> bool:
    """Whether torch_xla is installed and, with ``check_device``, a TPU is present."""
    if importlib.util.find_spec("torch_xla") is None:
        return False
    if not check_device:
        return True
    try:
        import torch_xla.core.xla_model as xm

        xm.xla_device()
        return True
    except RuntimeError:
        return False


@lru_cache
def is_xpu_available(check_device: bool = False) -> bool:
    """Whether an Intel XPU can be used (with ``check_device``: whether one is present)."""
    if platform.system() == "Darwin" or not hasattr(torch, "xpu"):
        return False
    if check_device:
        try:
            torch.xpu.device_count()
        except RuntimeError:
            return False
    return torch.xpu.is_available()


@lru_cache
def is_npu_available() -> bool:
    """Whether an Ascend NPU can be used (torch_npu installed and a device present)."""
    if importlib.util.find_spec("torch_npu") is None:
        return False
    import torch_npu  # noqa: F401  (registers torch.npu)

    return hasattr(torch, "npu") and torch.npu.is_available()


# transformers version flags of the reference, named by the version they test
_TRANSFORMERS_FLAGS = {
    "is_transformers_ge_v5": lambda v: v >= Version("5.0.0.dev0"),
    "is_transformers_ge_v5_1_0": lambda v: v >= Version("5.1.0"),
    "is_transformers_ge_v5_4_0": lambda v: v >= Version("5.4.0"),
    "is_transformers_ge_v5_6_0": lambda v: v >= Version("5.6.0.dev0"),
    "is_transformers_ge_v5_13_0": lambda v: v >= Version("5.13.0.dev0"),
    "is_transformers_ge_v5_17_0": lambda v: v >= Version("5.17.0"),
    "is_transformers_le_4_53": lambda v: v < Version("4.54.0.dev0"),
}


def __getattr__(name: str) -> Any:
    if name in _TRANSFORMERS_FLAGS:
        version = _installed_version("transformers")
        return version is not None and _TRANSFORMERS_FLAGS[name](version)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
