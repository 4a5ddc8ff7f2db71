"""``samplax.fit(method="mixflow")``: MixFlows (Xu, Chen and Campbell, ICML 2023) on a samplax `Target`.

Steps of one fit (the kernel is `samplax.kernels.mixflow`; the math is in its docstring and docs/methods/mixflow.md):

1. The reference q0: a mean-field Gaussian N(mu, diag(D^2)) on the flat unconstrained vector, fitted by NumPyro's SVI
   with `AutoDiagonalNormal` for ``warmup`` steps (Adam with a cosine-decayed learning rate, 4 particles). SVI runs on
   a two-line NumPyro model: a flat ``numpyro.sample("z", ImproperUniform(real_vector))`` plus
   ``numpyro.factor(target.logdensity(z))``, so q0 sees exactly the log density every other method samples.
2. The step size: given, or ``"auto"``: the ELBO of the MixFlow at the requested N, estimated with
   ``tuning_orbits`` orbits (the same reference draws at every grid point), maximised (less one standard error)
   over ``step_size_grid`` values eps = c / L with c log-spaced in [0.02, 2] (times min D when not whitened): c is
   the largest displacement of one map, in units of the reference's scale. Then (``travel=True``, with "auto") 256
   draws of that flow measure its spread s_i = sd_i / D_i; when max s_i > 1.5 the maps are lengthened to
   L x max s_i leapfrog steps of the same size, so one map travels the width the flow reaches (`_travel_steps`).
3. ``chains`` independent repeats of ``draws`` i.i.d. draws each (always in float64: with ``precision="float32"``
   the Target is rebuilt under x64 for the flow, and only the returned draws are float32). The first
   ``density_draws`` draws of each repeat come with their exact log q_N (augmented space) and the unbiased ELBO
   estimate of their own orbit (2N - 2 maps per draw); the others are the same points T^K S0 without their density
   (K maps, about N/2 on average; their ``log_q`` and ``orbit_elbo`` are NaN). A repeat's ELBO is the mean of its
   density draws' orbit estimates (still unbiased); ``fit.elbo`` is the mean and standard error over repeats (the
   reference and the step size are shared by the repeats, so that standard error is conditional on them). A draw
   where the log density is -inf or not finite (a model that is zero in places) is redrawn: the draws are q_N
   conditioned on pi > 0.
4. The method's own check (``idata.attrs["extra_mixflow_check"]``; its warnings in ``attrs["extra_method_warnings"]``
   become the fit's ConvergenceWarnings): the ELBO at N against N/2, the draws' moments against importance-corrected
   ones, and (``check="nuts"``, the default) against a short NUTS run.

Cost: ``attrs["extra_cost"]`` holds the gradient evaluations of each stage, known before the run, and an estimate of
the sampling seconds; the fit's progress bar shows each stage, the draws advancing in at most 20 compiled pieces.

Numerical health, in ``sample_stats`` and ``idata.attrs["extra_..."]``: the one-step inversion error
max |T^-1 T s - s| at every draw, and the largest gap between log q_N computed along two routes (the cached
forward/backward orbit of the draw's reference point, and a fresh backward pass from the draw itself) over
``health_checks`` draws per repeat.

`MixFlowApproximation.log_density` (what ``fit.log_density`` calls) is exact on the augmented space (x, rho, u);
for x alone it returns an importance-sampling estimate over (rho, u) with its standard error.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal
from numpyro.infer.initialization import init_to_value

from samplax.infer import progress
from samplax.infer.methods import DirectMethod, DirectResult
from samplax.infer.mixflow_checks import check_warnings, flow_length_check, moment_check, nuts_check
from samplax.infer.mixflow_checks import pareto_k as _pareto_k
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels import mixflow as kernel
from samplax.models.bridge import build_target

__all__ = [
    "MeanField",
    "fit_mean_field",
    "reference_elbo",
    "step_size_grid",
    "select_step_size",
    "LogDensityEstimate",
    "MixFlowApproximation",
    "SCHEMA",
]

SVI_PARTICLES = 4
GRID_DISPLACEMENTS = (0.02, 2.0)  # range of c = eps * L (whitened units) for step_size="auto"


# ---------------------------------------------------------------------------------------------------------------------
# the reference: mean-field Gaussian by NumPyro SVI
class MeanField(NamedTuple):
    """A fitted mean-field Gaussian: its mean and scale, and the negative ELBO at every SVI step."""

    mean: np.ndarray
    scale: np.ndarray
    losses: np.ndarray  # negative ELBO per SVI step


def fit_mean_field(
    logdensity_fn,
    initial_position,
    rng_key,
    *,
    num_steps: int,
    learning_rate: float = 0.05,
    num_particles: int = SVI_PARTICLES,
) -> MeanField:
    """Mean-field Gaussian VI on a flat log density with NumPyro's SVI and `AutoDiagonalNormal`.

    The NumPyro model is a flat improper-uniform site ``z`` plus ``numpyro.factor(logdensity_fn(z))`` (evaluated
    under ``handlers.block`` so that a log density that traces a NumPyro model adds no sites of its own); the guide
    starts at ``initial_position`` with scale 0.1; Adam's learning rate decays from ``learning_rate`` to 1 % of it
    (cosine), so the last iterate is a converged fit rather than a noisy one. Runs in float64.
    """
    with jax.enable_x64(True):
        z0 = jnp.asarray(initial_position, jnp.float64)
        dim = z0.shape[-1]

        def model():
            z = numpyro.sample("z", dist.ImproperUniform(constraints.real_vector, (), event_shape=(dim,)))
            with numpyro.handlers.block():  # a Target's log density traces its own NumPyro model: keep it inside
                log_density = logdensity_fn(z)
            numpyro.factor("log_density", log_density)

        guide = AutoDiagonalNormal(model, init_loc_fn=init_to_value(values={"z": z0}), init_scale=0.1)
        schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01)
        optimizer = numpyro.optim.optax_to_numpyro(optax.adam(schedule))
        svi = SVI(model, guide, optimizer, Trace_ELBO(num_particles=num_particles))
        result = svi.run(rng_key, num_steps, progress_bar=False)
        mean = np.asarray(result.params["auto_loc"], np.float64)
        scale = np.asarray(result.params["auto_scale"], np.float64)
        losses = np.asarray(result.losses, np.float64)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError(
            "the mean-field reference fit (NumPyro SVI) diverged: its location or scale is not finite. "
            "Lower reference_learning_rate (for example to 0.005), or start from another init"
        )
    return MeanField(mean, scale, losses)


def reference_elbo(logdensity_fn, mean, scale, rng_key, num_draws: int = 1000) -> tuple[float, float]:
    """(estimate, standard error) of the reference's own ELBO E_q0[log pi(x) - log q0(x)] (x-space, i.i.d.).

    Evaluated eagerly (``vmap`` without ``jit``): one cheap pass, no compilation.
    """
    with jax.enable_x64(True):
        mean, scale = jnp.asarray(mean, jnp.float64), jnp.asarray(scale, jnp.float64)
        noise = jax.random.normal(rng_key, (num_draws,) + mean.shape, jnp.float64)
        log_q = -0.5 * jnp.sum(noise**2, -1) - jnp.sum(jnp.log(scale)) - 0.5 * mean.shape[0] * math.log(2 * math.pi)
        terms = np.asarray(jax.vmap(logdensity_fn)(mean + scale * noise) - log_q)
    return float(np.mean(terms)), float(np.std(terms, ddof=1) / math.sqrt(num_draws))


def _final_elbo(losses: np.ndarray) -> tuple[float, float]:
    """The reference's ELBO from SVI's own estimates: mean and SE of -loss over the last 10 % of steps.

    The learning rate has decayed to a few % of its start there, so the parameters barely move.
    """
    tail = -losses[-max(2, losses.size // 10) :]
    tail = tail[np.isfinite(tail)]
    if tail.size < 2:
        return float("nan"), float("nan")
    return float(np.mean(tail)), float(np.std(tail, ddof=1) / math.sqrt(tail.size))


# ---------------------------------------------------------------------------------------------------------------------
# step-size selection
def step_size_grid(num_points: int, leapfrog_steps: int, unit: float = 1.0) -> np.ndarray:
    """The step-size grid eps = c / L * unit, with c log-spaced over GRID_DISPLACEMENTS.

    c is one map's largest displacement.
    """
    low, high = GRID_DISPLACEMENTS
    return np.geomspace(low, high, num_points) / leapfrog_steps * unit


def select_step_size(
    logdensity_fn,
    mean,
    scale,
    rng_key,
    *,
    grid,
    flow_length: int,
    leapfrog_steps: int,
    momentum: str = "laplace",
    whiten: bool = True,
    num_orbits: int = 32,
    batch_size: int = 256,
    on_point=None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """The grid value with the largest ELBO estimate at ``flow_length``, less one standard error.

    Also returns each value's ELBO mean and SE.

    Subtracting one SE guards against the winner's curse (a noisy estimate that is high by chance: large steps give
    the noisiest ELBOs). Every grid point uses the same reference draws (common random numbers). Grid points whose
    estimate is not finite are never chosen.
    """
    means, ses = [], []
    for step_size in np.asarray(grid, np.float64):
        flow = kernel.mixflow(
            logdensity_fn,
            mean,
            scale,
            flow_length=flow_length,
            step_size=float(step_size),
            num_steps=leapfrog_steps,
            momentum=momentum,
            whiten=whiten,
            batch_size=batch_size,
        )
        estimates = flow.elbo(rng_key, num_orbits)
        finite = np.all(np.isfinite(estimates))
        means.append(float(np.mean(estimates)) if finite else -np.inf)
        ses.append(float(np.std(estimates, ddof=1) / math.sqrt(num_orbits)) if finite else np.nan)
        if on_point is not None:
            on_point()
    means, ses = np.asarray(means), np.asarray(ses)
    if not np.any(np.isfinite(means)):
        raise ValueError(
            "every step size on the grid gave a non-finite ELBO: the flow overflowed. Check the "
            "model's log density, or pass a small step_size explicitly"
        )
    penalised = np.where(np.isfinite(means), means - np.nan_to_num(ses, nan=np.inf), -np.inf)
    return float(np.asarray(grid)[int(np.argmax(penalised))]), means, ses


# ---------------------------------------------------------------------------------------------------------------------
# the fitted approximation: what fit.log_density delegates to
class LogDensityEstimate(NamedTuple):
    """An importance-sampling estimate of log q_N(x) (the x-marginal is not available in closed form)."""

    estimate: np.ndarray
    standard_error: np.ndarray  # delta-method standard error of the log estimate
    num_samples: int


class MixFlowApproximation:
    """The fitted MixFlow of a `Target`: exact log density on (x, rho, u), an estimate for x alone, and sampling.

    Coordinates: ``space="unconstrained"`` (default) takes x as the flat unconstrained vector the flow runs on
    (shape (..., dim)); ``space="constrained"`` takes a dict of constrained latent site values (leading batch dims
    allowed) and subtracts the log-Jacobian of NumPyro's constraining transforms, giving the density w.r.t. the
    reference measure NumPyro uses for each site's support. The whitening Jacobian is always included.
    """

    def __init__(self, target, flow: kernel.MixFlow, *, step_size: float, flow_length: int, seed: int = 0):
        self.target = target
        self.flow = flow
        self.step_size = step_size
        self.flow_length = flow_length
        self._key = jax.random.key(seed)
        self._calls = 0

    def __repr__(self):
        return (
            f"MixFlowApproximation(dim={self.target.dim}, flow_length={self.flow_length}, "
            f"step_size={self.step_size:.4g})"
        )

    def _next_key(self, rng_key):
        if rng_key is not None:
            return rng_key
        self._calls += 1
        return jax.random.fold_in(self._key, self._calls)

    def log_density(
        self,
        position,
        momentum=None,
        uniform=None,
        *,
        space: str = "unconstrained",
        rng_key=None,
        num_samples: int = 1000,
    ):
        """The flow's log density log q_N.

        Exact when ``momentum`` and ``uniform`` are given (augmented space); otherwise a `LogDensityEstimate` of the
        x-marginal by importance sampling over (rho, u) ~ m x Uniform(0, 1).
        """
        if space not in ("unconstrained", "constrained"):
            raise ValueError(
                f"space={space!r} must be 'unconstrained' (flat vectors) or 'constrained' (a dict of site values)"
            )
        if (momentum is None) != (uniform is None):
            raise ValueError(
                "pass both momentum and uniform for the exact augmented-space density, or neither for "
                "an importance-sampling estimate of the density of x alone"
            )
        if space == "constrained":
            z, log_jacobian = self._unconstrain(position)
        else:
            z = np.asarray(position, np.float64)
            if z.ndim == 0 or z.shape[-1] != self.target.dim:
                raise ValueError(
                    f"position must have shape (..., {self.target.dim}) (flat unconstrained vectors); "
                    f"got {z.shape}. For site values pass space='constrained'"
                )
            log_jacobian = 0.0
        if momentum is None:
            estimate, se = self.flow.marginal_log_density(self._next_key(rng_key), z, num_samples)
            return LogDensityEstimate(estimate - log_jacobian, se, int(num_samples))
        return self.flow.log_density(z, momentum, uniform) - log_jacobian

    def sample(self, num_draws: int, rng_key=None) -> kernel.Draws:
        """i.i.d. draws (x, rho, u) from q_N, x unconstrained (use ``target.constrain`` for site values)."""
        return self.flow.sample(self._next_key(rng_key), num_draws)

    def _unconstrain(self, values: dict):
        """Flat unconstrained z and log|det d(constrained)/dz| for a dict of constrained site values."""
        target = self.target
        missing = [name for name in target.site_names if name not in values]
        if missing:
            raise ValueError(
                f"space='constrained' needs a value for every latent site {list(target.site_names)}; missing {missing}"
            )
        first = target.sites[0]
        batch_shape = np.shape(values[first.name])[: np.ndim(values[first.name]) - len(first.shape)]
        flat = {
            site.name: np.reshape(np.asarray(values[site.name], np.float64), (-1,) + site.shape)
            for site in target.sites
        }

        def one(site_values):
            z = target.unconstrain(site_values)
            return z, target.logdensity(z) - target.log_joint(site_values)

        with jax.enable_x64(True):
            z, log_jacobian = jax.device_get(jax.jit(jax.vmap(one))(flat))
        return z.reshape(batch_shape + (target.dim,)), log_jacobian.reshape(batch_shape)


# ---------------------------------------------------------------------------------------------------------------------
# the option schema and the run
class _StepSizeOption(Option):
    """``step_size``: "auto" or a positive number (a numeric string from the command line is accepted)."""

    def check(self, method: str, value):
        if isinstance(value, str):
            if value.strip().lower() == "auto":
                return "auto"
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
        raise ValueError(
            f"method '{method}': option 'step_size' must be 'auto' or a positive number, got {value!r}; {self.help}"
        )


SCHEMA = MethodSchema(
    "mixflow",
    "iid",
    "MixFlows (Xu, Chen, Campbell 2023): a mixture of N repeated uncorrected-Hamiltonian maps of a mean-field "
    "Gaussian; i.i.d. draws, exact augmented density, unbiased ELBO; warmup = SVI steps of the reference, chains = "
    "independent repeats, draws = i.i.d. draws per repeat",
    (
        Option("flow_length", int, 200, "N, mixture terms (a draw: about N/2 maps, 2N with density)", minimum=1),
        Option("leapfrog_steps", int, 30, "L, leapfrog steps per map (the least: see travel)", minimum=1),
        _StepSizeOption(
            "step_size",
            str,
            "auto",
            "leapfrog step size in flow coordinates (whitened units when "
            "whiten=True), or 'auto' to maximise the ELBO over a grid at the requested flow_length",
        ),
        Option("momentum", str, "laplace", "momentum distribution", choices=("laplace", "gaussian")),
        Option("whiten", bool, True, "run the flow in coordinates whitened by the mean-field reference"),
        Option("step_size_grid", int, 9, "grid size for step_size='auto'", minimum=2),
        Option(
            "travel",
            bool,
            True,
            "with step_size='auto': when a pilot flow spreads beyond 1.5 reference sds, lengthen the maps to "
            "leapfrog_steps x that spread (at most 10 x) so that one map travels the target's width",
        ),
        Option("tuning_orbits", int, 32, "ELBO orbits per grid point for step_size='auto'", minimum=2),
        Option(
            "reference_learning_rate", float, 0.05, "initial Adam learning rate of the mean-field SVI", minimum=1e-8
        ),
        Option(
            "density_draws",
            int,
            128,
            "draws per repeat that carry their exact log q_N and their orbit's ELBO estimate (2N maps each; the "
            "other draws cost about N/2 maps); the ELBO and the importance check use these",
            minimum=1,
        ),
        Option(
            "health_checks", int, 16, "draws per repeat whose log q_N is recomputed by a fresh backward pass", minimum=0
        ),
        Option("orbit_batch_size", int, 256, "orbits vectorised at a time (memory is O(batch N))", minimum=1),
        Option(
            "check",
            str,
            "nuts",
            "after drawing, compare the draws' means and sds with a short NUTS run (4 x "
            "(300 + 250) steps) and warn when they differ beyond Monte Carlo error; 'importance' keeps only the "
            "checks from the flow itself (ELBO at N/2 against N, importance-corrected moments)",
            choices=("nuts", "importance"),
        ),
    ),
    precision="float64",
)


def _run(target, options, key, chains, warmup, draws) -> DirectResult:
    if warmup < 1:
        raise ValueError(
            "method 'mixflow' fits its mean-field reference with `warmup` SVI steps; pass warmup >= 1 "
            "(for example warmup=1000)"
        )
    flow_length, leapfrog_steps = options["flow_length"], options["leapfrog_steps"]
    spread = np.ones(target.dim)
    momentum, whiten = options["momentum"], options["whiten"]
    batch_size = options["orbit_batch_size"]
    key_init, key_reference, key_tune, key_draws, key_approx = jax.random.split(key, 5)
    key_check = jax.random.fold_in(key_tune, 2)
    if getattr(target, "dtype", jnp.float64) != jnp.float64:  # fit(precision="float32"): the flow still needs float64
        with jax.enable_x64(True):
            target = build_target(target.model, target.source_data, args=target.args)
    logdensity = target.logdensity

    cost = cost_estimate(options, chains=chains, warmup=warmup, draws=draws)
    bar = progress.current()
    start = time.perf_counter()
    with bar.stage("reference (SVI)"):
        with jax.enable_x64(True):
            z0 = np.asarray(target.init(key_init, 1)[0], np.float64)
        reference = fit_mean_field(
            logdensity, z0, key_reference, num_steps=warmup, learning_rate=options["reference_learning_rate"]
        )
    reference_value, reference_se = _final_elbo(reference.losses)
    grid = grid_means = grid_ses = np.asarray([])
    auto = options["step_size"] == "auto"
    tuning_start = time.perf_counter()
    stamps = [tuning_start]

    def grid_point_done():
        stamps.append(time.perf_counter())
        loop.advance(1)

    with bar.loop("step size", total=(options["step_size_grid"] if auto else 0) + 1, unit="flow") as loop:
        if auto:
            unit = 1.0 if whiten else float(np.min(reference.scale))
            grid = step_size_grid(options["step_size_grid"], leapfrog_steps, unit)
            step_size, grid_means, grid_ses = select_step_size(
                logdensity,
                reference.mean,
                reference.scale,
                key_tune,
                grid=grid,
                flow_length=flow_length,
                leapfrog_steps=leapfrog_steps,
                momentum=momentum,
                whiten=whiten,
                num_orbits=options["tuning_orbits"],
                batch_size=batch_size,
                on_point=grid_point_done,
            )
            if options["travel"]:
                leapfrog_steps, spread = _travel_steps(
                    logdensity, reference, step_size, jax.random.fold_in(key_tune, 3), options
                )
        else:
            step_size = float(options["step_size"])
        flow = kernel.mixflow(
            logdensity,
            reference.mean,
            reference.scale,
            flow_length=flow_length,
            step_size=step_size,
            num_steps=leapfrog_steps,
            momentum=momentum,
            whiten=whiten,
            batch_size=batch_size,
        )
        length_check = flow_length_check(
            flow,
            logdensity,
            reference,
            key_tune,
            flow_length=flow_length,
            leapfrog_steps=leapfrog_steps,
            step_size=step_size,
            momentum=momentum,
            whiten=whiten,
            num_orbits=options["tuning_orbits"],
            batch_size=batch_size,
        )
        loop.advance(1)
    training_s = time.perf_counter() - start
    if leapfrog_steps != options["leapfrog_steps"]:  # the travel rule lengthened the maps: the check and the draws
        lengthened = cost_estimate(
            {**options, "leapfrog_steps": leapfrog_steps}, chains=chains, warmup=warmup, draws=draws
        )
        cost.update(check=lengthened["check"], sampling=lengthened["sampling"])
    # seconds per gradient from the fastest grid point (compiled by then; the grid's points cost the same), else
    # from the whole tuning, compilation included (an upper estimate)
    if len(stamps) > 2:
        per_point = options["tuning_orbits"] * max(2 * flow_length - 2, 0) * options["leapfrog_steps"]
        seconds_per_gradient = float(np.min(np.diff(stamps[1:]))) / max(per_point, 1)
    else:
        seconds_per_gradient = (time.perf_counter() - tuning_start) / max(cost["tuning"] + cost["check"], 1)
    # the two drawing programs (draws with and without their density) compile about as long as a grid point's
    # program did: its first point's time less the fastest point's
    compile_s = float(stamps[1] - stamps[0] - np.min(np.diff(stamps[1:]))) if len(stamps) > 2 else 0.0
    cost["estimated_compile_s"] = 2 * max(compile_s, 0.0)
    cost["estimated_sampling_s"] = seconds_per_gradient * cost["sampling"] + cost["estimated_compile_s"]
    start = time.perf_counter()
    density = min(options["density_draws"], draws)
    with bar.loop("drawing", total=chains * draws, unit="draw") as loop:
        loop.advance(0, note=f"about {cost['estimated_sampling_s']:.0f} s")
        result, rejected = _draw_repeats(flow, key_draws, chains, draws, density, bar, loop)
    sampling_s = time.perf_counter() - start
    cost["sampling_s"] = sampling_s

    def per_repeat(values):
        return np.asarray(values).reshape((chains, draws) + np.shape(values)[1:])

    z = per_repeat(result.position)
    log_q, log_target, orbit_elbo = (
        per_repeat(result.log_density),
        per_repeat(result.log_target),
        per_repeat(result.elbo),
    )
    inversion = per_repeat(result.inversion_error)

    checks = min(options["health_checks"], density)
    route_gap = np.zeros((chains, 0))
    if checks:
        momentum_draws, uniform_draws = per_repeat(result.momentum), per_repeat(result.uniform)
        fresh = flow.log_density(z[:, :checks], momentum_draws[:, :checks], uniform_draws[:, :checks])
        route_gap = np.abs(fresh - log_q[:, :checks])

    with_density = np.arange(draws) < density
    finite = (np.isfinite(log_q) | ~with_density) & np.isfinite(log_target) & np.all(np.isfinite(z), axis=-1)
    sample_stats = {
        "log_q": log_q,  # exact log q_N of the draw on the augmented space (unconstrained coordinates); NaN past
        #                  the first density_draws draws of a repeat
        "log_target": log_target,  # log p(z) + sum log m(rho)
        "orbit_elbo": orbit_elbo,  # the unbiased ELBO estimate of the draw's orbit (NaN where log_q is)
        "inversion_error": inversion,
        "diverging": ~finite,
    }
    log_ratio = (log_target - log_q)[:, :density]
    pareto_k = _pareto_k(log_ratio)
    check = {**length_check, **moment_check(z[:, :density], log_ratio)}
    if options["check"] == "nuts":
        with bar.stage("check (NUTS)"):
            try:
                check.update(nuts_check(logdensity, z, key_check))
            except (ValueError, FloatingPointError) as err:  # a check that cannot run never costs the fit
                check["nuts_check_error"] = f"{type(err).__name__}: {err}"
    extra = {
        "mixflow_check": check,
        "cost": cost,
        # the report's mixflow panel plots these rows (N, ELBO, SE) and shows the non-finite fraction
        "elbo_vs_flow_length": [
            [check["half_flow_length"], check["elbo_half_flow_length"], check["elbo_half_flow_length_se"]],
            [check["flow_length"], check["elbo_flow_length"], check["elbo_flow_length_se"]],
        ],
        "nonfinite_fraction": rejected / (rejected + chains * draws),
        "density_draws": density,
        "method_warnings": check_warnings(check),
        "step_size": step_size,
        "leapfrog_steps": leapfrog_steps,  # L as run: the option's value, or lengthened by the travel rule
        "spread_over_reference": spread,  # the pilot flow's sd over the reference's, per coordinate (travel rule)
        "step_size_grid": grid,
        "step_size_grid_elbo": grid_means,
        "step_size_grid_elbo_se": grid_ses,
        "reference_mean": reference.mean,
        "reference_scale": reference.scale,
        "reference_elbo": [reference_value, reference_se],  # from SVI's last 10 % of steps
        "svi_loss": _thin(reference.losses, 200),
        "inversion_error_max": float(np.nanmax(inversion)),
        "draws_rejected_outside_support": rejected,  # draws where log pi was -inf or not finite, drawn again
        "log_q_two_route_max_abs_diff": float(np.nanmax(route_gap)) if route_gap.size else float("nan"),
        "log_q_two_route_abs_diff": route_gap,
        "pareto_k": pareto_k,
        "training_s": training_s,
        "sampling_s": sampling_s,
    }
    approximation = MixFlowApproximation(
        target,
        flow,
        step_size=step_size,
        flow_length=flow_length,
        seed=int(jax.random.randint(key_approx, (), 0, 2**31 - 1)),
    )
    elbo = np.mean(orbit_elbo[:, :density], axis=1)
    return DirectResult(z, sample_stats, None, elbo, extra, approximation)


REDRAW_ROUNDS = 8
SPREAD_DRAWS = 256  # pilot draws that measure how far the flow spreads beyond the reference
SPREAD_LIMIT = 1.5  # a spread up to this many reference sds keeps L (a mean-field fit of a correlated target)
MAX_TRAVEL_FACTOR = 10  # L grows at most this many times


def _travel_steps(logdensity, reference: MeanField, step_size: float, rng_key, options: dict):
    """(L as run, the pilot's spread s_i = sd_i / D_i): L x max s_i when max s_i > SPREAD_LIMIT, else L.

    The ELBO sets the step by the energy error it affords; a reference far narrower than the target leaves such a
    step too short to travel, and longer maps of it travel at about the same error (docs/methods/mixflow.md).
    """
    steps = options["leapfrog_steps"]
    pilot = kernel.mixflow(
        logdensity,
        reference.mean,
        reference.scale,
        flow_length=options["flow_length"],
        step_size=step_size,
        num_steps=steps,
        momentum=options["momentum"],
        whiten=options["whiten"],
        batch_size=options["orbit_batch_size"],
    )
    spread = np.std(pilot.sample(rng_key, SPREAD_DRAWS).position, axis=0) / reference.scale
    spread = np.where(np.isfinite(spread), spread, 1.0)
    factor = float(np.max(spread))
    if factor > SPREAD_LIMIT:
        steps = int(math.ceil(steps * min(factor, MAX_TRAVEL_FACTOR)))
    return steps, spread


def cost_estimate(options: dict, *, chains: int, warmup: int, draws: int) -> dict:
    """Gradient evaluations of each stage of a fit, known before it runs (``idata.attrs["extra_cost"]``).

    A map is L gradients. A draw with its density (the first ``density_draws`` of a repeat) is 2N - 2 maps, any other
    K ~ Uniform{0..N-1}, (N - 1)/2 on average; each adds an inversion check (2 maps). A tuning or check orbit is
    2N - 2 maps (2 (N/2) - 2 at half length), a health check N - 1, the travel rule's pilot SPREAD_DRAWS cheap draws;
    when that rule lengthens the maps, `_run` recounts the check and the draws before drawing.
    """
    n, steps, orbits = options["flow_length"], options["leapfrog_steps"], options["tuning_orbits"]
    grid = options["step_size_grid"] if options["step_size"] == "auto" else 0
    orbit_maps = max(2 * n - 2, 0)
    half_maps = max(2 * max(1, n // 2) - 2, 0)
    density = min(options["density_draws"], draws)
    return {
        "svi": warmup * SVI_PARTICLES,
        "tuning": grid * orbits * orbit_maps * steps
        + (round(SPREAD_DRAWS * ((n - 1) / 2 + 2) * steps) if grid and options["travel"] else 0),
        "check": orbits * (orbit_maps + half_maps) * steps,
        "sampling": chains * density * (orbit_maps + 2) * steps
        + round(chains * (draws - density) * ((n - 1) / 2 + 2) * steps)
        + chains * min(options["health_checks"], density) * max(n - 1, 0) * steps,
    }


def _draw_repeats(flow: kernel.MixFlow, rng_key, chains: int, draws: int, density: int, bar, loop):
    """The fit's draws, flat (chains * draws, ...), and how many were redrawn outside the support.

    Draw t of repeat c has key ``split(rng_key, chains * draws)[c * draws + t]``; the first ``density`` of each repeat
    carry log q_N and their orbit's ELBO, the others (``flow.sample_keys``) are drawn in order of their number of maps
    K, so that each compiled piece runs to its own largest K.
    """
    keys = jax.random.split(rng_key, chains * draws).reshape(chains, draws)
    rows = np.arange(chains * draws).reshape(chains, draws)
    result = None
    for with_density, part, part_rows in (
        (True, keys[:, :density].reshape(-1), rows[:, :density].reshape(-1)),
        (False, keys[:, density:].reshape(-1), rows[:, density:].reshape(-1)),
    ):
        if part_rows.size == 0:
            continue
        draw_keys = flow.draw_keys if with_density else _without_density(flow.sample_keys)
        order = np.arange(part_rows.size) if with_density else np.argsort(flow.draw_indices(part), kind="stable")
        drawn = _draw_in_pieces(draw_keys, part[order], progress.pieces(part_rows.size, bar), loop)
        drawn, rejected = _draw_inside_support(draw_keys, jax.random.fold_in(rng_key, int(with_density)), drawn)
        if result is None:
            result = kernel.Draws(*[np.empty((chains * draws,) + np.shape(v)[1:], np.float64) for v in drawn])
            total_rejected = 0
        for values, new in zip(result, drawn):
            values[part_rows[order]] = new
        total_rejected += rejected
    return result, total_rejected


def _without_density(sample_keys):
    def draw_keys(keys):  # NaN where `draw_keys` gives log q_N and the orbit ELBO
        draws = sample_keys(keys)
        missing = np.full(draws.position.shape[0], np.nan)
        return draws._replace(log_density=missing, elbo=missing)

    return draw_keys


def _draw_in_pieces(draw_keys, keys, plan, loop) -> kernel.Draws:
    """``draw_keys(keys)`` in the pieces of ``plan``, each of the first piece's length (one program serves all)."""
    length = plan[0][1]
    parts = []
    for begin, size in plan:
        piece = keys[begin : begin + size]
        if size < length:
            piece = jnp.concatenate([piece, keys[: length - size]])
        parts.append(jax.tree.map(lambda a: None if a is None else a[:size], draw_keys(piece)))
        loop.advance(size)
    return kernel.Draws(*[None if values[0] is None else np.concatenate(values) for values in zip(*parts)])


def _draw_inside_support(draw_keys, rng_key, result: kernel.Draws):
    """``count`` draws of q_N restricted to where the target is positive, and how many draws were rejected.

    A model whose log density is -inf in places (a ``numpyro.factor`` of -inf, a support bound) lets q_N put mass
    where pi = 0; such a draw (non-finite log pi, log q_N or position) is rejected and drawn again: the kept draws
    are exact draws of q_N conditioned on pi > 0, whose ELBO `kernel.support_elbo` estimates.
    """
    count = result.position.shape[0]
    keep = _inside(result)
    rejected = int(count - keep.sum())
    for round_ in range(1, REDRAW_ROUNDS + 1):
        if keep.all():
            return result, rejected
        missing = np.flatnonzero(~keep)
        # draw more than missing, in proportion to the rejection rate so far, so few rounds are needed
        rate = max(keep.mean(), 0.05)
        extra_count = int(math.ceil(missing.size / rate * 1.2)) + 8
        extra = draw_keys(jax.random.split(jax.random.fold_in(jax.random.fold_in(rng_key, 7919), round_), extra_count))
        good = np.flatnonzero(_inside(extra))
        rejected += extra.position.shape[0] - good.size
        fill = good[: missing.size]
        result = kernel.Draws(
            *[
                None if old is None else _replace_rows(old, missing[: fill.size], new[fill])
                for old, new in zip(result, extra)
            ]
        )
        keep = _inside(result)
    if not keep.all():
        raise ValueError(
            f"mixflow: {int((~keep).sum())} of {count} draws still fall where the model's log density "
            f"is -inf or not finite after {REDRAW_ROUNDS} rounds of redrawing ({rejected} rejected): "
            "the flow puts almost no mass inside the support. Check the model's log density, or use "
            "method='nuts'"
        )
    return result, rejected


def _inside(draws: kernel.Draws) -> np.ndarray:
    # log pi, the position and log q_N where it was computed (an orbit ELBO of NaN marks a draw without it) finite
    density_ok = np.isfinite(draws.log_density) | np.isnan(draws.elbo)
    return np.isfinite(draws.log_target) & density_ok & np.all(np.isfinite(draws.position), axis=-1)


def _replace_rows(values, rows, new):
    values = np.array(values, copy=True)
    values[rows] = new
    return values


def _thin(values: np.ndarray, size: int) -> np.ndarray:
    if values.size <= size:
        return values
    return values[np.linspace(0, values.size - 1, size).astype(int)]


MIXFLOW = DirectMethod(SCHEMA, _run)

METHODS = (MIXFLOW,)
