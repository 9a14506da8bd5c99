"""Declaring task options once, for the CLI and the worker alike.

    @dataclass
    class Config:
        raster: str = option(flag="--raster", help="input raster", required=True)
        osm: List[str] = option(default_factory=list, flag="--osm", help="OSM files")

`build_config` turns a worker job's JSON object into a Config, checking names and types; `check_config`
(run by the CLI and the worker before a task starts) checks values against the fields' metadata: numbers
within their `minimum`/`maximum` and finite, and no `role="output"` path naming a `role="input"` file.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Dict, Optional, Type, TypeVar

from .errors import InputError, opt

C = TypeVar("C")
_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, *, default_factory: Any = _MISSING, flag: Optional[str] = None,
           help: str = "", required: bool = False, positional: bool = False,
           choices: Optional[list] = None, metavar: Optional[str] = None, role: Optional[str] = None,
           minimum: Optional[float] = None, maximum: Optional[float] = None) -> Any:
    """A Config field with its CLI flag and help text. Required options default to None. `role`: "input" or
    "output" for a path the task reads or writes; `minimum`/`maximum`: the allowed range of a number."""
    meta = {"flag": flag, "help": help, "required": required, "positional": positional,
            "choices": choices, "metavar": metavar, "role": role, "minimum": minimum, "maximum": maximum}
    if default is _MISSING and default_factory is _MISSING:
        default = None
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def base_type(tp: Any) -> Any:
    """Optional[X] -> X; List[X] stays."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def build_config(cls: Type[C], values: Dict[str, Any]) -> C:
    """A Config from a JSON object: unknown keys, missing required values and wrong types are refused."""
    if not isinstance(values, dict):
        raise InputError("The job's config must be a JSON object.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"Unknown option(s): {', '.join(unknown)}.", hint="Options: " + ", ".join(fields))
    hints = field_types(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(name, value, base_type(hints[name]))
    config = cls(**kwargs)
    for f in dataclasses.fields(cls):
        if f.metadata.get("required") and getattr(config, f.name) in (None, [], ""):
            flag = f.metadata.get("flag") or f.name
            raise InputError(f"Missing required option {flag}.", option=f.name)
    return check_config(config)


def paths_with_role(config: Any, role: str) -> Dict[str, list]:
    """{field name: [paths]} of the config's fields declared with this role, unset ones left out."""
    found = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("role") == role and value not in (None, "", []):
            found[f.name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return found


def check_config(config: C) -> C:
    """Refuse out-of-range or non-finite numbers and outputs that would overwrite an input; returns config."""
    from .atomic import refuse_overwriting_inputs, refuse_unwritable

    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
        wrong = not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high)
        if wrong:
            allowed = ("a finite number" if not math.isfinite(value) else
                       f"from {low:g} to {high:g}" if low is not None and high is not None else
                       f"{low:g} or more" if low is not None else f"at most {high:g}" if high is not None else
                       "a finite number")
            help_text = f.metadata.get("help")
            raise InputError(f"{opt(f.name)} must be {allowed}, got {value}.",
                             hint=f"{opt(f.name)}: {help_text}." if help_text else None, option=f.name)
    outputs = {name: paths[0] for name, paths in paths_with_role(config, "output").items()}
    refuse_overwriting_inputs(outputs, paths_with_role(config, "input"))
    for name, path in outputs.items():
        refuse_unwritable(path, name)
    return config


def _coerce(name: str, value: Any, tp: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    try:
        if origin in (list, typing.List):
            (item,) = typing.get_args(tp) or (str,)
            items = value if isinstance(value, (list, tuple)) else [value]
            return [_coerce(name, v, base_type(item)) for v in items]
        if tp is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError):
        raise InputError(f"Option {name!r} must be {getattr(tp, '__name__', tp)}, got {value!r}.") from None
    return value
