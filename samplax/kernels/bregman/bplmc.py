"""Bregman proximal Langevin Monte Carlo: the BMUMLA step and its Metropolis-adjusted variant.

Paper: T. T.-K. Lau and H. Liu, "Bregman Proximal Langevin Monte Carlo via Bregman-Moreau Envelopes", ICML 2022
(arXiv 2207.04387). Target pi(x) ∝ exp(-f(x) - g(x)) with f smooth and g convex and nonsmooth (here a weighted L1
term, g(x) = sum_i w_i |x_i - c_i|). g is replaced by its Bregman-Moreau envelope under a Legendre function phi
(left or right, see ``prox``), giving the smoothed potential U(x) = f(x) + env^phi_{lambda g}(x) and the smoothed
target pi^lambda ∝ exp(-U). The Bregman-Moreau unadjusted mirror-Langevin algorithm (BMUMLA) is an Euler step in
the dual space:

    xi ~ N(0, I)
    y_{k+1} = grad phi(x_k) - gamma grad U(x_k) + sqrt(2 gamma) A(x_k) xi,      A(x) A(x)^T = phi''(x)
    x_{k+1} = grad phi*(y_{k+1})

The state keeps both x_k (primal, what the chain reports) and y_k = grad phi(x_k) (dual). With the Euclidean phi
this is MYULA step for step (Durmus, Moulines and Pereyra 2018). The adjusted variant (MYMALA-style) treats the step
as a proposal; its density in the primal space carries the Jacobian of grad phi*,

    q(x' | x) = N(grad phi(x'); grad phi(x) - gamma grad U(x), 2 gamma phi''(x)) |det phi''(x')|,

and x' is accepted with probability min(1, pi(x') q(x | x') / (pi(x) q(x' | x))) for the EXACT target pi ∝ exp(-f - g):
the envelope only steers the proposal, so this removes both the discretisation bias and the smoothing bias (the
proximal MALA idea of Pereyra 2016, in mirror coordinates). A proposal that is non-finite or outside the domain of phi (or of its
dual) leaves the chain where it is and is reported as a divergence; the unadjusted Euler step near a boundary
(Gamma shapes <= 1, sparse Dirichlet) produces many of them, which is why samplax adjusts by default on
constrained sites.

Usage::

    algorithm = bplmc.as_top_level_api(smooth_potential_fn, legendre, step_size=1e-2, smoothing=0.1,
                                       l1_weight=w, l1_center=c, side="left", adjusted=True)
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
from samplax.kernels.bregman.prox import bregman_moreau_envelope

__all__ = [
    "BPLMCInfo",
    "BPLMCState",
    "SmoothedPotential",
    "as_top_level_api",
    "build_kernel",
    "default_step_size",
    "init",
    "l1_term",
    "relative_curvature",
    "smoothed_potential",
]


class BPLMCState(NamedTuple):
    """State of a BMUMLA chain.

    position
        x_k, in the domain of phi: the draw.
    dual_position
        y_k = grad phi(x_k), the iterate of the Euler step (kept so the next step starts from it exactly).
    potential, potential_grad
        U(x_k) = f(x_k) + env(x_k) and its gradient, computed once when x_k is proposed and reused by the next step.
    envelope_grad
        grad env(x_k), for diagnostics.
    exact_potential
        f(x_k) + g(x_k), the exact potential the adjusted variant's Metropolis test uses (reused by the next step).
    """

    position: jax.Array
    dual_position: jax.Array
    potential: jax.Array
    potential_grad: jax.Array
    envelope_grad: jax.Array
    exact_potential: jax.Array


class BPLMCInfo(NamedTuple):
    """Diagnostics of one transition.

    acceptance_rate
        min(1, Metropolis ratio) for the adjusted variant; for the unadjusted one 1 when the proposal was usable and
        0 on a divergence.
    is_accepted
        Whether the chain moved.
    diverging
        The proposal was non-finite or outside the domain (or the dual domain) of phi; the chain stayed.
    envelope_grad_norm
        |grad env(x)| at the state after the transition: large values mean the chain sits where g is steep relative
        to the smoothing.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    diverging: jax.Array
    envelope_grad_norm: jax.Array


class SmoothedPotential(NamedTuple):
    """U(x) = f(x) + env(x), its gradient, the envelope's share of the gradient, and the exact f(x) + g(x)."""

    value: jax.Array
    grad: jax.Array
    envelope_grad: jax.Array
    exact: jax.Array


def smoothed_potential(
    smooth_potential_fn: Callable, envelope_fn: Callable | None = None, nonsmooth_fn: Callable | None = None
) -> Callable:
    """Build x -> SmoothedPotential(f + env, grad f + grad env, grad env, f + g); ``envelope_fn=None``: g = 0.

    ``nonsmooth_fn`` is g itself (for the adjusted variant's exact target); None with an envelope means the
    envelope's own g = sum_i w_i |x_i - c_i| is not known here and the exact potential is taken as f + env.
    """

    def potential_fn(x):
        value, grad = jax.value_and_grad(smooth_potential_fn)(x)
        if envelope_fn is None:
            envelope_grad = jnp.zeros_like(x)
            return SmoothedPotential(value, grad, envelope_grad, value)
        envelope = envelope_fn(x)
        exact = value + (envelope.value if nonsmooth_fn is None else nonsmooth_fn(x))
        return SmoothedPotential(value + envelope.value, grad + envelope.grad, envelope.grad, exact)

    return potential_fn


def l1_term(l1_weight, l1_center=None) -> Callable:
    """The weighted L1 term as a function, x -> sum_i w_i |x_i - c_i|."""
    center = 0.0 if l1_center is None else l1_center

    def g(x):
        return jnp.sum(jnp.asarray(l1_weight, x.dtype) * jnp.abs(x - jnp.asarray(center, x.dtype)))

    return g


def init(position, potential_fn: Callable, legendre) -> BPLMCState:
    """Start a chain at ``position`` (inside the domain of ``legendre``)."""
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.floating):
        position = position.astype(jnp.result_type(float))
    inside = _concrete(legendre.in_domain(position))
    if inside is not None and not bool(inside):
        raise ValueError(
            f"bplmc init: position {np.asarray(position)} is outside the domain of {legendre!r}; start strictly "
            "inside it (positive values for boltzmann_shannon, inside (lower, upper) for fermi_dirac, positive "
            "coordinates summing to less than 1 for entropic_simplex)"
        )
    potential = potential_fn(position)
    return BPLMCState(
        position, legendre.grad(position), potential.value, potential.grad, potential.envelope_grad, potential.exact
    )


def build_kernel(legendre, adjusted: bool = False) -> Callable:
    """Build the BMUMLA transition ``kernel(rng_key, state, potential_fn, step_size) -> (state, info)``.

    ``potential_fn`` is a ``smoothed_potential``; ``adjusted`` adds the Metropolis correction on the exact target.
    """

    def kernel(rng_key, state: BPLMCState, potential_fn: Callable, step_size) -> tuple[BPLMCState, BPLMCInfo]:
        x, y = state.position, state.dual_position
        if adjusted:
            key_noise, key_accept = jax.random.split(rng_key)
        else:
            key_noise = rng_key
        noise = jax.random.normal(key_noise, jnp.shape(x), dtype=x.dtype)
        mean = y - step_size * state.potential_grad
        new_y = mean + jnp.sqrt(2.0 * step_size) * legendre.hess_sqrt_matvec(x, noise)
        new_x = legendre.grad_conj(new_y)
        new = potential_fn(new_x)
        usable = (
            jnp.all(jnp.isfinite(new_x))
            & jnp.all(jnp.isfinite(new_y))
            & jnp.isfinite(new.value)
            & jnp.all(jnp.isfinite(new.grad))
            & legendre.in_domain(new_x)
            & legendre.dual_in_domain(new_y)
        )
        proposal = BPLMCState(new_x, new_y, new.value, new.grad, new.envelope_grad, new.exact)

        if adjusted:
            log_det_x = legendre.hess_log_det(x)
            log_det_new = legendre.hess_log_det(new_x)
            log_forward = -0.5 * jnp.sum(noise * noise) - 0.5 * log_det_x + log_det_new
            reverse_residual = y - (new_y - step_size * new.grad)
            log_reverse = (
                -legendre.hess_inv_quad(new_x, reverse_residual) / (4.0 * step_size) - 0.5 * log_det_new + log_det_x
            )
            log_ratio = state.exact_potential - new.exact + log_reverse - log_forward
            usable = usable & jnp.isfinite(log_ratio)
            log_ratio = jnp.where(usable, log_ratio, -jnp.inf)
            acceptance_rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
            log_uniform = jnp.log(jax.random.uniform(key_accept, dtype=x.dtype))
            accept = log_uniform < log_ratio
        else:
            acceptance_rate = usable.astype(x.dtype)
            accept = usable

        new_state = jax.tree.map(lambda a, b: jnp.where(accept, a, b), proposal, state)
        info = BPLMCInfo(
            acceptance_rate=acceptance_rate,
            is_accepted=accept,
            diverging=~usable,
            envelope_grad_norm=jnp.linalg.norm(new_state.envelope_grad),
        )
        return new_state, info

    return kernel


def as_top_level_api(
    smooth_potential_fn: Callable,
    legendre,
    step_size: float,
    *,
    smoothing: float = 0.1,
    l1_weight=None,
    l1_center=None,
    side: str = "left",
    adjusted: bool = False,
) -> SamplingAlgorithm:
    """BMUMLA (``adjusted=False``) or its Metropolis-adjusted variant as a BlackJAX ``SamplingAlgorithm``.

    Parameters
    ----------
    smooth_potential_fn
        f(x), the smooth part of the negative log-density, in the coordinates ``legendre`` lives on.
    legendre
        A Legendre function from ``legendre.make_legendre`` or a ``BlockLegendre``.
    step_size
        gamma > 0. ``default_step_size`` gives a safe value from the smooth part's curvature.
    smoothing
        lambda > 0, the envelope parameter: smaller is closer to pi but stiffer.
    l1_weight, l1_center
        g(x) = sum_i w_i |x_i - c_i| (``None``: g = 0). Hyperbolic-entropy coordinates should be centred at c.
    side
        ``"left"`` or ``"right"`` Bregman-Moreau envelope.
    adjusted
        Metropolis correction on the exact target pi ∝ exp(-f - g).

    ::

        algorithm = as_top_level_api(f, make_legendre("boltzmann_shannon"), step_size=0.01, adjusted=True)
        state = algorithm.init(jnp.ones(3))
        state, info = algorithm.step(jax.random.key(0), state)
    """
    _check_positive(step_size, "step_size", "a value from default_step_size, e.g. 1e-2")
    _check_positive(smoothing, "smoothing", "a value of order 1 / (curvature of f), e.g. 0.1")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    envelope_fn = None
    if l1_weight is not None:
        envelope_fn = bregman_moreau_envelope(legendre, l1_weight, l1_center, smoothing, side)
    potential_fn = smoothed_potential(
        smooth_potential_fn, envelope_fn, None if l1_weight is None else l1_term(l1_weight, l1_center)
    )
    kernel = build_kernel(legendre, adjusted)

    def init_fn(position, rng_key=None):
        del rng_key
        return init(position, potential_fn, legendre)

    def step_fn(rng_key, state):
        return kernel(rng_key, state, potential_fn, step_size)

    return SamplingAlgorithm(init_fn, step_fn)


def relative_curvature(smooth_potential_fn: Callable, legendre, position, num_iterations: int = 20):
    """Largest |eigenvalue| of phi''(x)^{-1} hess f(x) at ``position``, by power iteration on Hessian-vector products.

    This is the curvature of f measured in the geometry of phi (for the Euclidean map, the usual Lipschitz constant
    of grad f at x). Evaluate it at a few warm-up positions and take a high quantile. Jit- and vmap-friendly.
    """
    x = jnp.asarray(position)
    grad_f = jax.grad(smooth_potential_fn)

    def operator(v):
        return legendre.hess_inv_matvec(x, jax.jvp(grad_f, (x,), (v,))[1])

    v0 = jax.random.normal(jax.random.key(0), jnp.shape(x), dtype=x.dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    def body(_, carry):
        v, _ = carry
        w = operator(v)
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / norm, v), norm

    _, estimate = jax.lax.fori_loop(0, num_iterations, body, (v0, jnp.zeros((), dtype=x.dtype)))
    return estimate


def default_step_size(curvature, smoothing=None, fraction: float = 0.2):
    """The step size gamma = fraction / (L + 1/lambda): the MYULA bound gamma <= 1 / (L + 1/lambda), with a margin.

    ``curvature`` is L (``relative_curvature``); ``smoothing`` is lambda (``None`` when there is no nonsmooth term).
    With fraction = 0.2 and f flat this is lambda / 5, the cautious end of the range lambda/2 .. lambda/5.
    """
    inverse = curvature + (0.0 if smoothing is None else 1.0 / smoothing)
    concrete = _concrete(inverse)
    if concrete is not None and not np.all(concrete > 0):
        raise ValueError(
            "default_step_size: curvature + 1/smoothing must be > 0; pass a smoothing or a curvature "
            "estimate at typical positions"
        )
    return fraction / inverse


def _check_positive(value, name, hint):
    concrete = _concrete(value)
    if concrete is not None and not (np.all(np.isfinite(concrete)) and np.all(concrete > 0)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}; try {hint}")
