"""Settings declared once: each dataclass field carries its type, range and help, and one validator checks them.

A setting is a field of a frozen dataclass made with :func:`setting`::

    @dataclass(frozen=True)
    class EverythingParams:
        points_per_side: int = setting(32, min=1, max=1024, help="prompt grid: points along each side")

        def __post_init__(self) -> None:
            check_settings(self)

The type is the field's annotation: ``bool``, ``int`` (a whole number),
``float`` (a finite number; whole numbers too) or ``str`` (with
``choices``), each optionally ``| None``. The field's ``metadata`` holds
plain values (no Qt, no argparse), read by every front end -- the API's
check, the command line's options (:func:`napari_mobilesam.cli.parser.add_settings`),
a GUI's spin boxes and tooltips:

- ``help``: what the setting does, one line (CLI help, GUI tooltip);
- ``min``, ``max``: the allowed range, both ends included (absent: unbounded);
- ``min_open``, ``max_open``: ``True`` when that end is excluded, e.g. ``box_nms_thresh`` in ``(0, 1]``
  (a spin box then starts one ``step`` inside);
- ``step``: a sensible increment for a spin box or slider;
- ``choices``: the allowed values of a ``str`` setting.

:func:`check_settings` checks every field against them and stores numbers
as Python ``int``/``float`` (so they read back the same from JSON);
:func:`from_kwargs` builds a settings object with one error for unknown names.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import field, fields
from functools import cache

import numpy as np

from ..errors import MobileSAMError

METADATA_KEYS = ("help", "min", "max", "min_open", "max_open", "step", "choices")


def setting(default, *, help: str, **rules):
    """A dataclass field with ``default`` and the metadata of the module doc (``min``, ``max``, ``step`` ...)."""
    unknown = set(rules) - set(METADATA_KEYS)
    if unknown:
        raise TypeError(f"unknown setting metadata {sorted(unknown)}; known: {METADATA_KEYS}")
    return field(default=default, metadata={"help": help, **rules})


@cache
def setting_types(cls) -> dict[str, tuple[type, bool]]:
    """``{name: (type, optional)}`` of the settings of ``cls``, from its annotations (``float | None`` -> float, True)."""
    hints = typing.get_type_hints(cls)
    found = {}
    for item in fields(cls):
        if "help" not in item.metadata:
            continue
        hint = hints[item.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
        optional = type(None) in args
        kinds = [a for a in args if a is not type(None)] if args else [hint]
        if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
            raise TypeError(f"{cls.__name__}.{item.name}: a setting is bool, int, float or str (optionally | None)")
        found[item.name] = (kinds[0], optional)
    return found


def describe_range(kind: type, metadata) -> str:
    """The allowed values in words: ``"in (0, 1]"``, ``">= 1"``, ``"one of 'grid', 'boxes'"``, or ``""``."""
    if "choices" in metadata:
        return "one of " + ", ".join(repr(choice) for choice in metadata["choices"])
    low, high = metadata.get("min"), metadata.get("max")
    if low is not None and high is not None:
        if kind is int:
            return f"from {low} to {high}"
        return f"in {'(' if metadata.get('min_open') else '['}{low:g}, {high:g}{')' if metadata.get('max_open') else ']'}"
    if low is not None:
        return f"{'>' if metadata.get('min_open') else '>='} {low:g}"
    if high is not None:
        return f"{'<' if metadata.get('max_open') else '<='} {high:g}"
    return ""


def _expected(kind: type, metadata, is_number: bool) -> str:
    """What a valid value is, for the error: ``"a whole number >= 1"``, ``"in (0, 1]"``, ``"True or False"``.

    A number out of range hears only the range (``"in (0, 1]"``); anything else hears the type too.
    """
    span = describe_range(kind, metadata)
    if kind is bool:
        return "True or False"
    if kind is str:
        return span or "text"
    if kind is float and is_number and span:
        return span
    noun = "a whole number" if kind is int else "a finite number"
    return f"{noun} {span}".strip()


def _convert(kind: type, value):
    """``value`` as ``kind`` (numpy scalars included), or ``None`` when it is not one."""
    if kind is bool:
        return bool(value) if isinstance(value, (bool, np.bool_)) else None
    if isinstance(value, (bool, np.bool_)):
        return None  # True is an int to Python, never a count or a threshold here
    if kind is int:
        return int(value) if isinstance(value, (int, np.integer)) else None
    if kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value):
            return float(value)
        return None
    return value if isinstance(value, str) else None


def _in_range(value, metadata) -> bool:
    if "choices" in metadata:
        return value in metadata["choices"]
    low, high = metadata.get("min"), metadata.get("max")
    if low is not None and (value <= low if metadata.get("min_open") else value < low):
        return False
    return not (high is not None and (value >= high if metadata.get("max_open") else value > high))


def check_settings(settings, owner: str = "") -> None:
    """Check every setting of the frozen dataclass ``settings``; one :class:`MobileSAMError` for the first bad one.

    The message names the setting, what it accepts, the value given and what it does;
    ``owner`` prefixes it (e.g. ``"AIS: "``). Numbers are stored back as ``int``/``float``.
    """
    by_name = {item.name: item for item in fields(settings)}
    for name, (kind, optional) in setting_types(type(settings)).items():
        value = getattr(settings, name)
        if value is None and optional:
            continue
        metadata = by_name[name].metadata
        converted = _convert(kind, value)
        if converted is None or not _in_range(converted, metadata):
            none = " (or None)" if optional else ""
            expected = _expected(kind, metadata, is_number=converted is not None)
            raise MobileSAMError(f"{owner}{name} must be {expected}{none}, got {value!r}: {metadata['help']}.")
        if converted is not value:
            object.__setattr__(settings, name, converted)


def from_kwargs(cls, what: str, params: dict):
    """``cls(**params)``, with one error naming every unknown setting and the known ones (``what``: whose settings)."""
    known = [item.name for item in fields(cls)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise MobileSAMError(
            f"Unknown setting(s) {', '.join(unknown)} for {what}; the settings are {', '.join(known)}."
        )
    return cls(**params)
