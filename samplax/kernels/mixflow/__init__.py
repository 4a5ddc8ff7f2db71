"""MixFlows: mixed variational flows with i.i.d. draws, an exact density and an unbiased ELBO.

Paper: Z. Xu, N. Chen and T. Campbell, "MixFlows: principled variational inference via mixed flows", ICML 2023
(arXiv 2205.07475); numerics: Z. Xu and T. Campbell, "Embracing the chaos: analysis and diagnosis of numerical
instability in variational flows", NeurIPS 2023 (arXiv 2307.06957). Authors' code: ``zuhengxu/ErgFlow.jl``.

The family. A bijection T of the augmented space s = (x, rho, u) in R^d x R^d x [0, 1) with Jacobian
J(s) = |det dT(s)|, a reference q0 and N terms (n = 0..N-1 throughout):

    q_N = (1/N) sum_n (T^n)_# q0,      q_N(s) = (1/N) sum_n q0(T^-n s) / prod_{j=1..n} J(T^-j s).

Sampling: K ~ Uniform{0..N-1}, S0 ~ q0, return T^K S0 (i.i.d.; K maps, (N - 1)/2 on average: draws are sorted by K
and each compiled chunk stops at its own largest K). Density: one backward pass of N - 1 inverse maps.
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
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplax.kernels.mixflow.flow import (
    Flow,
    Info,
    OrbitSummary,
    Reference,
    State,
    _augmented_target,
    build_inverse_kernel,
    build_kernel,
    init,
    inversion_error,
    log_density,
    naive_orbit_elbo,
    orbit,
    orbit_summary,
    reference_log_density,
    sample_reference,
    support_elbo,
)
from samplax.kernels.mixflow.flow import _sliding_logsumexp as _sliding_logsumexp  # the tests check it
from samplax.kernels.mixflow.momentum import DEFAULT_SHIFT, GAUSSIAN, LAPLACE, Momentum, momentum_by_name

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
    "support_elbo",
    "naive_orbit_elbo",
    "orbit",
    "inversion_error",
    "Draws",
    "MixFlow",
    "mixflow",
]


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
    sample: Callable  # (rng_key, num_draws) -> Draws: i.i.d. from q_N (about N/2 maps per draw, no density)
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
    draw_keys: Callable  # (keys) -> `draw`'s Draws, one per key: draw(key, n) is draw_keys(split(key, n)), so a
    #                      run cut into pieces of keys gives the same draws as one call
    sample_keys: Callable  # (keys) -> Draws with log_target and inversion_error but no density: the draw of each
    #                        key is the same point as draw_keys' (K maps of its reference point, about N/2 on average)
    draw_indices: Callable  # (keys) -> K per key, the number of maps its draw takes (sort keys by it before cutting
    #                         a run into pieces: each piece then costs its largest K)


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


def mixflow(
    logdensity_fn: Callable,
    reference_mean,
    reference_scale,
    *,
    flow_length: int,
    step_size,
    num_steps: int,
    momentum: str | Momentum = "laplace",
    whiten: bool = True,
    shift: float = DEFAULT_SHIFT,
    batch_size: int = 256,
) -> MixFlow:
    """Build a MixFlow of ``flow_length`` terms for ``logdensity_fn`` (log pi on R^d, up to a constant).

    Args:
        logdensity_fn: log pi(x) on a flat vector; differentiable. Keep the same function object across calls:
            flows that share it (and N, L, momentum, whiten) share compiled programs.
        reference_mean (array): the mean of the mean-field Gaussian reference N(mean, diag(scale^2)) in x.
        reference_scale (array): its scale (per coordinate).
        flow_length: N, the number of mixture terms (n = 0..N-1).
        step_size (float or array): eps, scalar or per coordinate, in flow coordinates (whitened units when
            ``whiten``).
        num_steps: L, leapfrog steps per map.
        momentum: "laplace" (default) or "gaussian".
        whiten: run the flow in y = (x - mean) / scale (reference N(0, I)); the Jacobian enters every density.
        shift: the refreshment's irrational u-shift.
        batch_size: orbits vectorised at a time (memory is O(batch_size N) for `draw` and `elbo`).

    Returns:
        A `MixFlow`. Its methods run in float64 under ``jax.enable_x64(True)`` and return NumPy float64 arrays.
    """
    config = _Config(
        logdensity_fn,
        momentum_by_name(momentum),
        _check_int(num_steps, "num_steps"),
        _check_int(flow_length, "flow_length"),
        float(shift),
        bool(whiten),
        _check_int(batch_size, "batch_size"),
    )
    with jax.enable_x64(True):
        mean = jnp.asarray(reference_mean, jnp.float64)
        scale = jnp.asarray(reference_scale, jnp.float64)
        if mean.ndim != 1 or scale.shape != mean.shape:
            raise ValueError(
                f"reference_mean and reference_scale must be vectors of the same length, got shapes "
                f"{mean.shape} and {scale.shape}"
            )
        if not (bool(jnp.all(scale > 0)) and bool(jnp.all(jnp.isfinite(scale))) and bool(jnp.all(jnp.isfinite(mean)))):
            raise ValueError(
                "reference_scale must be positive and finite and reference_mean finite; refit the reference"
            )
        eps = jnp.asarray(step_size, jnp.float64)
        if eps.shape not in ((), mean.shape) or not bool(jnp.all((eps > 0) & jnp.isfinite(eps))):
            raise ValueError(
                f"step_size must be a positive number or a positive vector of length {mean.shape[0]}, got {step_size!r}"
            )
        params = _Params(mean, scale, eps)
        flow, to_flow, from_flow, log_det = _flow_of(config, params)
        log_det = float(log_det)
    dim = int(mean.shape[0])

    def run(fn, *args):
        with jax.enable_x64(True):
            return jax.device_get(fn(config, params, *args))

    def sample(rng_key, num_draws: int) -> Draws:
        keys = jax.random.split(rng_key, _check_int(num_draws, "num_draws"))
        return Draws(*run(_cheap_draws, keys, False)[:3])

    def sample_keys(keys) -> Draws:
        return Draws(*run(_cheap_draws, keys, True))

    def draw_indices(keys):
        return run(_draw_indices, keys)

    def draw(rng_key, num_draws: int) -> Draws:
        return draw_keys(jax.random.split(rng_key, _check_int(num_draws, "num_draws")))

    def draw_keys(keys) -> Draws:
        return Draws(*run(_draws, keys))

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

    return MixFlow(
        flow,
        sample,
        draw,
        sample_orbit,
        flow_log_density,
        marginal_log_density,
        elbo,
        naive_elbo,
        flow_inversion_error,
        to_flow,
        from_flow,
        log_det,
        draw_keys,
        sample_keys,
        draw_indices,
    )


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
    flow = Flow(
        flow_logdensity, reference, config.momentum, step_size, config.num_steps, config.flow_length, config.shift
    )
    return flow, to_flow, from_flow, log_det


def _batched(config: _Config, fn, *xs):
    """``vmap(fn)`` over the leading axis, in chunks of ``batch_size`` (bounded memory, one compiled body)."""
    return _in_chunks(config, jax.vmap(fn), *xs)


def _in_chunks(config: _Config, batch_fn, *xs):
    """``batch_fn`` (which takes whole batches) over chunks of ``batch_size`` rows of ``xs``."""
    count, size = xs[0].shape[0], config.batch_size
    if count <= size:
        return batch_fn(*xs)
    chunks = -(-count // size)
    pad = chunks * size - count  # < count: repeat the first rows, dropped again below
    xs = [jnp.concatenate([x, x[:pad]]).reshape((chunks, size) + x.shape[1:]) for x in xs]
    out = jax.lax.map(lambda args: batch_fn(*args), xs)
    return jax.tree.map(lambda y: y.reshape((chunks * size,) + y.shape[2:])[:count], out)


def _split_draw_key(key, flow_length: int):
    """A draw's key -> (the key of its reference point S0, its index K ~ Uniform{0..N-1}); both paths use this."""
    key_reference, key_index = jax.random.split(key)
    return key_reference, jax.random.randint(key_index, (), 0, flow_length)


@functools.partial(jax.jit, static_argnums=0)
def _draw_indices(config: _Config, params: _Params, keys):
    return jax.vmap(lambda key: _split_draw_key(key, config.flow_length)[1])(keys)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _cheap_draws(config: _Config, params: _Params, keys, with_checks: bool):
    """T^K S0 for each key, without its density: K maps, not 2N - 2.

    The draws are sorted by K and each chunk of ``batch_size`` runs only as many maps as its largest K (lanes that
    are done keep their state), so a draw costs about N/2 maps on average instead of the N - 1 of a fixed trip count.
    With ``with_checks`` also log pibar at the draw (free: the last map computed log pi) and its one-step inversion
    error (2 maps).
    """
    flow, _, from_flow, log_det = _flow_of(config, params)
    indices = _draw_indices(config, params, keys)
    order = jnp.argsort(indices)

    def chunk(keys, indices):
        states = jax.vmap(lambda key: sample_reference(flow, _split_draw_key(key, config.flow_length)[0]))(keys)

        def body(step, states):
            moved = jax.vmap(lambda state: flow.forward(state)[0])(states)
            going = step < indices
            return jax.tree.map(
                lambda a, b: jnp.where(going.reshape(going.shape + (1,) * (a.ndim - 1)), a, b), moved, states
            )

        chosen = jax.lax.fori_loop(0, jnp.max(indices), body, states)
        out = (jax.vmap(from_flow)(chosen.position), chosen.momentum, chosen.uniform)
        if not with_checks:
            return out
        log_target = jax.vmap(lambda state: _augmented_target(flow, state))(chosen) - log_det
        return out + (None, log_target, None, jax.vmap(lambda state: inversion_error(flow, state))(chosen))

    sorted_out = _in_chunks(config, chunk, keys[order], indices[order])
    unsort = jnp.argsort(order)
    return jax.tree.map(lambda values: values[unsort], sorted_out)


@functools.partial(jax.jit, static_argnums=0)
def _draws(config: _Config, params: _Params, keys):
    """T^K S0 for each key with its exact density and its orbit's ELBO: 2N - 2 maps (`orbit_summary`) plus 2."""
    flow, _, from_flow, log_det = _flow_of(config, params)

    def one(key):
        key_reference, index = _split_draw_key(key, config.flow_length)
        summary = orbit_summary(flow, sample_reference(flow, key_reference), index)
        chosen = summary.chosen
        return (
            from_flow(chosen.position),
            chosen.momentum,
            chosen.uniform,
            summary.log_density[index] - log_det,
            summary.log_target[index] - log_det,
            summary.elbo,
            inversion_error(flow, chosen),
        )

    return _batched(config, one, keys)


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
    return _batched(
        config, lambda key: estimator(flow, sample_reference(flow, key)), jax.random.split(rng_key, num_orbits)
    )


@functools.partial(jax.jit, static_argnums=(0, 4))
def _marginal(config: _Config, params: _Params, rng_key, x, num_samples: int):
    """The x-marginal log density log q_N(x), estimated by importance sampling over (rho, u).

    log q_N(x) = log E_r[q_N(x, rho, u) / r(rho, u)], with r = prod m(rho_i) x Uniform(u).
    """
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


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_points(position, momentum, uniform, dim):
    x = jnp.asarray(position, jnp.float64)
    rho = jnp.asarray(momentum, jnp.float64)
    u = jnp.asarray(uniform, jnp.float64)
    if x.shape[-1:] != (dim,) or rho.shape != x.shape or u.shape != x.shape[:-1]:
        raise ValueError(
            f"position and momentum must have shape (..., {dim}) and uniform the batch shape (...), "
            f"got {x.shape}, {rho.shape} and {u.shape}"
        )
    if not bool(jnp.all((u >= 0) & (u < 1))):
        raise ValueError("uniform must lie in [0, 1)")
    return x, rho, u
