"""MYULA: the Moreau-Yosida regularised unadjusted Langevin algorithm, preconditioned, optionally adjusted.

Paper: A. Durmus, E. Moulines and M. Pereyra, "Efficient Bayesian computation by proximal Markov chain Monte Carlo:
when Langevin meets Moreau", SIAM J. Imaging Sciences 11 (2018). Target pi(x) ∝ exp(-f(x) - g(x)) on R^d with f
smooth and g convex and nonsmooth: a weighted L1 term g(x) = sum_i w_i |x_i - c_i| and/or the total variation of an
image block, w TV(x_B) (``total_variation``). With a diagonal preconditioner m (an inverse mass matrix; m = 1 is the
paper's algorithm) g is replaced by its Moreau envelope in the metric of m,

    g^lambda(x) = min_y g(y) + |x - y|^2_{m^-1} / (2 lambda),   grad g^lambda(x) = (x - prox(x)) / (lambda m),

i.e. the Bregman-Moreau envelope of the quadratic Legendre function phi(x) = x^T diag(m)^-1 x / 2 (so lambda is
measured in units of the preconditioner: with m the posterior variances, lambda = 0.1 smooths each kink over a tenth
of its posterior variance). The L1 prox is soft-thresholding at lambda m_i w_i; the TV prox needs one scalar metric
on its block (``prox_total_variation`` at lambda m_B w, m_B the block's mean). The step is

    x_{k+1} = x_k - gamma m grad U(x_k) + sqrt(2 gamma m) xi,   U = f + g^lambda,   xi ~ N(0, I).

A dense preconditioner M = L L^T (passed as its lower Cholesky factor L, a (d, d) array) replaces m in the drift and
the noise, x_{k+1} = x_k - gamma M grad U(x_k) + sqrt(2 gamma) L xi, while the envelope keeps the diagonal metric
diag(M) (the L1 prox has no closed form in a dense metric). The Langevin diffusion dx = -M grad U dt + sqrt(2 M) dW
leaves exp(-U) invariant for any fixed M > 0, so this is MYULA in the geometry of M; adjusted, any M is exact.

``adjusted=True`` makes it a proposal for the EXACT target pi (not pi^lambda): accept with probability
min(1, pi(x') q(x | x') / (pi(x) q(x' | x))), q(x' | x) = N(x - gamma m grad U(x), 2 gamma m). The envelope only
steers the proposal, so both the smoothing bias and the step-size bias vanish (Pereyra's proximal MALA, 2016, with the
Moreau envelope's gradient as drift). A non-finite proposal leaves the chain in place and counts as a divergence.

With m = 1 and no adjustment this is bplmc's Euclidean BMUMLA step for step; samplax runs it on the unconstrained
coordinates.

Usage::

    algorithm = myula.as_top_level_api(smooth_potential_fn, step_size=1e-2, smoothing=0.1, l1_weight=w)
    state = algorithm.init(position)
    state, info = jax.jit(algorithm.step)(rng_key, state)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

from samplax.kernels.bregman.legendre import _concrete
from samplax.kernels.bregman.total_variation import (
    prox_total_variation,
    total_variation,
)

__all__ = [
    "MYULAInfo",
    "MYULAState",
    "MoreauPotential",
    "TVTerm",
    "as_top_level_api",
    "build_kernel",
    "envelope_metric",
    "init",
    "moreau_potential",
    "preconditioned",
]


class MYULAState(NamedTuple):
    """The state of a MYULA chain: the position and the potentials computed there, reused by the next step.

    position x_k; U(x_k) = f(x_k) + g^lambda(x_k) and its gradient; grad g^lambda(x_k); and f(x_k) + g(x_k), the
    exact potential the adjusted variant's Metropolis test needs.
    """

    position: jax.Array
    potential: jax.Array
    potential_grad: jax.Array
    envelope_grad: jax.Array
    exact_potential: jax.Array


class MYULAInfo(NamedTuple):
    """What a MYULA step reports.

    acceptance_rate (adjusted: the Metropolis probability; unadjusted: 1, or 0 on a divergence), is_accepted,
    diverging (non-finite proposal), and |grad g^lambda| after the step.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    diverging: jax.Array
    envelope_grad_norm: jax.Array


class TVTerm(NamedTuple):
    """weight * TV(x[start:stop].reshape(shape)): a total-variation term on one image block of the flat vector."""

    start: int
    stop: int
    shape: tuple
    weight: float


class MoreauPotential(NamedTuple):
    """The smoothed potential U = f + g^lambda at a point, its gradient, grad g^lambda and the exact f + g."""

    value: jax.Array
    grad: jax.Array
    envelope_grad: jax.Array
    exact: jax.Array


def moreau_potential(
    smooth_potential_fn: Callable, l1_weight=None, l1_center=None, smoothing: float = 0.1, tv_terms: tuple = ()
):
    """``(x, inverse_mass) -> MoreauPotential(U, grad U, grad g^lambda, f + g)`` in the metric of ``inverse_mass``.

    g(x) = sum_i w_i |x_i - c_i| + sum over ``tv_terms`` of weight TV(block); ``inverse_mass=None`` means m = 1.
    """
    if l1_weight is not None:
        weight = _concrete(l1_weight)
        if weight is not None and np.any(weight < 0):
            raise ValueError("l1_weight must be >= 0 (a negative weight makes g non-convex)")
    center = 0.0 if l1_center is None else l1_center
    for term in tv_terms:
        if not (isinstance(term, TVTerm) and term.stop - term.start == int(np.prod(term.shape)) and term.weight >= 0):
            raise ValueError(
                f"tv_terms: {term!r} must be a TVTerm whose block length equals prod(shape) and whose weight is >= 0"
            )

    def potential_fn(x, inverse_mass=None):
        value, grad = jax.value_and_grad(smooth_potential_fn)(x)
        m = envelope_metric(inverse_mass, x)
        for term in tv_terms:  # the TV prox needs one scalar metric on its image: the block's mean
            m = m.at[term.start : term.stop].set(jnp.mean(m[term.start : term.stop]))
        prox = x
        exact_g = jnp.zeros((), x.dtype)
        envelope_g = jnp.zeros((), x.dtype)
        if l1_weight is not None:
            w = jnp.asarray(l1_weight, dtype=x.dtype)
            c = jnp.asarray(center, dtype=x.dtype)
            threshold = smoothing * m * w
            d = x - c
            prox = jnp.where(threshold == 0, x, c + jnp.sign(d) * jnp.maximum(jnp.abs(d) - threshold, 0.0))
            exact_g = exact_g + jnp.sum(w * jnp.abs(d))
            envelope_g = envelope_g + jnp.sum(w * jnp.abs(prox - c))
        for term in tv_terms:
            block = x[term.start : term.stop].reshape(term.shape)
            prox_block = prox_total_variation(block, smoothing * m[term.start] * term.weight)
            prox = prox.at[term.start : term.stop].set(prox_block.reshape(-1))
            exact_g = exact_g + term.weight * total_variation(block)
            envelope_g = envelope_g + term.weight * total_variation(prox_block)
        if l1_weight is None and not tv_terms:
            return MoreauPotential(value, grad, jnp.zeros_like(x), value)
        envelope_grad = (x - prox) / (smoothing * m)
        envelope = envelope_g + jnp.sum((x - prox) ** 2 / m) / (2.0 * smoothing)
        return MoreauPotential(value + envelope, grad + envelope_grad, envelope_grad, value + exact_g)

    return potential_fn


def envelope_metric(inverse_mass, x) -> jax.Array:
    """The diagonal metric m of the envelope: ones, the diagonal ``inverse_mass``, or diag(L L^T) for a dense factor."""
    if inverse_mass is None:
        return jnp.ones_like(x)
    inverse_mass = jnp.asarray(inverse_mass)
    if inverse_mass.ndim == 2:
        return jnp.sum(inverse_mass * inverse_mass, axis=1).astype(x.dtype)
    return jnp.broadcast_to(inverse_mass, x.shape).astype(x.dtype)


def preconditioned(inverse_mass, v) -> jax.Array:
    """M v: ``inverse_mass * v`` for a diagonal M, L (L^T v) for a dense factor L, v for None."""
    if inverse_mass is None:
        return v
    inverse_mass = jnp.asarray(inverse_mass)
    if inverse_mass.ndim == 2:
        return inverse_mass @ (inverse_mass.T @ v)
    return inverse_mass * v


def init(position, potential_fn: Callable, inverse_mass=None) -> MYULAState:
    """The MYULA state at ``position``, with ``potential_fn`` (from ``moreau_potential``) evaluated there."""
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.floating):
        position = position.astype(jnp.result_type(float))
    potential = potential_fn(position, inverse_mass)
    return MYULAState(position, potential.value, potential.grad, potential.envelope_grad, potential.exact)


def build_kernel(adjusted: bool = False) -> Callable:
    """``kernel(rng_key, state, potential_fn, step_size, inverse_mass=None) -> (state, info)``.

    ``potential_fn`` from ``moreau_potential``; ``adjusted`` adds the Metropolis test on the exact target f + g.
    """

    def kernel(rng_key, state: MYULAState, potential_fn: Callable, step_size, inverse_mass=None):
        x = state.position
        dense = inverse_mass is not None and jnp.ndim(inverse_mass) == 2
        # the unadjusted step draws its noise from rng_key itself: step for step equal to bplmc's Euclidean step
        key_noise, key_accept = jax.random.split(rng_key) if adjusted else (rng_key, None)
        noise = jax.random.normal(key_noise, jnp.shape(x), dtype=x.dtype)
        if dense:
            factor = jnp.asarray(inverse_mass, x.dtype)

            def drift(grad):
                return step_size * preconditioned(factor, grad)

            spread = jnp.sqrt(2.0 * step_size) * (factor @ noise)
        else:
            m = envelope_metric(inverse_mass, x)

            def drift(grad):
                return step_size * m * grad

            spread = jnp.sqrt(2.0 * step_size * m) * noise
        new_x = x - drift(state.potential_grad) + spread
        new = potential_fn(new_x, inverse_mass)
        usable = jnp.all(jnp.isfinite(new_x)) & jnp.isfinite(new.value) & jnp.all(jnp.isfinite(new.grad))
        proposal = MYULAState(new_x, new.value, new.grad, new.envelope_grad, new.exact)
        if adjusted:
            backward = x - new_x + drift(new.grad)
            if dense:  # |backward|^2 in the metric M^-1 = L^-T L^-1
                whitened = jax.scipy.linalg.solve_triangular(factor, backward, lower=True)
                backward_norm = jnp.sum(whitened * whitened)
            else:
                backward_norm = jnp.sum(backward * backward / m)
            log_ratio = (
                state.exact_potential - new.exact - backward_norm / (4.0 * step_size) + 0.5 * jnp.sum(noise * noise)
            )
            usable = usable & jnp.isfinite(log_ratio)
            log_ratio = jnp.where(usable, log_ratio, -jnp.inf)
            acceptance_rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
            accept = jnp.log(jax.random.uniform(key_accept, dtype=x.dtype)) < log_ratio
        else:
            acceptance_rate = usable.astype(x.dtype)
            accept = usable
        new_state = jax.tree.map(lambda a, b: jnp.where(accept, a, b), proposal, state)
        info = MYULAInfo(acceptance_rate, accept, ~usable, jnp.linalg.norm(new_state.envelope_grad))
        return new_state, info

    return kernel


def as_top_level_api(
    smooth_potential_fn: Callable,
    step_size: float,
    *,
    smoothing: float = 0.1,
    l1_weight=None,
    l1_center=None,
    tv_terms: tuple = (),
    inverse_mass=None,
    adjusted: bool = False,
) -> SamplingAlgorithm:
    """MYULA as a BlackJAX ``SamplingAlgorithm``.

    f on R^d; weighted L1 and TV terms g; Moreau smoothing ``smoothing`` in the metric of the diagonal ``inverse_mass``
    (or of diag(L L^T) for a dense one given as its lower Cholesky factor L); ``adjusted``: Metropolis test on f + g.
    """
    for name, value in (("step_size", step_size), ("smoothing", smoothing)):
        concrete = _concrete(value)
        if concrete is not None and not (np.all(np.isfinite(concrete)) and np.all(concrete > 0)):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if inverse_mass is not None:
        concrete = _concrete(inverse_mass)
        positive = None if concrete is None else (np.diag(concrete) if np.ndim(concrete) == 2 else concrete)
        if concrete is not None and not (np.all(np.isfinite(concrete)) and np.all(positive > 0)):
            raise ValueError(
                f"inverse_mass must be finite and > 0 everywhere (a dense one: a lower Cholesky factor with a "
                f"positive diagonal), got {inverse_mass!r}; pass None for m = 1"
            )
    potential_fn = moreau_potential(smooth_potential_fn, l1_weight, l1_center, smoothing, tuple(tv_terms))
    kernel = build_kernel(adjusted)

    def init_fn(position, rng_key=None):
        del rng_key
        return init(position, potential_fn, inverse_mass)

    def step_fn(rng_key, state):
        return kernel(rng_key, state, potential_fn, step_size, inverse_mass)

    return SamplingAlgorithm(init_fn, step_fn)
