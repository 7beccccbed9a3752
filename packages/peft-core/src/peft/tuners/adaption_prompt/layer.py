"""The reference's module path of adaption prompt's names (see ``peft.tuners.adaption_prompt``)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from peft.tuners import adaption_prompt

    return getattr(adaption_prompt, name)
