"""Checks of config and layer arguments shared by several methods; each raises ``ValueError`` naming the value."""

from __future__ import annotations

from typing import Any


def check_positive_int(label: str, value: Any) -> None:
    """``value`` must be an int > 0 (a bool is refused); ``label`` names it in the message (``"r"``,
    ``"VeraLayer.r"``, ...)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        field = label.rsplit(".", 1)[-1]
        lead = f"`{field}` should be a positive integer value but the value passed is {value!r}. "
        raise ValueError(f"{lead if field.isidentifier() else ''}{label} should be a positive integer, got {value!r}.")


def check_non_negative_int(owner: str, name: str, value: Any) -> None:
    """``value`` must be an int >= 0 (a bool is refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{owner}.{name} must be a non-negative integer, got {value!r}.")


def check_probability(owner: str, name: str, value: Any) -> None:
    """``value`` must be a number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}.{name} must be a probability in [0, 1], got {value!r}.")


def check_exactly_one(owner: str, first: str, first_value: int, second: str, second_value: int) -> None:
    """Exactly one of two sizes whose product is the layer's dimension may be set (non-zero)."""
    if first_value == 0 and second_value == 0:
        raise ValueError(
            f"{owner}: either `{first}` or `{second}` must be non-zero. Currently, {first} = {first_value} and "
            f"{second} = {second_value}."
        )
    if first_value != 0 and second_value != 0:
        raise ValueError(
            f"{owner}: you can only specify either {first} ({first_value}) or {second} ({second_value}), but not "
            f"both simultaneously, because {first} x {second} == in_features; set the other one to 0."
        )
