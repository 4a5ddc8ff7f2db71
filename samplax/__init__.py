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
import os

# Cores at or below which XLA:CPU gets one intra-op thread (see _one_intra_op_thread_on_small_machines).
SMALL_MACHINE_CORES = 4


def _one_intra_op_thread_on_small_machines() -> None:
    """Give XLA:CPU a single intra-op thread on machines with few cores, unless the user chose a number.

    jaxlib's batched LAPACK kernels (Cholesky, triangular solves, ...) split a large batch into tasks on XLA's intra-op
    thread pool and block their worker until those tasks finish. When every worker of the pool is blocked so, nobody
    runs the tasks and the program waits forever at 0 % CPU (jaxlib 0.10.2; a standalone reproducer is in
    docs/reliability.md). Vmapped chains and particles make such batches, and on a 2-core machine the pool has two
    workers: tempered SMC on NumPyro's sparse_regression example needs 6 or more. A one-thread pool runs every
    batch inline, so the deadlock cannot happen; on 2 cores large models run up to 40 % longer and small
    ones faster (docs/reliability.md has the figures). ``PJRT_NPROC`` (or ``NPROC``) set by the
    user wins; it takes effect only if set before JAX starts its CPU backend.
    """
    if "PJRT_NPROC" in os.environ or "NPROC" in os.environ:
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores <= SMALL_MACHINE_CORES:
        os.environ["PJRT_NPROC"] = "1"


_one_intra_op_thread_on_small_machines()

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
