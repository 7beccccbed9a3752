"""Type and range checks of config fields, derived from the dataclass fields' annotations.

A config class states what each field accepts in its annotation, and nothing else is needed for the check:
``int``, ``float``, ``bool``, ``str``, ``None``, ``Literal[...]`` choices, ``list[...]``, ``tuple[...]``,
``dict[..., ...]``, nested dataclasses and unions of these. A range is declared with ``typing.Annotated`` and
:class:`Range`, through the aliases below (``r: PositiveInt = 8``, ``lora_dropout: DropoutRate = 0.0``) or directly
(``Annotated[int, Range(min=-1)]``). The value a field has by default is always accepted, so a field documented as
``int`` whose default is ``None`` (filled later from the model) may stay ``None``.

Values are checked as they are, never converted: a JSON string such as ``"false"`` or ``"0.1"`` is refused for a
bool or number field instead of being read as one.

A class may put its own sentence in front of the generic message of a field with a ``_field_messages`` class
attribute: field name -> template, formatted with ``name`` and ``value`` (``"`{name}` should be positive, got
{value}."``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import sys
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import torch

from peft.utils.error import ConfigFieldError


@dataclass(frozen=True)
class Range:
    """The numbers a field accepts: ``min``/``max`` bounds (None: unbounded), each inclusive unless ``*_open``."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        return not (self.max is not None and (value >= self.max if self.max_open else value > self.max))

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"in {'(' if self.min_open else '['}{self.min}, {self.max}{')' if self.max_open else ']'}"
        if self.min is not None:
            return f"{'>' if self.min_open else '>='} {self.min}"
        return f"{'<' if self.max_open else '<='} {self.max}"


PositiveInt = Annotated[int, Range(min=1)]
NonNegativeInt = Annotated[int, Range(min=0)]
PositiveFloat = Annotated[float, Range(min=0, min_open=True)]
NonNegativeFloat = Annotated[float, Range(min=0)]
Probability = Annotated[float, Range(0, 1)]
DropoutRate = Annotated[float, Range(0, 1, max_open=True)]

_NO_DEFAULT = object()
_MAX_REPR = 200


def check_config_fields(config: Any) -> None:
    """Check every field of the dataclass ``config`` against its annotation.

    Raises:
        ConfigFieldError: naming the first invalid field, its value and what it accepts.
    """
    for name, hint, default in _field_specs(type(config)):
        value = getattr(config, name, default)
        if _is_default(value, default) or _conforms(value, hint):
            continue
        message = _message(type(config).__name__, name, value, hint)
        template = getattr(type(config), "_field_messages", {}).get(name)
        if template is not None:
            message = f"{template.format(name=name, value=value)} {message}"
        raise ConfigFieldError(message)


def _is_default(value: Any, default: Any) -> bool:
    if default is _NO_DEFAULT:
        return False
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # values whose == is not a bool (tensors, arrays)
        return False


_SPECS: dict[type, list[tuple[str, Any, Any]]] = {}


def _field_specs(cls: type) -> list[tuple[str, Any, Any]]:
    """``(name, resolved annotation, default)`` of the checked fields of ``cls``, computed once per class."""
    specs = _SPECS.get(cls)
    if specs is None:
        hints = _resolved_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            if f.name.startswith("_") or f.name not in hints:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = _NO_DEFAULT
            specs.append((f.name, hints[f.name], default))
        _SPECS[cls] = specs
    return specs


def _resolved_hints(cls: type) -> dict[str, Any]:
    """The annotations of ``cls`` as objects; one that cannot be resolved (a name local to a function) is left
    unchecked rather than breaking the config."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        namespace = vars(sys.modules.get(klass.__module__, object()))
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
            except Exception:
                hints.pop(name, None)
    return hints


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` describes (within its range, if annotated with one)."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ranges = [a for a in args[1:] if isinstance(a, Range)]
        return _conforms(value, args[0]) and all(value in r for r in ranges)
    if origin is Union or origin is types.UnionType:
        return any(_conforms(value, arg) for arg in args)
    if origin is Literal:
        return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return _is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, set, frozenset) or hint in (list, set, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return False
        return not args or all(_conforms(item, args[0]) for item in value)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return not args or all(_conforms(item, args[0]) for item in value)
        return len(value) == len(args) and all(_conforms(item, arg) for item, arg in zip(value, args))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or (isinstance(value, (str, int)) and value in {m.value for m in hint})
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, (hint, dict))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not understand (Callable, TypeVar, ...) is not enforced


def _is_number(value: Any) -> bool:
    """A real, finite number: Python and NumPy numbers, or a 0-dim real tensor (diffusers passes kohya alphas as
    tensors); never a bool."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.dtype == torch.bool or value.is_complex():
            return False
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


def describe(hint: Any) -> str:
    """What ``hint`` accepts, in words: ``'an int >= 1'``, ``"one of 'none', 'all'"``, ``'a list of str or None'``."""
    if hint is Any or hint is object:
        return "anything"
    if hint is None or hint is type(None):
        return "None (null)"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ranges = " and ".join(str(a) for a in args[1:] if isinstance(a, Range))
        return f"{describe(args[0])} {ranges}".strip()
    if origin is Union or origin is types.UnionType:
        choices = _choices(hint)
        if choices is not None:
            return "one of " + ", ".join(map(repr, choices))
        return " or ".join(describe(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    simple = {bool: "a bool", int: "an int", float: "a finite number", str: "a str"}
    if hint in simple:
        return simple[hint]
    if origin in (list, set, frozenset) or hint in (list, set, frozenset):
        return f"a list of {_plain(args[0])}" if args else "a list"
    if origin is tuple or hint is tuple:
        if args and not (len(args) == 2 and args[1] is Ellipsis):
            return "[" + ", ".join(_plain(a) for a in args) + "]"
        return f"a list of {_plain(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return f"a dict of {_plain(args[0])} to {_plain(args[1])}" if args else "a dict"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    if isinstance(hint, type):
        return f"a {hint.__name__}"
    return str(hint)


def _choices(hint: Any) -> list[Any] | None:
    """The values a union of literals, ``bool`` and ``None`` allows (``[True, False, 'bat']``), or None if it
    allows more than a list of values."""
    choices: list[Any] = []
    for leaf in _leaf_types(hint):
        if leaf is bool:
            choices += [True, False]
        elif leaf is None or leaf is type(None):
            choices.append(None)
        elif typing.get_origin(leaf) is Literal:
            choices += list(typing.get_args(leaf))
        else:
            return None
    return choices


def _plain(hint: Any) -> str:
    """``describe`` without the article, for the items of a container."""
    text = describe(hint)
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article) :]
    return text


def _message(owner: str, name: str, value: Any, hint: Any) -> str:
    text = repr(value)
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + "..."
    message = f"{owner}.{name}={text} is invalid: expected {describe(hint)}"
    if isinstance(value, str) and _accepts_non_str(hint) and _looks_like_json_scalar(value):
        message += f", got the str {value!r}; write numbers and true/false without quotes (strings are not converted)"
    return message + "."


def _accepts_non_str(hint: Any) -> bool:
    return any(t in (bool, int, float) for t in _leaf_types(hint))


def _leaf_types(hint: Any) -> list[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _leaf_types(args[0])
    if origin is Union or origin is types.UnionType:
        return [leaf for arg in args for leaf in _leaf_types(arg)]
    return [hint]


def _looks_like_json_scalar(text: str) -> bool:
    if text.strip().lower() in ("true", "false", "null", "none"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
