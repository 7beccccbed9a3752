"""The reference's module path of the mixed-adapter tuner (see ``peft.tuners.mixed``)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from peft import tuners

    return getattr(tuners.mixed, name)
