"""The types of a method's option schema: `Option` (one typed option) and `MethodSchema` (a method's options).

Method modules declare their schema with these; `samplax.infer.options` looks schemas up in the registry and
checks user options against them. This module imports nothing from samplax, so every method module can use it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["Option", "MethodSchema", "COMMON_ARGUMENTS"]

# Names that fit() itself takes: never method options.
COMMON_ARGUMENTS = (
    "model",
    "data",
    "method",
    "chains",
    "warmup",
    "draws",
    "seed",
    "init",
    "precision",
    "progress",
    "checkpoint",
    "checkpoint_every",
    "thin",
    "log_likelihood",
    "coords",
    "dims",
)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method: its name, type, default and help, with the checks its values must pass.

    ``choices``, ``minimum`` and ``maximum`` bound the value when set; ``allow_none`` lets None through unchecked.
    """

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
            raise ValueError(
                f"method '{method}': option '{self.name}' must be {self.type.__name__}, got "
                f"{value!r} ({type(value).__name__}); {self.help}"
            )
        if self.type is float and not math.isfinite(value):
            # nan passes every comparison with a bound: a chain with step size nan never moves
            raise ValueError(
                f"method '{method}': option '{self.name}' must be a finite number, got {value!r}; {self.help}"
            )
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"method '{method}': option '{self.name}'={value!r} is not one of {list(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"method '{method}': option '{self.name}'={value!r} must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"method '{method}': option '{self.name}'={value!r} must be <= {self.maximum}")
        return value


@dataclasses.dataclass(frozen=True)
class MethodSchema:
    """What `fit` and the CLI know of a method before running it.

    Its name, family ("mcmc", "weighted" or "iid"), description, options, default precision, and the model features
    it refuses before compilation.
    """

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
