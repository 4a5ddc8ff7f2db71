"""The momentum families of a MixFlow's refreshment.

A momentum coordinate is mapped to a uniform by its CDF, shifted and mapped back (Xu, Chen & Campbell 2023, section 4).
See `samplax.kernels.mixflow`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri

__all__ = ["DEFAULT_SHIFT", "Momentum", "LAPLACE", "GAUSSIAN", "momentum_by_name"]

DEFAULT_SHIFT = math.pi / 16.0  # the refreshment's irrational u-shift (the authors' value)


# ---------------------------------------------------------------------------------------------------------------------
# momentum distributions. Tail-aware: each CDF value is kept on the side where it is accurate (F(rho) for rho <= 0,
# 1 - F(rho) for rho > 0), so it never rounds to exactly 1 (a naive F does for rho > 37 under Laplace, > 8.3 under
# Gaussian, and R stops being a bijection there). The rotation itself is ill-conditioned in the far tails: its
# derivative is m(rho) / m(rho'), so the one-step error of a momentum at |rho| grows like 1e-16 / m(rho).
class Momentum(NamedTuple):
    """A standard one-dimensional momentum density m, applied coordinate-wise.

    ``cdf`` is used on rho <= 0 and ``survival`` (1 - F) on rho >= 0; ``quantile`` inverts the CDF on (0, 1/2] and
    ``upper_quantile`` the survival function on (0, 1/2].
    """

    name: str
    log_density: Callable  # elementwise log m(rho)
    kinetic_gradient: Callable  # elementwise -d log m / d rho: the leapfrog's drift direction
    cdf: Callable
    survival: Callable
    quantile: Callable
    upper_quantile: Callable
    sample: Callable  # (rng_key, shape, dtype) -> draws


LAPLACE = Momentum(
    "laplace",
    lambda rho: -jnp.abs(rho) - math.log(2.0),
    jnp.sign,
    lambda rho: 0.5 * jnp.exp(rho),
    lambda rho: 0.5 * jnp.exp(-rho),
    lambda p: jnp.log(2.0 * p),
    lambda q: -jnp.log(2.0 * q),
    lambda key, shape, dtype: jax.random.laplace(key, shape, dtype),
)

GAUSSIAN = Momentum(
    "gaussian",
    lambda rho: -0.5 * rho**2 - 0.5 * math.log(2.0 * math.pi),
    lambda rho: rho,
    ndtr,
    lambda rho: ndtr(-rho),
    ndtri,
    lambda q: -ndtri(q),
    lambda key, shape, dtype: jax.random.normal(key, shape, dtype),
)

_MOMENTA = {"laplace": LAPLACE, "gaussian": GAUSSIAN}


def momentum_by_name(name: str | Momentum) -> Momentum:
    """``"laplace"`` (the paper's default) or ``"gaussian"``; a `Momentum` passes through."""
    if isinstance(name, Momentum):
        return name
    if name not in _MOMENTA:
        raise ValueError(f"momentum={name!r} is not one of {sorted(_MOMENTA)}; pass momentum='laplace' (default)")
    return _MOMENTA[name]


def _rotate(rho, shift, shift_complement, momentum: Momentum):
    """Rotate a momentum on the circle: rho -> F^-1((F(rho) + a) mod 1).

    a = ``shift`` and 1 - a = ``shift_complement`` are passed separately.

    The inverse rotation swaps the two (a -> 1 - a), so forward and inverse use the very same floating-point
    values. Every probability is carried on its accurate side (lower tail p or upper tail 1 - p) and clamped away
    from 0 before inversion (F(rho) + a can land on exactly 0 or 1).
    """
    tiny = jnp.finfo(rho.dtype).tiny
    negative = rho <= 0
    lower_tail = momentum.cdf(jnp.minimum(rho, 0.0))  # F(rho), accurate when rho <= 0
    upper_tail = momentum.survival(jnp.maximum(rho, 0.0))  # 1 - F(rho), accurate when rho > 0
    # rho <= 0: F + a = lower_tail + a, which wraps past 1 when lower_tail >= 1 - a
    wraps = lower_tail >= shift_complement
    lower_negative = jnp.where(wraps, lower_tail - shift_complement, lower_tail + shift)
    upper_negative = jnp.where(wraps, 1.0 - (lower_tail - shift_complement), shift_complement - lower_tail)
    # rho > 0: F + a = 1 - upper_tail + a, which wraps past 1 when a >= upper_tail
    wraps = shift >= upper_tail
    lower_positive = jnp.where(wraps, shift - upper_tail, 1.0 + shift - upper_tail)
    upper_positive = jnp.where(wraps, shift_complement + upper_tail, upper_tail - shift)
    lower = jnp.where(negative, lower_negative, lower_positive)
    upper = jnp.where(negative, upper_negative, upper_positive)
    return jnp.where(
        lower <= upper, momentum.quantile(jnp.maximum(lower, tiny)), momentum.upper_quantile(jnp.maximum(upper, tiny))
    )
