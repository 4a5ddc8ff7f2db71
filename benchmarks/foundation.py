"""Foundation: samplax nuts vs NumPyro NUTS (ESS/s, cold and warm), mala's per-step cost, SBC of nuts and mala.

Three measurements, all in one process (`main` writes ``<out_dir>/foundation.md`` and the SBC histograms):

1. NUTS, samplax (``samplax.fit(method="nuts")``) against plain NumPyro (``MCMC(NUTS)``,
   ``chain_method="vectorized"``, then ``az.from_numpyro``) on the same model, chains, warm-up, draws and
   ``target_accept``. Score: the minimum bulk ESS over every posterior coordinate both produce (ArviZ), divided by
   the wall time of the whole call (tracing, compilation, warm-up, sampling, InferenceData). "Cold" is the first fit
   of that model in the process, "warm" the same call again (median of a few). Both libraries are imported and run
   once on another model first, so one-off start-up costs (imports, backend start) are in neither number.
2. MALA's per-step cost in steady state (compiled, run once untimed, then the median of interleaved repeats):
   (a) against one jitted, vmapped ``value_and_grad`` of the log density on logistic regression with n = 10^4,
   d = 50, the unavoidable cost of a gradient-based step; (b) against BlackJAX's own MALA loop (``blackjax.mala``,
   ``lax.scan`` over the same steps, vmapped over the same chains, same step size) on every zoo model.
3. Simulation-based calibration (Talts et al. 2018) of nuts and mala on three zoo models: rank histograms and
   chi-square uniformity p-values, from `samplax.infer.calibration.sbc` with samplax's own warm-up and step
   vmapped over simulated data sets.
4. Fresh processes (issue 17's "done means"): each library in a new Python process with its defaults, as a user's
   script runs it: ``samplax.fit(model, data, method="nuts")`` against ``MCMC(NUTS(model), num_warmup=1000,
   num_samples=1000, num_chains=4).run(...)`` plus ``az.from_numpyro`` (NumPyro's default ``chain_method`` on one
   CPU device: sequential chains; progress bars on, as both default). samplax's first process starts with an empty
   compilation-cache folder (``SAMPLAX_COMPILATION_CACHE_DIR``), its second process reuses it; NumPyro has no
   persistent cache by default, so its second process is another first one. Models written in the worker script as a
   user writes them: eight schools (non-centred) and a Bayesian linear regression (n = 200, 5 features).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS

import samplax
from benchmarks import common
from samplax.infer import arviz_compat, registry
from samplax.infer.options import validate
from samplax.infer.run import ChainRunner, chunk_size_for, progress_chunk_size
from samplax.kernels.baselines import MALAParams
from samplax.models import zoo
from samplax.models.bridge import build_target

__all__ = ["main", "FULL", "QUICK"]

TOPIC = "foundation"

FULL = dict(
    nuts_models=("eight_schools", "logistic_regression"),
    chains=4,
    warmup=1000,
    draws=1000,
    warm_repeats=3,
    target_accept=0.8,
    startup_run=True,
    big_regression=dict(num_observations=10_000, num_features=50),
    mala_chains=4,
    mala_steps=1000,
    mala_repeats=7,
    mala_fit_warmup=500,
    mala_fit_draws=500,
    mala_fit_repeats=5,
    blackjax_models=None,  # every zoo model whose data can be made
    blackjax_steps=5000,
    blackjax_repeats=41,
    blackjax_step_size=0.01,
    sbc_models=("normal_normal", "eight_schools", "logistic_regression"),
    sbc_datasets=100,
    sbc_sizes={"nuts": (500, 500), "mala": (1000, 2000)},  # (warm-up, draws) per data set
    fresh_models=("eight_schools", "linear_regression"),
    fresh_sizes=None,  # None: each library's defaults
    fresh_repeats=1,
)

QUICK = dict(
    nuts_models=("eight_schools",),
    chains=2,
    warmup=100,
    draws=100,
    warm_repeats=1,
    target_accept=0.8,
    startup_run=False,
    big_regression=dict(num_observations=1_000, num_features=10),
    mala_chains=2,
    mala_steps=100,
    mala_repeats=2,
    mala_fit_warmup=50,
    mala_fit_draws=50,
    mala_fit_repeats=1,
    blackjax_models=("normal_normal",),  # each model compiles three loops; the full run measures every zoo model
    blackjax_steps=100,
    blackjax_repeats=2,
    blackjax_step_size=0.01,
    sbc_models=("normal_normal",),
    sbc_datasets=10,
    sbc_sizes={"nuts": (50, 50), "mala": (100, 100)},
    # the fresh-process comparison is left out of the quick run (make test's smoke test): each of its cells is a new
    # Python process that imports and compiles (~10 s each on 2 cores); `fresh_processes(dict(QUICK,
    # fresh_models=("eight_schools",)))` runs it at these sizes
    fresh_models=(),
    fresh_sizes=(2, 100, 100),
    fresh_repeats=1,  # (chains, warm-up, draws)
)

NUTS_GOAL = 0.9  # samplax ESS/s over NumPyro ESS/s, cold and warm: at least
FRESH_FIRST_GOAL = 1.2  # fresh processes, samplax ESS/s over NumPyro's: first process (empty cache), at least
FRESH_SECOND_GOAL = 3.0  # ... and a second process fitting the same model (samplax's cache filled), at least
GRADIENT_GOAL = 1.2  # samplax mala step over one value_and_grad: at most
BLACKJAX_GOAL = 1.05  # samplax mala step over BlackJAX's mala loop: at most

NUTS_HEADERS = [
    "model",
    "call",
    "samplax s",
    "NumPyro s",
    "samplax min ESS",
    "NumPyro min ESS",
    "samplax ESS/s",
    "NumPyro ESS/s",
    "ratio samplax/NumPyro",
    f"goal >= {NUTS_GOAL}x",
]
COMPILE_HEADERS = [
    "model",
    "library",
    "call",
    "wall s",
    "XLA programs",
    "XLA compile s",
    "trace + lower s",
    "rest s",
    "largest programs",
]
GRADIENT_HEADERS = [
    "what runs (per step, all chains)",
    "us per step",
    "ratio to value_and_grad",
    f"goal <= {GRADIENT_GOAL}x",
]
BLACKJAX_HEADERS = [
    "model",
    "dim",
    "BlackJAX us/step",
    "samplax as fit runs it us/step",
    "ratio",
    "samplax in 20 chunks us/step",
    "ratio ",
    "cost per chunk ms",
    f"goal <= {BLACKJAX_GOAL}x",
]
FRESH_HEADERS = [
    "model",
    "process",
    "samplax fit s",
    "NumPyro fit s",
    "samplax min ESS",
    "NumPyro min ESS",
    "samplax ESS/s",
    "NumPyro ESS/s",
    "ratio",
    "goal",
    "met",
    "samplax process s",
    "NumPyro process s",
    "ratio per process s",
    "samplax compile_s",
]
SBC_HEADERS = [
    "model",
    "method",
    "data sets",
    "ranks L+1",
    "coordinates",
    "min p-value",
    "coordinates p < 0.01",
    "uniform at 1% (Bonferroni)",
    "histogram",
]


# ------------------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet():
    """Silence the expected warnings of short runs (convergence, ArviZ) inside a measured call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _to_host(tree):
    return jax.tree.map(np.asarray, tree)


def _min_bulk_ess(idata, var_names) -> float:
    ess = arviz_compat.ess(arviz_compat.group(idata, "posterior")[list(var_names)], method="bulk")
    return float(min(np.nanmin(ess[name].values) for name in var_names))


def _max_rhat(idata, var_names) -> float:
    rhat = arviz_compat.rhat(arviz_compat.group(idata, "posterior")[list(var_names)])
    return float(max(np.nanmax(rhat[name].values) for name in var_names))


def _divergences(idata) -> int:
    stats = arviz_compat.group(idata, "sample_stats")
    if stats is None or "diverging" not in stats:
        return 0
    return int(np.asarray(stats["diverging"]).sum())


# ----------------------------------------------------------------------------------------------- 1. NUTS vs NumPyro
def _fit_samplax_nuts(model, data, s):
    fit = samplax.fit(
        model,
        data,
        method="nuts",
        chains=s["chains"],
        warmup=s["warmup"],
        draws=s["draws"],
        seed=0,
        progress=False,
        target_accept=s["target_accept"],
    )
    return fit.idata, fit.timing


def _fit_numpyro_nuts(model, data, s):
    mcmc = MCMC(
        NUTS(model, target_accept_prob=s["target_accept"]),
        num_warmup=s["warmup"],
        num_samples=s["draws"],
        num_chains=s["chains"],
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), **data)
    return arviz_compat.from_numpyro(mcmc, log_likelihood=True), None


_NUTS_RUNNERS = {"samplax": _fit_samplax_nuts, "NumPyro": _fit_numpyro_nuts}


def _measured_fit(library, model, data, s) -> dict:
    with _quiet(), common.CompileMeter() as meter:
        start = time.perf_counter()
        idata, timing = _NUTS_RUNNERS[library](model, data, s)
        wall = time.perf_counter() - start
    return {"idata": idata, "wall": wall, "meter": meter, "timing": timing}


def nuts_vs_numpyro(s: dict) -> dict:
    """Cold and warm fits of each model by both libraries; returns rows for the tables and the verdicts."""
    # one-off start-up of both libraries on another model, excluded from every number
    if s["startup_run"]:
        startup = zoo.get("normal_normal")
        tiny = dict(s, chains=1, warmup=10, draws=10)
        for library in _NUTS_RUNNERS:
            _measured_fit(library, startup.model, startup.make_data(), tiny)

    rows, compile_rows, verdicts, details, programs = [], [], [], [], {}
    for index, name in enumerate(s["nuts_models"]):
        entry = zoo.get(name)
        data = entry.make_data()
        order = list(_NUTS_RUNNERS) if index % 2 == 0 else list(_NUTS_RUNNERS)[::-1]
        calls = {library: [] for library in order}
        for library in order:  # cold: the first fit of this model in the process
            calls[library].append(_measured_fit(library, entry.model, data, s))
        for _ in range(s["warm_repeats"]):  # warm: the identical call again, interleaved
            for library in order:
                calls[library].append(_measured_fit(library, entry.model, data, s))
        posterior = {library: calls[library][0]["idata"].posterior for library in order}
        var_names = [v for v in posterior["samplax"].data_vars if v in posterior["NumPyro"].data_vars]
        for call, pick in (("cold", lambda c: c[:1]), ("warm", lambda c: c[1:])):
            ess = {library: _min_bulk_ess(pick(calls[library])[0]["idata"], var_names) for library in order}
            wall = {library: statistics.median(x["wall"] for x in pick(calls[library])) for library in order}
            rate = {library: ess[library] / wall[library] for library in order}
            ratio = rate["samplax"] / rate["NumPyro"]
            met = ratio >= NUTS_GOAL
            verdicts.append((f"nuts ESS/s vs NumPyro, {name}, {call}", f"{ratio:.2f}x", met))
            label = call if call == "cold" else f"warm (median of {s['warm_repeats']})"
            rows.append(
                [
                    name,
                    label,
                    wall["samplax"],
                    wall["NumPyro"],
                    ess["samplax"],
                    ess["NumPyro"],
                    rate["samplax"],
                    rate["NumPyro"],
                    f"{ratio:.2f}x",
                    common.yes_no(met),
                ]
            )
            for library in ("samplax", "NumPyro"):
                measured = pick(calls[library])[0]
                meter = measured["meter"]
                rest = measured["wall"] - meter.seconds
                compile_rows.append(
                    [
                        name,
                        library,
                        call,
                        measured["wall"],
                        meter.compiles,
                        meter.backend_seconds,
                        meter.trace_seconds + meter.lower_seconds,
                        rest,
                        meter.largest(2),
                    ]
                )
        programs[name] = calls["samplax"][0]["meter"].programs
        timing = calls["samplax"][1]["timing"] if len(calls["samplax"]) > 1 else calls["samplax"][0]["timing"]
        details.append(
            {
                "model": name,
                "order": " then ".join(order),
                "var_names": var_names,
                "rhat": {library: _max_rhat(calls[library][0]["idata"], var_names) for library in order},
                "divergences": {library: _divergences(calls[library][0]["idata"]) for library in order},
                "samplax_timing": timing,
            }
        )
    return {"rows": rows, "compile_rows": compile_rows, "verdicts": verdicts, "details": details, "programs": programs}


# ------------------------------------------------------------------------------------------ 2. MALA per-step cost
def _mala_runner(target, num_steps: int, chunk: int):
    """samplax's mala step driven by samplax's ChainRunner (fit's driver), keeping positions and sample stats.

    ``finish`` passes the positions through, so this is the kernel plus the runner (data as an argument, per-draw
    keys by fold_in, the recorded statistics, the copy to the host after each chunk) without fit's constrain /
    log-likelihood pass.
    """
    method = registry.get("mala")
    options = validate("mala", {})

    def build(data):
        return method.step(target.with_data(data), options), method.record, lambda z: {"posterior": {"z": z}}

    runner = ChainRunner(build, chunk)
    runner.executable = runner.function  # compiled by the first (untimed) call
    data = target.data_arrays()

    def run(states, params, chain_keys):
        pieces = []
        for index in range(num_steps // chunk):
            states, host = runner.run(data, states, params, chain_keys, index * chunk)
            pieces.append(host)
        return pieces

    return run


def _mala_start(target, chains: int, step_size: float, seed: int = 0):
    positions = target.init(jax.random.key(seed), chains)
    states = jax.vmap(lambda z: blackjax.mala.init(z, target.logdensity))(positions)
    params = MALAParams(jnp.full((chains,), step_size, positions.dtype), jnp.ones_like(positions))
    chain_keys = jax.random.split(jax.random.key(seed + 1), chains)
    return positions, states, params, chain_keys


def _blackjax_mala_loop(target, num_steps: int, step_size: float):
    """BlackJAX's documented inference loop for ``blackjax.mala``, vmapped over chains."""
    algorithm = blackjax.mala(target.logdensity, step_size)

    def loop(key, state):
        def one_step(state, key):
            state, info = algorithm.step(key, state)
            return state, (state.position, state.logdensity, info.acceptance_rate, info.is_accepted)

        _, kept = jax.lax.scan(one_step, state, jax.random.split(key, num_steps))
        return kept

    return jax.jit(jax.vmap(loop))


def mala_vs_gradient(s: dict) -> dict:
    """(a): samplax mala per step over one jitted, vmapped value_and_grad, logistic regression n=10^4, d=50."""
    entry = zoo.get("logistic_regression")
    data = entry.make_data(**s["big_regression"])
    target = build_target(entry.model, data)
    chains, steps = s["mala_chains"], s["mala_steps"]
    positions, states, params, chain_keys = _mala_start(target, chains, 1e-3)

    value_and_grad = jax.vmap(jax.value_and_grad(target.logdensity))

    @jax.jit
    def gradient_loop(z):
        def body(z, _):  # each evaluation depends on the last, so XLA cannot merge or hoist them
            value, grad = value_and_grad(z)
            return z + 1e-6 * grad, value

        return jax.lax.scan(body, z, None, length=steps)

    one_scan = _mala_runner(target, steps, steps)
    chunk = chunk_size_for(steps)
    chunked = _mala_runner(target, steps, chunk)
    times = common.interleaved_times(
        {
            "gradient": lambda: _to_host(gradient_loop(positions)),
            "one_scan": lambda: one_scan(states, params, chain_keys),
            "chunked": lambda: chunked(states, params, chain_keys),
        },
        s["mala_repeats"],
    )
    per_step = {name: statistics.median(values) / steps * 1e6 for name, values in times.items()}
    ratios = {name: common.paired_ratio(values, times["gradient"]) for name, values in times.items()}

    # the sampling phase of a real fit (progress bar on, as by default): with fit's constrain, and with and without
    # the pointwise log-likelihood (n values per draw); not interleaved, so ratios of medians
    for name, keep_loglik in (("fit", False), ("fit_loglik", True)):
        seconds = []
        for _ in range(1 + s["mala_fit_repeats"]):  # the first call compiles (cached for the others)
            with _quiet():
                fit = samplax.fit(
                    entry.model,
                    data,
                    method="mala",
                    chains=chains,
                    warmup=s["mala_fit_warmup"],
                    draws=s["mala_fit_draws"],
                    seed=0,
                    progress=True,
                    log_likelihood=keep_loglik,
                )
            seconds.append(fit.timing["sampling_s"])
        per_step[name] = statistics.median(seconds[1:]) / s["mala_fit_draws"] * 1e6
        ratios[name] = per_step[name] / per_step["gradient"]

    labels = {
        "gradient": f"jit(vmap(value_and_grad(logdensity))), {chains} chains (scan of {steps} chained calls)",
        "one_scan": f"samplax mala step, ChainRunner, one compiled chunk of {steps} steps",
        "chunked": f"samplax mala step, ChainRunner, {steps // chunk} chunks of {chunk} (as fit runs a run that lasts "
        "2 s or more with its progress bar on)",
        "fit": f"samplax.fit(log_likelihood=False) sampling phase, {s['mala_fit_draws']} draws (adds constrain and "
        "the copy to the host)",
        "fit_loglik": f"samplax.fit sampling phase with the default log_likelihood=True (adds "
        f"{target.observed['y'].size} pointwise log-likelihoods per draw: an output, not a step cost)",
    }
    rows, verdicts = [], []
    for name in ("gradient", "one_scan", "chunked", "fit", "fit_loglik"):
        met = None if name in ("gradient", "fit_loglik") else bool(ratios[name] <= GRADIENT_GOAL)
        rows.append([labels[name], per_step[name], f"{ratios[name]:.2f}x", common.yes_no(met)])
    verdicts.append(
        (
            "mala step / value_and_grad, as fit's runner runs it",
            f"{ratios['chunked']:.2f}x",
            ratios["chunked"] <= GRADIENT_GOAL,
        )
    )
    verdicts.append(
        (
            "mala step / value_and_grad, fit's whole sampling phase (log_likelihood=False)",
            f"{ratios['fit']:.2f}x",
            ratios["fit"] <= GRADIENT_GOAL,
        )
    )
    return {
        "rows": rows,
        "verdicts": verdicts,
        "dim": target.dim,
        "chains": chains,
        "n": int(target.observed["y"].size),
    }


def mala_vs_blackjax(s: dict) -> dict:
    """(b): samplax mala per step over BlackJAX's mala loop, same step size, steps and chains, on zoo models."""
    names = s["blackjax_models"] or tuple(zoo.names())
    chains, steps, step_size = s["mala_chains"], s["blackjax_steps"], s["blackjax_step_size"]
    chunk = chunk_size_for(steps)
    rows, skipped, ratios_scan, ratios_chunk = [], [], [], []
    for name in names:
        entry = zoo.get(name)
        try:
            data = entry.make_data()
        except ImportError as error:  # e.g. breast_cancer without scikit-learn
            skipped.append(f"{name} ({error})")
            continue
        target = build_target(entry.model, data)
        if target.discrete_sites or target.dim == 0:  # MALA needs a gradient on every latent site
            skipped.append(f"{name} ({len(target.discrete_sites)} discrete latent sites: not a MALA target)")
            continue
        positions, states, params, chain_keys = _mala_start(target, chains, step_size)
        loop = _blackjax_mala_loop(target, steps, step_size)
        blackjax_keys = jax.random.split(jax.random.key(2), chains)
        one_scan = _mala_runner(target, steps, steps)
        chunked = _mala_runner(target, steps, chunk)
        times = common.interleaved_times(
            {
                "blackjax": lambda: _to_host(loop(blackjax_keys, states)),
                "one_scan": lambda: one_scan(states, params, chain_keys),
                "chunked": lambda: chunked(states, params, chain_keys),
            },
            s["blackjax_repeats"],
        )
        us = {key: statistics.median(values) / steps * 1e6 for key, values in times.items()}
        # fit (progress bar on) cuts these draws as progress_chunk_size says for their speed: one chunk here
        as_fit = "one_scan" if progress_chunk_size(steps, us["one_scan"] * 1e-6) == steps else "chunked"
        ratio_fit = common.paired_ratio(times[as_fit], times["blackjax"])
        ratio_chunk = common.paired_ratio(times["chunked"], times["blackjax"])
        chunk_overhead_ms = (us["chunked"] - us["one_scan"]) * chunk / 1e3
        ratios_scan.append(ratio_fit)
        ratios_chunk.append(ratio_chunk)
        rows.append(
            [
                name,
                target.dim,
                us["blackjax"],
                us[as_fit],
                f"{ratio_fit:.2f}x",
                us["chunked"],
                f"{ratio_chunk:.2f}x",
                chunk_overhead_ms,
                common.yes_no(ratio_fit <= BLACKJAX_GOAL),
            ]
        )
    met_scan = sum(r <= BLACKJAX_GOAL for r in ratios_scan)
    verdicts = [
        (
            "mala / BlackJAX mala loop as fit runs it, every model",
            f"{met_scan}/{len(ratios_scan)} models; worst {max(ratios_scan):.2f}x",
            met_scan == len(ratios_scan),
        ),
    ]
    return {
        "rows": rows,
        "verdicts": verdicts,
        "skipped": skipped,
        "chains": chains,
        "steps": steps,
        "chunk": chunk,
        "step_size": step_size,
    }


# ------------------------------------------------------------------------------------------------------- 3. SBC
def _vectorized_sampler(prototype, method_name: str, num_warmup: int, num_draws: int):
    """``sampler(key, data) -> {site: (num_draws, *shape)}``: samplax's warm-up and step for one chain, traceable.

    The same pieces `fit` runs (the method's registered warm-up, step and the bridge's ``logdensity`` and
    ``constrain``), on the prototype Target conditioned on the (traced) simulated data set (`Target.with_data`).
    """
    method = registry.get(method_name)
    options = validate(method_name, {})

    def sampler(key, data):
        target = prototype.with_data({name: value for name, value in data.items() if name in prototype.data_arrays()})
        init_key, warmup_key, draw_key = jax.random.split(key, 3)
        position = jax.random.uniform(init_key, (target.dim,), minval=-2.0, maxval=2.0)  # fit's default init
        state, params, _ = method.warmup(target, options, num_warmup)(warmup_key, position)
        step = method.step(target, options)

        def body(state, t):
            state, _ = step(jax.random.fold_in(draw_key, t), state, params)
            return state, state.position

        _, positions = jax.lax.scan(body, state, jnp.arange(num_draws))
        constrained = jax.vmap(target.constrain)(positions)
        return {site.name: constrained[site.name] for site in target.sites}

    return sampler


def sbc_histograms(s: dict, out_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from samplax.infer.calibration import sbc

    rows, images = [], []
    for name in s["sbc_models"]:
        entry = zoo.get(name)
        data = entry.make_data()
        prototype = build_target(entry.model, data)
        for method_name in ("nuts", "mala"):
            num_warmup, num_draws = s["sbc_sizes"][method_name]
            sampler = _vectorized_sampler(prototype, method_name, num_warmup, num_draws)
            with _quiet():
                result = sbc(
                    entry.model,
                    data,
                    num_datasets=s["sbc_datasets"],
                    observed={"y": "y"},
                    sampler=sampler,
                    vectorized=True,
                    thin="auto",
                    seed=0,
                )
            pvalues = np.concatenate([np.ravel(v) for v in result.uniformity_pvalues().values()])
            coordinates = pvalues.size
            png = f"{TOPIC}_sbc_{name}_{method_name}.png"
            axes = result.plot()
            figure = np.ravel(axes)[0].figure
            figure.suptitle(
                f"SBC ranks: {name}, {method_name} ({result.num_datasets} data sets, L+1 = {result.num_ranks})"
            )
            figure.tight_layout()
            figure.savefig(Path(out_dir) / png, dpi=72)
            plt.close(figure)
            images.append((f"{name}, {method_name}", png))
            rows.append(
                [
                    name,
                    method_name,
                    result.num_datasets,
                    result.num_ranks,
                    coordinates,
                    float(pvalues.min()),
                    int((pvalues < 0.01).sum()),
                    common.yes_no(bool(pvalues.min() >= 0.01 / coordinates)),
                    f"[png]({png})",
                ]
            )
    return {"rows": rows, "images": images}


# -------------------------------------------------------------------------------------------- 4. fresh processes
# The worker a fresh process runs: it imports only its own library (and ArviZ), defines the model as a user would,
# fits with the library's defaults and prints one JSON line. The fit's clock starts after the imports (they are
# reported separately, with the whole process's wall time measured by the parent).
_FRESH_WORKER = r"""
import json, sys, time
started = time.perf_counter()
library, model_name, sizes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
import warnings
warnings.simplefilter("ignore")
import numpy as np
import jax
import numpyro
import numpyro.distributions as dist
import arviz as az
if library == "samplax":
    import samplax
    import samplax.infer.fit  # samplax imports lazily: its own modules load here, not inside the fit's clock
else:
    from numpyro.infer import MCMC, NUTS


def eight_schools(y=None, sigma=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def linear_regression(X, y=None):
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("observations", X.shape[0]):
        numpyro.sample("y", dist.Normal(alpha + X @ beta, sigma), obs=y)


if model_name == "eight_schools":
    model = eight_schools
    data = {"y": np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]),
            "sigma": np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])}
else:
    model = linear_regression
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    data = {"X": X, "y": 1.0 + X @ np.array([1.0, -0.5, 0.0, 2.0, 0.3]) + 0.7 * rng.normal(size=200)}
imported = time.perf_counter() - started
start = time.perf_counter()
if library == "samplax":
    kwargs = {} if sizes is None else dict(zip(("chains", "warmup", "draws"), sizes))
    fit = samplax.fit(model, data, method="nuts", **kwargs)
    idata, compile_s = fit.idata, fit.timing.get("compile_s")
else:
    kwargs = {} if sizes is None else dict(zip(("num_chains", "num_warmup", "num_samples"), sizes))
    kwargs = {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000, **kwargs}
    mcmc = MCMC(NUTS(model), **kwargs)
    mcmc.run(jax.random.PRNGKey(0), **data)
    idata, compile_s = az.from_numpyro(mcmc), None
fit_s = time.perf_counter() - start
ess = az.ess(idata.posterior, method="bulk")
stats = idata.sample_stats
print(json.dumps({"import_s": imported, "fit_s": fit_s, "compile_s": compile_s,
                  "ess": {name: float(np.nanmin(ess[name].values)) for name in ess.data_vars},
                  "divergences": int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else None}))
"""


def _fresh_environment(cache: str | None) -> dict:
    """The parent's environment without any compilation cache setting; samplax's cache folder when given."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in (
            "JAX_COMPILATION_CACHE_DIR",
            "SAMPLAX_COMPILATION_CACHE_DIR",
            "SAMPLAX_COMPILATION_CACHE",
            "JAX_ENABLE_COMPILATION_CACHE",
        )
    }
    if cache is not None:
        env["SAMPLAX_COMPILATION_CACHE_DIR"] = cache
    return env


def _fresh_run(library: str, model: str, sizes, cache: str | None) -> dict:
    """One fresh process: the worker's JSON plus the process's wall time as the parent saw it."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_WORKER, library, model, json.dumps(sizes)],
        env=_fresh_environment(cache),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fresh {library} process on {model} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def fresh_processes(s: dict) -> dict:
    """Issue 17's comparison: per model, samplax's first process (empty cache folder) and second process, and
    NumPyro's two processes, each a new Python; returns table rows and verdicts."""
    rows, verdicts, details = [], [], []
    for model in s["fresh_models"]:
        runs = {("samplax", 1): [], ("samplax", 2): [], ("NumPyro", 1): [], ("NumPyro", 2): []}
        for _ in range(s["fresh_repeats"]):
            with tempfile.TemporaryDirectory(prefix="samplax-fresh-cache-") as folder:
                cache = os.path.join(folder, "jax")  # absent: as empty as a new user's
                runs[("samplax", 1)].append(_fresh_run("samplax", model, s["fresh_sizes"], cache))
                runs[("NumPyro", 1)].append(_fresh_run("NumPyro", model, s["fresh_sizes"], None))
                runs[("samplax", 2)].append(_fresh_run("samplax", model, s["fresh_sizes"], cache))
                runs[("NumPyro", 2)].append(_fresh_run("NumPyro", model, s["fresh_sizes"], None))
                cached_files = sum(len(files) for _, _, files in os.walk(cache))
        for process, goal in ((1, FRESH_FIRST_GOAL), (2, FRESH_SECOND_GOAL)):
            picked = {library: runs[(library, process)] for library in ("samplax", "NumPyro")}
            names = sorted(set(picked["samplax"][0]["ess"]) & set(picked["NumPyro"][0]["ess"]))
            fit_s = {lib: statistics.median(r["fit_s"] for r in picked[lib]) for lib in picked}
            process_s = {lib: statistics.median(r["process_s"] for r in picked[lib]) for lib in picked}
            ess = {lib: statistics.median(min(r["ess"][n] for n in names) for r in picked[lib]) for lib in picked}
            rate = {lib: ess[lib] / fit_s[lib] for lib in picked}
            ratio = rate["samplax"] / rate["NumPyro"]
            process_ratio = (ess["samplax"] / process_s["samplax"]) / (ess["NumPyro"] / process_s["NumPyro"])
            label = "first (empty cache)" if process == 1 else "second"
            verdicts.append((f"fresh process, nuts ESS/s vs NumPyro, {model}, {label}", f"{ratio:.2f}x", ratio >= goal))
            compile_s = statistics.median(r["compile_s"] or 0.0 for r in picked["samplax"])
            rows.append(
                [
                    model,
                    label,
                    fit_s["samplax"],
                    fit_s["NumPyro"],
                    ess["samplax"],
                    ess["NumPyro"],
                    rate["samplax"],
                    rate["NumPyro"],
                    f"{ratio:.2f}x",
                    f">= {goal}x",
                    common.yes_no(ratio >= goal),
                    process_s["samplax"],
                    process_s["NumPyro"],
                    f"{process_ratio:.2f}x",
                    compile_s,
                ]
            )
        details.append(
            {
                "model": model,
                "cached_files": cached_files,
                "import_s": {
                    lib: statistics.median(r["import_s"] for r in runs[(lib, 1)]) for lib in ("samplax", "NumPyro")
                },
                "divergences": {key: [r["divergences"] for r in value] for key, value in runs.items()},
            }
        )
    return {"rows": rows, "verdicts": verdicts, "details": details}


def _fresh_section(s, fresh) -> list[str]:
    if not s["fresh_models"]:
        return [
            "## 4. Fresh processes (issue 17)",
            "",
            "Not run in quick mode (each cell is a new Python process); the full run measures it.",
            "",
        ]
    sizes = (
        "each library's defaults: 4 chains x 1000 warm-up + 1000 draws"
        if s["fresh_sizes"] is None
        else "chains, warm-up, draws = {} (quick run; not the defaults)".format(s["fresh_sizes"])
    )
    lines = [
        "## 4. Fresh processes: what a user's script gets (issue 17)",
        "",
        f"Each cell is a new Python process ({sizes}; median of {s['fresh_repeats']} repeat(s)): "
        '`samplax.fit(model, data, method="nuts")` against `MCMC(NUTS(model), num_warmup=1000, '
        "num_samples=1000, num_chains=4).run(PRNGKey(0), **data)` followed by `az.from_numpyro(mcmc)`. NumPyro's "
        'default `chain_method` for 4 chains on one CPU device is `"parallel"`, which falls back to sequential '
        "chains; both libraries show their progress bar by default (stderr discarded). samplax's first process starts "
        "with an empty cache folder (`SAMPLAX_COMPILATION_CACHE_DIR` pointing at a new folder), its second process "
        "reuses that folder; no `JAX_COMPILATION_CACHE_DIR` reaches either side, so NumPyro runs without a persistent "
        'cache, as it does by default, and its second process compiles again. "fit s" is the wall time of the fit '
        "call (after the imports; `az.from_numpyro` included for NumPyro, as samplax's fit returns InferenceData); "
        '"process s" is the whole process as the parent saw it (interpreter start, imports, fit, the ESS '
        "computation). Min ESS = the smallest bulk ESS (ArviZ) over every posterior variable both return. The models "
        "are written in the worker as a user writes them (the eight schools are non-centred).",
        "",
        common.markdown_table(FRESH_HEADERS, fresh["rows"]),
        "",
    ]
    for row in fresh["rows"]:
        model, label, fit_s, compile_s = row[0], row[1], row[2], row[-1]
        lines.append(
            f'- {model}, {label} process: samplax\'s `fit.timing["compile_s"]` is {compile_s:.1f} s of its '
            f"{fit_s:.1f} s fit"
            + (
                " (compiling, the cache folder being empty)"
                if label.startswith("first")
                else " (reading the programs back from the cache folder)"
            )
            + "."
        )
    for d in fresh["details"]:
        lines.append(
            f"- {d['model']}: imports took {d['import_s']['samplax']:.1f} s (samplax, its modules "
            f"included) and {d['import_s']['NumPyro']:.1f} s (NumPyro); samplax's cache folder held "
            f"{d['cached_files']} files after its two processes; divergences per process: "
            + ", ".join(f"{lib} {n}: {v}" for (lib, n), v in d["divergences"].items())
            + "."
        )
    return lines


# ------------------------------------------------------------------------------------------------------- the page
def _page(s, quick, info, nuts, gradient, bj, calibration, seconds, load, fresh) -> tuple[str, str]:
    verdicts = nuts["verdicts"] + gradient["verdicts"] + bj["verdicts"] + fresh["verdicts"]
    met = sum(bool(v[2]) for v in verdicts)
    summary = (
        f"{met}/{len(verdicts)} speed goals met"
        + (" (quick smoke run: tiny sizes, numbers not meaningful)" if quick else "")
        + "; nuts vs NumPyro ESS/s (in one process and in fresh processes), mala step cost vs value_and_grad "
        "and BlackJAX, SBC of nuts and mala."
    )
    lines = [
        f"Command: `{common.command_for(TOPIC, quick)}` (from the repository root; `make bench` runs every topic). "
        f"Mode: {'quick (tiny sizes)' if quick else 'full'}; whole page measured in one process in {seconds:.0f} s, "
        "float32" + ("." if quick else ", JAX's persistent compilation cache off."),
        "",
        "## Machine",
        "",
        common.machine_markdown(info),
        "",
        "## Goals",
        "",
        common.markdown_table(
            ["goal", "measured", "verdict"], [[g, m, common.yes_no(bool(v))] for g, m, v in verdicts]
        ),
        "",
        _load_caveat(load),
        "",
        "## 1. NUTS: samplax against NumPyro",
        "",
        f'`samplax.fit(model, data, method="nuts", chains={s["chains"]}, warmup={s["warmup"]}, draws={s["draws"]}, '
        f"target_accept={s['target_accept']})` against `MCMC(NUTS(model, target_accept_prob={s['target_accept']}), "
        f'num_warmup={s["warmup"]}, num_samples={s["draws"]}, num_chains={s["chains"]}, chain_method="vectorized")` '
        "followed by `az.from_numpyro` (which, like samplax, adds the pointwise log-likelihood). Both use a diagonal "
        "mass matrix, tree depth 10 and NumPyro's uniform(-2, 2) initialisation. ESS/s = minimum bulk ESS over every "
        "posterior coordinate both return (deterministic sites included) / wall seconds of the whole call. Cold = "
        "the first fit of the model in this process"
        + (" (both libraries were already imported and run once on normal_normal)" if s["startup_run"] else "")
        + "; warm = the identical call again. Same seed, so cold and warm produce the same draws.",
        "",
        common.markdown_table(NUTS_HEADERS, nuts["rows"]),
        "",
    ]
    for d in nuts["details"]:
        t = d["samplax_timing"]
        lines.append(
            f"- {d['model']}: run order {d['order']}; max R-hat samplax {d['rhat']['samplax']:.3f}, NumPyro "
            f"{d['rhat']['NumPyro']:.3f}; divergences samplax {d['divergences']['samplax']}, NumPyro "
            f"{d['divergences']['NumPyro']}; samplax's own timing (warm call): compile "
            f"{t['compile_s']:.2f} s, warm-up {t['warmup_s']:.2f} s, sampling {t['sampling_s']:.2f} s."
        )
    lines += [
        "",
        "Where the wall time goes (JAX's compile events, `benchmarks.common.CompileMeter`; rest = wall minus "
        "tracing, lowering and XLA compilation: running, host work, InferenceData, diagnostics):",
        "",
        common.markdown_table(COMPILE_HEADERS, nuts["compile_rows"]),
        "",
        _nuts_diagnosis(nuts),
        "",
        "## 2. MALA: cost per step",
        "",
        "Steady state: every function is compiled and run once untimed, then timed round-robin with its competitors "
        f"({s['mala_repeats']} rounds in (a), {s['blackjax_repeats']} in (b)). Times are medians per step of all "
        "chains together; a ratio is the median over rounds of the two calls' ratio in that round (calls of one round "
        "share the machine's load).",
        "",
        f"### (a) against one gradient evaluation: logistic regression, n = {gradient['n']}, dim = {gradient['dim']}, "
        f"{gradient['chains']} chains",
        "",
        common.markdown_table(GRADIENT_HEADERS, gradient["rows"]),
        "",
        "### (b) against BlackJAX's own MALA loop, every zoo model",
        "",
        f"BlackJAX: `blackjax.mala(logdensity, step_size={bj['step_size']})`, its documented loop "
        f"(`lax.scan` over {bj['steps']} split keys, keeping position, log density, acceptance), `vmap` over "
        f"{bj['chains']} chains, one jitted call, results copied to the host. samplax: the registered mala step "
        f"(diagonal preconditioning, identity mass here, same step size) driven by `ChainRunner`, keeping "
        f'position, log density, acceptance and the divergence flag. "As fit runs it": fit with its progress bar '
        f"on runs these {bj['steps']} draws in one compiled chunk, because they take well under "
        "`PROGRESS_MIN_SECONDS` (2 s; `samplax.infer.run.progress_chunk_size`); a run long enough to watch is cut "
        f"into 20 chunks ({bj['chunk']} draws each here), whose cost is shown for information: cost per chunk = "
        "(20 chunks - one chunk) x chunk length, what each chunk adds (dispatch, copies to the host, Python), "
        "under 0.2 % of a chunk that lasts 0.1 s or more. The log density is the same `Target.logdensity` on both "
        "sides (BlackJAX's closes over the data, samplax's takes them as an argument, as fit compiles it). "
        f"Runs of {bj['steps']} steps make this a per-step cost: each call also pays a fixed cost (dispatch of a "
        "program with more arguments and outputs, the start index, the copies to the host; about 0.1 ms for "
        "samplax's runner and 0.02 ms for BlackJAX's loop on this machine), which would be 2-3 % of a 1000-step "
        "run of a 4 us step.",
        "",
        common.markdown_table(BLACKJAX_HEADERS, bj["rows"]),
        "",
    ]
    if bj["skipped"]:
        lines += ["Skipped: " + "; ".join(bj["skipped"]) + ".", ""]
    lines += [
        "## 3. Simulation-based calibration of nuts and mala",
        "",
        f"`samplax.infer.calibration.sbc(model, data, num_datasets={s['sbc_datasets']}, sampler=..., "
        'vectorized=True, thin="auto")`: prior draws and simulated data from the model, then per data set one '
        "chain of samplax's registered warm-up and step (the functions `fit` runs, on the bridge's log density; "
        f"warm-up/draws: nuts {s['sbc_sizes']['nuts'][0]}/{s['sbc_sizes']['nuts'][1]}, mala "
        f"{s['sbc_sizes']['mala'][0]}/{s['sbc_sizes']['mala'][1]}), vmapped over data sets; draws thinned by ESS. "
        'p-values: chi-square test of uniform ranks per scalar coordinate; "uniform at 1 %" asks whether the '
        "smallest p-value clears 0.01 / (number of coordinates). With this few data sets the test only catches "
        "gross miscalibration.",
        "",
        common.markdown_table(SBC_HEADERS, calibration["rows"]),
        "",
    ]
    for label, png in calibration["images"]:
        lines += [f"![SBC rank histograms: {label}]({png})", ""]
    lines += _fresh_section(s, fresh)
    return summary, "\n".join(lines)


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not available
        return float("nan")


def _load_caveat(load: tuple[float, float]) -> str:
    """How far to trust small ratios: the machine's one-minute load average against its cores, start and end."""
    cores = os.cpu_count() or 1
    busiest = max(load)
    text = f"One-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end, on {cores} cores."
    if busiest > cores:
        text += (
            " The machine was shared with other work, so timings carry noise well beyond their repeat-to-repeat "
            "spread: ratios within about 20 % of a goal are not resolved here; interleaving and paired ratios "
            "protect the comparisons, not the absolute times."
        )
    return text


def _nuts_diagnosis(nuts) -> str:
    """Plain words on where samplax's time goes relative to NumPyro, from the measured compile events."""
    sentences = []
    by_call = {(row[0], row[1], row[2]): row for row in nuts["compile_rows"]}
    ratios = {(row[0], row[1].split()[0]): row for row in nuts["rows"]}
    for model in dict.fromkeys(row[0] for row in nuts["compile_rows"]):
        cold_s, cold_n = by_call[(model, "samplax", "cold")], by_call[(model, "NumPyro", "cold")]
        sentences.append(
            f"{model}, cold: samplax compiled {cold_s[4]} XLA programs in {cold_s[5]:.1f} s ({cold_s[8]}), NumPyro "
            f"{cold_n[4]} in {cold_n[5]:.1f} s ({cold_n[8]})."
        )
        chunk_seconds = sum(seconds for name, seconds in nuts["programs"][model] if "run_chunk" in name)
        row = ratios.get((model, "cold"))
        if chunk_seconds > 0 and row is not None:
            wall_s, wall_n, ess_s, ess_n = row[2], row[3], row[4], row[5]
            estimate = (ess_s / max(wall_s - chunk_seconds, 1e-9)) / (ess_n / wall_n)
            sentences.append(
                f"{model}: samplax's warm-up program and its sampling-chunk program (`jit(run_chunk)`, "
                f"{chunk_seconds:.1f} s to compile) each contain the NUTS transition; NumPyro compiles one program "
                f"(`_fori_collect_loop`) for warm-up and sampling. Compiling the transition once (one program that "
                f"adapts during warm-up steps and not after) would remove most of those {chunk_seconds:.1f} s: the "
                f"cold ratio would be about {estimate:.2f}x instead of {row[8]}."
            )
        if (model, "samplax", "warm") in by_call:
            warm_s, warm_n = by_call[(model, "samplax", "warm")], by_call[(model, "NumPyro", "warm")]
            sentences.append(
                f"{model}, warm: samplax compiled {warm_s[4]} programs (its compiled-program cache), NumPyro "
                f"{warm_n[4]} in {warm_n[5]:.1f} s (a new `MCMC` object recompiles)."
            )
            if warm_s[4] == 0 and warm_s[6] > 0.2:
                sentences.append(
                    f"{model}, warm: samplax still spent {warm_s[6]:.1f} s of its {warm_s[3]:.1f} s tracing, with "
                    "nothing to compile: the shapes of the warm-up's outputs are re-derived by tracing it on every "
                    "call (`jax.eval_shape` in `fit._run_mcmc` at the time of writing); the cached executable's "
                    "`out_info` has them."
                )
    return "\n".join(f"- {text}" for text in sentences)


def main(out_dir: Path, quick: bool = False) -> Path:
    """Run the three foundation measurements and write ``out_dir/foundation.md`` (plus SBC PNGs); return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = QUICK if quick else FULL
    info = common.machine_info()
    load_at_start = _load_average()
    start = time.perf_counter()
    # first, while the machine is as quiet as it will be: new processes, each with its own cache setting
    fresh = fresh_processes(s)
    # full runs time cold compilation; the quick smoke run may reuse a persistent cache (tests set one up)
    with contextlib.nullcontext() if quick else common.persistent_cache_disabled():
        nuts = nuts_vs_numpyro(s)
        gradient = mala_vs_gradient(s)
        bj = mala_vs_blackjax(s)
        calibration = sbc_histograms(s, out_dir)
    load = (load_at_start, _load_average())
    summary, body = _page(s, quick, info, nuts, gradient, bj, calibration, time.perf_counter() - start, load, fresh)
    return common.write_page(out_dir, TOPIC, "Foundation benchmarks", summary, body)


if __name__ == "__main__":  # pragma: no cover
    common.topic_cli(main, __doc__)
