"""Warm-up of the proximal Langevin kernels (bplmc, myula): step size and an optional diagonal or dense preconditioner.

Built on BlackJAX's pieces: the dual averaging of Hoffman and Gelman (JMLR 2014, section 3.2.1;
``blackjax.adaptation.step_size.dual_averaging_adaptation``) for adjusted chains, and the Welford variance
estimator of Stan's windowed adaptation (``blackjax.adaptation.mass_matrix.mass_matrix_adaptation``, with its
regularisation towards 1e-3) for the preconditioner: the draws' variances, or with ``dense`` their covariance, which
the kernel receives as its lower Cholesky factor. Unadjusted chains have no acceptance rate to steer by: their step
follows the curvature rule

    gamma = fraction / (max(L, 1) + 1/lambda),   L = largest |eigenvalue| of phi''(x)^-1 hess f(x)

(MYULA's bound gamma <= 1 / (L + 1/lambda) with a margin; 1/lambda only when there is a nonsmooth term), with L
measured at the start of each warm-up window and, for sampling, its 0.9 quantile over the windows after the
preconditioner is fixed.

The warm-up is cut into ``WINDOWS`` equal windows. With ``adapt_mass``, the positions of windows 2 to 5 feed the
variance estimate; at the end of window 5 the inverse mass becomes that estimate, the chain's cached potential is
recomputed under it (the envelope depends on the metric), and the dual averaging restarts from its current average.
Steps left over when ``num_steps`` is not a multiple of the windows run at the final step size.

    warmup = build_warmup(kernel, init, curvature, smoothing, adjusted=True, num_steps=1000, adapt_mass=True)
    state, step_size, inverse_mass, acceptance = warmup(rng_key, initial_position)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation

from samplax.kernels.bregman.bplmc import default_step_size

__all__ = [
    "CURVATURE_FLOOR",
    "CURVATURE_QUANTILE",
    "STEP_FRACTION",
    "WINDOWS",
    "build_warmup",
    "step_size_from_curvature",
]

WINDOWS = 10
MASS_WINDOWS = (2, 6)  # windows [2, 6) feed the variance estimate; the preconditioner is fixed at the end of window 5
STEP_FRACTION = 0.2  # gamma = STEP_FRACTION / (L + 1/lambda)
CURVATURE_FLOOR = 1.0  # a flat smooth part gives no scale: curvatures below this count as this
CURVATURE_QUANTILE = 0.9


def step_size_from_curvature(curvature, smoothing):
    """STEP_FRACTION / (max(L, 1) + 1/lambda): the kernel's default rule made safe for flat or non-finite L."""
    safe = jnp.where(jnp.isfinite(curvature), jnp.maximum(curvature, CURVATURE_FLOOR), CURVATURE_FLOOR)
    return default_step_size(safe, smoothing, STEP_FRACTION)


class _Carry(NamedTuple):
    state: object
    step_size: jax.Array  # unadjusted: the current window's step
    averaging: object  # BlackJAX's dual averaging state (adjusted)
    mass: object  # BlackJAX's Welford state
    inverse_mass: jax.Array


def build_warmup(
    kernel: Callable,
    init: Callable,
    curvature: Callable,
    smoothing,
    *,
    adjusted: bool,
    num_steps: int,
    step_size=None,
    target_accept: float = 0.574,
    adapt_mass: bool = False,
    dense: bool = False,
) -> Callable:
    """``warmup(rng_key, position) -> (state, step_size, inverse_mass, mean acceptance)`` for ONE chain (vmap it).

    kernel(key, state, step_size, inverse_mass) -> (state, info with ``acceptance_rate``); init(position,
    inverse_mass) -> state; curvature(position, inverse_mass) -> L in the kernel's geometry; ``smoothing`` is lambda
    or None (no nonsmooth term). ``step_size`` fixed: ``num_steps`` steps of burn-in at it (and, with
    ``adapt_mass``, the preconditioner is still estimated). ``dense``: the preconditioner is the draws' covariance,
    passed to ``kernel`` and ``init`` as its lower Cholesky factor ((d, d); the identity until it is set). The key of
    warm-up step t is ``fold_in(rng_key, t)``.
    """
    da_init, da_update, _ = dual_averaging_adaptation(target_accept)
    mm_init, mm_update, mm_final = mass_matrix_adaptation(is_diagonal_matrix=not dense)
    windows = max(1, min(WINDOWS, num_steps))
    length = num_steps // windows
    tail = num_steps - windows * length
    mass_start, mass_end = MASS_WINDOWS if adapt_mass and windows == WINDOWS else (windows, windows)
    fixed = step_size is not None

    def rule(position, inverse_mass, dtype):
        return step_size_from_curvature(curvature(position, inverse_mass), smoothing).astype(dtype)

    def warmup(rng_key, position):
        position = jnp.asarray(position)
        dtype = position.dtype
        ones = jnp.eye(position.size, dtype=dtype) if dense else jnp.ones(position.shape, dtype)  # M = I
        state = init(position, ones)
        first = jnp.asarray(step_size, dtype) if fixed else rule(state.position, ones, dtype)
        carry = _Carry(state, first, da_init(first), mm_init(position.size), ones)

        def current_step(carry):
            if fixed:
                return carry.step_size
            if adjusted:
                return jnp.exp(carry.averaging.log_step_size).astype(dtype)
            return carry.step_size

        def window_body(carry, index):
            if not (fixed or adjusted):  # unadjusted: the curvature rule at the window's start
                carry = carry._replace(step_size=rule(carry.state.position, carry.inverse_mass, dtype))
            curvature_here = curvature(carry.state.position, carry.inverse_mass)
            accumulate = (index >= mass_start) & (index < mass_end)

            def step_body(carry, t):
                gamma = current_step(carry)
                state, info = kernel(jax.random.fold_in(rng_key, t), carry.state, gamma, carry.inverse_mass)
                acceptance = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0)
                averaging = da_update(carry.averaging, acceptance) if adjusted and not fixed else carry.averaging
                mass = jax.lax.cond(accumulate, lambda m: mm_update(m, state.position), lambda m: m, carry.mass)
                return carry._replace(state=state, averaging=averaging, mass=mass), acceptance

            carry, acceptance = jax.lax.scan(step_body, carry, index * length + jnp.arange(length))

            def set_mass(carry):
                mass = mm_final(carry.mass)
                inverse_mass = mass.inverse_mass_matrix.astype(dtype)
                if dense:  # the kernels take M = L L^T as L
                    inverse_mass = jnp.linalg.cholesky(inverse_mass)
                state = init(carry.state.position, inverse_mass)
                averaging = carry.averaging
                if adjusted and not fixed:
                    averaging = da_init(jnp.exp(carry.averaging.log_step_size_avg))
                step = carry.step_size if fixed or adjusted else rule(state.position, inverse_mass, dtype)
                return _Carry(state, step, averaging, mass, inverse_mass)

            if adapt_mass:
                carry = jax.lax.cond(index == mass_end - 1, set_mass, lambda c: c, carry)
            return carry, (curvature_here, jnp.mean(acceptance))

        carry, (curvatures, acceptance) = jax.lax.scan(window_body, carry, jnp.arange(windows))
        if fixed:
            final = carry.step_size
        elif adjusted:
            final = jnp.exp(carry.averaging.log_step_size_avg).astype(dtype)
        else:
            late = curvatures[mass_end if mass_end < windows else windows // 2 :]  # past the transient / new metric
            late = jnp.where(jnp.isfinite(late), late, jnp.inf)
            final = step_size_from_curvature(jnp.quantile(late, CURVATURE_QUANTILE), smoothing).astype(dtype)
        state = carry.state
        if tail:

            def tail_body(state, t):
                state, info = kernel(jax.random.fold_in(rng_key, t), state, final, carry.inverse_mass)
                return state, info.acceptance_rate

            state, tail_acceptance = jax.lax.scan(tail_body, state, windows * length + jnp.arange(tail))
            acceptance = jnp.concatenate([acceptance, jnp.atleast_1d(jnp.mean(tail_acceptance))])
        return state, final, carry.inverse_mass, jnp.mean(acceptance)

    return warmup
