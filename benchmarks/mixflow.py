"""MixFlow vs NumPyro's flow guides (IAF, BNAF), mean-field Gaussian and NUTS: ELBO, KSD, ESS/s, time; ELBO against N.

Everything runs in one process (`main` writes ``<out_dir>/mixflow.md``):

1. Side by side on three targets (the cross of the MixFlows paper, a 2-D Neal's funnel, a logistic regression with
   d = 9): ``samplax.fit(method="mixflow")``, NumPyro SVI with ``AutoIAFNormal``, ``AutoBNAFNormal`` and
   ``AutoDiagonalNormal`` (Adam, the same number of steps for all three), and ``samplax.fit(method="nuts")``.
   Scores: the ELBO (mean +- SE over independent particles; MixFlow's is on the augmented space (x, rho, u), which
   is a lower bound on the ELBO of its x-marginal, so the comparison is conservative for MixFlow), the kernel
   Stein discrepancy of the draws (IMQ kernel, c = 1, beta = -1/2, V-statistic, `diagnostics.kernel_stein_discrepancy`,
   on the unconstrained coordinates, the same number of draws for every method), ESS (ArviZ's minimum bulk ESS over
   coordinates) per second of wall time, and the wall time of the whole call (tracing, compilation, training or
   warm-up, sampling; cold, i.e. the first call of its kind in the process).
2. The ELBO of MixFlow on the cross against N for two step sizes (0.0035, the authors' choice, and 0.008), from the
   same mean-field reference, unwhitened, L = 60, next to the authors' published values for 0.0035.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoBNAFNormal, AutoDiagonalNormal, AutoIAFNormal
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import log_density

import samplax
from benchmarks import common
from samplax.infer import arviz_compat, diagnostics
from samplax.kernels import mixflow as kernel
from samplax.models import zoo
from samplax.models.bridge import build_target

__all__ = ["main", "FULL", "QUICK", "cross_model"]

TOPIC = "mixflow"

# The authors' published augmented ELBOs on the cross (L = 60, eps = 0.0035, Laplace momentum).
PUBLISHED_CROSS = {100: -0.507, 200: -0.414, 500: -0.278, 1000: -0.194, 1500: -0.165, 2000: -0.155}
PUBLISHED_CROSS_REFERENCE = -0.850

FULL = dict(
    models=("cross", "funnel", "logistic_regression"),
    guides=tuple(["AutoIAFNormal", "AutoBNAFNormal", "AutoDiagonalNormal"]),
    nuts=True,
    chains=4,
    draws=1250,  # 5000 draws per method for the KSD and ESS
    svi_steps=5000,
    svi_learning_rate=1e-3,
    elbo_particles=5000,
    nuts_warmup=1000,
    mixflow={
        "cross": dict(flow_length=1000, leapfrog_steps=60, step_size=0.0035, whiten=False, warmup=5000),
        "funnel": dict(flow_length=500, leapfrog_steps=80, warmup=5000),
        "logistic_regression": dict(flow_length=500, leapfrog_steps=50, warmup=5000),
    },
    elbo_vs_n=dict(flow_lengths=(100, 200, 500, 1000, 2000), step_sizes=(0.0035, 0.008), orbits=512),
    # issue 16: default fits (4 repeats x 1000 draws, 1000 SVI steps, every option at its default)
    defaults=dict(
        bananas=((1.0, 0.01), (1.0, 0.1), (10.0, 0.01), (10.0, 0.1)),
        logistic=dict(num_observations=1000, num_features=25),
        nuts_draws=1000,
    ),
)

QUICK = dict(  # a smoke run of every code path but the flows' guides and NUTS (their compilation takes a minute)
    models=("cross",),
    guides=("AutoDiagonalNormal",),
    nuts=False,
    chains=2,
    draws=100,
    svi_steps=200,
    svi_learning_rate=1e-3,
    elbo_particles=200,
    nuts_warmup=100,
    mixflow={
        "cross": dict(
            flow_length=20,
            leapfrog_steps=10,
            step_size=0.02,
            whiten=False,
            warmup=300,
            health_checks=0,
            check="importance",
        )
    },
    elbo_vs_n=dict(flow_lengths=(10,), step_sizes=(0.02, 0.05), orbits=16),
    defaults=None,  # default fits take minutes each: the full run only
)
GUIDES = {"AutoIAFNormal": AutoIAFNormal, "AutoBNAFNormal": AutoBNAFNormal, "AutoDiagonalNormal": AutoDiagonalNormal}

HEADERS = ["target", "method", "ELBO", "ELBO SE", "KSD", "min bulk ESS", "ESS/s", "wall s", "notes"]


# ---------------------------------------------------------------------------------------------------------------------
# targets
CROSS_SCALE = 0.15


def cross_model():
    """The cross of the MixFlows paper: 1/4 sum of N((0, +-2), diag(0.15^2, 1)) and N((+-2, 0), diag(1, 0.15^2))."""
    locations = jnp.array([[0.0, 2.0], [-2.0, 0.0], [2.0, 0.0], [0.0, -2.0]])
    scales = jnp.array([[CROSS_SCALE, 1.0], [1.0, CROSS_SCALE], [1.0, CROSS_SCALE], [CROSS_SCALE, 1.0]])
    mixture = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.full(4, 0.25)), dist.Normal(locations, scales).to_event(1)
    )
    numpyro.sample("x", mixture)


def _targets(names):
    """(model, data, description, log Z or None) per target name."""
    out = {}
    for name in names:
        if name == "cross":
            out[name] = (cross_model, {}, "cross (d = 2), log Z = 0", 0.0)
        elif name == "funnel":
            entry = zoo.get("funnel")
            out[name] = (
                entry.model,
                entry.make_data(dimension=2),
                "Neal's funnel, v ~ N(0, 3), x | v ~ N(0, exp(v/2)) (d = 2), log Z = 0",
                0.0,
            )
        elif name == "logistic_regression":
            entry = zoo.get("logistic_regression")
            out[name] = (
                entry.model,
                entry.make_data(seed=0, num_observations=100, num_features=8),
                "logistic regression, n = 100 synthetic observations, d = 9 (intercept + 8)",
                None,
            )
        else:
            raise ValueError(f"unknown benchmark target {name!r}")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# helpers
_JITTED: dict = {}


def _jitted(target, name, fn):
    """One jitted function per (target, purpose), so every method's draws reuse its compiled program."""
    key = (id(target), name)
    if key not in _JITTED:
        _JITTED[key] = (target, jax.jit(fn))  # keep the target alive while its id is a key
    return _JITTED[key][1]


def _flat_draws(target, posterior: dict, total: int) -> np.ndarray:
    """Constrained site draws (leading sample dims) -> flat unconstrained (total, dim)."""
    values = {
        site.name: np.reshape(np.asarray(posterior[site.name], np.float64), (total,) + site.shape)
        for site in target.sites
    }
    with jax.enable_x64(True):
        return np.asarray(_jitted(target, "unconstrain", jax.vmap(target.unconstrain))(values))


def _ksd(target, z: np.ndarray) -> float:
    with jax.enable_x64(True):
        scores = np.asarray(
            _jitted(target, "scores", jax.vmap(jax.grad(target.logdensity)))(jnp.asarray(z, jnp.float64))
        )
    finite = np.all(np.isfinite(z), -1) & np.all(np.isfinite(scores), -1)
    if not finite.all():
        return float("nan")
    return diagnostics.kernel_stein_discrepancy(z, scores)


def _min_bulk_ess(z: np.ndarray, chains: int) -> float:
    draws = z.reshape(chains, -1, z.shape[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = arviz_compat.ess({"z": draws}, method="bulk")["z"].values
    return float(np.min(ess))


def _row(name, method, elbo, elbo_se, ksd, ess, seconds, notes=""):
    return [name, method, elbo, elbo_se, ksd, ess, ess / seconds if ess is not None else None, seconds, notes]


# ---------------------------------------------------------------------------------------------------------------------
# methods
def _numpyro_guide(name, model, data, target, guide_class, s, seed):
    """Train a NumPyro autoguide with SVI; ELBO over independent particles; draws for KSD/ESS."""
    start = time.perf_counter()
    with jax.enable_x64(True):
        init = target.constrain(target.init(jax.random.key(seed), 1)[0])
        init = {site: init[site] for site in target.site_names}
        guide = guide_class(model, init_loc_fn=init_to_value(values=init))
        optimizer = numpyro.optim.optax_to_numpyro(optax.adam(s["svi_learning_rate"]))
        svi = SVI(model, guide, optimizer, Trace_ELBO())
        result = svi.run(jax.random.key(seed + 1), s["svi_steps"], progress_bar=False, **data)
        params = result.params

        def particle(key):
            guide_lp, guide_trace = log_density(handlers.seed(guide, key), (), data, params)
            model_lp, _ = log_density(handlers.replay(model, guide_trace), (), data, params)
            return model_lp - guide_lp

        terms = np.asarray(jax.jit(jax.vmap(particle))(jax.random.split(jax.random.key(seed + 2), s["elbo_particles"])))
        total = s["chains"] * s["draws"]
        posterior = guide.sample_posterior(jax.random.key(seed + 3), params, sample_shape=(total,), **data)
        jax.block_until_ready(posterior)
    seconds = time.perf_counter() - start
    z = _flat_draws(target, posterior, total)
    terms = terms[np.isfinite(terms)]
    elbo, elbo_se = float(np.mean(terms)), float(np.std(terms, ddof=1) / math.sqrt(terms.size))
    return _row(
        name,
        guide_class.__name__,
        elbo,
        elbo_se,
        _ksd(target, z),
        _min_bulk_ess(z, s["chains"]),
        seconds,
        f"{s['svi_steps']} Adam steps, lr {s['svi_learning_rate']:g}",
    )


def _samplax_fit(name, model, data, target, method, s, seed, options):
    start = time.perf_counter()
    fit = samplax.fit(
        model, data, method=method, chains=s["chains"], draws=s["draws"], seed=seed, progress=False, **options
    )
    seconds = time.perf_counter() - start
    posterior = {site: fit.idata.posterior[site].values for site in target.site_names}
    z = _flat_draws(target, posterior, s["chains"] * s["draws"])
    ess = _min_bulk_ess(z, s["chains"])
    if method == "nuts":
        return _row(
            name,
            "NUTS (samplax)",
            None,
            None,
            _ksd(target, z),
            ess,
            seconds,
            f"{s['chains']} chains, {options['warmup']} warm-up, {s['draws']} draws each",
        ), fit
    extra = fit.idata.attrs
    notes = (
        f"N = {options['flow_length']}, L = {options['leapfrog_steps']}, eps = "
        f"{float(extra['extra_step_size']):.3g}{' (auto)' if 'step_size' not in options else ''}, "
        f"{'whitened' if options.get('whiten', True) else 'unwhitened'}; max one-step inversion error "
        f"{float(extra['extra_inversion_error_max']):.1e}"
    )
    return _row(name, "MixFlow (samplax)", fit.elbo.value, fit.elbo.se, _ksd(target, z), ess, seconds, notes), fit


def side_by_side(s: dict) -> tuple[list, dict]:
    rows, references = [], {}
    for index, (name, (model, data, _, _)) in enumerate(_targets(s["models"]).items()):
        seed = 10 * index
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with jax.enable_x64(True):
                target = build_target(model, data, seed=seed)
            options = dict(s["mixflow"][name])
            mixflow_row, mixflow_fit = _samplax_fit(name, model, data, target, "mixflow", s, seed, options)
            references[name] = mixflow_fit
            rows.append(mixflow_row)
            for guide in s["guides"]:
                rows.append(_numpyro_guide(name, model, data, target, GUIDES[guide], s, seed))
            if s["nuts"]:
                nuts_row, _ = _samplax_fit(name, model, data, target, "nuts", s, seed, {"warmup": s["nuts_warmup"]})
                rows.append(nuts_row)
    return rows, references


def elbo_against_flow_length(s: dict, cross_fit) -> list:
    """ELBO of MixFlow on the cross for each N and step size, from the mixflow fit's mean-field reference."""
    attrs = cross_fit.idata.attrs
    mean = np.asarray(json.loads(attrs["extra_reference_mean"]))
    scale = np.asarray(json.loads(attrs["extra_reference_scale"]))
    log_density = build_target(cross_model, {}).logdensity
    settings = s["elbo_vs_n"]
    rows = [
        [
            "reference (N = 1 is q0)",
            "-",
            *(["-"] * len(settings["step_sizes"])),
            f"{float(json.loads(attrs['extra_reference_elbo'])[0]):.3f}",
            PUBLISHED_CROSS_REFERENCE,
        ]
    ]
    for flow_length in settings["flow_lengths"]:
        cells = []
        for step_size in settings["step_sizes"]:
            flow = kernel.mixflow(
                log_density,
                mean,
                scale,
                flow_length=flow_length,
                step_size=step_size,
                num_steps=s["mixflow"]["cross"]["leapfrog_steps"],
                whiten=False,
            )
            start = time.perf_counter()
            estimates = flow.elbo(jax.random.key(flow_length), settings["orbits"])
            seconds = time.perf_counter() - start
            se = np.std(estimates, ddof=1) / math.sqrt(estimates.size)
            cells.append(f"{np.mean(estimates):.3f} +- {se:.3f} ({seconds:.1f} s)")
        rows.append([str(flow_length), str(settings["orbits"]), *cells, "", PUBLISHED_CROSS.get(flow_length)])
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# issue 16: default fits on curved targets and a 25-covariate regression, with the fit's own check
def banana_model(scale=10.0, curvature=0.1):
    """A banana: x1 ~ N(0, scale^2), x2 | x1 ~ N(curvature (x1^2 - scale^2), 1); E x = 0, sd x1 = scale,
    sd x2 = sqrt(1 + 2 curvature^2 scale^4)."""
    x1 = numpyro.sample("x1", dist.Normal(0.0, scale))
    numpyro.sample("x2", dist.Normal(curvature * (x1**2 - scale**2), 1.0))


def _moment_errors(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> tuple[float, float]:
    """(worst |mean error| in reference sds, worst |sd / reference sd - 1|) over coordinates."""
    draws = draws.reshape(-1, draws.shape[-1])
    return float(np.max(np.abs(draws.mean(0) - mean) / sd)), float(np.max(np.abs(draws.std(0) / sd - 1.0)))


def _default_fit(model, data):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = samplax.fit(model, data, method="mixflow", progress=False)
    seconds = time.perf_counter() - start
    check = json.loads(fit.idata.attrs["extra_mixflow_check"])
    cost = json.loads(fit.idata.attrs["extra_cost"])
    warned = [str(w.message) for w in caught if issubclass(w.category, samplax.ConvergenceWarning)]
    return fit, seconds, check, cost, warned


DEFAULT_HEADERS = [
    "target",
    "d",
    "worst mean error (sds)",
    "worst sd error",
    "goal met",
    "wall s",
    "gradients",
    "fit warns",
    "NUTS check (mean gap, sd ratios)",
]


def defaults_section(s: dict) -> list:
    """One row per default fit: moment errors against the exact (bananas) or a long NUTS (regression) answer."""
    rows = []
    for scale, curvature in s["defaults"]["bananas"]:
        fit, seconds, check, cost, warned = _default_fit(banana_model, dict(scale=scale, curvature=curvature))
        post = fit.idata.posterior
        draws = np.stack([post["x1"].values, post["x2"].values], -1)
        mean_error, sd_error = _moment_errors(
            draws, np.zeros(2), np.array([scale, math.sqrt(1 + 2 * curvature**2 * scale**4)])
        )
        rows.append(
            _default_row(
                f"banana, sd {scale:g}, curvature {curvature:g}", 2, mean_error, sd_error, seconds, cost, warned, check
            )
        )
    entry = zoo.get("logistic_regression")
    data = entry.make_data(seed=1, **s["defaults"]["logistic"])
    fit, seconds, check, cost, warned = _default_fit(entry.model, data)
    target = build_target(entry.model, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = samplax.fit(entry.model, data, method="nuts", draws=s["defaults"]["nuts_draws"], progress=False)
    z = _flat_draws(
        target,
        {k: v.values for k, v in fit.idata.posterior.items()},
        fit.idata.posterior.sizes["chain"] * fit.idata.posterior.sizes["draw"],
    )
    z_ref = _flat_draws(
        target,
        {k: v.values for k, v in reference.idata.posterior.items()},
        reference.idata.posterior.sizes["chain"] * reference.idata.posterior.sizes["draw"],
    )
    mean_error, sd_error = _moment_errors(z, z_ref.mean(0), z_ref.std(0))
    rows.append(
        _default_row(
            f"logistic regression, n = {s['defaults']['logistic']['num_observations']}",
            target.dim,
            mean_error,
            sd_error,
            seconds,
            cost,
            warned,
            check,
        )
    )
    return rows


def _default_row(name, dim, mean_error, sd_error, seconds, cost, warned, check):
    met = mean_error <= 0.2 and sd_error <= 0.25 and seconds <= 300
    gradients = sum(v for k, v in cost.items() if k in ("svi", "tuning", "check", "sampling"))
    nuts = (
        f"{check['nuts_mean_shift_max_sd']:.2f}, {check['nuts_sd_ratio_min']:.2f}-{check['nuts_sd_ratio_max']:.2f}"
        if "nuts_mean_shift_max_sd" in check
        else "-"
    )
    return [
        name,
        dim,
        mean_error,
        sd_error,
        "yes" if met else "no",
        seconds,
        f"{gradients:.3g}",
        "yes" if warned else "no",
        nuts,
    ]


def defaults_markdown(s: dict, rows: list) -> list[str]:
    return [
        "## Default fits (issue 16)",
        "",
        '`samplax.fit(model, data, method="mixflow")` with every option at its default (4 repeats x 1000 draws, '
        "128 of them per repeat with their density, 1000 SVI steps, N = 200, L = 30 or longer by the travel rule, "
        "auto step size, check='nuts'). Goal: means within 0.2 posterior sds, sds "
        "within 25 %, under 300 s on 2 cores. Bananas against their exact moments; the regression (synthetic, "
        "seed 1) against samplax NUTS (4 x 1000), on the unconstrained coordinates. 'fit warns': the fit raised a "
        "ConvergenceWarning (its flow-length, importance or NUTS check failed). Gradients: the fit's own cost "
        "estimate (`idata.attrs['extra_cost']`, known before the run).",
        "",
        common.markdown_table(DEFAULT_HEADERS, rows),
        "",
    ]


# ---------------------------------------------------------------------------------------------------------------------
def _page(s, quick, info, rows, n_rows, seconds, d_rows=()) -> tuple[str, str]:
    targets = _targets(s["models"])
    body = []
    if quick:
        body += [
            "> **Quick smoke run**: tiny sizes, the numbers say nothing about the methods. Run the full "
            "benchmark for real numbers.",
            "",
        ]
    body += [
        f"Command: `{common.command_for(TOPIC, quick)}` (module `benchmarks/mixflow.py`), {seconds:.0f} s in all.",
        "",
        "## Side by side",
        "",
        "Targets: " + "; ".join(f"**{name}**: {description}" for name, (_, _, description, _) in targets.items()) + ".",
        "",
        *(
            [
                "Quick run: NUTS and AutoBNAFNormal are left out (their compilation alone exceeds the smoke run's "
                "minute).",
                "",
            ]
            if quick
            else []
        ),
        f"Every method gives {s['chains'] * s['draws']} draws ({s['chains']} chains or repeats of {s['draws']}); the "
        "KSD (IMQ, c = 1, beta = -1/2, V-statistic) and the ESS use them all, on the unconstrained coordinates. "
        "ELBO: mean +- SE over independent particles (NumPyro guides: "
        f"{s['elbo_particles']} particles; MixFlow: its repeats' means, each over its draws' orbit estimates). "
        "MixFlow's ELBO is on the augmented space (x, rho, u), a lower bound on the ELBO of its x-marginal, so "
        "the comparison is conservative for MixFlow. ESS/s divides by the wall time of the whole call (cold: "
        "compilation, training or warm-up and sampling included). NUTS has no ELBO.",
        "",
        common.markdown_table(HEADERS, rows),
        "",
        "## MixFlow ELBO against N on the cross",
        "",
        "Unwhitened, Laplace momentum, L = " + str(s["mixflow"]["cross"]["leapfrog_steps"]) + ", from the mixflow "
        "fit's mean-field reference (NumPyro SVI); mean +- SE over independent orbits (each an unbiased estimate); "
        "the published column is the authors' result for eps = 0.0035 (their mean-field reference, their "
        "estimator: one random orbit point per estimate, 1000 estimates).",
        "",
        common.markdown_table(
            [
                "N",
                "orbits",
                *[f"eps = {e:g}" for e in s["elbo_vs_n"]["step_sizes"]],
                "reference ELBO",
                "published (eps = 0.0035)",
            ],
            n_rows,
        ),
        "",
        *(defaults_markdown(s, d_rows) if d_rows else []),
        "## Machine",
        "",
        common.machine_markdown(info),
    ]
    best = {}
    for row in rows:
        if row[2] is not None:
            best.setdefault(row[0], []).append((row[2], row[1]))
    summary = "ELBO: " + "; ".join(f"{name} best {max(v)[1]} ({max(v)[0]:.3g})" for name, v in best.items())
    if quick:
        summary = "quick smoke run (tiny sizes): " + summary
    return summary, "\n".join(body)


def main(out_dir: Path, quick: bool = False) -> Path:
    """Run the side-by-side comparison and the ELBO-against-N sweep; write ``out_dir/mixflow.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = QUICK if quick else FULL
    info = common.machine_info()
    start = time.perf_counter()
    with contextlib.nullcontext() if quick else common.persistent_cache_disabled():
        rows, fits = side_by_side(s)
        n_rows = elbo_against_flow_length(s, fits["cross"]) if "cross" in fits else []
        d_rows = defaults_section(s) if s.get("defaults") else []
    summary, body = _page(s, quick, info, rows, n_rows, time.perf_counter() - start, d_rows)
    return common.write_page(out_dir, TOPIC, "MixFlow benchmarks", summary, body)


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:] == ["defaults"]:  # `python -m benchmarks.mixflow defaults`: that section alone, as markdown
        machine = common.machine_info()
        began = time.perf_counter()
        section = defaults_markdown(FULL, defaults_section(FULL))
        print(
            "\n".join(section + [f"{time.perf_counter() - began:.0f} s in all.", "", common.machine_markdown(machine)])
        )
    else:
        common.topic_cli(main, __doc__)
