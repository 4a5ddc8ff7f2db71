"""Bregman proximity operators and Bregman-Moreau envelopes (Bauschke, Dao and Lindstrom, SIAM J. Optim. 2018).

For a convex g, a Legendre function phi and a smoothing parameter lambda > 0:

    left   P_L(x) = argmin_y g(y) + D_phi(y, x) / lambda,   grad env_L(x) = phi''(x) (x - P_L(x)) / lambda
    right  P_R(x) = argmin_y g(y) + D_phi(x, y) / lambda,   grad env_R(x) = (grad phi(x) - grad phi(P_R(x))) / lambda

and env(x) is the minimum value. With t = lambda * weight, the weighted L1 term g(y) = t |y - c| has, for every
separable phi, the left prox "soft-thresholding in the dual":

    P_L(x) = grad phi*( grad phi(c) + soft(grad phi(x) - grad phi(c), t) ),
             exactly c when |grad phi(x) - grad phi(c)| <= t

(for c outside the domain the term is linear and P_L(x) = grad phi*(grad phi(x) -+ t)). This contains the closed forms
of methods/bplmc.md: hyperbolic entropy sign(x) beta sinh(max(asinh(|x|/beta) - t, 0)), Boltzmann-Shannon x e^{-t},
Burg x / (1 + t x), Fermi-Dirac x e^{-t} / (x e^{-t} + 1 - x), Euclidean soft-thresholding. The right prox solves
y + s / phi''(y) = x on one side of c (s = +-t); closed forms:

    Euclidean            c + soft(x - c, t)
    hyperbolic entropy   c + sign(z) max(0, (z^2 - t^2 beta^2) / (|z| + t sqrt(z^2 + (1 - t^2) beta^2))),  z = x - c
                         (the rationalised form of (|z| - t sqrt(z^2 + (1-t^2) beta^2)) / (1 - t^2): valid for every t)
    Boltzmann-Shannon    x / (1 + t)                          (c <= 0: the term is linear on x > 0)
    Burg                 2 x / (1 + sqrt(1 + 4 t x))          (c <= 0)
    Fermi-Dirac [a, b]   the root in (a, b) of a quadratic    (c outside (a, b): the term is linear)

and every other separable case falls back to a grid search (in grad phi, between x and c) refined by a safeguarded
Newton iteration (Newton steps kept inside a shrinking bracket, bisection otherwise) on that 1-D equation: D_phi(x, .)
need not be convex (Burg, hyperbolic entropy), so the right prox can have several local minima and the best one wins.
Indicators of a box (any separable phi) and of the simplex
(Boltzmann-Shannon) project by clipping and by normalising, on both sides. Each operator checks its domain of
validity: arguments known at trace time raise a ValueError, traced inputs outside it give NaN (which the kernels count
as a divergence).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplax.kernels.bregman.legendre import (
    BlockLegendre,
    BoltzmannShannon,
    Burg,
    Euclidean,
    FermiDirac,
    HyperbolicEntropy,
    _concrete,
)

__all__ = [
    "Envelope",
    "bregman_moreau_envelope",
    "envelope_grad_left",
    "envelope_grad_right",
    "prox_box",
    "prox_l1_left",
    "prox_l1_right",
    "prox_linear_left",
    "prox_linear_right",
    "prox_simplex",
    "soft_threshold",
]

NEWTON_ITERATIONS = 40
GRID_SIZE = 64


def soft_threshold(d, threshold):
    """sign(d) max(|d| - threshold, 0): the Euclidean prox of threshold * |.|."""
    return jnp.sign(d) * jnp.maximum(jnp.abs(d) - threshold, 0.0)


# -- L1 terms ------------------------------------------------------------------------------------------------------
def prox_l1_left(legendre, x, threshold, center=None):
    """Left Bregman prox of ``threshold * |y - center|`` (elementwise threshold >= 0) under a separable ``legendre``.

    ``center`` defaults to the map's own centre (0, or a hyperbolic entropy's ``center``).
    """
    _require_separable(legendre, "prox_l1_left")
    threshold = _check_threshold(threshold, x)
    c = _default_center(legendre, center, x)
    lower, upper = legendre.lower, legendre.upper
    u = legendre.grad(x)
    c_inside = (c > lower) & (c < upper)
    c_safe = jnp.where(c_inside, c, _interior_point(legendre, x))
    gc = legendre.grad(c_safe)
    d = u - gc
    y_inside = jnp.where(jnp.abs(d) <= threshold, c_safe, legendre.grad_conj(gc + soft_threshold(d, threshold)))
    y_below = legendre.grad_conj(u - threshold)  # c <= lower: the term is +t y on the domain
    y_above = legendre.grad_conj(u + threshold)  # c >= upper: the term is -t y on the domain
    y = jnp.where(c_inside, y_inside, jnp.where(c <= lower, y_below, y_above))
    return _finish(legendre, x, threshold, y)


def prox_l1_right(legendre, x, threshold, center=None):
    """Right Bregman prox of ``threshold * |y - center|`` under a separable ``legendre`` (closed form or Newton)."""
    _require_separable(legendre, "prox_l1_right")
    threshold = _check_threshold(threshold, x)
    if isinstance(legendre, Euclidean):
        c = _default_center(legendre, center, x)
        return _finish(legendre, x, threshold, c + soft_threshold(x - c, threshold))
    if isinstance(legendre, HyperbolicEntropy):
        if center is None or _statically_equal(center, legendre.center):
            c = legendre.center
            z = x - c
            a = jnp.abs(z)
            tb = threshold * legendre.beta
            root = jnp.sqrt(jnp.maximum(a * a + (1.0 - threshold**2) * legendre.beta**2, 0.0))
            branch = jnp.where(a > tb, (a * a - tb * tb) / (a + threshold * root), 0.0)
            return _finish(legendre, x, threshold, c + jnp.sign(z) * jnp.maximum(branch, 0.0))
        return _finish(legendre, x, threshold, _right_l1_newton(legendre, x, threshold, _as(center, x)))
    c = _default_center(legendre, center, x)
    if isinstance(legendre, (BoltzmannShannon, Burg, FermiDirac)):
        below = c <= legendre.lower
        above = c >= legendre.upper
        linear_slope = jnp.where(above, -threshold, threshold)
        closed = _right_linear_closed_form(legendre, x, linear_slope)
        linear = below | above
        static_linear = _concrete(linear)
        if static_linear is not None and np.all(static_linear):
            return _finish(legendre, x, threshold, closed)
        newton = _right_l1_newton(legendre, x, threshold, c)
        return _finish(legendre, x, threshold, jnp.where(linear, closed, newton))
    return _finish(legendre, x, threshold, _right_l1_newton(legendre, x, threshold, c))


def _right_l1_newton(legendre, x, threshold, c, grid_size=GRID_SIZE):
    """Right L1 prox by a grid search in the dual coordinate, then a safeguarded Newton iteration.

    The minimiser lies between x and c (clipped into the domain). D_phi(x, .) need not be convex (Burg, hyperbolic
    entropy far from x), so the problem can have several local minima (pitfall 4): the objective
    t |y - c| + D_phi(x, y) is evaluated on ``grid_size`` points equally spaced in grad phi between x and c, the best
    grid cell is refined by a bracketed Newton iteration on the stationarity condition y + s / phi''(y) = x
    (s = t sign(x - c)), and the best of {refined point, best grid point, c} is returned.
    """
    lower, upper = legendre.lower, legendre.upper
    c = jnp.broadcast_to(c, jnp.shape(x))
    threshold = jnp.broadcast_to(threshold, jnp.shape(x))
    c_inside = (c > lower) & (c < upper)
    c_safe = jnp.where(c_inside, c, _interior_point(legendre, x))
    above = x > c
    s = jnp.where(above, threshold, -threshold)

    def objective(y):
        return threshold * jnp.abs(y - c) + legendre.divergence_elementwise(x, y)

    def residual(y):
        return y - x + s * legendre.inv_hess_diag(y)

    # Grid between x and c in the dual coordinate (c outside the domain: the problem is convex, bracket to the bound).
    fractions = jnp.linspace(0.0, 1.0, grid_size + 1, dtype=x.dtype).reshape((-1,) + (1,) * jnp.ndim(x))
    u_x, u_c = legendre.grad(x), legendre.grad(c_safe)
    grid = legendre.grad_conj(u_x + fractions * (u_c - u_x))
    grid = jnp.where(c_inside, grid, x)  # unused when c is outside
    values = jnp.where(jnp.isfinite(objective(grid)), objective(grid), jnp.inf)
    best = jnp.argmin(values, axis=0)
    take = lambda k: jnp.take_along_axis(grid, jnp.clip(k, 0, grid_size)[None], axis=0)[0]  # noqa: E731
    a, b = take(best - 1), take(best + 1)
    lo_grid, hi_grid = jnp.minimum(a, b), jnp.maximum(a, b)
    # Bracket to the domain bound when c lies outside the domain (linear term on the domain: convex problem).
    lo = jnp.where(c_inside, lo_grid, jnp.where(above, jnp.maximum(c, lower), x))
    hi = jnp.where(c_inside, hi_grid, jnp.where(above, x, jnp.minimum(c, upper)))
    refined = _bracketed_root(residual, lo, hi)
    candidates = jnp.stack([refined, take(best), c_safe])
    scores = jnp.where(jnp.stack([jnp.ones_like(c_inside), c_inside, c_inside]), objective(candidates), jnp.inf)
    scores = jnp.where(jnp.isfinite(scores), scores, jnp.inf)
    pick = jnp.argmin(scores, axis=0)
    y = jnp.take_along_axis(candidates, pick[None], axis=0)[0]
    return jnp.where(x == c, x, y)


def _bracketed_root(residual, lo, hi, num_iterations=NEWTON_ITERATIONS):
    """Elementwise root of an increasing-through-zero ``residual`` with residual(lo) <= 0 <= residual(hi).

    Newton steps that stay strictly inside the current bracket are taken, bisection otherwise; the bracket shrinks
    every iteration, so the iteration cannot leave the domain.
    """

    def body(_, carry):
        y, lo, hi = carry
        value, slope = jax.jvp(residual, (y,), (jnp.ones_like(y),))
        lo = jnp.where(value < 0, y, lo)
        hi = jnp.where(value > 0, y, hi)
        newton = y - value / slope
        inside = jnp.isfinite(newton) & (newton > lo) & (newton < hi)
        y = jnp.where(value == 0, y, jnp.where(inside, newton, 0.5 * (lo + hi)))
        return y, lo, hi

    y0 = 0.5 * (lo + hi)
    y, _, _ = jax.lax.fori_loop(0, num_iterations, body, (y0, lo, hi))
    return y


# -- linear terms --------------------------------------------------------------------------------------------------
def prox_linear_left(legendre, x, slope):
    """Left Bregman prox of the linear term <slope, y> (slope = lambda * a): grad phi*(grad phi(x) - slope).

    Exact for every Legendre function, the entropic simplex map included. NaN where no minimiser exists (the shifted
    dual point leaves the dual domain, e.g. Burg with grad phi(x) - slope >= 0).
    """
    dual = legendre.grad(x) - slope
    y = legendre.grad_conj(dual)
    if getattr(legendre, "separable", False):
        ok = legendre.in_domain_elementwise(y) & legendre.in_domain_elementwise(x)
        return jnp.where(ok, y, jnp.nan)
    return jnp.where(legendre.in_domain(y) & legendre.dual_in_domain(dual), y, jnp.nan)


def prox_linear_right(legendre, x, slope):
    """Right Bregman prox of the linear term <slope, y> under a separable ``legendre``.

    Closed forms: Euclidean x - s; Boltzmann-Shannon x / (1 + s) (needs s > -1); Burg 2x / (1 + sqrt(1 + 4 s x))
    (needs s >= 0); Fermi-Dirac a quadratic root; hyperbolic entropy (needs |s| < 1). Where no minimiser exists the
    result is NaN, and a ValueError is raised when ``slope`` is known at trace time.
    """
    if not getattr(legendre, "separable", False):
        raise ValueError(
            f"prox_linear_right: {legendre!r} is not separable and has no closed form here; use "
            "prox_linear_left (side='left')"
        )
    slope = _as(slope, x)
    return jnp.where(
        legendre.in_domain_elementwise(x), _right_linear_closed_form(legendre, x, slope, check=True), jnp.nan
    )


def _right_linear_closed_form(legendre, x, s, check=False):
    """Solve y + s / phi''(y) = x (the stationarity condition of <s, y> + D_phi(x, y)) in closed form."""

    def require(ok, message):
        if check:
            _require(ok, f"prox_linear_right under {legendre.name}: {message}")
        return ok

    if isinstance(legendre, Euclidean):
        return x - s
    if isinstance(legendre, BoltzmannShannon):
        ok = require(s > -1.0, "needs slope > -1 (otherwise the objective is unbounded below)")
        return jnp.where(ok, x / (1.0 + s), jnp.nan)
    if isinstance(legendre, Burg):
        ok = require(s >= 0.0, "needs slope >= 0 (otherwise the objective is unbounded below)")
        return jnp.where(ok, 2.0 * x / (1.0 + jnp.sqrt(1.0 + 4.0 * jnp.maximum(s, 0.0) * x)), jnp.nan)
    if isinstance(legendre, FermiDirac):
        # u = (y - a)/w solves s u^2 - (1 + s) u + ux = 0; reflect u -> 1 - u for s < 0 to keep one stable root.
        w = legendre.width
        a_s = jnp.abs(s)

        def small_root(ux):
            return 2.0 * ux / ((1.0 + a_s) + jnp.sqrt(jnp.maximum((1.0 + a_s) ** 2 - 4.0 * a_s * ux, 0.0)))

        from_lower = legendre.lower + w * small_root((x - legendre.lower) / w)
        from_upper = legendre.upper - w * small_root((legendre.upper - x) / w)
        return jnp.where(s >= 0, from_lower, from_upper)
    if isinstance(legendre, HyperbolicEntropy):
        ok = require(jnp.abs(s) < 1.0, "needs |slope| < 1 (otherwise the objective is unbounded below)")
        beta = legendre.beta
        z = x - legendre.center
        root = jnp.sqrt(z * z + (1.0 - s * s) * beta**2)
        # (z - s R) / (1 - s^2), rationalised when z and s share a sign to avoid cancellation.
        same_sign = z * s > 0
        direct = (z - s * root) / jnp.where(ok, 1.0 - s * s, 1.0)
        rationalised = (z * z - s * s * beta**2) / (z + s * root)
        y = legendre.center + jnp.where(same_sign, rationalised, direct)
        return jnp.where(ok, y, jnp.nan)
    # Generic separable map: bracket between the domain bound on the side of the step and x.
    lower, upper = legendre.lower, legendre.upper
    if check:
        _require((s <= 0) | np.isfinite(lower), f"slope > 0 needs a finite lower bound, got {lower}")
        _require((s >= 0) | np.isfinite(upper), f"slope < 0 needs a finite upper bound, got {upper}")
    lo = jnp.where(s > 0, lower, x)
    hi = jnp.where(s > 0, x, upper)
    root = _bracketed_root(lambda y: y - x + s * legendre.inv_hess_diag(y), lo, hi)
    return jnp.where(s == 0, x, root)


# -- indicators ----------------------------------------------------------------------------------------------------
def prox_box(x, lower, upper):
    """Left and right Bregman prox of the indicator of the box [lower, upper] under any separable map: clipping.

    (D_phi(y, x) and D_phi(x, y) are both unimodal in each y_i with minimum at x_i.)
    """
    _require(_concrete_or(lower, -np.inf) <= _concrete_or(upper, np.inf), "prox_box: needs lower <= upper")
    return jnp.clip(x, lower, upper)


def prox_simplex(x):
    """Left and right Boltzmann-Shannon prox of the indicator of the probability simplex: x / sum(x) (x > 0)."""
    ok = jnp.all(x > 0) & jnp.all(jnp.isfinite(x))
    return jnp.where(ok, x / jnp.sum(x), jnp.nan)


# -- envelopes -----------------------------------------------------------------------------------------------------
def envelope_grad_left(legendre, x, prox_x, smoothing):
    """The left envelope's gradient, grad env_L(x) = phi''(x) (x - P_L(x)) / lambda."""
    return legendre.hess_matvec(x, x - prox_x) / smoothing


def envelope_grad_right(legendre, x, prox_x, smoothing):
    """The right envelope's gradient, grad env_R(x) = (grad phi(x) - grad phi(P_R(x))) / lambda."""
    return (legendre.grad(x) - legendre.grad(prox_x)) / smoothing


class Envelope(NamedTuple):
    """The Bregman-Moreau envelope at a point: its value, its gradient and the prox point it comes from."""

    value: jax.Array
    grad: jax.Array
    prox: jax.Array


def bregman_moreau_envelope(
    legendre, l1_weight=None, l1_center=None, smoothing: float = 0.1, side: str = "left"
) -> Callable[[jax.Array], Envelope]:
    """The envelope x -> Envelope(env(x), grad env(x), P(x)) of g(x) = sum_i w_i |x_i - c_i| under ``legendre``.

    ``legendre`` is one map (acting on the whole vector) or a ``BlockLegendre``. Blocks whose weights are all zero
    (known at build time) cost nothing; ``entropic_simplex`` blocks must carry no L1 term. ``l1_weight=None`` means
    g = 0: the envelope is identically zero.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    _require(_concrete_or(smoothing, 1.0) > 0, f"smoothing must be > 0, got {smoothing!r}")
    if isinstance(legendre, BlockLegendre):
        pieces = [(slice(s, e), leg) for s, e, leg in legendre.blocks]
        dim = legendre.dim
    else:
        pieces = [(slice(None), legendre)]
        dim = None
    if l1_weight is not None:
        if dim is not None and np.ndim(l1_weight) == 1 and np.shape(l1_weight)[0] != dim:
            raise ValueError(
                f"l1_weight has length {np.shape(l1_weight)[0]} but the Legendre blocks cover {dim} coordinates"
            )
        weight_np = _concrete(l1_weight)
        if weight_np is not None and np.any(weight_np < 0):
            raise ValueError("l1_weight must be >= 0 (a negative weight makes g non-convex)")
    if l1_center is None:
        l1_center = 0.0

    plan = []  # (slice, legendre, weight, center, active)
    for sl, leg in pieces:
        w = None if l1_weight is None else _slice(l1_weight, sl)
        c = _slice(l1_center, sl)
        w_np = None if w is None else _concrete(w)
        active = not (w is None or (w_np is not None and np.all(w_np == 0)))
        if not leg.separable and w_np is None and w is not None:
            raise ValueError(
                f"block {sl.start}:{sl.stop} ({leg.name}): l1_weight must be known when the envelope is "
                "built (not a traced value) so that simplex blocks can be checked to carry no L1 term"
            )
        if not leg.separable and active:
            raise ValueError(
                f"block {sl.start}:{sl.stop} ({leg.name}) carries an L1 term; the entropic simplex map "
                "has no L1 prox here: give simplex coordinates weight 0"
            )
        if isinstance(leg, HyperbolicEntropy) and _statically_equal(c, leg.center):
            c = None  # centred: closed form
        plan.append((sl, leg, w, c, active))

    prox_fn = prox_l1_left if side == "left" else prox_l1_right

    def envelope(x):
        grads, proxes = [], []
        total = jnp.zeros((), dtype=x.dtype)
        for sl, leg, w, c, active in plan:
            xb = x[..., sl]
            if not active:
                grads.append(jnp.zeros_like(xb))
                proxes.append(xb)
                continue
            wb = jnp.asarray(w, dtype=x.dtype)
            threshold = smoothing * wb
            center = None if c is None else jnp.asarray(c, dtype=x.dtype)
            pb = prox_fn(leg, xb, threshold, center)
            cb = leg.center if center is None else center
            if side == "left":
                gb = envelope_grad_left(leg, xb, pb, smoothing)
                div = leg.divergence(pb, xb)
            else:
                gb = envelope_grad_right(leg, xb, pb, smoothing)
                div = leg.divergence(xb, pb)
            total = total + jnp.sum(wb * jnp.abs(pb - cb)) + div / smoothing
            grads.append(gb)
            proxes.append(pb)
        join = (lambda parts: parts[0]) if len(plan) == 1 else (lambda parts: jnp.concatenate(parts, axis=-1))
        return Envelope(total.astype(x.dtype), join(grads).astype(x.dtype), join(proxes).astype(x.dtype))

    return envelope


# -- helpers -------------------------------------------------------------------------------------------------------
def _finish(legendre, x, threshold, y):
    """Exact identity where the threshold is zero; NaN where x is outside the domain."""
    y = jnp.where(threshold == 0, x, y)
    return jnp.where(legendre.in_domain_elementwise(x), y, jnp.nan)


def _require_separable(legendre, what):
    if not getattr(legendre, "separable", False) or isinstance(legendre, BlockLegendre):
        raise ValueError(
            f"{what}: needs one separable Legendre function, got {legendre!r}; for a BlockLegendre use "
            "bregman_moreau_envelope, which applies the prox block by block"
        )


def _check_threshold(threshold, x):
    _require(_concrete_or(threshold, 0.0) >= 0, "the L1 threshold (smoothing * weight) must be >= 0")
    return _as(threshold, x)


def _default_center(legendre, center, x):
    if center is None:
        center = legendre.center if isinstance(legendre, HyperbolicEntropy) else 0.0
    return _as(center, x)


def _interior_point(legendre, x):
    """A point strictly inside the domain (used to keep masked branches finite)."""
    lower, upper = legendre.lower, legendre.upper
    if np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)):
        return jnp.broadcast_to(0.5 * (jnp.asarray(lower) + jnp.asarray(upper)), jnp.shape(x)).astype(x.dtype)
    if np.all(np.isfinite(lower)):
        return jnp.broadcast_to(jnp.asarray(lower, dtype=x.dtype) + 1.0, jnp.shape(x))
    return jnp.zeros_like(x)


def _as(value, x):
    return jnp.asarray(value, dtype=jnp.result_type(x))


def _slice(value, sl):
    if np.ndim(value) == 0:
        return value
    return value[sl]


def _statically_equal(a, b):
    a_np, b_np = _concrete(a), _concrete(b)
    return a_np is not None and b_np is not None and bool(np.all(a_np == b_np))


def _concrete_or(value, default):
    concrete = _concrete(value)
    return np.asarray(default) if concrete is None else concrete


def _require(ok, message):
    """Raise ValueError when ``ok`` is known at trace time and false somewhere; traced values are not checked."""
    concrete = _concrete(ok)
    if concrete is not None and not np.all(concrete):
        raise ValueError(message)
    return ok
