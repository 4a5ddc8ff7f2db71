"""Registers ``bplmc`` (Bregman proximal Langevin Monte Carlo) and ``myula`` with `samplax.fit`.

Kernels: `samplax.kernels.bregman` (Lau and Liu, ICML 2022; Durmus, Moulines and Pereyra, SIAM J. Imaging Sci.
2018). Math, measurements and advice: docs/methods/bplmc.md.

* ``bplmc`` runs on the model's CONSTRAINED coordinates (``target.composite``): U(x) = f(x) + env(x), where env is
  the Bregman-Moreau envelope (smoothing lambda) of the fixed-scale Laplace priors' L1 terms, and each site moves in
  the mirror coordinates of its Legendre function, so every step lands inside the support. One step:
  y' = grad phi(x) - gamma grad U(x) + sqrt(2 gamma) phi''(x)^{1/2} xi, x' = grad phi*(y'), optionally followed by a
  Metropolis-Hastings test on pi^lambda (``adjusted``).
* ``myula`` is the Euclidean baseline on the UNCONSTRAINED coordinates (NumPyro's transforms, Jacobians in f), with
  the L1 terms of the Laplace priors on real sites (identity-transformed there) smoothed by the Moreau envelope:
  z' = z - gamma grad f(z) - (gamma / lambda) (z - prox_{lambda g}(z)) + sqrt(2 gamma) xi. It is never adjusted.

Defaults and why:

* ``adjusted=None`` means adjusted when any site is constrained (positive, interval, simplex) and unadjusted when
  every site is real. The unadjusted Euler step in mirror coordinates is unstable where mass piles against a
  boundary (46-100 % of chains with Gamma shape <= 1 hit 0 or NaN within 2000 steps at gamma = 0.01); the
  Metropolis test turns such steps into rejections and removes the step-size bias. On real sites the unadjusted
  chain is stable and is the method of the paper. Adjusted runs use the log-barrier (Burg) maps on positive and
  simplex sites: the only maps measured to recover exact moments with mass piled at a face.
* ``step_size=None`` (auto). Unadjusted: the warm-up is cut into windows; at the start of each the curvature of f
  in the geometry of phi (``relative_curvature``, power iteration on Hessian-vector products) is measured at the
  chain's position and the window runs at ``default_step_size`` = 0.2 / (L + 1/lambda) (1/lambda only when there is
  an L1 term; curvatures below 1 count as 1, since a flat f gives no scale). The sampling step size uses the 0.9
  quantile of the curvatures measured in the second half of the warm-up (past the initial transient). Adjusted:
  the step starts from the curvature rule at the initial point and is tuned by dual averaging (Hoffman and Gelman
  2014) towards ``target_accept``; the Metropolis test keeps any step size exact, so no curvature cap is applied.
  A fixed ``step_size`` turns adaptation off (the warm-up is then burn-in).

Sample statistics: ``out_of_domain`` (non-finite or out-of-domain proposals, which leave the chain in place),
``diverging`` (the same for unadjusted chains, where staying put is a bias; always False for adjusted chains, where it
is an ordinary Metropolis rejection), ``envelope_grad_norm`` (|grad env| after the step), ``acceptance_rate``
(adjusted only) and ``step_size``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from samplax.infer.methods import MCMCMethod
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels.bregman import bplmc, block_legendre, make_legendre, myula
from samplax.kernels.bregman.legendre import LEGENDRE_NAMES
from samplax.kernels.bregman.prox import bregman_moreau_envelope

__all__ = ["BPLMC_SCHEMA", "MYULA_SCHEMA", "BPLMCParams", "ProximalFitState", "ProximalInfo", "ProximalSetup",
           "bplmc_setup", "myula_setup", "myula_l1_terms", "resolve_adjusted", "step_size_from_curvature",
           "warmup_chain", "CURVATURE_PROBES", "STEP_FRACTION"]

CURVATURE_PROBES = 10   # warm-up windows, each starting with one curvature measurement (unadjusted, auto step)
STEP_FRACTION = 0.2     # gamma = STEP_FRACTION / (L + 1/lambda)
CURVATURE_FLOOR = 1.0   # a flat smooth part gives no scale: curvatures below this count as this
CURVATURE_QUANTILE = 0.9


class BPLMCParams(NamedTuple):
    """Adapted per-chain parameters (fit broadcasts ``step_size`` into ``sample_stats``)."""

    step_size: jax.Array


class ProximalFitState(NamedTuple):
    """The kernel's state plus the unconstrained position that fit records (kept in step so record needs no model)."""

    kernel: Any
    z: jax.Array


class ProximalInfo(NamedTuple):
    """Per-draw statistics.

    out_of_domain
        The proposal was non-finite or outside the domain of the Legendre map (or its dual); the chain stayed.
    diverging
        ``out_of_domain`` for unadjusted chains, where staying put is a bias; always False for adjusted chains, where
        such a proposal is an ordinary Metropolis rejection (its target density is 0) and leaves pi^lambda invariant.
    acceptance_rate
        The Metropolis acceptance probability (adjusted chains); None for unadjusted ones.
    """

    diverging: jax.Array
    out_of_domain: jax.Array
    envelope_grad_norm: jax.Array
    acceptance_rate: jax.Array | None


class ProximalSetup(NamedTuple):
    """What the warm-up and the sampler need, built once per (target, options).

    kernel(key, state, step_size) -> (state, info); init(position) -> state (kernel coordinates);
    to_kernel(z) / to_unconstrained(position) move between fit's flat unconstrained vector and kernel coordinates;
    curvature(position) is L for the step-size rule; smoothing is lambda, or None when there is no L1 term.
    """

    kernel: Callable
    init: Callable
    to_kernel: Callable
    to_unconstrained: Callable
    curvature: Callable
    smoothing: float | None
    adjusted: bool


# ---------------------------------------------------------------------------------------------------------------------
# options
@dataclasses.dataclass(frozen=True)
class _SiteMapOption(Option):
    """A dict {site name: value}; each value is checked by ``valid`` (``describe`` says what is expected)."""

    valid: Callable[[Any], bool] = lambda value: True
    describe: str = ""

    def check(self, method: str, value):
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise ValueError(f"method '{method}': option '{self.name}' must be a dict {{site name: {self.describe}}}, "
                             f"got {value!r}; {self.help}")
        for site, entry in value.items():
            if not self.valid(entry):
                raise ValueError(f"method '{method}': option '{self.name}' gives site '{site}' the value {entry!r}; "
                                 f"expected {self.describe}")
        return dict(value)


def _positive_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


@dataclasses.dataclass(frozen=True)
class _BetaOption(Option):
    def check(self, method: str, value):
        if value is None:
            return None
        if _positive_number(value):
            return float(value)
        if isinstance(value, dict) and all(isinstance(k, str) and _positive_number(v) for k, v in value.items()):
            return {k: float(v) for k, v in value.items()}
        raise ValueError(f"method '{method}': option 'beta' must be a number > 0 or a dict {{site name: number > 0}}, "
                         f"got {value!r}; {self.help}")


_STEP_SIZE = Option("step_size", float, None, "gamma > 0; None: from the smooth part's curvature during warm-up "
                    "(and dual averaging when adjusted)", minimum=1e-12, allow_none=True)
_SMOOTHING = Option("smoothing", float, 0.1, "lambda of the envelope of the L1 terms: smaller is closer to the "
                    "posterior but stiffer (smaller steps)", minimum=1e-8)
_NONSMOOTH = _SiteMapOption("nonsmooth", dict, None, "site -> False keeps that site's Laplace prior inside the smooth "
                            "part (no envelope)", valid=lambda v: isinstance(v, bool), describe="True or False")

BPLMC_SCHEMA = MethodSchema(
    "bplmc", "mcmc", "Bregman proximal Langevin Monte Carlo (Lau and Liu 2022): mirror-Langevin steps inside each "
    "site's support, Bregman-Moreau envelope for Laplace priors; Metropolis-adjusted on constrained sites", (
        _STEP_SIZE,
        _SMOOTHING,
        Option("side", str, "left", "which Bregman-Moreau envelope", choices=("left", "right")),
        _BetaOption("beta", object, None, "scale of the hyperbolic-entropy map on L1 sites (None: 1.0), a number "
                    "or {site: number}"),
        Option("adjusted", bool, None, "Metropolis correction on the smoothed target; None: on when any site is "
               "constrained", allow_none=True),
        Option("target_accept", float, 0.574, "acceptance targeted by the dual averaging (adjusted, auto step)",
               minimum=0.05, maximum=0.99),
        _SiteMapOption("legendre", dict, None, "site -> Legendre function name, overriding the default map",
                       valid=lambda v: v in LEGENDRE_NAMES, describe=f"one of {list(LEGENDRE_NAMES)}"),
        _NONSMOOTH,
    ))

MYULA_SCHEMA = MethodSchema(
    "myula", "mcmc", "MYULA (Durmus, Moulines and Pereyra 2018): unadjusted Langevin on unconstrained coordinates "
    "with the Moreau envelope of the Laplace priors on real sites", (_STEP_SIZE, _SMOOTHING, _NONSMOOTH))


# ---------------------------------------------------------------------------------------------------------------------
# setups: a target and options -> kernel functions
def _concrete_numpy(value):
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError, TypeError):
        return None


def _has_l1(weight) -> bool:
    concrete = _concrete_numpy(weight)
    return True if concrete is None else bool(np.any(concrete > 0))


def _is_real(support) -> bool:
    if isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def resolve_adjusted(target, options) -> bool:
    """``options['adjusted']``, or when None: True iff some site's support is not the real line."""
    if options.get("adjusted") is not None:
        return bool(options["adjusted"])
    return any(not _is_real(site.support) for site in target.sites)


def bplmc_setup(target, options) -> ProximalSetup:
    """bplmc on ``target.composite``: constrained coordinates, per-site Legendre maps, Bregman-Moreau envelope."""
    adjusted = resolve_adjusted(target, options)
    with jax.ensure_compile_time_eval():  # the L1 weights must stay concrete inside fit's jit
        composite = target.composite(legendre=options.get("legendre"), nonsmooth=options.get("nonsmooth"),
                                     beta=options.get("beta"), barrier=adjusted)
    legendre = block_legendre(composite.blocks, composite.dim)
    smoothing = options["smoothing"] if _has_l1(composite.l1_weight) else None
    envelope_fn = None
    if smoothing is not None:
        envelope_fn = bregman_moreau_envelope(legendre, composite.l1_weight, composite.l1_center, smoothing,
                                              options.get("side", "left"))
    potential_fn = bplmc.smoothed_potential(composite.smooth_potential, envelope_fn)
    transition = bplmc.build_kernel(legendre, adjusted)

    def kernel(key, state, step_size):
        return transition(key, state, potential_fn, step_size)

    def init(position):
        return bplmc.init(position, potential_fn, legendre)

    def to_unconstrained(x):
        return target.unconstrain(composite.to_constrained(x))

    def curvature(x):
        return bplmc.relative_curvature(composite.smooth_potential, legendre, x)

    return ProximalSetup(kernel, init, composite.from_unconstrained, to_unconstrained, curvature, smoothing, adjusted)


def myula_l1_terms(target, nonsmooth=None):
    """(weight, center) of the Laplace priors' L1 terms on the flat UNCONSTRAINED vector (zero off real sites)."""
    # Euclidean everywhere: myula needs no Legendre map, so no site can fail for lack of one.
    with jax.ensure_compile_time_eval():  # the L1 weights must stay concrete inside fit's jit
        composite = target.composite(legendre={site.name: "euclidean" for site in target.sites},
                                     nonsmooth=nonsmooth)
    weight_c = _concrete_numpy(composite.l1_weight)
    center_c = _concrete_numpy(composite.l1_center)
    weight = np.zeros(target.dim, dtype=weight_c.dtype)
    center = np.zeros(target.dim, dtype=weight_c.dtype)
    for site, block in zip(target.sites, composite.blocks):
        block_weight = weight_c[block.start:block.stop]
        if not np.any(block_weight > 0):
            continue
        if not _is_real(site.support) or site.stop - site.start != block.stop - block.start:
            raise ValueError(f"site '{site.name}': an L1 term on a site whose support is {site.support} is not "
                             "identity-transformed in unconstrained space; use method='bplmc' or pass "
                             f"nonsmooth={{'{site.name}': False}}")
        weight[site.start:site.stop] = block_weight
        center[site.start:site.stop] = center_c[block.start:block.stop]
    return jnp.asarray(weight, dtype=target.dtype), jnp.asarray(center, dtype=target.dtype)


def myula_setup(target, options) -> ProximalSetup:
    """myula on the unconstrained vector z: f(z) = -log p(z) (Jacobians included) minus the real sites' L1 terms."""
    weight, center = myula_l1_terms(target, options.get("nonsmooth"))
    has_l1 = _has_l1(weight)
    smoothing = options["smoothing"] if has_l1 else None

    def smooth_potential(z):
        return -target.logdensity(z) - jnp.sum(weight * jnp.abs(z - center))

    potential_fn = myula.moreau_potential(smooth_potential, weight if has_l1 else None, center,
                                          options["smoothing"])
    transition = myula.build_kernel()
    euclidean = make_legendre("euclidean")

    def kernel(key, state, step_size):
        return transition(key, state, potential_fn, step_size)

    def init(z):
        return myula.init(z, potential_fn)

    def curvature(z):
        return bplmc.relative_curvature(smooth_potential, euclidean, z)

    identity = lambda z: z  # noqa: E731
    return ProximalSetup(kernel, init, identity, identity, curvature, smoothing, False)


# ---------------------------------------------------------------------------------------------------------------------
# step-size rules and warm-up
def step_size_from_curvature(curvature, smoothing):
    """STEP_FRACTION / (max(L, 1) + 1/lambda), the kernel's default rule made safe for flat or non-finite L."""
    safe = jnp.where(jnp.isfinite(curvature), jnp.maximum(curvature, CURVATURE_FLOOR), CURVATURE_FLOOR)
    return bplmc.default_step_size(safe, smoothing, STEP_FRACTION)


class _DualAveraging(NamedTuple):
    """Nesterov's dual averaging on log gamma (Hoffman and Gelman 2014, section 3.2.1; t0 = 10, 0.05, kappa = 0.75)."""

    log_step: jax.Array
    log_step_average: jax.Array
    error_sum: jax.Array
    count: jax.Array
    mu: jax.Array


def _dual_averaging_init(step_size):
    log_step = jnp.log(step_size)
    zero = jnp.zeros_like(log_step)
    return _DualAveraging(log_step, log_step, zero, zero, jnp.log(10.0) + log_step)


def _dual_averaging_update(state: _DualAveraging, acceptance, target_accept):
    acceptance = jnp.where(jnp.isfinite(acceptance), acceptance, 0.0)
    count = state.count + 1.0
    error_sum = state.error_sum + (target_accept - acceptance)
    log_step = state.mu - jnp.sqrt(count) / 0.05 * error_sum / (count + 10.0)
    weight = count ** -0.75
    average = weight * log_step + (1.0 - weight) * state.log_step_average
    return _DualAveraging(log_step, average, error_sum, count, state.mu)


def warmup_chain(setup: ProximalSetup, num_steps: int, step_size=None, target_accept: float = 0.574):
    """``(key, kernel_state) -> (kernel_state, step_size, mean acceptance)`` for ONE chain (fit vmaps it).

    ``step_size`` fixed: ``num_steps`` steps of burn-in. None and adjusted: dual averaging from the curvature rule
    at the start. None and unadjusted: windows at the curvature rule measured at each window's start; the result
    is the rule at the 0.9 quantile of the second half's curvatures, and the last steps (when ``num_steps`` is not
    a multiple of the windows) run at it.
    """

    def run(key, state, step_sizes, start):
        def body(state, inputs):
            t, gamma = inputs
            state, info = setup.kernel(jax.random.fold_in(key, t), state, gamma)
            return state, info.acceptance_rate

        steps = start + jnp.arange(step_sizes.shape[0])
        return jax.lax.scan(body, state, (steps, step_sizes))

    def warmup(key, state):
        dtype = state.position.dtype
        if step_size is not None:
            gamma = jnp.asarray(step_size, dtype)
            state, acceptance = run(key, state, jnp.full((num_steps,), gamma), 0)
            return state, gamma, jnp.mean(acceptance)
        if setup.adjusted:
            initial = step_size_from_curvature(setup.curvature(state.position), setup.smoothing).astype(dtype)

            def body(carry, t):
                state, averaging = carry
                gamma = jnp.exp(averaging.log_step)
                state, info = setup.kernel(jax.random.fold_in(key, t), state, gamma)
                return (state, _dual_averaging_update(averaging, info.acceptance_rate, target_accept)), \
                    info.acceptance_rate

            (state, averaging), acceptance = jax.lax.scan(body, (state, _dual_averaging_init(initial)),
                                                          jnp.arange(num_steps))
            return state, jnp.exp(averaging.log_step_average).astype(dtype), jnp.mean(acceptance)

        probes = max(1, min(CURVATURE_PROBES, num_steps))
        window = num_steps // probes

        def window_body(state, index):
            curvature = setup.curvature(state.position)
            gamma = step_size_from_curvature(curvature, setup.smoothing).astype(dtype)
            state, acceptance = run(key, state, jnp.full((window,), gamma), index * window)
            return state, (curvature, jnp.mean(acceptance))

        state, (curvatures, acceptance) = jax.lax.scan(window_body, state, jnp.arange(probes))
        late = curvatures[probes // 2:]
        late = jnp.where(jnp.isfinite(late), late, jnp.inf)
        gamma = step_size_from_curvature(jnp.quantile(late, CURVATURE_QUANTILE), setup.smoothing).astype(dtype)
        tail = num_steps - probes * window
        if tail:
            state, tail_acceptance = run(key, state, jnp.full((tail,), gamma), probes * window)
            acceptance = jnp.concatenate([acceptance, jnp.atleast_1d(jnp.mean(tail_acceptance))])
        return state, gamma, jnp.mean(acceptance)

    return warmup


# ---------------------------------------------------------------------------------------------------------------------
# the MCMCMethod pieces
def _make_warmup(setup_fn):
    def method_warmup(target, options, num_steps):
        setup = setup_fn(target, options)
        adapt = warmup_chain(setup, num_steps, options["step_size"], options.get("target_accept", 0.574))

        def warmup(key, z):
            state, gamma, acceptance = adapt(key, setup.init(setup.to_kernel(z)))
            return (ProximalFitState(state, setup.to_unconstrained(state.position)), BPLMCParams(gamma),
                    acceptance)

        return warmup

    return method_warmup


def _make_step(setup_fn):
    def method_step(target, options):
        setup = setup_fn(target, options)

        def step(key, state, params):
            new, info = setup.kernel(key, state.kernel, params.step_size)
            if setup.adjusted:
                stats = ProximalInfo(jnp.zeros_like(info.diverging), info.diverging, info.envelope_grad_norm,
                                     info.acceptance_rate)
            else:
                stats = ProximalInfo(info.diverging, info.diverging, info.envelope_grad_norm, None)
            return ProximalFitState(new, setup.to_unconstrained(new.position)), stats

        return step

    return method_step


def _make_start(setup_fn):
    """warmup=0: the un-adapted start, at the user's step size or the curvature rule at the initial point."""

    def method_start(target, options):
        setup = setup_fn(target, options)

        def start(z):
            state = setup.init(setup.to_kernel(z))
            if options["step_size"] is not None:
                gamma = jnp.asarray(options["step_size"], z.dtype)
            else:
                gamma = step_size_from_curvature(setup.curvature(state.position), setup.smoothing).astype(z.dtype)
            return ProximalFitState(state, setup.to_unconstrained(state.position)), BPLMCParams(gamma)

        return start

    return method_start


def _record(state: ProximalFitState, info: ProximalInfo) -> dict:
    record = {"z": state.z, "diverging": info.diverging, "out_of_domain": info.out_of_domain,
              "envelope_grad_norm": info.envelope_grad_norm}
    if info.acceptance_rate is not None:
        record["acceptance_rate"] = info.acceptance_rate
    return record


BPLMC = MCMCMethod(BPLMC_SCHEMA, _make_warmup(bplmc_setup), _make_step(bplmc_setup), _record,
                   _make_start(bplmc_setup))
MYULA = MCMCMethod(MYULA_SCHEMA, _make_warmup(myula_setup), _make_step(myula_setup), _record,
                   _make_start(myula_setup))

METHODS = (BPLMC, MYULA)
