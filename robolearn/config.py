"""YAML loading with clear errors, and typed dataclass configs filled from plain dicts.

Why typed configs: robomimic users report 0 % success from one misspelt key that
was silently ignored. Here an unknown key is an error that names the file and key.
Each field also states once what its value means (``positive``, ``probability``, ``choices``,
see ``checked``), and ``from_dict`` holds every file to it: a YAML ``true`` is not a number,
NaN and infinity are not settings, and ``steps: -100`` or ``batch_size: 0`` fail at load time,
naming the file and the dotted field, instead of training NaN or crashing mid-run.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import numpy as np
import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    def __init__(self, source: str | os.PathLike, field_name: str, problem: str):
        self.source, self.field, self.problem = str(source), field_name, problem
        super().__init__(f"{source}: field '{field_name}': {problem}")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "<file>", "no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<file>", f"invalid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "<root>", f"expected a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], parsed value); the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError("--set", text, "expected key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError("--set", text, f"'{k}' is not a mapping")
        node[keys[-1]] = value
    return cfg


#: What a number in a config may be, declared once per field (``field(metadata={"check": ...})``,
#: or the ``positive()``-style helpers below) and enforced by ``from_dict``. A list or mapping of
#: numbers is checked number by number. Each entry: predicate, and the words for the error.
CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda v: v > 0, "a number greater than 0"),
    "non_negative": (lambda v: v >= 0, "a number >= 0"),
    "probability": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    #: a discount factor: 1 would make returns unbounded.
    "discount": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    #: a share of something that must move: 0 would mean never.
    "fraction": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    #: strictly between 0 and 1 (an expectile or quantile level: either end is degenerate).
    "open_unit": (lambda v: 0 < v < 1, "a number in (0, 1)"),
}


def checked(default: Any = dataclasses.MISSING, *, check: str | None = None, choices: tuple | None = None,
            allow_nonfinite: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that says what its value means: ``check`` names an entry of CHECKS,
    ``choices`` lists the only values allowed, ``allow_nonfinite`` lets a float be NaN or inf
    (every other float field refuses them)."""
    if check is not None and check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; expected one of {sorted(CHECKS)}")
    metadata = {"check": check, "choices": choices, "allow_nonfinite": allow_nonfinite}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def positive(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    return checked(default, check="positive", **kwargs)


def non_negative(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    return checked(default, check="non_negative", **kwargs)


def probability(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    return checked(default, check="probability", **kwargs)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "")


class _Convert:
    """Checks one value against its declared type, converting YAML's ints to floats and lists to
    tuples; every mismatch is a ConfigError naming ``source`` and the dotted field."""

    def __init__(self, source: str, allow_nonfinite: bool):
        self.source = source
        self.allow_nonfinite = allow_nonfinite

    def fail(self, where: str, hint: Any, value: Any) -> ConfigError:
        return ConfigError(self.source, where, f"expected {_type_name(hint)}, got {value!r}")

    def __call__(self, hint: Any, value: Any, where: str) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return value
        if hint is type(None):
            if value is not None:
                raise self.fail(where, hint, value)
            return None
        if origin in (typing.Union, types.UnionType):
            return self.union(hint, args, value, where)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(self.source, where, f"expected a mapping of {hint.__name__} settings, got {value!r}")
            return from_dict(hint, value, self.source, field_prefix=f"{where}.")
        if hint is bool:
            if not isinstance(value, bool):
                raise self.fail(where, hint, value)
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(where, hint, value)
            return value
        if hint is float:
            return self.real(value, where)
        if hint is str:
            if not isinstance(value, str):
                raise self.fail(where, hint, value)
            return value
        if origin in (list, tuple):
            return self.sequence(hint, origin, args, value, where)
        if origin is dict:
            return self.mapping(hint, args, value, where)
        return value

    def real(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, float, value)
        value = float(value)
        if not self.allow_nonfinite and not math.isfinite(value):
            raise ConfigError(self.source, where, f"expected a finite number, got {value}")
        return value

    def union(self, hint: Any, args: tuple, value: Any, where: str) -> Any:
        if value is None:
            if type(None) in args:
                return None
            raise self.fail(where, hint, value)
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return self(option, value, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(options) == 1 else self.fail(where, hint, value)

    def sequence(self, hint: Any, origin: type, args: tuple, value: Any, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            raise self.fail(where, hint, value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(self.source, where, f"expected {len(args)} values, got {value!r}")
            return tuple(self(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return origin(self(item, v, f"{where}[{i}]") for i, v in enumerate(value))

    def mapping(self, hint: Any, args: tuple, value: Any, where: str) -> dict:
        if not isinstance(value, Mapping):
            raise self.fail(where, hint, value)
        key_hint, value_hint = args if args else (Any, Any)
        out = {}
        for k, v in value.items():
            out[self(key_hint, k, f"{where}.<key {k!r}>")] = self(value_hint, v, f"{where}.{k}")
        return out


def _numbers(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """Every number inside a converted value (lists and mappings walked), with its dotted place."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield where, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")


def _check_choice(f: dataclasses.Field, value: Any, where: str, source: str) -> None:
    """Before the type check, so an error for a wrong value of any type lists what is allowed."""
    choices = f.metadata.get("choices")
    if choices is not None and not any(type(value) is type(c) and value == c for c in choices):
        raise ConfigError(source, where, f"expected one of {list(choices)}; got {value!r}")


def _check_meaning(f: dataclasses.Field, value: Any, where: str, source: str) -> None:
    check = f.metadata.get("check")
    if check is None:
        return
    ok, words = CHECKS[check]
    for place, number in _numbers(value, where):
        if not ok(number):
            raise ConfigError(source, place, f"expected {words}, got {number!r}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str = "config", *, field_prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``. Unknown keys, missing required keys, wrong types (a bool
    is not a number), NaN or infinite floats and numbers outside what a field declares (``checked``)
    are ConfigErrors naming ``source`` and the dotted field (``field_prefix`` + name)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, field_prefix.rstrip(".") or "<root>", f"expected a mapping of {cls.__name__} settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    # Fields marked metadata={"config_key": False} are bookkeeping set by code, never by a file.
    fields = [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("config_key", True)]
    names = {f.name for f in fields}
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ConfigError(source, field_prefix + unknown[0], f"unknown key; {cls.__name__} accepts {sorted(names)}")
    kwargs = {}
    for f in fields:
        where = field_prefix + f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(source, where, "missing required key")
            continue
        _check_choice(f, data[f.name], where, source)
        convert = _Convert(source, allow_nonfinite=bool(f.metadata.get("allow_nonfinite")))
        value = convert(hints[f.name], data[f.name], where)
        _check_meaning(f, value, where, source)
        kwargs[f.name] = value
    return cls(**kwargs)


def require_number(source: str, field: str, value: Any, *, positive: bool = False, at_least: float | None = None,
                   at_most: float | None = None) -> float:
    """``value`` as a float, or ConfigError naming ``source`` and ``field``.

    Why one check: a safety limit that is a YAML ``true``, ``.nan`` or ``.inf`` compares in
    ways that silently switch the limit off (``inf > 0`` passes a positivity test, every
    comparison with NaN is False), so type, finiteness and range are checked together."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(source, field, f"expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(source, field, f"expected a finite number, got {value!r}")
    if positive and not v > 0:
        raise ConfigError(source, field, f"expected a positive number, got {value!r}")
    if at_least is not None and v < at_least:
        raise ConfigError(source, field, f"expected a number >= {at_least:g}, got {value!r}")
    if at_most is not None and v > at_most:
        raise ConfigError(source, field, f"expected a number <= {at_most:g}, got {value!r}")
    return v


def require_int(source: str, field: str, value: Any, *, at_least: int) -> int:
    """``value`` as an int (not a bool, not a float), or ConfigError naming ``source`` and ``field``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(source, field, f"expected an integer, got {value!r}")
    if value < at_least:
        raise ConfigError(source, field, f"expected an integer >= {at_least}, got {value!r}")
    return int(value)
