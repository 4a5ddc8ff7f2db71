"""Run a corpus model under NumPyro's NUTS and under samplax, and compare the two posteriors.

The check of `compare`: every compared scalar component's posterior mean agrees within ``z_max`` combined Monte
Carlo standard errors (ArviZ's ``mcse`` of both runs, ``sqrt(mcse_a**2 + mcse_b**2)``) and its posterior sd within
``sd_rtol`` (relative to the reference). The compared components are every latent (non-deterministic, non-observed)
site of the model, except where the corpus entry says otherwise (`corpus.Entry.log_sites`, ``skip_sites``,
``extra_sites``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model

from .corpus import Entry

Z_MAX = 4.0
SD_RTOL = 0.15
_CONSTANT = 1e-5  # a component whose reference sd is below this (relative) is fixed, not random


def site_kinds(entry: Entry, data: dict | None = None) -> tuple[list[str], list[str]]:
    """The model's latent and deterministic site names, read from NumPyro's own ``initialize_model``.

    Args:
        entry: the corpus entry.
        data: its data (loaded when None).

    Returns:
        ``(latent, deterministic)`` site names in the order the model declares them.
    """
    data = entry.data() if data is None else data
    info = initialize_model(jax.random.PRNGKey(0), entry.model, model_kwargs=data)
    latent, deterministic = [], []
    for name, site in info.model_trace.items():
        if site["type"] == "sample" and not site["is_observed"]:
            latent.append(name)
        elif site["type"] == "deterministic":
            deterministic.append(name)
    return latent, deterministic


def compared_sites(entry: Entry, data: dict | None = None) -> list[str]:
    """The sites whose components the conformance check compares."""
    latent, _ = site_kinds(entry, data)
    return [s for s in latent if s not in entry.skip_sites] + list(entry.extra_sites)


def numpyro_nuts(entry: Entry, data: dict | None = None, *, chains=None, warmup=None, draws=None, seed=0) -> dict:
    """Run NumPyro's NUTS (vectorised chains) and return ``{site: array (chain, draw, ...)}`` and the wall time.

    Args:
        entry: the corpus entry.
        data: its data (loaded when None).
        chains, warmup, draws: default to the entry's settings.
        seed: the PRNG seed.

    Returns:
        ``{"samples": {...}, "seconds": float, "divergences": int}``.

    The run is in JAX's scoped x64 mode when the entry's ``precision`` is float64.
    """
    data = entry.data() if data is None else data
    with jax.enable_x64(entry.precision == "float64"):
        mcmc = MCMC(
            NUTS(entry.model),
            num_warmup=warmup or entry.warmup,
            num_samples=draws or entry.draws,
            num_chains=chains or entry.chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        start = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging",), **data)
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        seconds = time.perf_counter() - start
        divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return {"samples": samples, "seconds": seconds, "divergences": divergences}


def samplax_fit(
    entry: Entry, data: dict | None = None, *, method="nuts", chains=None, warmup=None, draws=None, seed=0, **options
) -> dict:
    """Run ``samplax.fit`` and return ``{site: array (chain, draw, ...)}`` from its posterior group and the wall time.

    The entry's ``precision`` is passed on when it is float64; otherwise the method's default precision applies.

    Returns:
        ``{"samples": {...}, "seconds": float, "fit": samplax.Fit}``.
    """
    import samplax

    data = entry.data() if data is None else data
    if entry.precision == "float64":
        options.setdefault("precision", "float64")
    start = time.perf_counter()
    fit = samplax.fit(
        entry.model,
        data,
        method=method,
        chains=chains or entry.chains,
        warmup=warmup or entry.warmup,
        draws=draws or entry.draws,
        seed=seed,
        progress=False,
        **options,
    )
    seconds = time.perf_counter() - start
    posterior = fit.idata.posterior
    samples = {name: np.asarray(posterior[name].values) for name in posterior.data_vars}
    return {"samples": samples, "seconds": seconds, "fit": fit}


def _components(samples: dict, sites: list[str], log_sites=()) -> dict[str, np.ndarray]:
    """``{"site[i,j]": array (chain, draw)}`` for every scalar component (log of the sites in ``log_sites``)."""
    out = {}
    for site in sites:
        values = np.asarray(samples[site], dtype=float)
        if site in log_sites:
            values = np.log(values)
        event_shape = values.shape[2:]
        flat = values.reshape(values.shape[:2] + (-1,))
        for i in range(flat.shape[-1]):
            index = np.unravel_index(i, event_shape) if event_shape else ()
            label = site if not event_shape else f"{site}[{','.join(map(str, index))}]"
            if site in log_sites:
                label = f"log {label}"
            out[label] = flat[..., i]
    return out


@dataclasses.dataclass
class Comparison:
    """The outcome of one comparison.

    Attributes:
        worst_z: the largest ``|mean_a - mean_b| / sqrt(mcse_a**2 + mcse_b**2)`` over the components.
        worst_z_component: where it occurs.
        worst_sd: the largest ``|sd_a / sd_b - 1|``.
        worst_sd_component: where it occurs.
        worst_mean_sd: the largest ``|mean_a - mean_b| / sd_b`` (the method matrix's figure).
        components: how many scalar components were compared.
        passed: ``worst_z <= z_max`` and ``worst_sd <= sd_rtol`` (and every value finite).
        rows: per component ``(label, mean_a, mean_b, mcse_a, mcse_b, sd_a, sd_b)``.
    """

    worst_z: float
    worst_z_component: str
    worst_sd: float
    worst_sd_component: str
    worst_mean_sd: float
    components: int
    passed: bool
    rows: list


def compare(
    candidate: dict, reference: dict, sites: list[str], *, log_sites=(), z_max=Z_MAX, sd_rtol=SD_RTOL
) -> Comparison:
    """Compare two posteriors given as ``{site: (chain, draw, ...)}``, component by component.

    Args:
        candidate: the samples under test (samplax).
        reference: the reference samples (NumPyro).
        sites: the sites to compare (both dicts must hold them).
        log_sites: sites compared on the log scale.
        z_max: the allowed mean difference in combined MCSE.
        sd_rtol: the allowed relative sd difference.

    Returns:
        A `Comparison`.
    """
    import arviz as az

    a = _components(candidate, sites, log_sites)
    b = _components(reference, sites, log_sites)
    worst = dict(z=(-1.0, ""), sd=(-1.0, ""), mean_sd=0.0)
    rows, finite = [], True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, xa in a.items():
            xb = b[label]
            mean_a, mean_b = float(np.mean(xa)), float(np.mean(xb))
            sd_a, sd_b = float(np.std(xa, ddof=1)), float(np.std(xb, ddof=1))
            if sd_b <= _CONSTANT * max(1.0, abs(mean_b)):  # a fixed component (e.g. the 1 of a Cholesky factor)
                same = abs(mean_a - mean_b) <= _CONSTANT * max(1.0, abs(mean_b)) and sd_a <= _CONSTANT * max(
                    1.0, abs(mean_b)
                )
                rows.append((label, mean_a, mean_b, 0.0, 0.0, sd_a, sd_b))
                if not same:
                    worst["z"] = (math.inf, label)
                continue
            mcse_a, mcse_b = float(az.mcse(xa)), float(az.mcse(xb))
            rows.append((label, mean_a, mean_b, mcse_a, mcse_b, sd_a, sd_b))
            if not all(math.isfinite(v) for v in (mean_a, mean_b, sd_a, sd_b, mcse_a, mcse_b)):
                finite = False
                worst["z"] = (math.inf, label)
                continue
            diff = abs(mean_a - mean_b)
            se = math.hypot(mcse_a, mcse_b)
            z = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
            sd_dev = abs(sd_a / sd_b - 1.0) if sd_b > 0 else (0.0 if sd_a == 0 else math.inf)
            if z > worst["z"][0]:
                worst["z"] = (z, label)
            if sd_dev > worst["sd"][0]:
                worst["sd"] = (sd_dev, label)
            worst["mean_sd"] = max(worst["mean_sd"], diff / sd_b if sd_b > 0 else math.inf)
    passed = finite and bool(rows) and worst["z"][0] <= z_max and worst["sd"][0] <= sd_rtol
    return Comparison(
        worst["z"][0], worst["z"][1], worst["sd"][0], worst["sd"][1], worst["mean_sd"], len(rows), passed, rows
    )


def mean_error(candidate: dict, reference: dict, sites: list[str], *, log_sites=()) -> float:
    """The worst ``|mean_a - mean_b| / sd_b`` over the components.

    The candidate's posterior draws count equally (samplax's weighted methods resample into their posterior group).

    Args:
        candidate: samples ``{site: (chain, draw, ...)}`` under test.
        reference: reference samples.
        sites: the compared sites.
        log_sites: sites compared on the log scale.

    Returns:
        The worst standardised mean difference (inf if a value is not finite).
    """
    a = _components(candidate, sites, log_sites)
    b = _components(reference, sites, log_sites)
    worst = 0.0
    for label, xa in a.items():
        xb = b[label]
        sd_b = float(np.std(xb, ddof=1))
        diff = abs(float(np.mean(xa)) - float(np.mean(xb)))
        scale = _CONSTANT * max(1.0, abs(float(np.mean(xb))))
        if sd_b <= scale:  # a fixed component
            value = 0.0 if diff <= scale else math.inf
        else:
            value = diff / sd_b
        if not math.isfinite(value):
            return math.inf
        worst = max(worst, value)
    return worst


MIN_BIAS = 0.1  # a mean difference below this many reference sds is never called wrong in the method matrix


def matrix_figures(candidate: dict, reference: dict, sites: list[str], *, log_sites=()) -> tuple[float, float]:
    """The method matrix's two figures: the worst standardised mean error and the worst significant bias in MCSE.

    A short run of a good method misses the reference mean by a few of its Monte Carlo standard errors, a biased
    method by more; judging in MCSE (ArviZ's ``mcse`` of both runs, combined) instead of in posterior sds keeps noise
    apart from bias whatever the run's length and mixing. The arguments are those of `mean_error`.

    Returns:
        ``(worst |mean_a - mean_b| / sd_b, worst |mean_a - mean_b| / sqrt(mcse_a**2 + mcse_b**2))``, the second over
        the components whose first figure exceeds ``MIN_BIAS`` (0 if none); both inf if a value is not finite or a
        fixed component differs.
    """
    worst = mean_error(candidate, reference, sites, log_sites=log_sites)
    if not math.isfinite(worst):
        return math.inf, math.inf
    z = 0.0
    for _label, mean_a, mean_b, mcse_a, mcse_b, _sd_a, sd_b in compare(
        candidate, reference, sites, log_sites=log_sites
    ).rows:
        if sd_b <= _CONSTANT * max(1.0, abs(mean_b)):  # fixed components: judged by mean_error
            continue
        diff = abs(mean_a - mean_b)
        if diff / sd_b > MIN_BIAS:
            se = math.hypot(mcse_a, mcse_b)
            z = max(z, diff / se if se > 0 and math.isfinite(se) else math.inf)
    return worst, z


__all__ = [
    "Z_MAX",
    "MIN_BIAS",
    "matrix_figures",
    "SD_RTOL",
    "site_kinds",
    "compared_sites",
    "numpyro_nuts",
    "samplax_fit",
    "compare",
    "mean_error",
    "Comparison",
]
