"""D-ADMMS: distributed MCMC sampling by the alternating direction method of multipliers.

Paper: A. E. Tzikas, L. Romao, M. Pilanci, A. Abate, M. J. Kochenderfer, "Distributed Markov Chain Monte Carlo
Sampling based on the Alternating Direction Method of Multipliers", arXiv 2401.15838 (2024).

Agent i holds a private potential f_i (its negative log-likelihood plus a 1/n share of the negative log-prior); the
target is mu*(x) ∝ exp(-sum_i f_i(x)). With x_i^0 ~ N(0, I), p_i^0 = 0, every agent updates at once:

    m_i^k     = (x_i^k + (1/d_i) sum_{j in N_i} x_j^k) / 2,          w_i = sigma_i xi_i,  xi_i ~ N(0, I)
    x_i^{k+1} = argmin_x f_i(x) + <p_i^k, x> + rho d_i ||x - (m_i^k - w_i)||^2        (a noisy proximal step)
    p_i^{k+1} = p_i^k + rho (d_i x_i^{k+1} - sum_{j in N_i} x_j^{k+1})                (the dual step)

One neighbour exchange per iteration: the neighbour sums of x^{k+1} feed both the dual step and the next m_i.
sum_i p_i^k = 0 for every k (recorded in ``info.dual_sum``); sigma = 0 is plain decentralised ADMM (-> the MAP).
The noise scale sigma_i and the graph are in `samplax.kernels.admm.topology`; preconditioning (running the same
recursion on f_i(shift + L u)) in `samplax.kernels.admm.precondition`.

The local proximal step is solved in closed form when f_i is quadratic (f_i(x) = x^T A_i x / 2 - b_i^T x gives
x = (A_i + 2 rho d_i I)^{-1} (b_i - p_i + 2 rho d_i (m_i - w_i))), and otherwise by damped Newton steps with
backtracking, warm-started at x_i^k, until the residual ||grad g(x)|| / (2 rho d_i) of the proximal objective g
(a bound on the distance to its minimiser, g being (2 rho d_i)-strongly convex when f_i is convex) is below a
tolerance. A solve that misses it, or a non-finite point, is a divergence: that agent keeps its last iterate.

Usage (one device, 8 agents on a cycle, a quadratic f_i per agent)::

    topology = make_topology("cycle", 8)
    layout = make_layout(8, num_shards=1)
    agents = make_agent_block(topology, layout, rho=0.3, noise="calibrated", data=QuadraticPotential(A, b))
    sampler = admm(agents, make_exchange(topology, layout), rho=0.3, solver="closed_form")
    state = sampler.init(initial_positions(key, agents, num_replicas=1000, dim=2))
    state, info = jax.jit(sampler.step)(key, state)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplax.kernels.admm.topology import AgentBlock, Exchange, NetworkInfo, network_info

__all__ = [
    "QuadraticPotential",
    "quadratic_prox",
    "newton_prox",
    "default_tolerance",
    "ADMMState",
    "ADMMInfo",
    "DistributedSampler",
    "initial_positions",
    "init",
    "build_kernel",
    "admm",
]


class QuadraticPotential(NamedTuple):
    """f_i(x) = x^T precision x / 2 - linear^T x (+ a constant): a Gaussian-linear agent."""

    precision: Any
    linear: Any


def default_tolerance(dtype) -> float:
    """Local-solve tolerance on ||grad g|| / weight: 1e-3 in float32, 1e-6 in float64.

    In preconditioned coordinates both are a small fraction of a posterior standard deviation.
    """
    return 1e-3 if jnp.finfo(dtype).bits <= 32 else 1e-6


# ---------------------------------------------------------------------------------------------------------------------
# the local proximal step: argmin_x f_i(x) + <p, x> + (weight / 2) ||x - anchor||^2, for all replicas of one agent.
# Each solver returns (x, residual) with residual = ||grad g(x)|| / weight per replica.
def quadratic_prox():
    """The closed-form proximal step x = (A + weight I)^{-1} (b - p + weight anchor) of a quadratic agent.

    One small inverse per agent is applied to every replica as a matrix product (A + weight I is well conditioned:
    its eigenvalues are at least weight > 0).
    """

    def prox(data: QuadraticPotential, dual, anchor, weight, warm_start):
        del warm_start
        dim = anchor.shape[-1]
        matrix = data.precision.astype(anchor.dtype) + weight * jnp.eye(dim, dtype=anchor.dtype)
        rhs = data.linear.astype(anchor.dtype)[None, :] - dual + weight * anchor
        x = rhs @ jnp.linalg.inv(matrix).T
        return x, jnp.linalg.norm(x @ matrix.T - rhs, axis=-1) / weight

    return prox


def newton_prox(
    local_potential: Callable, max_steps: int = 20, tolerance: float | None = None, num_backtracks: int = 8
):
    """The proximal step by damped Newton, to a tolerance.

    Damped Newton on the strongly convex proximal objective g(x) = f_i(x) + <p, x> + weight ||x - anchor||^2 / 2,
    warm-started at the agent's last iterate, until ||grad g|| / weight <= ``tolerance`` (default:
    `default_tolerance` of the positions' dtype) or ``max_steps`` steps. Each step is the Newton direction (the scaled
    gradient when the Hessian is not positive definite) with Armijo backtracking over ``num_backtracks`` halvings.

    ``local_potential(x, data)`` is f_i at the flat vector ``x`` with the agent's ``data``.
    """
    if not isinstance(max_steps, (int, np.integer)) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"newton_steps must be a positive integer, got {max_steps!r}")
    if tolerance is not None and not tolerance > 0:
        raise ValueError(f"prox_tolerance must be positive, got {tolerance!r}")

    def prox(data, dual, anchor, weight, warm_start):
        tol = default_tolerance(anchor.dtype) if tolerance is None else tolerance

        def objective(x, p, a):
            return local_potential(x, data) + jnp.dot(p, x) + 0.5 * weight * jnp.sum((x - a) ** 2)

        value_and_grad = jax.value_and_grad(objective)
        hessian = jax.hessian(local_potential)
        steps = 0.5 ** jnp.arange(num_backtracks)

        def one_replica(x0, p, a):
            def newton_step(carry):
                x, value, grad, count = carry
                matrix = hessian(x, data) + weight * jnp.eye(x.shape[0], dtype=x.dtype)
                factor = jnp.linalg.cholesky(matrix)  # NaN when the Hessian is not positive definite
                half = jax.lax.linalg.triangular_solve(factor, grad[:, None], left_side=True, lower=True)
                direction = -jax.lax.linalg.triangular_solve(
                    factor, half, left_side=True, lower=True, transpose_a=True
                )[:, 0]
                slope = jnp.dot(grad, direction)
                usable = jnp.all(jnp.isfinite(direction)) & (slope < 0)
                direction = jnp.where(usable, direction, -grad / weight)
                slope = jnp.dot(grad, direction)
                trial = jax.vmap(lambda s: objective(x + s * direction, p, a))(steps)
                # near the minimiser the decrease falls below the objective's rounding: allow that much slack
                slack = 10.0 * jnp.finfo(x.dtype).eps * (1.0 + jnp.abs(value))
                armijo = trial <= value + 1e-4 * steps * slope + slack
                step = jnp.where(jnp.any(armijo), steps[jnp.argmax(armijo)], 0.0)
                x = x + step * direction
                value, grad = value_and_grad(x, p, a)
                return x, value, grad, count + 1

            def unfinished(carry):
                _, _, grad, count = carry
                return (count < max_steps) & ~(jnp.linalg.norm(grad) / weight <= tol)

            value, grad = value_and_grad(x0, p, a)
            x, _, grad, _ = jax.lax.while_loop(unfinished, newton_step, (x0, value, grad, 0))
            return x, jnp.linalg.norm(grad) / weight

        return jax.vmap(one_replica)(warm_start, dual, anchor)

    return prox


# ---------------------------------------------------------------------------------------------------------------------
class ADMMState(NamedTuple):
    """The D-ADMMS state of one device's agents.

    position x_i^k and dual p_i^k (slots, replicas, dim); neighbour_sum: sum_{j in N_i} x_j^k, cached from the last
    exchange because both the dual step and the next proximal centre m_i need it.
    """

    position: jax.Array
    dual: jax.Array
    neighbour_sum: jax.Array


ADMMInfo = NetworkInfo


def initial_positions(rng_key, agents: AgentBlock, num_replicas: int, dim: int, dtype=None):
    """x_i^0 ~ N(0, I) for every replica, keyed by the agent's global index (layout independent)."""
    dtype = dtype or jnp.zeros(()).dtype
    keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(jnp.asarray(agents.index))
    draws = jax.vmap(lambda k: jax.random.normal(k, (num_replicas, dim), dtype))(keys)
    return jnp.where(jnp.asarray(agents.active)[:, None, None], draws, 0.0)


def init(position, agents: AgentBlock, exchange: Exchange) -> ADMMState:
    """p^0 = 0 and the neighbour sums of x^0 (one exchange)."""
    position = jnp.where(jnp.asarray(agents.active)[:, None, None], position, 0.0)
    return ADMMState(position, jnp.zeros_like(position), exchange.neighbour_sum(position, agents))


def build_kernel(
    prox: Callable, exchange: Exchange, rho: float, tolerance: float | None = None, shared_noise: bool = False
):
    """``kernel(rng_key, state, agents) -> (state, info)``: one synchronous D-ADMMS iteration of every agent.

    ``prox(data, dual, anchor, weight, warm_start) -> (x, residual)`` solves one agent's proximal problem for all
    its replicas; a residual above ``tolerance`` (default: `default_tolerance`) or a non-finite x is a divergence.
    ``shared_noise``: every agent draws the same xi (from a key common to all, so no communication), as the
    "common" noise scale assumes.
    """

    def kernel(rng_key, state: ADMMState, agents: AgentBlock):
        position, dual, neighbours = state
        active = agents.active[:, None, None]
        degree = agents.degree.astype(position.dtype)[:, None, None]
        index = jnp.zeros_like(agents.index) if shared_noise else agents.index  # shared: one xi for all
        keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(index)
        xi = jax.vmap(lambda k: jax.random.normal(k, position.shape[1:], position.dtype))(keys)
        anchor = 0.5 * (position + neighbours / degree) - agents.noise_scale.astype(position.dtype)[:, None, None] * xi
        weight = 2.0 * rho * agents.degree.astype(position.dtype)
        solved, residual = jax.vmap(prox)(agents.data, dual, anchor, weight, position)
        tol = default_tolerance(position.dtype) if tolerance is None else tolerance
        finite = jnp.all(jnp.isfinite(solved), axis=-1)
        failed = ~finite | ~(residual <= tol)
        new_position = jnp.where(finite[..., None], solved, position)  # a non-finite solve keeps the last iterate
        new_position = jnp.where(active, new_position, 0.0)
        new_neighbours = exchange.neighbour_sum(new_position, agents)
        new_dual = jnp.where(active, dual + rho * (degree * new_position - new_neighbours), 0.0)
        info = network_info(new_position, new_dual, agents, exchange, jnp.where(finite, residual, jnp.inf), failed)
        return ADMMState(new_position, new_dual, new_neighbours), info

    return kernel


class DistributedSampler(NamedTuple):
    """``init(position) -> state`` and ``step(rng_key, state) -> (state, info)`` over one device's agent block."""

    init: Callable
    step: Callable


def admm(
    agents: AgentBlock,
    exchange: Exchange,
    *,
    rho: float,
    solver: str = "newton",
    local_potential: Callable | None = None,
    newton_steps: int = 20,
    tolerance: float | None = None,
    shared_noise: bool = False,
) -> DistributedSampler:
    """D-ADMMS over ``agents`` (a device's block).

    ``solver``: "closed_form" (``agents.data`` is a `QuadraticPotential`) or "newton" (``local_potential(x, data)`` is
    f_i; at most ``newton_steps`` steps per solve). ``tolerance`` bounds the local-solve residual (default:
    `default_tolerance`).
    """
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    if solver == "closed_form":
        # (A_i + 2 rho d_i I)^{-1} does not change between iterations: invert once, outside the step
        weight = 2.0 * rho * jnp.asarray(agents.degree)
        data = agents.data
        dim = data.linear.shape[-1]
        precision = jnp.asarray(data.precision)
        shifted = jax.vmap(lambda a, w: a + w * jnp.eye(dim, dtype=a.dtype))(precision, weight.astype(precision.dtype))
        agents = agents._replace(data=(jnp.linalg.inv(shifted), shifted, jnp.asarray(data.linear)))

        def prox(factored, dual, anchor, weight, warm_start):
            inverse, matrix, linear = (value.astype(anchor.dtype) for value in factored)
            rhs = linear[None, :] - dual + weight * anchor
            x = rhs @ inverse.T
            return x, jnp.linalg.norm(x @ matrix.T - rhs, axis=-1) / weight
    elif solver == "newton":
        if local_potential is None:
            raise ValueError("solver='newton' needs local_potential(x, data), the agent's potential f_i")
        prox = newton_prox(local_potential, newton_steps, tolerance)
    else:
        raise ValueError(f"solver={solver!r} is not known; use 'closed_form' or 'newton'")
    kernel = build_kernel(prox, exchange, rho, tolerance, shared_noise)
    return DistributedSampler(
        lambda position: init(position, agents, exchange), lambda rng_key, state: kernel(rng_key, state, agents)
    )
