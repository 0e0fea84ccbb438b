"""Settings declared as frozen dataclass fields, each naming its environment variable.

Why declared, not hand-read: a field's variable, type, default and bounds are
one fact, written once on the field; the loader, the error message, and the
README's configuration table check (tests/test_settings_table.py) all read
it from there.  A value that does not parse or is out of bounds raises
`SettingsError` naming the variable, at start-up, never on the first request.

A field is `name: int = env("BOOKING_X", 5, low=1)`.  Its type (the annotation:
int, float, bool or str) picks the parser unless `parse` gives one; `parse`
raises ValueError with what the value must be ("must be a URL"), and the
loader prefixes the variable's name and appends the value it got.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: The metadata key under which a field keeps its `Var`.
KEY = "booking_settings.var"


class SettingsError(ValueError):
    """A variable is missing or its value is refused; `str()` is one line naming it."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name} {message}")
        self.name = name


@dataclasses.dataclass(frozen=True)
class Var:
    """How one field is read: its variable and what a value must be."""

    name: str
    required: bool = False
    parse: Callable[[str], Any] | None = None
    low: float | None = None
    high: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()


def env(name: str, default: Any = dataclasses.MISSING, *, required: bool = False,
        factory: Callable[[], Any] | None = None, parse: Callable[[str], Any] | None = None,
        low: float | None = None, high: float | None = None, above: float | None = None,
        choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field read from variable `name`; `low`/`high` inclusive, `above` exclusive bounds.

    `factory` makes a mutable default (a dict), as dataclasses' `default_factory`.
    """
    var = Var(name, required, parse, low, high, above, choices)
    if required:
        return dataclasses.field(metadata={KEY: var})
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={KEY: var})
    return dataclasses.field(default=default, metadata={KEY: var})


def parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("must be an integer") from None


def parse_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("0", "false", "no"):
        return False
    if lowered in ("1", "true", "yes"):
        return True
    raise ValueError("must be true or false")


def millis_as_seconds(raw: str) -> float:
    """A whole number of milliseconds, as seconds (the variable says _MS, the code wants seconds)."""
    return parse_int(raw) / 1000


PARSERS: dict[str, Callable[[str], Any]] = {"int": parse_int, "float": parse_float, "bool": parse_bool, "str": str}


def _bounds(var: Var, value: Any) -> str | None:
    """What is wrong with `value` against `var`'s bounds and choices, or None."""
    if var.choices and value not in var.choices:
        return f"must be one of {', '.join(var.choices)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high, above = var.low, var.high, var.above
    if above is not None and not value > above:
        return f"must be above {above:g}" + (f" and at most {high:g}" if high is not None else "")
    if low is not None and high is not None and not low <= value <= high:
        return f"must be from {low:g} to {high:g}"
    if low is not None and value < low:
        return f"must be at least {low:g}"
    if high is not None and value > high:
        return f"must be at most {high:g}"
    return None


def read(var: Var, kind: str, env: Mapping[str, str], default: Any) -> Any:
    """The value of `var` in `env` (stripped; empty counts as unset), else `default`."""
    raw = (env.get(var.name) or "").strip()
    if not raw:
        if var.required:
            raise SettingsError(var.name, "must be set")
        return default
    parser = var.parse or PARSERS.get(kind)
    if parser is None:
        raise TypeError(f"{var.name}: no parser for a field of type {kind}")
    try:
        value = parser(raw.lower() if var.choices else raw)
    except ValueError as e:
        raise SettingsError(var.name, f"{e}, got {raw!r}") from None
    problem = _bounds(var, value)
    if problem:
        raise SettingsError(var.name, f"{problem}, got {raw!r}")
    return value


def declared(cls: type) -> list[tuple[dataclasses.Field, Var]]:
    """The fields of settings class `cls` that name a variable, in order."""
    return [(f, f.metadata[KEY]) for f in dataclasses.fields(cls) if KEY in f.metadata]


def load(cls: type[T], env: Mapping[str, str], **given: Any) -> T:
    """An instance of `cls` with every declared field read from `env`; `given` sets the other fields.

    Bounds are checked field by field as read; checks across fields belong in the
    class's `__post_init__`, which raises SettingsError too.
    """
    values = dict(given)
    for f, var in declared(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        values[f.name] = read(var, str(f.type), env, default)
    return cls(**values)


def check(instance: Any) -> None:
    """Check `instance`'s declared fields against their bounds (from `__post_init__`: direct construction too)."""
    for f, var in declared(type(instance)):
        value = getattr(instance, f.name)
        problem = _bounds(var, value)
        if problem:
            raise SettingsError(var.name, f"{problem}, got {value!r}")


def variables(cls: type) -> list[str]:
    """Every variable settings class `cls` reads: its fields', plus those its `extra_variables()` names."""
    names = [var.name for _, var in declared(cls)]
    extra = getattr(cls, "extra_variables", None)
    return names + (list(extra()) if extra else [])
