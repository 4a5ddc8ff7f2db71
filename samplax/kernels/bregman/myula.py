"""MYULA: the Moreau-Yosida regularised unadjusted Langevin algorithm.

Paper: A. Durmus, E. Moulines and M. Pereyra, "Efficient Bayesian computation by proximal Markov chain Monte Carlo:
when Langevin meets Moreau", SIAM J. Imaging Sciences 11 (2018). Target pi(x) ∝ exp(-f(x) - g(x)) on R^d with f
smooth and g(x) = sum_i w_i |x_i - c_i|; g is replaced by its Moreau envelope
g^lambda(x) = min_y g(y) + |x - y|^2 / (2 lambda), whose gradient is (x - prox_{lambda g}(x)) / lambda, and

    x_{k+1} = x_k - gamma grad f(x_k) - (gamma / lambda) (x_k - prox_{lambda g}(x_k)) + sqrt(2 gamma) xi,
    prox_{lambda g}(x)_i = c_i + sign(x_i - c_i) max(|x_i - c_i| - lambda w_i, 0),   xi ~ N(0, I).

It is the Euclidean baseline of ``bplmc`` (and equals its Euclidean BMUMLA step for step); samplax runs it on the
unconstrained coordinates. A non-finite proposal leaves the chain in place and counts as a divergence.

Usage::

    algorithm = myula.as_top_level_api(smooth_potential_fn, step_size=1e-2, smoothing=0.1, l1_weight=w)
    state = algorithm.init(position)
    state, info = jax.jit(algorithm.step)(rng_key, state)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

from samplax.kernels.bregman.legendre import _concrete

__all__ = ["MYULAInfo", "MYULAState", "as_top_level_api", "build_kernel", "init", "moreau_potential"]


class MYULAState(NamedTuple):
    """position x_k; U(x_k) = f(x_k) + g^lambda(x_k) and its gradient (reused by the next step); grad g^lambda(x_k)."""

    position: jax.Array
    potential: jax.Array
    potential_grad: jax.Array
    envelope_grad: jax.Array


class MYULAInfo(NamedTuple):
    """acceptance_rate (1, or 0 on a divergence), is_accepted, diverging, and |grad g^lambda| after the step."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    diverging: jax.Array
    envelope_grad_norm: jax.Array


def moreau_potential(smooth_potential_fn: Callable, l1_weight=None, l1_center=None, smoothing: float = 0.1):
    """x -> (f(x) + g^lambda(x), its gradient, grad g^lambda(x)) for g(x) = sum_i w_i |x_i - c_i|."""
    if l1_weight is not None:
        weight = _concrete(l1_weight)
        if weight is not None and np.any(weight < 0):
            raise ValueError("l1_weight must be >= 0 (a negative weight makes g non-convex)")
    center = 0.0 if l1_center is None else l1_center

    def potential_fn(x):
        value, grad = jax.value_and_grad(smooth_potential_fn)(x)
        if l1_weight is None:
            return value, grad, jnp.zeros_like(x)
        w = jnp.asarray(l1_weight, dtype=x.dtype)
        c = jnp.asarray(center, dtype=x.dtype)
        threshold = smoothing * w
        d = x - c
        prox = c + jnp.sign(d) * jnp.maximum(jnp.abs(d) - threshold, 0.0)
        prox = jnp.where(threshold == 0, x, jnp.where(jnp.abs(d) <= threshold, c, prox))
        envelope_grad = (x - prox) / smoothing
        envelope = jnp.sum(w * jnp.abs(prox - c)) + jnp.sum((x - prox) ** 2) / (2.0 * smoothing)
        return value + envelope, grad + envelope_grad, envelope_grad

    return potential_fn


def init(position, potential_fn: Callable) -> MYULAState:
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.floating):
        position = position.astype(jnp.result_type(float))
    value, grad, envelope_grad = potential_fn(position)
    return MYULAState(position, value, grad, envelope_grad)


def build_kernel() -> Callable:
    """``kernel(rng_key, state, potential_fn, step_size) -> (state, info)``, potential_fn from ``moreau_potential``."""

    def kernel(rng_key, state: MYULAState, potential_fn: Callable, step_size):
        x = state.position
        noise = jax.random.normal(rng_key, jnp.shape(x), dtype=x.dtype)
        mean = x - step_size * state.potential_grad
        new_x = mean + jnp.sqrt(2.0 * step_size) * noise
        value, grad, envelope_grad = potential_fn(new_x)
        usable = jnp.all(jnp.isfinite(new_x)) & jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        proposal = MYULAState(new_x, value, grad, envelope_grad)
        new_state = jax.tree.map(lambda a, b: jnp.where(usable, a, b), proposal, state)
        info = MYULAInfo(usable.astype(x.dtype), usable, ~usable, jnp.linalg.norm(new_state.envelope_grad))
        return new_state, info

    return kernel


def as_top_level_api(
    smooth_potential_fn: Callable, step_size: float, *, smoothing: float = 0.1, l1_weight=None, l1_center=None
) -> SamplingAlgorithm:
    """MYULA as a BlackJAX ``SamplingAlgorithm`` (f on R^d, weighted L1 term g, Moreau smoothing ``smoothing``)."""
    for name, value in (("step_size", step_size), ("smoothing", smoothing)):
        concrete = _concrete(value)
        if concrete is not None and not (np.all(np.isfinite(concrete)) and np.all(concrete > 0)):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    potential_fn = moreau_potential(smooth_potential_fn, l1_weight, l1_center, smoothing)
    kernel = build_kernel()

    def init_fn(position, rng_key=None):
        del rng_key
        return init(position, potential_fn)

    def step_fn(rng_key, state):
        return kernel(rng_key, state, potential_fn, step_size)

    return SamplingAlgorithm(init_fn, step_fn)
