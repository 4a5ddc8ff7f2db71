"""MixFlows: mixed variational flows with i.i.d. draws, an exact density and an unbiased ELBO.

Paper: Z. Xu, N. Chen and T. Campbell, "MixFlows: principled variational inference via mixed flows", ICML 2023
(arXiv 2205.07475); numerics: Z. Xu and T. Campbell, "Embracing the chaos: analysis and diagnosis of numerical
instability in variational flows", NeurIPS 2023 (arXiv 2307.06957). Authors' code: ``zuhengxu/ErgFlow.jl``.

The family. A bijection T of the augmented space s = (x, rho, u) in R^d x R^d x [0, 1) with Jacobian
J(s) = |det dT(s)|, a reference q0 and N terms (n = 0..N-1 throughout):

    q_N = (1/N) sum_n (T^n)_# q0,      q_N(s) = (1/N) sum_n q0(T^-n s) / prod_{j=1..n} J(T^-j s).

Sampling: K ~ Uniform{0..N-1}, S0 ~ q0, return T^K S0 (i.i.d.). Density: one backward pass of N - 1 inverse maps.
ELBO: for S ~ q0, (1/N) sum_n [log pibar(T^n S) - log q_N(T^n S)] is unbiased for E_{q_N}[log pibar - log q_N];
with one forward and one backward orbit (2N - 2 maps), a_k = log q0(T^k S), lambda_k = log J(T^k S) and prefix
sums P_k (P_0 = 0, P_{k+1} - P_k = lambda_k),

    log q_N(T^n S) = -P_n - log N + logsumexp_{m = n-N+1..n} (a_m + P_m),

whose N windowed logsumexps are computed exactly and stably in O(N) (prefix/suffix cumulative logsumexps over
two blocks of length N, van Herk / Gil-Werman): no O(N^2) band, no subtract-exponential recursion.

The map T = R o L (uncorrected Hamiltonian dynamics with deterministic refreshment), on the augmented target
pibar(s) = pi(x) prod_i m(rho_i) with u uniform, m the standard Laplace (default) or Gaussian density:

    L (leapfrog, L steps of size eps):  rho += eps/2 grad log pi(x);  L - 1 times {x += eps k(rho);
        rho += eps grad log pi(x)};  x += eps k(rho);  rho += eps/2 grad log pi(x),    k = -grad log m
        (k(rho) = sign(rho) for Laplace: x moves by exactly eps per step).  Shears: Jacobian 1; inverse: -eps.
    R (refreshment), i = 1..d:  rho_i <- F^-1((F(rho_i) + xi(x_i, u)) mod 1);  u <- (u + s) mod 1,
        xi(x, u) = (sin(2x + u) + 1) / 2, s = pi/16 (irrational: a rational shift is periodic).
        Inverse, i = d..1:  u <- (u + 1 - s) mod 1;  rho_i <- F^-1((F(rho_i) + 1 - xi(x_i, u)) mod 1).
    log J(s) = sum_i [log m(rho_i before R) - log m(rho_i after R)].

Coordinates. The flow runs in "flow coordinates": whitened y = (x - mu) / D by default (the reference is then
N(0, I) in y and the target's log density gains sum log D), or the target's own x. Every density and ELBO that
`mixflow` returns is in the target's coordinates: log q_x(x, rho, u) = log q_y(y, rho, u) - sum log D.

Precision. T^-1 o T is exact to ~1e-15 per map in float64 and ~1e-7 in float32, and orbits diverge after ~100 maps
(chaos), while densities and ELBOs stay accurate (shadowing). The pure functions below follow the dtype they are
given; the `MixFlow` methods returned by `mixflow` cast to float64 and run under ``jax.enable_x64(True)`` (scoped:
the global flag is never flipped).

Usage::

    flow = mixflow(logdensity_fn, reference_mean, reference_scale, flow_length=500, step_size=0.05, num_steps=30)
    draws = flow.sample(rng_key, 1000)                        # i.i.d. (x, rho, u)
    flow.log_density(draws.position, draws.momentum, draws.uniform)   # exact, augmented space
    flow.elbo(rng_key, 64)                                    # 64 unbiased per-orbit ELBO estimates
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri

__all__ = [
    "DEFAULT_SHIFT",
    "Momentum",
    "LAPLACE",
    "GAUSSIAN",
    "momentum_by_name",
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
    "naive_orbit_elbo",
    "orbit",
    "inversion_error",
    "Draws",
    "MixFlow",
    "mixflow",
]

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
    """rho -> F^-1((F(rho) + a) mod 1), with a = ``shift`` and 1 - a = ``shift_complement`` passed separately.

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
    return jnp.where(lower <= upper, momentum.quantile(jnp.maximum(lower, tiny)),
                     momentum.upper_quantile(jnp.maximum(upper, tiny)))


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
        0, num_steps, body, (state.position, rho, state.logdensity, state.logdensity_grad))
    return State(x, rho, state.uniform, logdensity, grad)


def _stream(x, u):
    """xi(x, u) = (sin(2x + u) + 1) / 2 and 1 - xi = (1 - sin(2x + u)) / 2, each computed directly."""
    wave = jnp.sin(2.0 * x + u)
    return 0.5 * (1.0 + wave), 0.5 * (1.0 - wave)


def _shift_sequence(u, shift, count: int):
    """u_0 = u, u_{i+1} = (u_i + shift) mod 1 for i < count, applied one shift at a time (the inverse undoes them one
    at a time too); returns (u_0..u_{count-1}, u_count). Unrolled: d is static and each step is one scalar op."""
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
        return build_inverse_kernel(self.momentum, self.shift)(state, self.logdensity_fn, self.step_size,
                                                               self.num_steps)

    def init(self, position, momentum, uniform) -> State:
        return init(position, momentum, uniform, self.logdensity_fn)


def reference_log_density(flow: Flow, state: State):
    """log q0(s) (u is uniform on [0, 1): it adds nothing)."""
    mean, scale = flow.reference
    z = (state.position - mean) / scale
    gaussian = -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(scale)) - 0.5 * z.shape[-1] * math.log(2.0 * math.pi)
    return gaussian + jnp.sum(flow.momentum.log_density(state.momentum))


def _augmented_target(flow: Flow, state: State):
    """log pibar(s) = log pi(x) + sum_i log m(rho_i)."""
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
    """log q_N(s) by the backward pass: N - 1 inverse maps, l_n = log q0(T^-n s) - sum_{j<=n} log J(T^-j s)."""
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
    ``elbo`` = mean_n (log_target - log_density): one unbiased ELBO estimate; ``chosen`` = T^K S for the index
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
        forward, (state, state), jnp.arange(n_terms - 1))
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
    return OrbitSummary(log_q, log_target, jnp.mean(log_target - log_q), chosen)


def _sliding_logsumexp(values, width: int):
    """logsumexp of values[n : n + width] for n = 0..width-1 (len(values) = 2 width - 1), exact and stable in O(width).

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
    return jnp.mean(log_target - log_q)


def orbit(flow: Flow, state: State) -> State:
    """The single-orbit sampler: S, T S, ..., T^{N-1} S stacked along a leading axis (N correlated draws)."""
    def forward(state, _):
        new, _ = flow.forward(state)
        return new, state

    last, states = jax.lax.scan(forward, state, None, length=flow.flow_length - 1)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), states, last)


def inversion_error(flow: Flow, state: State):
    """max |T^-1(T(s)) - s| over x, rho and u (u on the circle), in flow coordinates."""
    back, _ = flow.inverse(flow.forward(state)[0])
    du = jnp.abs(back.uniform - state.uniform)
    return jnp.maximum(jnp.max(jnp.abs(jnp.concatenate([back.position - state.position,
                                                        back.momentum - state.momentum]))),
                       jnp.minimum(du, 1.0 - du))


# ---------------------------------------------------------------------------------------------------------------------
# the builder: host-level methods in the target's coordinates, float64, vectorised over orbits
class Draws(NamedTuple):
    """Points (x, rho, u) of the augmented space in the target's coordinates, with a leading batch axis.

    ``log_density`` (exact log q_N, augmented space, target coordinates), ``log_target`` (log pi(x) + log m(rho)),
    ``elbo`` (the unbiased ELBO estimate of the draw's own orbit) and ``inversion_error`` (max |T^-1 T s - s| at the
    draw, flow coordinates) are filled by `MixFlow.draw` and None otherwise.
    """

    position: jax.Array
    momentum: jax.Array
    uniform: jax.Array
    log_density: jax.Array | None = None
    log_target: jax.Array | None = None
    elbo: jax.Array | None = None
    inversion_error: jax.Array | None = None


class MixFlow(NamedTuple):
    """A MixFlow and its host-level methods (float64, target coordinates, NumPy outputs); see `mixflow`.

    ``flow`` is the pure `Flow` in flow coordinates, for use inside your own jitted code (under x64).
    """

    flow: Flow
    sample: Callable  # (rng_key, num_draws) -> Draws: i.i.d. from q_N (N - 1 maps per draw)
    draw: Callable  # (rng_key, num_draws) -> Draws with exact log q_N, per-orbit ELBOs, inversion errors (2N maps)
    sample_orbit: Callable  # (rng_key) -> Draws: N correlated draws of one orbit
    log_density: Callable  # (x, rho, u) -> exact log q_N, target coordinates, any leading batch shape
    marginal_log_density: Callable  # (rng_key, x, num_samples) -> (estimate, standard_error) of log q_N(x)
    elbo: Callable  # (rng_key, num_orbits) -> per-orbit unbiased ELBO estimates
    naive_elbo: Callable  # (rng_key, num_orbits) -> the same estimates by O(N^2) backward passes (tests)
    inversion_error: Callable  # (x, rho, u) -> max one-step error |T^-1 T s - s| (flow coordinates)
    to_flow: Callable  # x -> y
    from_flow: Callable  # y -> x
    log_det_whitening: float  # sum log D when whitened, else 0


class _Config(NamedTuple):
    """The static part of a flow: what fixes the compiled programs (hashable)."""

    logdensity_fn: Callable
    momentum: Momentum
    num_steps: int
    flow_length: int
    shift: float
    whiten: bool
    batch_size: int


class _Params(NamedTuple):
    """The traced part: a new reference or step size reuses the compiled programs."""

    mean: jax.Array
    scale: jax.Array
    step_size: jax.Array


def mixflow(logdensity_fn: Callable, reference_mean, reference_scale, *, flow_length: int, step_size,
            num_steps: int, momentum: str | Momentum = "laplace", whiten: bool = True, shift: float = DEFAULT_SHIFT,
            batch_size: int = 256) -> MixFlow:
    """Build a MixFlow of ``flow_length`` terms for ``logdensity_fn`` (log pi on R^d, up to a constant).

    Args:
        logdensity_fn: log pi(x) on a flat vector; differentiable. Keep the same function object across calls:
            flows that share it (and N, L, momentum, whiten) share compiled programs.
        reference_mean, reference_scale: the mean-field Gaussian reference N(mean, diag(scale^2)) in x.
        flow_length: N, the number of mixture terms (n = 0..N-1).
        step_size: eps, scalar or per coordinate, in flow coordinates (whitened units when ``whiten``).
        num_steps: L, leapfrog steps per map.
        momentum: "laplace" (default) or "gaussian".
        whiten: run the flow in y = (x - mean) / scale (reference N(0, I)); the Jacobian enters every density.
        shift: the refreshment's irrational u-shift.
        batch_size: orbits vectorised at a time (memory is O(batch_size N) for `draw` and `elbo`).
    The methods run in float64 under ``jax.enable_x64(True)`` and return NumPy float64 arrays.
    """
    config = _Config(logdensity_fn, momentum_by_name(momentum), _check_int(num_steps, "num_steps"),
                     _check_int(flow_length, "flow_length"), float(shift), bool(whiten),
                     _check_int(batch_size, "batch_size"))
    with jax.enable_x64(True):
        mean = jnp.asarray(reference_mean, jnp.float64)
        scale = jnp.asarray(reference_scale, jnp.float64)
        if mean.ndim != 1 or scale.shape != mean.shape:
            raise ValueError(f"reference_mean and reference_scale must be vectors of the same length, got shapes "
                             f"{mean.shape} and {scale.shape}")
        if not (bool(jnp.all(scale > 0)) and bool(jnp.all(jnp.isfinite(scale))) and bool(jnp.all(jnp.isfinite(mean)))):
            raise ValueError("reference_scale must be positive and finite and reference_mean finite; refit the "
                             "reference")
        eps = jnp.asarray(step_size, jnp.float64)
        if eps.shape not in ((), mean.shape) or not bool(jnp.all((eps > 0) & jnp.isfinite(eps))):
            raise ValueError(f"step_size must be a positive number or a positive vector of length {mean.shape[0]}, "
                             f"got {step_size!r}")
        params = _Params(mean, scale, eps)
        flow, to_flow, from_flow, log_det = _flow_of(config, params)
        log_det = float(log_det)
    dim = int(mean.shape[0])

    def run(fn, *args):
        with jax.enable_x64(True):
            return jax.device_get(fn(config, params, *args))

    def sample(rng_key, num_draws: int) -> Draws:
        return Draws(*run(_draws, rng_key, _check_int(num_draws, "num_draws"), False))

    def draw(rng_key, num_draws: int) -> Draws:
        return Draws(*run(_draws, rng_key, _check_int(num_draws, "num_draws"), True))

    def sample_orbit(rng_key) -> Draws:
        return Draws(*run(_orbit_draws, rng_key))

    def pointwise(fn, position, momentum_, uniform):
        with jax.enable_x64(True):
            x, rho, u = _as_points(position, momentum_, uniform, dim)
        flat = run(fn, x.reshape(-1, dim), rho.reshape(-1, dim), u.reshape(-1))
        return flat.reshape(x.shape[:-1])

    def flow_log_density(position, momentum_, uniform):
        return pointwise(_log_density_points, position, momentum_, uniform)

    def flow_inversion_error(position, momentum_, uniform):
        return pointwise(_inversion_errors, position, momentum_, uniform)

    def marginal_log_density(rng_key, position, num_samples: int = 1000):
        with jax.enable_x64(True):
            x = jnp.asarray(position, jnp.float64)
        if x.shape[-1:] != (dim,):
            raise ValueError(f"position must have a last axis of length {dim}, got shape {x.shape}")
        estimate, se = run(_marginal, rng_key, x.reshape(-1, dim), _check_int(num_samples, "num_samples"))
        return estimate.reshape(x.shape[:-1]), se.reshape(x.shape[:-1])

    def elbo(rng_key, num_orbits: int):
        return run(_elbos, rng_key, _check_int(num_orbits, "num_orbits"), False)

    def naive_elbo(rng_key, num_orbits: int):
        return run(_elbos, rng_key, _check_int(num_orbits, "num_orbits"), True)

    return MixFlow(flow, sample, draw, sample_orbit, flow_log_density, marginal_log_density, elbo, naive_elbo,
                   flow_inversion_error, to_flow, from_flow, log_det)


def _flow_of(config: _Config, params: _Params):
    """The pure `Flow` in flow coordinates, the coordinate maps and sum log D (0 when not whitened)."""
    mean, scale, step_size = params
    if config.whiten:
        log_det = jnp.sum(jnp.log(scale))

        def flow_logdensity(y):
            return config.logdensity_fn(mean + scale * y) + log_det

        reference = Reference(jnp.zeros_like(mean), jnp.ones_like(scale))
        to_flow = lambda x: (x - mean) / scale  # noqa: E731
        from_flow = lambda y: mean + scale * y  # noqa: E731
    else:
        log_det = jnp.zeros((), mean.dtype)
        flow_logdensity = config.logdensity_fn
        reference = Reference(mean, scale)
        to_flow = from_flow = lambda x: x  # noqa: E731
    flow = Flow(flow_logdensity, reference, config.momentum, step_size, config.num_steps, config.flow_length,
                config.shift)
    return flow, to_flow, from_flow, log_det


def _batched(config: _Config, fn, *xs):
    """``vmap(fn)`` over the leading axis, in chunks of ``batch_size`` (bounded memory, one compiled body)."""
    count, size = xs[0].shape[0], config.batch_size
    if count <= size:
        return jax.vmap(fn)(*xs)
    chunks = -(-count // size)
    pad = chunks * size - count  # < count: repeat the first rows, dropped again below
    xs = [jnp.concatenate([x, x[:pad]]).reshape((chunks, size) + x.shape[1:]) for x in xs]
    out = jax.lax.map(lambda args: jax.vmap(fn)(*args), xs)
    return jax.tree.map(lambda y: y.reshape((chunks * size,) + y.shape[2:])[:count], out)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _draws(config: _Config, params: _Params, rng_key, num_draws: int, with_density: bool):
    flow, _, from_flow, log_det = _flow_of(config, params)

    def one(key):
        key_reference, key_index = jax.random.split(key)
        start = sample_reference(flow, key_reference)
        index = jax.random.randint(key_index, (), 0, config.flow_length)
        if not with_density:
            chosen = _select_along_orbit(flow, start, index)
            return from_flow(chosen.position), chosen.momentum, chosen.uniform
        summary = orbit_summary(flow, start, index)
        chosen = summary.chosen
        return (from_flow(chosen.position), chosen.momentum, chosen.uniform, summary.log_density[index] - log_det,
                summary.log_target[index] - log_det, summary.elbo, inversion_error(flow, chosen))

    return _batched(config, one, jax.random.split(rng_key, num_draws))


@functools.partial(jax.jit, static_argnums=0)
def _orbit_draws(config: _Config, params: _Params, rng_key):
    flow, _, from_flow, _ = _flow_of(config, params)
    states = orbit(flow, sample_reference(flow, rng_key))
    return jax.vmap(from_flow)(states.position), states.momentum, states.uniform


@functools.partial(jax.jit, static_argnums=0)
def _log_density_points(config: _Config, params: _Params, x, rho, u):
    flow, to_flow, _, log_det = _flow_of(config, params)
    return _batched(config, lambda x, rho, u: log_density(flow, flow.init(to_flow(x), rho, u)) - log_det, x, rho, u)


@functools.partial(jax.jit, static_argnums=0)
def _inversion_errors(config: _Config, params: _Params, x, rho, u):
    flow, to_flow, _, _ = _flow_of(config, params)
    return _batched(config, lambda x, rho, u: inversion_error(flow, flow.init(to_flow(x), rho, u)), x, rho, u)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _elbos(config: _Config, params: _Params, rng_key, num_orbits: int, naive: bool):
    flow, _, _, _ = _flow_of(config, params)
    estimator = naive_orbit_elbo if naive else (lambda flow, state: orbit_summary(flow, state).elbo)
    return _batched(config, lambda key: estimator(flow, sample_reference(flow, key)),
                    jax.random.split(rng_key, num_orbits))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _marginal(config: _Config, params: _Params, rng_key, x, num_samples: int):
    """log q_N(x) = log E_r[q_N(x, rho, u) / r(rho, u)], r = prod m(rho_i) x Uniform(u), by importance sampling."""
    flow, to_flow, _, log_det = _flow_of(config, params)
    key_rho, key_u = jax.random.split(rng_key)
    rho = config.momentum.sample(key_rho, (num_samples,) + x.shape[-1:], x.dtype)
    u = jax.random.uniform(key_u, (num_samples,), x.dtype)
    log_proposal = jnp.sum(config.momentum.log_density(rho), axis=-1)

    def one_point(x):
        y = jnp.broadcast_to(to_flow(x), rho.shape)
        log_q = _batched(config, lambda y, rho, u: log_density(flow, flow.init(y, rho, u)), y, rho, u) - log_det
        log_w = log_q - log_proposal
        estimate = jax.nn.logsumexp(log_w) - math.log(num_samples)
        weights = jnp.exp(log_w - estimate)  # mean 1
        return estimate, jnp.std(weights, ddof=1) / math.sqrt(num_samples)  # delta method: se of log(mean w)

    return jax.lax.map(one_point, x)


def _select_along_orbit(flow: Flow, state: State, index) -> State:
    """T^index(state) by N - 1 forward maps (a fixed trip count, so it vectorises over draws)."""
    def forward(carry, step):
        state, chosen = carry
        chosen = jax.tree.map(lambda a, b: jnp.where(step == index, a, b), state, chosen)
        return (flow.forward(state)[0], chosen), None

    (last, chosen), _ = jax.lax.scan(forward, (state, state), jnp.arange(flow.flow_length - 1))
    return jax.tree.map(lambda a, b: jnp.where(index == flow.flow_length - 1, a, b), last, chosen)


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_points(position, momentum, uniform, dim):
    x = jnp.asarray(position, jnp.float64)
    rho = jnp.asarray(momentum, jnp.float64)
    u = jnp.asarray(uniform, jnp.float64)
    if x.shape[-1:] != (dim,) or rho.shape != x.shape or u.shape != x.shape[:-1]:
        raise ValueError(f"position and momentum must have shape (..., {dim}) and uniform the batch shape (...), "
                         f"got {x.shape}, {rho.shape} and {u.shape}")
    if not bool(jnp.all((u >= 0) & (u < 1))):
        raise ValueError("uniform must lie in [0, 1)")
    return x, rho, u
