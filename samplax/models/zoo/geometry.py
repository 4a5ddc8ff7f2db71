"""Data-free targets with hard geometry and exact moments: Neal's funnel and a banana.

- funnel (Neal 2003, "Slice sampling", section 8): v ~ N(0, 3), x_i | v ~ N(0, exp(v / 2)), i = 1..d-1.
  Exact: E v = 0, sd v = 3; E x_i = 0, sd x_i = sqrt(E exp(v)) = exp(9/4); log Z = 0 (a normalised density).
- banana (Haario, Saksman, Tamminen 1999 style): x1 ~ N(0, s), x2 | x1 ~ N(b (x1^2 - s^2), 1), i.e. a Gaussian
  bent by the shear x2 = u + b (x1^2 - s^2), u ~ N(0, 1). Exact: E x1 = E x2 = 0, sd x1 = s,
  Var x2 = 1 + b^2 Var(x1^2) = 1 + 2 b^2 s^4; log Z = 0.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from samplax.models.zoo.base import Reference, ZooModel, check_positive, check_positive_int

__all__ = ["FUNNEL", "BANANA"]

FUNNEL_LOG_SCALE_SD = 3.0


def funnel_model(dimension=10):
    """Neal's funnel in `dimension` dimensions in all: the log-scale v and dimension - 1 coordinates x."""
    dimension = check_positive_int(dimension, "dimension", minimum=2)
    v = numpyro.sample("v", dist.Normal(0.0, FUNNEL_LOG_SCALE_SD))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2.0)).expand([dimension - 1]).to_event(1))


def funnel_data(seed=0, dimension=10) -> dict:
    """No observations: the data only fix the dimension (the seed is ignored)."""
    return {"dimension": check_positive_int(dimension, "dimension", minimum=2)}


def funnel_reference(data: dict) -> Reference:
    d = int(data.get("dimension", 10))
    x_sd = np.exp(FUNNEL_LOG_SCALE_SD**2 / 4.0)  # sqrt(E exp(v)) = sqrt(exp(9/2))
    return Reference(
        mean={"v": np.asarray(0.0), "x": np.zeros(d - 1)},
        sd={"v": np.asarray(FUNNEL_LOG_SCALE_SD), "x": np.full(d - 1, x_sd)},
        log_z=0.0,
    )


FUNNEL = ZooModel(
    name="funnel",
    description="Neal's funnel, v ~ N(0, 3), x | v ~ N(0, exp(v/2)), 10 dimensions; exact moments, log Z = 0.",
    model=funnel_model,
    make_data=funnel_data,
    reference=funnel_reference,
    tags=("curved", "hierarchical"),
)


def banana_model(scale=10.0**0.5, curvature=0.1):
    """x1 ~ N(0, scale); x2 | x1 ~ N(curvature (x1^2 - scale^2), 1)."""
    x1 = numpyro.sample("x1", dist.Normal(0.0, scale))
    numpyro.sample("x2", dist.Normal(curvature * (x1**2 - scale**2), 1.0))


def banana_data(seed=0, scale=10.0**0.5, curvature=0.1) -> dict:
    """No observations: the data only fix the shape (the seed is ignored)."""
    return {"scale": check_positive(scale, "scale"), "curvature": float(curvature)}


def banana_reference(data: dict) -> Reference:
    s = float(data.get("scale", np.sqrt(10.0)))
    b = float(data.get("curvature", 0.1))
    return Reference(
        mean={"x1": np.asarray(0.0), "x2": np.asarray(0.0)},
        sd={"x1": np.asarray(s), "x2": np.asarray(np.sqrt(1.0 + 2.0 * b**2 * s**4))},
        log_z=0.0,
    )


BANANA = ZooModel(
    name="banana",
    description="2-D banana: x1 ~ N(0, sqrt 10), x2 | x1 ~ N(0.1 (x1^2 - 10), 1); exact moments, log Z = 0.",
    model=banana_model,
    make_data=banana_data,
    reference=banana_reference,
    tags=("curved",),
)
