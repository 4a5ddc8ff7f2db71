"""Typed per-method option schemas, shared by `samplax.fit` and the command line.

Each method declares its options once (name, type, default, allowed values, one line of help). `fit(**options)` and
`samplax fit --option key=value` are both checked here, before any tracing or compilation, and an unknown or ill-typed
option is an error that lists the valid ones.
"""

from __future__ import annotations

from typing import Any

from samplax.infer import registry
from samplax.infer.schema import COMMON_ARGUMENTS, MethodSchema, Option

__all__ = ["Option", "MethodSchema", "schema", "methods", "validate", "parse_cli_option", "COMMON_ARGUMENTS"]


def methods() -> list[str]:
    """The names of every registered method."""
    return registry.names()


def schema(method: str) -> MethodSchema:
    """The option schema of ``method``; an unknown name is a ValueError that lists the methods."""
    return registry.get(method).schema


def validate(method: str, options: dict) -> dict:
    """Return the full option dict (defaults filled in) or raise a ValueError that lists the valid options."""
    spec = schema(method)
    by_name = {option.name: option for option in spec.options}
    unknown = [name for name in options if name not in by_name]
    if unknown:
        valid = ", ".join(f"{o.name} ({o.type.__name__})" for o in spec.options) or "none"
        raise ValueError(f"unknown option(s) {unknown} for method '{method}'; valid options: {valid}")
    resolved = spec.defaults()
    for name, value in options.items():
        resolved[name] = by_name[name].check(method, value)
    return resolved


def parse_cli_option(method: str, text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` from the command line with the option's declared type."""
    if "=" not in text:
        raise ValueError(f"--option expects key=value, got {text!r}")
    name, raw = text.split("=", 1)
    name = name.strip()
    spec = schema(method)
    by_name = {option.name: option for option in spec.options}
    if name not in by_name:
        valid = ", ".join(o.name for o in spec.options) or "none"
        raise ValueError(f"unknown option '{name}' for method '{method}'; valid options: {valid}")
    option = by_name[name]
    raw = raw.strip()
    if option.allow_none and raw.lower() == "none":
        return name, None
    try:
        if option.type is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            value = raw.lower() in ("true", "1", "yes")
        elif option.type in (dict, object):
            import json

            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw  # a bare word such as noise=paper
        else:
            value = option.type(raw)
    except ValueError:
        raise ValueError(f"option '{name}' of method '{method}' must be {option.type.__name__}, got {raw!r}") from None
    return name, option.check(method, value)
