"""Registers ``bplmc`` (Bregman proximal Langevin Monte Carlo) and ``myula`` with `samplax.fit`.

Kernels: `samplax.kernels.bregman` (Lau and Liu, ICML 2022; Durmus, Moulines and Pereyra, SIAM J. Imaging Sci.
2018). Math, measurements and advice: docs/methods/bplmc.md.

* ``bplmc`` runs on the model's CONSTRAINED coordinates (``target.composite``): U(x) = f(x) + env(x), where env is
  the Bregman-Moreau envelope (smoothing lambda) of the fixed-scale Laplace priors' L1 terms, and each site moves in
  the mirror coordinates of its Legendre function, so every step lands inside the support. One step:
  y' = grad phi(x) - gamma grad U(x) + sqrt(2 gamma) phi''(x)^{1/2} xi, x' = grad phi*(y'), optionally followed by a
  Metropolis-Hastings test on the exact posterior (``adjusted``; the envelope only steers the proposal). Which
  Legendre function each site gets is decided here (``default_legendre``, ``legendre_blocks``), from the site's
  support; the bridge only detects the L1 terms.
* ``myula`` runs on the UNCONSTRAINED coordinates (NumPyro's transforms, Jacobians in f), with the L1 terms of the
  Laplace priors on real sites (identity-transformed there) and a declared total-variation term smoothed by the
  Moreau envelope in the metric of a diagonal inverse mass m:
  z' = z - gamma m grad f(z) - (gamma / lambda) (z - prox(z)) + sqrt(2 gamma m) xi, optionally adjusted on the exact
  posterior.

Defaults and why (measured in docs/methods/bplmc.md and docs/benchmarks/):

* bplmc ``adjusted=None`` means adjusted when any site is constrained (positive, interval, simplex) and unadjusted
  when every site is real. The unadjusted Euler step in mirror coordinates is unstable where mass piles against a
  boundary (46-100 % of chains with Gamma shape <= 1 hit 0 or NaN within 2000 steps at gamma = 0.01); the
  Metropolis test turns such steps into rejections and removes the step-size bias. Adjusted runs use the log-barrier
  (Burg) maps on positive and simplex sites: the only maps measured to recover exact moments with mass piled at a face.
* myula ``adjusted=False`` (the paper's method); ``adjusted=True`` tests on the exact posterior, which removes the
  smoothing and step biases that made it lose to NUTS on the Bayesian LASSO. ``precondition=None`` is on exactly when
  adjusted: the unadjusted step in the metric of m is limited by the envelope's curvature 1/lambda and gains nothing.
  ``precondition="dense"`` adapts the draws' covariance instead of their variances (drift and noise in its metric,
  the envelope in its diagonal's), for posteriors whose coordinates are correlated.
* ``step_size=None`` (auto): `samplax.kernels.bregman.adaptation.build_warmup`. Unadjusted: 10 warm-up windows, each at
  0.2 / (L + 1/lambda) with L the curvature of f in the chain's geometry at the window's start; sampling uses the 0.9
  quantile of the later windows' L. Adjusted: BlackJAX's dual averaging towards ``target_accept``. With a
  preconditioner, windows 2-5 estimate m (BlackJAX's Welford). A fixed ``step_size`` turns step adaptation off.

Sample statistics: ``out_of_domain`` (non-finite or out-of-domain proposals, which leave the chain in place),
``diverging`` (the same for unadjusted chains, where staying put is a bias; always False for adjusted chains, where it
is an ordinary Metropolis rejection), ``envelope_grad_norm`` (|grad env| after the step), ``acceptance_rate``
(adjusted only) and ``step_size``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from samplax.infer.methods import MCMCMethod
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels.bregman import block_legendre, bplmc, myula
from samplax.kernels.bregman.adaptation import build_warmup, step_size_from_curvature
from samplax.kernels.bregman.legendre import LEGENDRE_NAMES, LegendreSpec
from samplax.kernels.bregman.prox import bregman_moreau_envelope
from samplax.kernels.bregman.total_variation import total_variation
from samplax.models.bridge import UnsupportedModelError

__all__ = [
    "BPLMC_SCHEMA",
    "MYULA_SCHEMA",
    "BPLMCParams",
    "ProximalFitState",
    "ProximalInfo",
    "ProximalSetup",
    "bplmc_setup",
    "default_legendre",
    "legendre_blocks",
    "myula_setup",
    "myula_l1_terms",
    "myula_tv_terms",
    "resolve_adjusted",
    "step_size_from_curvature",
    "warmup_chain",
]


class BPLMCParams(NamedTuple):
    """Adapted per-chain parameters (fit broadcasts ``step_size`` into ``sample_stats``).

    ``inverse_mass`` is the preconditioner (myula: its diagonal, or for ``precondition="dense"`` the lower Cholesky
    factor of the dense one; ones for bplmc).
    """

    step_size: jax.Array
    inverse_mass: jax.Array


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
        such a proposal is an ordinary Metropolis rejection (its target density is 0) and leaves the target invariant.
    acceptance_rate
        The Metropolis acceptance probability (adjusted chains); None for unadjusted ones.
    """

    diverging: jax.Array
    out_of_domain: jax.Array
    envelope_grad_norm: jax.Array
    acceptance_rate: jax.Array | None


class ProximalSetup(NamedTuple):
    """What the warm-up and the sampler need, built once per (target, options).

    kernel(key, state, step_size, inverse_mass) -> (state, info); init(position, inverse_mass) -> state (kernel
    coordinates); to_kernel(z) / to_unconstrained(position) move between fit's flat unconstrained vector and kernel
    coordinates; curvature(position, inverse_mass) is L for the step-size rule; smoothing is lambda, or None when
    there is no nonsmooth term; precondition says whether the warm-up adapts ``inverse_mass``, dense whether it is
    the draws' covariance (passed as its lower Cholesky factor) rather than their variances.
    """

    kernel: Callable
    init: Callable
    to_kernel: Callable
    to_unconstrained: Callable
    curvature: Callable
    smoothing: float | None
    adjusted: bool
    precondition: bool = False
    dense: bool = False


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
            raise ValueError(
                f"method '{method}': option '{self.name}' must be a dict {{site name: {self.describe}}}, "
                f"got {value!r}; {self.help}"
            )
        for site, entry in value.items():
            if not self.valid(entry):
                raise ValueError(
                    f"method '{method}': option '{self.name}' gives site '{site}' the value {entry!r}; "
                    f"expected {self.describe}"
                )
        return dict(value)


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclasses.dataclass(frozen=True)
class _BetaOption(Option):
    def check(self, method: str, value):
        if value is None:
            return None
        if _positive_number(value):
            return float(value)
        if isinstance(value, dict) and all(isinstance(k, str) and _positive_number(v) for k, v in value.items()):
            return {k: float(v) for k, v in value.items()}
        raise ValueError(
            f"method '{method}': option 'beta' must be a number > 0 or a dict {{site name: number > 0}}, "
            f"got {value!r}; {self.help}"
        )


@dataclasses.dataclass(frozen=True)
class _PreconditionOption(Option):
    def check(self, method: str, value):
        if value is None or isinstance(value, bool) or value in PRECONDITIONERS:
            return value
        raise ValueError(
            f"method '{method}': option 'precondition' must be None, True, False, 'diagonal' or 'dense', "
            f"got {value!r}; {self.help}"
        )


PRECONDITIONERS = ("diagonal", "dense")


def resolve_precondition(options, adjusted: bool) -> str | None:
    """``"diagonal"``, ``"dense"`` or None (no preconditioner) from the ``precondition`` option.

    None (the default) is the diagonal preconditioner when adjusted and none when unadjusted; True is diagonal.
    """
    value = options.get("precondition")
    if value is None:
        return "diagonal" if adjusted else None
    if value is True:
        return "diagonal"
    return value or None


@dataclasses.dataclass(frozen=True)
class _TotalVariationOption(Option):
    """{"site": image site, "weight": w > 0, "factor": the numpyro.factor site that holds -w * TV(image)}."""

    def check(self, method: str, value):
        if value is None:
            return None
        keys = {"site", "weight", "factor"}
        if (
            not isinstance(value, dict)
            or set(value) != keys
            or not isinstance(value["site"], str)
            or not isinstance(value["factor"], str)
            or not _positive_number(value["weight"])
        ):
            raise ValueError(
                f"method '{method}': option 'total_variation' must be a dict {{'site': image site name, "
                f"'weight': number > 0, 'factor': name of the numpyro.factor site holding "
                f"-weight * total_variation(image)}}, got {value!r}; {self.help}"
            )
        return {"site": value["site"], "weight": float(value["weight"]), "factor": value["factor"]}


_STEP_SIZE = Option(
    "step_size",
    float,
    None,
    "gamma > 0; None: from the smooth part's curvature during warm-up (and dual averaging when adjusted)",
    minimum=1e-12,
    allow_none=True,
)
_SMOOTHING = Option(
    "smoothing",
    float,
    0.1,
    "lambda of the envelope of the nonsmooth terms: smaller is closer to the posterior but stiffer (smaller steps)",
    minimum=1e-8,
)
_NONSMOOTH = _SiteMapOption(
    "nonsmooth",
    dict,
    None,
    "site -> False keeps that site's Laplace prior inside the smooth part (no envelope)",
    valid=lambda v: isinstance(v, bool),
    describe="True or False",
)
_TARGET_ACCEPT = Option(
    "target_accept",
    float,
    0.574,
    "acceptance targeted by the dual averaging (adjusted, auto step)",
    minimum=0.05,
    maximum=0.99,
)

BPLMC_SCHEMA = MethodSchema(
    "bplmc",
    "mcmc",
    "Bregman proximal Langevin Monte Carlo (Lau and Liu 2022): mirror-Langevin steps inside each "
    "site's support, Bregman-Moreau envelope for Laplace priors; Metropolis-adjusted on constrained sites",
    (
        _STEP_SIZE,
        _SMOOTHING,
        Option("side", str, "left", "which Bregman-Moreau envelope", choices=("left", "right")),
        _BetaOption(
            "beta",
            object,
            None,
            "scale of the hyperbolic-entropy map on L1 sites (None: 1.0), a number or {site: number}",
        ),
        Option(
            "adjusted",
            bool,
            None,
            "Metropolis correction on the smoothed target; None: on when any site is constrained",
            allow_none=True,
        ),
        _TARGET_ACCEPT,
        _SiteMapOption(
            "legendre",
            dict,
            None,
            "site -> Legendre function name, overriding the default map",
            valid=lambda v: v in LEGENDRE_NAMES,
            describe=f"one of {list(LEGENDRE_NAMES)}",
        ),
        _NONSMOOTH,
    ),
)

MYULA_SCHEMA = MethodSchema(
    "myula",
    "mcmc",
    "MYULA (Durmus, Moulines and Pereyra 2018): Langevin on unconstrained coordinates with the "
    "Moreau envelope of the Laplace priors on real sites and of declared total-variation terms; diagonal "
    "preconditioner; optionally Metropolis-adjusted on the exact posterior",
    (
        _STEP_SIZE,
        _SMOOTHING,
        _NONSMOOTH,
        Option(
            "adjusted",
            bool,
            False,
            "Metropolis test on the exact posterior (the envelope only steers the "
            "proposal: no smoothing or step-size bias)",
        ),
        _TARGET_ACCEPT,
        _PreconditionOption(
            "precondition",
            object,
            None,
            "adapt an inverse mass during warm-up: 'diagonal' (or True; the draws' variances, the "
            "envelope taken in its metric) or 'dense' (their covariance: drift and noise in its "
            "metric, the envelope in its diagonal's); None: diagonal when adjusted, none otherwise",
            allow_none=True,
        ),
        _TotalVariationOption(
            "total_variation",
            dict,
            None,
            "declare a total-variation prior: {'site': 'x', "
            "'weight': w, 'factor': 'tv'} for a model with numpyro.factor('tv', -w * "
            "total_variation(x)) (samplax.kernels.bregman.total_variation)",
        ),
    ),
)


# ---------------------------------------------------------------------------------------------------------------------
# the Legendre policy: which map each site of the composite gets
def default_legendre(name: str, support, has_l1: bool, barrier: bool = False) -> str:
    """The default Legendre function of a site with this support.

    Real: hyperbolic entropy when the site carries an L1 term (its prox has a closed form), else Euclidean. Positive
    and simplex: the log-barrier maps (``burg``, ``burg_simplex``) when ``barrier`` (adjusted chains: their
    multiplicative steps reach mass piled at a face, where the entropic maps mix badly; docs/methods/bplmc.md), the
    entropies otherwise. Interval: Fermi-Dirac.
    """
    if isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.real:
        return "hyperbolic_entropy" if has_l1 else "euclidean"
    if support is constraints.positive:
        return "burg" if barrier else "boltzmann_shannon"
    if support is constraints.simplex:
        return "burg_simplex" if barrier else "entropic_simplex"
    if isinstance(support, constraints.interval) or support is constraints.unit_interval:
        return "fermi_dirac"
    raise UnsupportedModelError(
        "bplmc",
        "support",
        f"site '{name}': no Legendre function is known for support {support}; pass legendre={{'{name}': ...}} "
        f"with one of {list(LEGENDRE_NAMES)}, or use method='myula'",
    )


def legendre_blocks(
    target, composite, legendre: dict | None = None, beta=None, barrier: bool = False
) -> tuple[LegendreSpec, ...]:
    """One ``LegendreSpec`` per latent site of ``composite`` (``target.composite()``).

    The override in ``legendre`` ({site: name}) or ``default_legendre``; hyperbolic-entropy blocks are centred at the L1
    centre with scale ``beta`` (a number or {site: number}; default 1), Fermi-Dirac blocks span the site's interval.
    """
    legendre = dict(legendre or {})
    for name, value in legendre.items():
        if value not in LEGENDRE_NAMES:
            raise ValueError(f"site '{name}': unknown Legendre function {value!r}; use one of {list(LEGENDRE_NAMES)}")
        if name not in target.site_names:
            raise ValueError(
                f"option 'legendre' names site '{name}', not a continuous latent site of the model; "
                f"sites are {list(target.site_names)}"
            )
    weight = _concrete_numpy(composite.l1_weight)
    center = _concrete_numpy(composite.l1_center)
    specs = []
    for site, block in zip(target.sites, composite.blocks):
        support = site.support
        if isinstance(support, constraints.independent):
            support = support.base_constraint
        has_l1 = bool(np.any(weight[block] > 0))
        name = legendre.get(site.name) or default_legendre(site.name, support, has_l1, barrier)
        params = {}
        if name == "hyperbolic_entropy":
            site_beta = beta.get(site.name, 1.0) if isinstance(beta, dict) else (1.0 if beta is None else beta)
            params = {"beta": float(site_beta), "center": center[block]}
        elif name == "fermi_dirac":
            params = {"lower": float(np.min(support.lower_bound)), "upper": float(np.max(support.upper_bound))}
        specs.append(LegendreSpec(name, block.start, block.stop, params))
    return tuple(specs)


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
    """Whether bplmc runs adjusted.

    ``options['adjusted']``, or when None: True iff some site's support is not the real line.
    """
    if options.get("adjusted") is not None:
        return bool(options["adjusted"])
    return any(not _is_real(site.support) for site in target.sites)


class _Metric(NamedTuple):
    """The quadratic Legendre function x^T M^-1 x / 2, as far as ``bplmc.relative_curvature`` needs it.

    ``inverse_mass`` is diag(M) or, for a dense M = L L^T, its factor L.
    """

    inverse_mass: jax.Array

    def hess_inv_matvec(self, x, v):
        return myula.preconditioned(self.inverse_mass, v)


def bplmc_setup(target, options) -> ProximalSetup:
    """Build bplmc on ``target.composite``: constrained coordinates, per-site Legendre maps, Bregman-Moreau envelope."""
    if options.get("total_variation") is not None:
        raise ValueError(
            "method 'bplmc' has no total-variation prox (TV is Euclidean); use method='myula' with "
            "total_variation={...}"
        )
    adjusted = resolve_adjusted(target, options)
    with jax.ensure_compile_time_eval():  # the L1 weights must stay concrete inside fit's jit
        composite = target.composite(nonsmooth=options.get("nonsmooth"))
        specs = legendre_blocks(target, composite, options.get("legendre"), options.get("beta"), barrier=adjusted)
    legendre = block_legendre(specs, composite.dim)
    smoothing = options["smoothing"] if _has_l1(composite.l1_weight) else None
    envelope_fn = None
    if smoothing is not None:
        envelope_fn = bregman_moreau_envelope(
            legendre, composite.l1_weight, composite.l1_center, smoothing, options.get("side", "left")
        )
    potential_fn = bplmc.smoothed_potential(
        composite.smooth_potential, envelope_fn, bplmc.l1_term(composite.l1_weight, composite.l1_center)
    )
    transition = bplmc.build_kernel(legendre, adjusted)

    def kernel(key, state, step_size, inverse_mass=None):
        del inverse_mass  # the geometry is phi's
        return transition(key, state, potential_fn, step_size)

    def init(position, inverse_mass=None):
        del inverse_mass
        return bplmc.init(position, potential_fn, legendre)

    def to_unconstrained(x):
        return target.unconstrain(composite.to_constrained(x))

    def curvature(x, inverse_mass=None):
        del inverse_mass
        return bplmc.relative_curvature(composite.smooth_potential, legendre, x)

    return ProximalSetup(kernel, init, composite.from_unconstrained, to_unconstrained, curvature, smoothing, adjusted)


def myula_l1_terms(target, nonsmooth=None):
    """(weight, center) of the Laplace priors' L1 terms on the flat UNCONSTRAINED vector (zero off real sites)."""
    weight, center = _myula_l1_numpy(target, nonsmooth)
    return jnp.asarray(weight, dtype=target.dtype), jnp.asarray(center, dtype=target.dtype)


def _myula_l1_numpy(target, nonsmooth=None):
    with jax.ensure_compile_time_eval():  # the L1 weights must stay concrete inside fit's jit
        composite = target.composite(nonsmooth=nonsmooth)
    weight_c = _concrete_numpy(composite.l1_weight)
    center_c = _concrete_numpy(composite.l1_center)
    weight = np.zeros(target.dim, dtype=weight_c.dtype)
    center = np.zeros(target.dim, dtype=weight_c.dtype)
    for site, block in zip(target.sites, composite.blocks):
        block_weight = weight_c[block]
        if not np.any(block_weight > 0):
            continue
        if not _is_real(site.support) or site.stop - site.start != block.stop - block.start:
            raise ValueError(
                f"site '{site.name}': an L1 term on a site whose support is {site.support} is not "
                "identity-transformed in unconstrained space; use method='bplmc' or pass "
                f"nonsmooth={{'{site.name}': False}}"
            )
        weight[site.start : site.stop] = block_weight
        center[site.start : site.stop] = center_c[block]
    return weight, center


TV_CHECK_RTOL = 1e-3
CONCRETIZATION_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError, TypeError)


def myula_tv_terms(target, spec) -> tuple:
    """The declared total-variation term as ``myula.TVTerm`` s on the unconstrained vector; checks the declaration.

    The image site must be real (identity-transformed) with a 2-D shape, and the factor site must equal
    -weight * total_variation(image) (checked at two points when the factor does not read traced data; a mismatch
    would leave a kink inside f).
    """
    if spec is None:
        return ()
    sites = {site.name: site for site in target.sites}
    site = sites.get(spec["site"])
    if site is None:
        raise ValueError(
            f"option 'total_variation' names site '{spec['site']}', not a continuous latent site of the "
            f"model; sites are {list(target.site_names)}"
        )
    if not _is_real(site.support) or len(site.shape) != 2 or min(site.shape) < 2:
        raise ValueError(
            f"site '{site.name}': a total-variation term needs a real image site of shape (H, W) with "
            f"H, W >= 2, got support {site.support} and shape {site.shape}"
        )
    term = myula.TVTerm(site.start, site.stop, tuple(site.shape), spec["weight"])
    with jax.ensure_compile_time_eval():
        rng = np.random.default_rng(0)
        for scale in (0.1, 1.0):
            z = jnp.asarray(rng.normal(scale=scale, size=target.dim), dtype=target.dtype)
            log_probs = target.site_log_probs(z)
            if spec["factor"] not in log_probs:
                raise ValueError(
                    f"option 'total_variation': the model has no site '{spec['factor']}'; write the prior "
                    f"as numpyro.factor('{spec['factor']}', -{spec['weight']} * total_variation(x)) and "
                    "name that factor"
                )
            try:
                declared = float(log_probs[spec["factor"]])
            except CONCRETIZATION_ERRORS:  # the factor reads data passed as traced arguments: not checkable here
                return (term,)
            expected = -spec["weight"] * float(total_variation(z[site.start : site.stop].reshape(site.shape)))
            if not np.isclose(declared, expected, rtol=TV_CHECK_RTOL, atol=1e-3):
                raise ValueError(
                    f"option 'total_variation': factor '{spec['factor']}' is {declared:.6g} where "
                    f"-{spec['weight']} * total_variation({site.name}) is {expected:.6g}; the factor must "
                    "be exactly -weight * samplax.kernels.bregman.total_variation.total_variation(image) "
                    "(isotropic, forward differences)"
                )
    return (term,)


def myula_setup(target, options) -> ProximalSetup:
    """Build myula on the unconstrained vector z.

    f(z) = -log p(z) (Jacobians included) minus the declared nonsmooth terms (the real sites' L1 terms and the
    total-variation term), which enter through their Moreau envelope.
    """
    weight_np, _ = _myula_l1_numpy(target, options.get("nonsmooth"))
    weight, center = myula_l1_terms(target, options.get("nonsmooth"))
    tv_terms = myula_tv_terms(target, options.get("total_variation"))
    for term in tv_terms:
        if np.any(weight_np[term.start : term.stop] > 0):
            name = options["total_variation"]["site"]
            raise ValueError(
                f"site '{name}' carries both a Laplace prior and the total-variation term, whose sum has "
                f"no prox here; pass nonsmooth={{'{name}': False}} to keep the Laplace prior smooth"
            )
    has_l1 = bool(np.any(weight_np > 0))  # from NumPy: inside fit's jit the jnp weights are staged (unknown)
    smoothing = options["smoothing"] if has_l1 or tv_terms else None
    adjusted = bool(options.get("adjusted", False))

    def smooth_potential(z):
        value = -target.logdensity(z) - jnp.sum(weight * jnp.abs(z - center))
        for term in tv_terms:
            value = value - term.weight * total_variation(z[term.start : term.stop].reshape(term.shape))
        return value

    potential_fn = myula.moreau_potential(
        smooth_potential, weight if has_l1 else None, center, options["smoothing"], tv_terms
    )
    transition = myula.build_kernel(adjusted)

    def kernel(key, state, step_size, inverse_mass=None):
        return transition(key, state, potential_fn, step_size, inverse_mass)

    def init(z, inverse_mass=None):
        return myula.init(z, potential_fn, inverse_mass)

    def curvature(z, inverse_mass=None):
        metric = _Metric(jnp.ones_like(z) if inverse_mass is None else inverse_mass)
        return bplmc.relative_curvature(smooth_potential, metric, z)

    identity = lambda z: z  # noqa: E731
    preconditioner = resolve_precondition(options, adjusted)
    return ProximalSetup(
        kernel,
        init,
        identity,
        identity,
        curvature,
        smoothing,
        adjusted,
        preconditioner is not None,
        preconditioner == "dense",
    )


# ---------------------------------------------------------------------------------------------------------------------
# warm-up
def warmup_chain(setup: ProximalSetup, num_steps: int, step_size=None, target_accept: float = 0.574):
    """``(key, kernel_position) -> (kernel_state, step_size, inverse_mass, mean acceptance)`` for ONE chain.

    `samplax.kernels.bregman.adaptation.build_warmup` with this setup's kernel (fit vmaps it).
    """
    return build_warmup(
        setup.kernel,
        setup.init,
        setup.curvature,
        setup.smoothing,
        adjusted=setup.adjusted,
        num_steps=num_steps,
        step_size=step_size,
        target_accept=target_accept,
        adapt_mass=setup.precondition,
        dense=setup.dense,
    )


# ---------------------------------------------------------------------------------------------------------------------
# the MCMCMethod pieces
def _make_warmup(setup_fn):
    def method_warmup(target, options, num_steps):
        setup = setup_fn(target, options)
        adapt = warmup_chain(setup, num_steps, options["step_size"], options.get("target_accept", 0.574))

        def warmup(key, z):
            state, gamma, inverse_mass, acceptance = adapt(key, setup.to_kernel(z))
            return (
                ProximalFitState(state, setup.to_unconstrained(state.position)),
                BPLMCParams(gamma, inverse_mass),
                acceptance,
            )

        return warmup

    return method_warmup


def _make_step(setup_fn):
    def method_step(target, options):
        setup = setup_fn(target, options)

        def step(key, state, params):
            new, info = setup.kernel(key, state.kernel, params.step_size, params.inverse_mass)
            if setup.adjusted:
                stats = ProximalInfo(
                    jnp.zeros_like(info.diverging), info.diverging, info.envelope_grad_norm, info.acceptance_rate
                )
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
            position = setup.to_kernel(z)
            inverse_mass = jnp.eye(position.size, dtype=z.dtype) if setup.dense else jnp.ones(position.shape, z.dtype)
            state = setup.init(position, inverse_mass)
            if options["step_size"] is not None:
                gamma = jnp.asarray(options["step_size"], z.dtype)
            else:
                gamma = step_size_from_curvature(setup.curvature(state.position, inverse_mass), setup.smoothing).astype(
                    z.dtype
                )
            return ProximalFitState(state, setup.to_unconstrained(state.position)), BPLMCParams(gamma, inverse_mass)

        return start

    return method_start


def _record(state: ProximalFitState, info: ProximalInfo) -> dict:
    record = {
        "z": state.z,
        "diverging": info.diverging,
        "out_of_domain": info.out_of_domain,
        "envelope_grad_norm": info.envelope_grad_norm,
    }
    if info.acceptance_rate is not None:
        record["acceptance_rate"] = info.acceptance_rate
    return record


BPLMC = MCMCMethod(BPLMC_SCHEMA, _make_warmup(bplmc_setup), _make_step(bplmc_setup), _record, _make_start(bplmc_setup))
MYULA = MCMCMethod(MYULA_SCHEMA, _make_warmup(myula_setup), _make_step(myula_setup), _record, _make_start(myula_setup))

METHODS = (BPLMC, MYULA)
