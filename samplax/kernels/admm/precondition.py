"""Scale-free D-ADMMS: the Laplace warm-up, the preconditioner, rho from the curvature, the quadratic check.

A Laplace warm-up finds the mode and curvature of the summed potential; the preconditioner is built from it, rho
from that curvature, and a check detects quadratic agents (closed-form local solves).

Warm-up. Damped Newton on F(x) = sum_i f_i(x) from x = 0: at each step every agent evaluates f_i, grad f_i and
hess f_i at the shared point and one psum gives F's (a d x d all-reduce, the only global collective besides the
diagnostics'); the direction uses the absolute eigenvalues of the Jacobi-scaled Hessian (a modified Newton step that
stays a descent direction away from the mode), with Armijo backtracking.

Preconditioning. With H the Hessian of F at the mode x* and L such that L^T H L = I (dense: L = S V |Lambda|^{-1/2}
from the eigendecomposition S H S = V Lambda V^T, S = diag(H)^{-1/2}; diagonal: L = S), the agents run the same
recursion on f_i(x* + L u). A linear change of variables has a constant Jacobian, so the target is unchanged and
the draws x = x* + L u have exactly the law they would have had (up to the method's own bias, which now no longer
depends on the problem's units); only speed and that bias change. In u the summed curvature is about I.

rho from the curvature. The degree-weighted network average takes a proximal Langevin step of size
h = 1 / (2 rho D) on F (D = sum_i d_i). With unit curvature its stationary variance for a Gaussian target is
1 / (1 + h / 2) of the posterior's (the consensus error adds a little: `samplax.kernels.admm.gaussian.variance_ratio`
gives the exact figure) and its autocorrelation time is about 1 / h iterations. `default_rho` takes h = 0.1:
rho = 5 / D, a variance deficit of about 5 % for autocorrelation times of 10-20 iterations. `choose_rho` refines it
on the Gaussian with the agents' own curvature at the mode (agents differ: their data differ): the exact linear
analysis of each rho in a grid around 5 / D gives the variance ratio and the autocorrelation time, and the choice is
the fastest rho whose variance deficit is at most 10 %.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplax.kernels.admm.topology import AgentBlock, Exchange, Topology

__all__ = [
    "PRECONDITIONERS",
    "LaplaceInfo",
    "laplace_warmup",
    "Preconditioner",
    "make_preconditioner",
    "default_rho",
    "choose_rho",
    "quadratic_check",
    "quadratic_tolerance",
]

PRECONDITIONERS = ("auto", "dense", "diagonal", "none")
DENSE_MAX_DIM = 500  # "auto" is dense up to this dimension (a d x d all-reduce per warm-up step), diagonal above
DEFAULT_LANGEVIN_STEP = 0.1


class LaplaceInfo(NamedTuple):
    """The warm-up's result.

    ``mode`` (d,), ``hessian`` of F there (d, d), its ``gradient`` (d,), the Newton decrement
    sqrt(g^T |H|^{-1} g) (about the distance to the mode in posterior sds; near 0 when converged),
    ``agent_hessians`` (slots, d, d) of each f_i at the mode.
    """

    mode: Any
    hessian: Any
    gradient: Any
    newton_decrement: Any
    agent_hessians: Any


def _modified_newton_direction(grad, hessian):
    """The modified Newton direction -|H|^{-1} g, |H| the absolute-eigenvalue version of H.

    Computed in Jacobi-scaled coordinates (H's scales may span many orders of magnitude), tiny eigenvalues floored
    at 1e-6 of the largest.
    """
    diagonal = jnp.abs(jnp.diag(hessian))
    scale = 1.0 / jnp.sqrt(jnp.where(diagonal > 0, diagonal, 1.0))
    scaled = scale[:, None] * hessian * scale[None, :]
    values, vectors = jnp.linalg.eigh(0.5 * (scaled + scaled.T))
    values = jnp.abs(values)
    values = jnp.maximum(values, 1e-6 * jnp.max(values))
    return -scale * (vectors @ ((vectors.T @ (scale * grad)) / values))


def laplace_warmup(
    local_potential: Callable,
    agents: AgentBlock,
    exchange: Exchange,
    dim: int,
    *,
    num_steps: int = 30,
    num_backtracks: int = 12,
    dtype=None,
) -> LaplaceInfo:
    """Damped Newton on F = sum_i f_i over the network from x = 0.

    Call it inside ``shard_map`` like a sampler's step; the result is the same on every device.
    ``local_potential(x, data)`` is f_i.
    """
    dtype = dtype or jnp.zeros(()).dtype
    steps = 0.5 ** jnp.arange(num_backtracks, dtype=dtype)

    def summed(x):
        x = exchange.local(x)  # per-device, so that each device's gradient is its own agents' only

        def one(data):
            value, grad = jax.value_and_grad(local_potential)(x, data)
            return value, grad, jax.hessian(local_potential)(x, data)

        value, grad, hessian = jax.vmap(one)(agents.data)
        return (
            exchange.network_sum(value, agents),
            exchange.network_sum(grad, agents),
            exchange.network_sum(hessian, agents),
            hessian,
        )

    def values_at(points):
        points = exchange.local(points)
        per_slot = jax.vmap(lambda data: jax.vmap(lambda x: local_potential(x, data))(points))(agents.data)
        return exchange.network_sum(per_slot, agents)

    def newton(x, _):
        value, grad, hessian, _ = summed(x)
        direction = _modified_newton_direction(grad, hessian)
        direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, 0.0)
        slope = jnp.dot(grad, direction)
        trial = values_at(x[None, :] + steps[:, None] * direction[None, :])
        slack = 10.0 * jnp.finfo(dtype).eps * (1.0 + jnp.abs(value))  # the rounding of F near the mode
        accept = jnp.isfinite(trial) & (trial <= value + 1e-4 * steps * slope + slack)
        step = jnp.where(jnp.any(accept), steps[jnp.argmax(accept)], 0.0)
        return x + step * direction, None

    mode, _ = jax.lax.scan(newton, jnp.zeros(dim, dtype), None, length=num_steps)
    _, grad, hessian, agent_hessians = summed(mode)
    decrement = jnp.sqrt(jnp.maximum(-jnp.dot(grad, _modified_newton_direction(grad, hessian)), 0.0))
    return LaplaceInfo(mode, hessian, grad, decrement, agent_hessians)


class Preconditioner(NamedTuple):
    """The change of coordinates x = shift + scale @ u; the agents sample u.

    ``to_position`` maps draws back (numpy or JAX arrays, any leading axes); ``potential(f)`` is f_i in u.
    ``summary`` records how it was built (JSON-able).
    """

    shift: Any
    scale: Any
    summary: dict

    def to_position(self, u):
        return self.shift + u @ self.scale.T

    def potential(self, local_potential: Callable) -> Callable:
        shift, scale = self.shift, self.scale

        def in_u(u, data):
            return local_potential(shift.astype(u.dtype) + scale.astype(u.dtype) @ u, data)

        return in_u


def make_preconditioner(mode, hessian, kind: str = "auto") -> Preconditioner:
    """The `Preconditioner` of the Laplace warm-up's ``mode`` and ``hessian``.

    Both are host arrays; the factorisation runs in float64 on the host, once. ``kind``: "dense", "diagonal", "none"
    (the identity: the problem's own units) or "auto" (dense up to dimension 500). Negative or tiny curvature (a flat
    direction, a saddle) is floored at 1e-8 of the largest, so L is always defined; the summary counts those
    directions.
    """
    if kind not in PRECONDITIONERS:
        raise ValueError(f"precondition={kind!r} is not known; use one of {list(PRECONDITIONERS)}")
    mode = np.asarray(mode, np.float64)
    hessian = np.asarray(hessian, np.float64)
    dim = mode.shape[0]
    if kind == "auto":
        kind = "dense" if dim <= DENSE_MAX_DIM else "diagonal"
    finite = np.all(np.isfinite(hessian)) and np.all(np.isfinite(mode))
    if kind == "none" or not finite:
        summary = {"kind": "none" if finite else "none (the warm-up's curvature was not finite)"}
        return Preconditioner(np.zeros(dim), np.eye(dim), summary)
    diagonal = np.abs(np.diag(hessian))
    floor = 1e-8 * max(float(diagonal.max()), 1e-300)
    scale = 1.0 / np.sqrt(np.maximum(diagonal, floor))
    scaled = scale[:, None] * hessian * scale[None, :]
    values, vectors = np.linalg.eigh(0.5 * (scaled + scaled.T))
    small = values < 1e-8 * np.max(np.abs(values))
    clipped = np.where(small, 1e-8 * np.max(np.abs(values)), np.abs(values))
    if kind == "dense":
        matrix = scale[:, None] * vectors / np.sqrt(clipped)[None, :]
    else:
        matrix = np.diag(scale)
    covariance = matrix @ matrix.T if kind == "dense" else np.linalg.pinv(hessian)
    summary = {
        "kind": kind,
        "condition_number": float(np.max(clipped) / np.min(clipped) * (diagonal.max() / max(diagonal.min(), floor))),
        "scaled_condition_number": float(np.max(clipped) / np.min(clipped)),
        "non_positive_directions": int(np.sum(small)),
        "laplace_sd": np.sqrt(np.maximum(np.diag(covariance), 0.0)),
    }
    if kind == "diagonal":
        summary["condition_number"] = float(np.max(clipped) / np.min(clipped))  # that of the Jacobi-scaled H
    return Preconditioner(mode, matrix, summary)


def default_rho(topology: Topology, langevin_step: float = DEFAULT_LANGEVIN_STEP) -> float:
    """The default penalty rho = 1 / (2 D h).

    h is the network average's proximal Langevin step in preconditioned (unit-curvature) coordinates; h = 0.1 gives
    rho = 5 / D.
    """
    return float(1.0 / (2.0 * topology.degrees.sum() * langevin_step))


def quadratic_tolerance(dtype) -> float:
    """The largest relative error of the quadratic model for which f_i counts as quadratic."""
    return 1e-3 if jnp.finfo(dtype).bits <= 32 else 1e-7


def quadratic_check(local_potential: Callable, dim: int, dtype=None) -> Callable:
    """The check ``check(data) -> (A, b, error)`` that detects a quadratic f_i.

    A is f_i's Hessian and b = -grad f_i at 0; error is the largest relative error of the quadratic model
    x^T A x / 2 - b^T x (+ f_i(0)) against f_i and its Hessian at three random points of radius 0.5, 1 and 2 (the
    scale of preconditioned coordinates). f_i is quadratic when the error is below `quadratic_tolerance`; vmap it over
    the agents.
    """
    dtype = dtype or jnp.zeros(()).dtype
    points = jax.random.normal(jax.random.key(7), (3, dim), dtype) * jnp.asarray([0.5, 1.0, 2.0], dtype)[:, None]

    def check(data):
        zero = jnp.zeros(dim, dtype)
        value0, grad0 = jax.value_and_grad(local_potential)(zero, data)
        hess0 = jax.hessian(local_potential)(zero, data)

        def at(z):
            predicted = value0 + grad0 @ z + 0.5 * z @ hess0 @ z
            value = local_potential(z, data)
            hess = jax.hessian(local_potential)(z, data)
            scale = 1.0 + jnp.abs(value) + jnp.abs(predicted)
            return jnp.maximum(
                jnp.abs(value - predicted) / scale, jnp.max(jnp.abs(hess - hess0)) / (1.0 + jnp.max(jnp.abs(hess0)))
            )

        return hess0, -grad0, jnp.max(jax.vmap(at)(points))

    return check


MIN_VARIANCE_RATIO = 0.9


def choose_rho(
    topology: Topology,
    agent_precisions,
    sigma_fn: Callable,
    *,
    shared_noise: bool = False,
    min_variance_ratio: float = MIN_VARIANCE_RATIO,
) -> tuple[float, dict]:
    """The penalty rho chosen from the curvature.

    On the Gaussian with the agents' Hessians at the mode ``agent_precisions`` (n, d, d, in preconditioned
    coordinates), the exact linear analysis (`gaussian.linear_gaussian_stationary`) gives, for each rho of the grid
    (5 / D) * 2^k, k = -3 .. 2, the network average's variance ratio and the recursion's spectral radius r; the choice
    is the rho with the shortest autocorrelation time (1 + r) / (1 - r) whose smallest variance ratio is at least
    ``min_variance_ratio``. ``sigma_fn(rho)`` gives the noise scales (``shared_noise``: one draw for all agents).
    Falls back to `default_rho` when the analysis is too large (2 n d > 1200) or nothing qualifies.

    Returns:
        (rho, {"grid": [...], "variance_ratio_min": [...], "autocorrelation_time": [...]}).
    """
    from samplax.kernels.admm.gaussian import MAX_LYAPUNOV_SIZE, linear_gaussian_stationary

    base = default_rho(topology)
    precisions = np.asarray(agent_precisions, np.float64)
    n, dim = precisions.shape[0], precisions.shape[-1]
    record = {"grid": [], "variance_ratio_min": [], "autocorrelation_time": []}
    if 2 * n * dim > MAX_LYAPUNOV_SIZE or not np.all(np.isfinite(precisions)):
        return base, record
    try:
        target = np.diag(np.linalg.inv(precisions.sum(axis=0)))
    except np.linalg.LinAlgError:
        return base, record
    best = None
    for k in range(-3, 3):
        rho = base * 2.0**k
        try:
            exact = linear_gaussian_stationary(
                topology, rho, sigma_fn(rho), precisions, np.zeros((n, dim)), shared_noise
            )
        except (ValueError, np.linalg.LinAlgError):
            continue
        ratio = float(np.min(np.diag(exact["average_covariance"]) / target))
        radius = exact["spectral_radius"]
        time = (1.0 + radius) / (1.0 - radius)
        record["grid"].append(rho)
        record["variance_ratio_min"].append(ratio)
        record["autocorrelation_time"].append(time)
        if ratio >= min_variance_ratio and (best is None or time < best[1]):
            best = (rho, time)
    return (best[0] if best is not None else base), record
