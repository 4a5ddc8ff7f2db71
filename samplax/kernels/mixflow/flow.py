"""The measure-preserving map of a MixFlow, its reference, the exact density and the orbit ELBO estimators.

The maths is in the `samplax.kernels.mixflow` module docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplax.kernels.mixflow.momentum import DEFAULT_SHIFT, Momentum, _rotate, momentum_by_name

__all__ = [
    "State",
    "Info",
    "init",
    "build_kernel",
    "build_inverse_kernel",
    "Reference",
    "Flow",
    "reference_log_density",
    "sample_reference",
    "log_density",
    "OrbitSummary",
    "orbit_summary",
    "support_elbo",
    "naive_orbit_elbo",
    "orbit",
    "inversion_error",
]


# ---------------------------------------------------------------------------------------------------------------------
# the map T = R o L and its inverse
class State(NamedTuple):
    """A point s = (x, rho, u) of the augmented space, in flow coordinates.

    ``logdensity`` and ``logdensity_grad`` are log pi(x) and its gradient: the leapfrog's last half kick computes
    them, the next map's first half kick (and the ELBO) reuses them, so one map costs L gradients, not L + 1.
    """

    position: jax.Array
    momentum: jax.Array
    uniform: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class Info(NamedTuple):
    """``log_jacobian``: log J at the map's pre-image (the input of T; the output of T^-1)."""

    log_jacobian: jax.Array


def init(position, momentum, uniform, logdensity_fn: Callable) -> State:
    """The `State` at (x, rho, u): evaluates log pi(x) and its gradient once."""
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return State(position, momentum, jnp.asarray(uniform, position.dtype), logdensity, grad)


def _leapfrog(state: State, logdensity_fn, step_size, num_steps: int, momentum: Momentum) -> State:
    """L leapfrog steps of size ``step_size`` (scalar or per coordinate); a negative size runs the exact inverse."""
    value_and_grad = jax.value_and_grad(logdensity_fn)
    half = 0.5 * step_size
    rho = state.momentum + half * state.logdensity_grad

    def body(index, carry):
        x, rho, _, _ = carry
        x = x + step_size * momentum.kinetic_gradient(rho)
        logdensity, grad = value_and_grad(x)
        kick = jnp.where(index == num_steps - 1, half, step_size)
        return x, rho + kick * grad, logdensity, grad

    x, rho, logdensity, grad = jax.lax.fori_loop(
        0, num_steps, body, (state.position, rho, state.logdensity, state.logdensity_grad)
    )
    return State(x, rho, state.uniform, logdensity, grad)


def _stream(x, u):
    """xi(x, u) = (sin(2x + u) + 1) / 2 and 1 - xi = (1 - sin(2x + u)) / 2, each computed directly."""
    wave = jnp.sin(2.0 * x + u)
    return 0.5 * (1.0 + wave), 0.5 * (1.0 - wave)


def _shift_sequence(u, shift, count: int):
    """Shift u on the circle: u_0 = u, u_{i+1} = (u_i + shift) mod 1 for i < count.

    The shifts are applied one at a time (the inverse undoes them one at a time too); returns (u_0..u_{count-1},
    u_count). Unrolled: d is static and each step is one scalar op.
    """
    if count > _UNROLL_LIMIT:

        def advance(u, _):
            return jnp.mod(u + shift, 1.0), u

        last, sequence = jax.lax.scan(advance, u, None, length=count)
        return sequence, last
    sequence = []
    for _ in range(count):
        sequence.append(u)
        u = jnp.mod(u + shift, 1.0)
    return jnp.stack(sequence), u


_UNROLL_LIMIT = 64


def _refresh(x, rho, u, momentum: Momentum, shift):
    """R, coordinate by coordinate: coordinate i uses u_i, then u_{i+1} = (u_i + s) mod 1 (sequential shifts)."""
    u_used, u_end = _shift_sequence(u, shift, x.shape[-1])
    xi, xi_complement = _stream(x, u_used)
    return _rotate(rho, xi, xi_complement, momentum), u_end


def _inverse_refresh(x, rho, u, momentum: Momentum, shift):
    """R^-1 mirrors R: for i = d..1, u <- (u + 1 - s) mod 1 first, then coordinate i rotated back by xi(x_i, u)."""
    u_reversed, u_start = _shift_sequence(u, 1.0 - shift, x.shape[-1])
    # u_reversed[j] is the value before the j-th backward shift: coordinate d - j uses the value after it
    u_used = jnp.concatenate([u_reversed[1:], u_start[None]])[::-1]
    xi, xi_complement = _stream(x, u_used)
    return _rotate(rho, xi_complement, xi, momentum), u_start


def build_kernel(momentum: Momentum | str = "laplace", shift: float = DEFAULT_SHIFT) -> Callable:
    """T = R o L as ``kernel(state, logdensity_fn, step_size, num_steps) -> (state, Info)`` (deterministic)."""
    momentum = momentum_by_name(momentum)

    def kernel(state: State, logdensity_fn: Callable, step_size, num_steps: int):
        moved = _leapfrog(state, logdensity_fn, step_size, num_steps, momentum)
        rho, u = _refresh(moved.position, moved.momentum, moved.uniform, momentum, shift)
        log_jacobian = jnp.sum(momentum.log_density(moved.momentum) - momentum.log_density(rho))
        return moved._replace(momentum=rho, uniform=u), Info(log_jacobian)

    return kernel


def build_inverse_kernel(momentum: Momentum | str = "laplace", shift: float = DEFAULT_SHIFT) -> Callable:
    """T^-1 = L^-1 o R^-1 as ``kernel(state, logdensity_fn, step_size, num_steps) -> (state, Info)``.

    ``Info.log_jacobian`` is log J(T^-1 s): the Jacobian of the forward map at the returned point.
    """
    momentum = momentum_by_name(momentum)

    def kernel(state: State, logdensity_fn: Callable, step_size, num_steps: int):
        rho, u = _inverse_refresh(state.position, state.momentum, state.uniform, momentum, shift)
        log_jacobian = jnp.sum(momentum.log_density(rho) - momentum.log_density(state.momentum))
        moved = _leapfrog(state._replace(momentum=rho, uniform=u), logdensity_fn, -step_size, num_steps, momentum)
        return moved, Info(log_jacobian)

    return kernel


# ---------------------------------------------------------------------------------------------------------------------
# the reference and the flow's settings
class Reference(NamedTuple):
    """q0(s) = N(x; mean, diag(scale^2)) prod_i m(rho_i) Uniform(u; 0, 1), in flow coordinates."""

    mean: jax.Array
    scale: jax.Array


class Flow(NamedTuple):
    """Everything the pure MixFlow functions need (all in flow coordinates). ``flow_length`` N, ``num_steps`` L."""

    logdensity_fn: Callable
    reference: Reference
    momentum: Momentum
    step_size: jax.Array
    num_steps: int
    flow_length: int
    shift: float = DEFAULT_SHIFT

    def forward(self, state: State):
        return build_kernel(self.momentum, self.shift)(state, self.logdensity_fn, self.step_size, self.num_steps)

    def inverse(self, state: State):
        return build_inverse_kernel(self.momentum, self.shift)(
            state, self.logdensity_fn, self.step_size, self.num_steps
        )

    def init(self, position, momentum, uniform) -> State:
        return init(position, momentum, uniform, self.logdensity_fn)


def reference_log_density(flow: Flow, state: State):
    """The reference log density log q0(s) (u is uniform on [0, 1): it adds nothing)."""
    mean, scale = flow.reference
    z = (state.position - mean) / scale
    gaussian = -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(scale)) - 0.5 * z.shape[-1] * math.log(2.0 * math.pi)
    return gaussian + jnp.sum(flow.momentum.log_density(state.momentum))


def _augmented_target(flow: Flow, state: State):
    """The augmented target log pibar(s) = log pi(x) + sum_i log m(rho_i)."""
    return state.logdensity + jnp.sum(flow.momentum.log_density(state.momentum))


def sample_reference(flow: Flow, rng_key) -> State:
    """One draw S0 ~ q0."""
    mean, scale = flow.reference
    key_x, key_rho, key_u = jax.random.split(rng_key, 3)
    x = mean + scale * jax.random.normal(key_x, mean.shape, mean.dtype)
    rho = flow.momentum.sample(key_rho, mean.shape, mean.dtype)
    u = jax.random.uniform(key_u, (), mean.dtype)
    return flow.init(x, rho, u)


# ---------------------------------------------------------------------------------------------------------------------
# density (backward pass), orbit statistics (cached forward and backward orbits), naive ELBO, inversion error
def log_density(flow: Flow, state: State):
    """The flow's log density log q_N(s) by the backward pass.

    N - 1 inverse maps, l_n = log q0(T^-n s) - sum_{j<=n} log J(T^-j s).
    """

    def back(carry, _):
        state, log_jacobian_sum = carry
        state, info = flow.inverse(state)
        log_jacobian_sum = log_jacobian_sum + info.log_jacobian
        return (state, log_jacobian_sum), reference_log_density(flow, state) - log_jacobian_sum

    first = reference_log_density(flow, state)
    _, terms = jax.lax.scan(back, (state, jnp.zeros_like(first)), None, length=flow.flow_length - 1)
    terms = jnp.concatenate([first[None], terms])
    return jax.nn.logsumexp(terms) - math.log(flow.flow_length)


class OrbitSummary(NamedTuple):
    """One orbit S, T S, ..., T^{N-1} S of a reference draw S, with log q_N and log pibar at every point.

    ``log_density[n]`` = log q_N(T^n S) and ``log_target[n]`` = log pibar(T^n S) (flow coordinates);
    ``elbo`` = mean_n (log_target - log_density): one unbiased ELBO estimate (see `support_elbo` for targets that
    are zero in places); ``chosen`` = T^K S for the index
    ``K`` the caller asked for (an i.i.d. draw from q_N when K ~ Uniform{0..N-1}).
    """

    log_density: jax.Array
    log_target: jax.Array
    elbo: jax.Array
    chosen: State


def orbit_summary(flow: Flow, state: State, chosen_index=0) -> OrbitSummary:
    """Cached forward and backward orbits of ``state`` (2N - 2 maps): log q_N along the forward orbit in O(N)."""
    n_terms = flow.flow_length

    def forward(carry, index):
        state, chosen = carry
        chosen = jax.tree.map(lambda a, b: jnp.where(index == chosen_index, a, b), state, chosen)
        new, info = flow.forward(state)
        return (new, chosen), (reference_log_density(flow, state), info.log_jacobian, _augmented_target(flow, state))

    (last, chosen), (a_forward, lambda_forward, target_forward) = jax.lax.scan(
        forward, (state, state), jnp.arange(n_terms - 1)
    )
    chosen = jax.tree.map(lambda a, b: jnp.where(chosen_index == n_terms - 1, a, b), last, chosen)
    a_forward = jnp.concatenate([a_forward, reference_log_density(flow, last)[None]])
    log_target = jnp.concatenate([target_forward, _augmented_target(flow, last)[None]])

    def backward(state, _):
        new, info = flow.inverse(state)
        return new, (reference_log_density(flow, new), info.log_jacobian)

    _, (a_backward, lambda_backward) = jax.lax.scan(backward, state, None, length=n_terms - 1)

    # prefix sums with P_0 = 0: P_m = sum_{0<=j<m} lambda_j (m >= 0), P_-k = -sum_{-k<=j<0} lambda_j
    prefix_forward = jnp.concatenate([jnp.zeros((1,), a_forward.dtype), jnp.cumsum(lambda_forward)])
    prefix_backward = -jnp.cumsum(lambda_backward)  # P_-1, P_-2, ..., P_-(N-1)
    values = jnp.concatenate([(a_backward + prefix_backward)[::-1], a_forward + prefix_forward])  # m = -(N-1)..N-1
    windowed = _sliding_logsumexp(values, n_terms)
    log_q = windowed - prefix_forward - math.log(n_terms)
    return OrbitSummary(log_q, log_target, support_elbo(log_target, log_q), chosen)


def support_elbo(log_target, log_q):
    """One orbit's ELBO estimate.

    mean_n (log pibar - log q_N) over the orbit points where pi > 0, plus log of their fraction.

    Where pi is positive all along the orbit (the usual case) this is the plain unbiased estimate. A target that is
    zero in places (a ``factor`` of -inf: log pi = -inf or NaN there) gives q_N an infinite KL; the estimate is then
    the ELBO of q_N restricted to the support, E_q[log pibar - log q_N | pi > 0] + log P_q(pi > 0), which is what the
    draws are (`MixFlow.draw` reports such draws, and samplax's fit redraws them: rejection to the support).
    -inf when no point of the orbit is inside the support.
    """
    inside = jnp.isfinite(log_target) & jnp.isfinite(log_q)
    count = jnp.sum(inside)
    total = jnp.sum(jnp.where(inside, log_target - log_q, 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1) + jnp.log(count / log_target.shape[0]), -jnp.inf)


def _sliding_logsumexp(values, width: int):
    """Sliding-window logsumexp of values[n : n + width] for n = 0..width-1, exact and stable in O(width).

    len(values) = 2 width - 1.

    Each window is a suffix of the first block values[:width] plus a prefix of the second block values[width:].
    """
    suffix = jax.lax.cumlogsumexp(values[:width], reverse=True)
    prefix = jax.lax.cumlogsumexp(values[width:]) if width > 1 else values[width:]
    prefix = jnp.concatenate([jnp.full((1,), -jnp.inf, values.dtype), prefix])
    return jnp.logaddexp(suffix, prefix)


def naive_orbit_elbo(flow: Flow, state: State):
    """The same ELBO estimate as `orbit_summary`, with a fresh backward pass at every orbit point: O(N^2) maps."""

    def forward(state, _):
        new, _ = flow.forward(state)
        return new, (log_density(flow, state), _augmented_target(flow, state))

    last, (log_q, log_target) = jax.lax.scan(forward, state, None, length=flow.flow_length - 1)
    log_q = jnp.concatenate([log_q, log_density(flow, last)[None]])
    log_target = jnp.concatenate([log_target, _augmented_target(flow, last)[None]])
    return support_elbo(log_target, log_q)


def orbit(flow: Flow, state: State) -> State:
    """The single-orbit sampler: S, T S, ..., T^{N-1} S stacked along a leading axis (N correlated draws)."""

    def forward(state, _):
        new, _ = flow.forward(state)
        return new, state

    last, states = jax.lax.scan(forward, state, None, length=flow.flow_length - 1)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), states, last)


def inversion_error(flow: Flow, state: State):
    """The round-trip error max |T^-1(T(s)) - s| over x, rho and u (u on the circle), in flow coordinates."""
    back, _ = flow.inverse(flow.forward(state)[0])
    du = jnp.abs(back.uniform - state.uniform)
    return jnp.maximum(
        jnp.max(jnp.abs(jnp.concatenate([back.position - state.position, back.momentum - state.momentum]))),
        jnp.minimum(du, 1.0 - du),
    )
