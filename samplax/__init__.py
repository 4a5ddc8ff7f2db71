"""samplax: a JAX inference backend for NumPyro models.

    fit = samplax.fit(model, data, method="nuts")
    fit.summary()

`fit`, `Fit`, `resume`, `load` and `prior_predictive` are the public face, with `Estimate` (a value and its standard
error), `ConvergenceWarning` (a fit whose diagnostics say not to trust it) and `UnsupportedModelError` (a method that
cannot run a model); `samplax.models.zoo` holds built-in models, `samplax.kernels` the pure-JAX kernels,
`samplax.infer` the drivers and diagnostics, `samplax.graphs` the graph-homomorphism samplers and `samplax.numpyro`
samplax's methods as `numpyro.infer.MCMC` kernels. Heavy imports (JAX, ArviZ) happen on first use, so
`samplax --help` is instant.
"""

import importlib

__all__ = [
    "fit",
    "Fit",
    "Estimate",
    "resume",
    "load",
    "prior_predictive",
    "ConvergenceWarning",
    "UnsupportedModelError",
    "graphs",
    "infer",
    "kernels",
    "models",
    "numpyro",
]
__version__ = "0.1.0"

_FROM_FIT = ("fit", "Fit", "Estimate", "resume", "load", "prior_predictive", "ConvergenceWarning")


def __getattr__(name):
    if name in _FROM_FIT:
        return getattr(importlib.import_module("samplax.infer.fit"), name)
    if name == "UnsupportedModelError":
        return importlib.import_module("samplax.models.bridge").UnsupportedModelError
    if name in ("graphs", "infer", "kernels", "models", "numpyro"):
        return importlib.import_module(f"samplax.{name}")
    raise AttributeError(f"module 'samplax' has no attribute {name!r}")


def __dir__():
    # the lazily imported names too, so that tab completion and dir(samplax) show the public face
    return sorted(set(globals()) | set(__all__))
