"""Every method samplax can run, collected explicitly from the modules that define them.

Each method module exports a ``METHODS`` tuple and registers nothing on import; this module imports them by name,
so the list of methods is read here, not pieced together from import side effects. `samplax.infer.options` (the
option schemas and their checks) and `samplax.infer.fit` look methods up here.
"""

from __future__ import annotations

from samplax.infer import method_admm, method_bplmc, method_cmcd, method_gibbs, method_mixflow, methods
from samplax.infer.methods import DirectMethod, MCMCMethod
from samplax.infer.schema import COMMON_ARGUMENTS

__all__ = ["REGISTRY", "get", "names"]

_MODULES = (methods, method_bplmc, method_mixflow, method_cmcd, method_admm, method_gibbs)


def _collect() -> dict[str, MCMCMethod | DirectMethod]:
    collected: dict[str, MCMCMethod | DirectMethod] = {}
    for module in _MODULES:
        for method in module.METHODS:
            name = method.schema.name
            if name in collected:
                raise ValueError(f"method '{name}' is defined twice ({module.__name__})")
            clashes = [option.name for option in method.schema.options if option.name in COMMON_ARGUMENTS]
            if clashes:
                raise ValueError(f"options {clashes} of '{name}' clash with arguments of fit()")
            collected[name] = method
    return collected


REGISTRY: dict[str, MCMCMethod | DirectMethod] = _collect()


def names() -> list[str]:
    """The names of every method, sorted."""
    return sorted(REGISTRY)


def get(name: str) -> MCMCMethod | DirectMethod:
    """The method called ``name``; an unknown name is a ValueError that lists the methods."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid methods are {names()}")
    return REGISTRY[name]
