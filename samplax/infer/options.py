"""Typed per-method option schemas, shared by `samplax.fit` and the command line.

Each method declares its options once (name, type, default, allowed values, one line of help). `fit(**options)` and
`samplax fit --option key=value` are both checked here, before any tracing or compilation, and an unknown or ill-typed
option is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["Option", "MethodSchema", "register", "schema", "methods", "validate", "parse_cli_option",
           "COMMON_ARGUMENTS"]

# Names that fit() itself takes: never method options.
COMMON_ARGUMENTS = ("model", "data", "method", "chains", "warmup", "draws", "seed", "init", "precision", "progress",
                    "checkpoint", "checkpoint_every", "thin", "log_likelihood", "coords", "dims")


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    allow_none: bool = False

    def check(self, method: str, value):
        if value is None and self.allow_none:
            return None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.type in (dict, object):
            return value
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ValueError(f"method '{method}': option '{self.name}' must be {self.type.__name__}, got "
                             f"{value!r} ({type(value).__name__}); {self.help}")
        if self.type is float and not math.isfinite(value):
            # nan passes every comparison with a bound: a chain with step size nan never moves
            raise ValueError(f"method '{method}': option '{self.name}' must be a finite number, got {value!r}; "
                             f"{self.help}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"method '{method}': option '{self.name}'={value!r} is not one of {list(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"method '{method}': option '{self.name}'={value!r} must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"method '{method}': option '{self.name}'={value!r} must be <= {self.maximum}")
        return value


@dataclasses.dataclass(frozen=True)
class MethodSchema:
    name: str
    family: str  # "mcmc" (R-hat applies), "weighted" or "iid" (judged by weights and standard errors)
    description: str
    options: tuple[Option, ...]
    precision: str = "float32"  # the default of fit(precision=None); mixflow needs float64
    # model features (samplax.models.bridge.Target.features) the method refuses before compilation; gradient
    # methods also refuse discrete latent sites
    unsupported: tuple[str, ...] = ()

    def defaults(self) -> dict:
        return {option.name: option.default for option in self.options}

    def describe(self) -> str:
        lines = [f"{self.name}: {self.description}"]
        if self.unsupported:
            lines.append(f"  refuses models with: {', '.join(self.unsupported)}")
        for option in self.options:
            extra = f" one of {list(option.choices)}" if option.choices else ""
            lines.append(f"  {option.name} ({option.type.__name__}, default {option.default!r}){extra}: {option.help}")
        return "\n".join(lines)


_REGISTRY: dict[str, MethodSchema] = {}


def register(schema_: MethodSchema) -> MethodSchema:
    for option in schema_.options:
        if option.name in COMMON_ARGUMENTS:
            raise ValueError(f"option '{option.name}' of '{schema_.name}' clashes with an argument of fit()")
    _REGISTRY[schema_.name] = schema_
    return schema_


def _load_registry():
    import samplax.infer.methods  # noqa: F401  (registers every method on import)


def methods() -> list[str]:
    _load_registry()
    return sorted(_REGISTRY)


def schema(method: str) -> MethodSchema:
    _load_registry()
    if not isinstance(method, str) or method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; valid methods are {methods()}")
    return _REGISTRY[method]


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
