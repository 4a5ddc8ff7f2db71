"""The zoo's two records, `Reference` and `ZooModel`, and small helpers shared by the zoo's models.

A zoo entry bundles a NumPyro model with a reproducible data generator and, where one exists, the exact
answer (posterior means and standard deviations of the latent sites, and the log evidence log p(data) of the
model exactly as written, every normalising constant included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Reference", "ZooModel"]


@dataclass(frozen=True)
class Reference:
    """Known answers for one data set; any field may be None.

    mean, sd: posterior means and standard deviations of latent sites in constrained space, keyed by site name.
    log_z: log p(data) of the model exactly as written (all constants included, as NumPyro's log_prob has them).
    """

    mean: dict[str, np.ndarray] | None = None
    sd: dict[str, np.ndarray] | None = None
    log_z: float | None = None


@dataclass(frozen=True)
class ZooModel:
    """A built-in model: `model(**make_data(seed, **sizes))` is a NumPyro model ready to fit.

    model: the NumPyro model; its observed arguments accept None (prior predictive).
    make_data: `make_data(seed=0, **sizes) -> dict` of numpy arrays and Python scalars (JSON-able).
    reference: `reference(data) -> Reference`, or None when there is no analytic answer.
    tags: what makes the posterior interesting ("conjugate", "positive", "simplex", "bounded", "nonsmooth",
        "hierarchical", "multimodal", "curved", "regression", "real-data").
    true_parameters: for synthetic data, `true_parameters(seed=0, **sizes) -> dict` of the values the data were
        drawn from (same seed and sizes as make_data); None otherwise.
    """

    name: str
    description: str
    model: Callable[..., Any]
    make_data: Callable[..., dict]
    reference: Callable[[dict], Reference] | None
    tags: tuple[str, ...]
    true_parameters: Callable[..., dict] | None = field(default=None)


# --- helpers for the zoo's modules ------------------------------------------------------------------------------


def as_array(value, name: str, dtype=None):
    """`value` (a list from JSON, a numpy or JAX array) as a JAX array; None stays None."""
    if value is None:
        return None
    try:
        return jnp.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"argument '{name}': expected an array of numbers, got {type(value).__name__}") from error


def concrete(value) -> np.ndarray | None:
    """`value` as a numpy array when it is known on the host, None when it is traced (inside jit or vmap)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def observation_count(observed, num_observations, observed_name: str) -> int:
    """The size of the observation plate: the length of `observed`, or `num_observations` when it is None.

    When the observations are given their length wins (so a caller may pass a shard of them); `num_observations`
    only sizes the prior predictive.
    """
    if observed is not None:
        if jnp.ndim(observed) < 1:
            raise ValueError(f"argument '{observed_name}': expected a 1-D array of observations, got a scalar")
        return int(jnp.shape(observed)[0])
    if num_observations is None:
        raise ValueError(
            f"argument '{observed_name}' is None (prior predictive) and 'num_observations' is None: "
            "pass num_observations to size the prior predictive"
        )
    return int(num_observations)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"argument '{name}': expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(value, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"argument '{name}': expected a finite number > 0, got {value!r}")
    return value


def rng(seed: int) -> np.random.Generator:
    """The numpy generator every `make_data` draws from, so data depend on `seed` alone."""
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"argument 'seed': expected an integer, got {seed!r}")
    return np.random.default_rng(int(seed))
