"""samplax: a JAX inference backend for NumPyro models.

    fit = samplax.fit(model, data, method="nuts")
    fit.summary()

`fit`, `Fit`, `resume` and `load` are the public face; `samplax.models.zoo` holds built-in models,
`samplax.kernels` the pure-JAX kernels, `samplax.infer` the drivers and diagnostics.
"""

from samplax.infer.fit import Estimate, Fit, fit, load, resume

__all__ = ["fit", "Fit", "Estimate", "resume", "load"]
__version__ = "0.1.0"
