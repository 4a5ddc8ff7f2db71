"""bplmc vs myula vs nuts: Bayesian LASSO (p=50, n=100), sparse Dirichlet-multinomial, a box-constrained posterior
piled against its bound; errors of means and sds against exact or long-NUTS references, ESS per gradient and per second.

Everything runs in one process through `samplax.fit` (``method=`` bplmc, myula, nuts) with each method's defaults
unless a row says otherwise:

* (a) ``sparse_regression`` with ``make_data(num_features=50, num_observations=100)`` (3 nonzero weights, Laplace(0, 1)
  priors, sigma = 1 known). No closed form: the reference is a long NUTS run (its own MCSE is in the notes).
  bplmc and myula are unadjusted here (every site is real) and sample the smoothed posterior pi^lambda
  (``smoothing`` = 0.1): their errors include a smoothing bias and an Euler-step bias that more draws do not remove.
* (b) ``dirichlet_multinomial_sparse`` (50 categories, 10 counts, concentration 0.5): exact posterior
  Dirichlet(alpha + counts). bplmc is adjusted with the log-barrier simplex map (its default on a simplex).
* (c) ``box_bounded`` (theta ~ Beta(1, 1), 0 successes in 20 trials: posterior Beta(1, 21), density largest at the
  bound 0): exact. bplmc is adjusted with the Fermi-Dirac map (the interval's default).

Gradient counts: bplmc and myula evaluate one gradient of the smooth part per step (the adjusted variant too: the
proposal's gradient is reused by the next step); nuts evaluates ``n_steps`` per draw (mean over the run). ESS is
ArviZ's bulk ESS, the minimum over every scalar coordinate; errors are the maximum over coordinates of
|mean - reference| / reference sd and |sd / reference sd - 1|. "noise" is the median MCSE of the mean in units of the
reference sd: an error many times the noise is bias, not bad luck. Times are sampling seconds (warm-up and
compilation excluded; listed separately).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from samplax.infer import arviz_compat, method_bplmc
from samplax.models import zoo

__all__ = ["main", "FULL", "QUICK", "HEADERS", "PROBLEMS"]

TOPIC = "bplmc"
MIN_TRUSTED_ESS = 100  # below this ArviZ's MCSE is unreliable
BIAS_RATIO = 5.0  # the largest of many coordinates' errors is ~2-3 MCSE by chance; 5 is beyond that
QUICK_NOTE = ", quick sizes: the numbers mean little"

FULL = dict(
    chains=4,
    warmup=1000,
    draws=10000,
    nuts_draws=2000,
    reference_chains=8,
    reference_warmup=2000,
    reference_draws=10000,
    lasso_features=50,
    lasso_observations=100,
    seed=0,
)
# Quick: a smoke run in under a minute (three fits): the default bplmc row of (a) with its nuts reference and of (b)
# with its exact one; (c) takes the same path as (b) (exact reference, default row), so it runs no fit.
QUICK = dict(
    chains=2,
    warmup=200,
    draws=400,
    nuts_draws=200,
    reference_chains=2,
    reference_warmup=300,
    reference_draws=600,
    lasso_features=10,
    lasso_observations=50,
    seed=0,
    rows={"a": ("bplmc",), "b": ("bplmc",), "c": ()},
)

# (key, title, zoo name, make_data sizes from settings, rows: (label, method, options, precision))
PROBLEMS = (
    (
        "a",
        "Bayesian LASSO",
        "sparse_regression",
        lambda s: {"num_features": s["lasso_features"], "num_observations": s["lasso_observations"]},
        (
            ("bplmc", "bplmc", {}, None),
            ("bplmc adjusted", "bplmc", {"adjusted": True}, None),
            ("myula", "myula", {}, None),
            ("myula adjusted", "myula", {"adjusted": True}, None),
            ("nuts", "nuts", {}, None),
            ("myula adjusted, equal time", "myula", {"adjusted": True}, None),
            # the covariance of 50 correlated coordinates needs more warm-up draws than the 400 of the default
            ("myula adjusted dense", "myula", {"adjusted": True, "precondition": "dense", "warmup": 4000}, None),
        ),
    ),
    (
        "b",
        "Sparse Dirichlet-multinomial",
        "dirichlet_multinomial_sparse",
        lambda s: {},
        (
            ("bplmc", "bplmc", {}, None),
            ("bplmc float64", "bplmc", {}, "float64"),
            ("myula", "myula", {}, None),
            ("myula adjusted", "myula", {"adjusted": True}, None),
            ("nuts", "nuts", {}, None),
            ("myula adjusted, equal time", "myula", {"adjusted": True}, None),
        ),
    ),
    (
        "c",
        "Box-constrained, piled at the bound",
        "box_bounded",
        lambda s: {},
        (("bplmc", "bplmc", {}, None), ("myula", "myula", {}, None), ("nuts", "nuts", {}, None)),
    ),
)

TIME_SLACK = 1.1  # "equal time" allows 10 % of timing noise on a shared machine
EQUAL_TIME = ", equal time"  # a row label ending so reruns the row before it with nuts's sampling seconds

HEADERS = [
    "problem",
    "method",
    "defaults used",
    "gradients / draw",
    "draws",
    "max mean error / sd",
    "max sd error",
    "noise (MCSE / sd)",
    "min bulk ESS",
    "ESS / 1k gradients",
    "ESS / s",
    "sampling s",
    "warm-up s",
    "compile s",
    "divergent / out of domain",
]


def _flatten(posterior, sites) -> dict[str, np.ndarray]:
    """site -> (chain, draw, coordinates) array."""
    out = {}
    for site in sites:
        values = np.asarray(posterior[site].values, dtype=np.float64)
        out[site] = values.reshape(values.shape[:2] + (-1,))
    return out


def _reference_from_fit(fit, sites):
    draws = _flatten(fit.idata.posterior, sites)
    mean = {site: v.mean((0, 1)) for site, v in draws.items()}
    sd = {site: v.std((0, 1)) for site, v in draws.items()}
    mcse = arviz_compat.mcse(arviz_compat.group(fit.idata, "posterior")[list(sites)], method="mean")
    noise = max(float(np.max(np.asarray(mcse[site].values).reshape(-1) / sd[site])) for site in sites)
    return mean, sd, noise


def _fit(model, data, method, chains, warmup, draws, seed, options, precision, thin=1):
    return common.quiet_fit(
        model,
        data,
        method=method,
        chains=chains,
        warmup=warmup,
        draws=draws,
        seed=seed,
        precision=precision,
        thin=thin,
        **options,
    )


def measure(fit, sites, reference_mean, reference_sd, thin=1) -> dict:
    """The row's numbers: errors against the reference, ESS, gradients, times, divergences."""
    draws = _flatten(fit.idata.posterior, sites)
    mean_error = sd_error = 0.0
    noise = []
    ess = arviz_compat.ess(arviz_compat.group(fit.idata, "posterior")[list(sites)], method="bulk")
    mcse = arviz_compat.mcse(arviz_compat.group(fit.idata, "posterior")[list(sites)], method="mean")
    min_ess = min(float(np.min(ess[site].values)) for site in sites)
    for site in sites:
        ref_mean = np.asarray(reference_mean[site], dtype=np.float64).reshape(-1)
        ref_sd = np.asarray(reference_sd[site], dtype=np.float64).reshape(-1)
        mean_error = max(mean_error, float(np.max(np.abs(draws[site].mean((0, 1)) - ref_mean) / ref_sd)))
        sd_error = max(sd_error, float(np.max(np.abs(draws[site].std((0, 1)) / ref_sd - 1.0))))
        noise.extend(np.asarray(mcse[site].values).reshape(-1) / ref_sd)
    stats = fit.idata.sample_stats
    chains, num_draws = stats.sizes["chain"], stats.sizes["draw"]
    gradients_per_draw = float(stats["n_steps"].mean()) if "n_steps" in stats else 1.0
    total_gradients = gradients_per_draw * chains * num_draws * thin
    divergent = int(stats["diverging"].sum()) if "diverging" in stats else 0
    out_of_domain = int(stats["out_of_domain"].sum()) if "out_of_domain" in stats else divergent
    timing = fit.timing
    return dict(
        mean_error=mean_error,
        sd_error=sd_error,
        noise=float(np.median(noise)),
        min_ess=min_ess,
        gradients_per_draw=gradients_per_draw,
        ess_per_k_gradients=1000.0 * min_ess / total_gradients,
        ess_per_s=min_ess / max(timing["sampling_s"], 1e-9),
        sampling_s=timing["sampling_s"],
        warmup_s=timing["warmup_s"],
        compile_s=timing["compile_s"],
        draws=f"{chains} x {num_draws}",
        divergent=divergent,
        out_of_domain=out_of_domain,
        step_size=float(np.median(stats["step_size"].values)) if "step_size" in stats else None,
        acceptance=float(stats["acceptance_rate"].mean()) if "acceptance_rate" in stats else None,
    )


def _defaults_used(method, fit, warmup=None) -> str:
    if method == "nuts":
        return "window adaptation"
    options = fit.options
    parts = [f"step {common.fmt(float(np.median(fit.idata.sample_stats['step_size'].values)))}"]
    if method == "bplmc":
        adjusted = method_bplmc.resolve_adjusted(fit.target, options)
        parts.append("adjusted" if adjusted else "unadjusted")
        if adjusted and "acceptance_rate" in fit.idata.sample_stats:
            parts.append(f"acceptance {float(fit.idata.sample_stats['acceptance_rate'].mean()):.2f}")
        with jax.enable_x64(fit.precision == "float64"):
            composite = fit.target.composite(nonsmooth=options.get("nonsmooth"))
            specs = method_bplmc.legendre_blocks(
                fit.target, composite, options.get("legendre"), options.get("beta"), barrier=adjusted
            )
        parts.append("/".join(sorted({spec.name for spec in specs})))
    if method == "myula":
        adjusted = bool(options.get("adjusted"))
        kind = method_bplmc.resolve_precondition(options, adjusted)
        parts.append("adjusted (exact target)" if adjusted else "unadjusted")
        if kind:
            parts.append(f"{kind} preconditioner")
        if warmup is not None:
            parts.append(f"{warmup} warm-up steps")
    if fit.precision == "float64":
        parts.append("float64")
    return ", ".join(parts)


def run_problem(problem, s) -> tuple[list[list], list[str], dict]:
    key, title, name, sizes, rows = problem
    entry = zoo.get(name)
    data = entry.make_data(seed=s["seed"], **sizes(s))
    notes = []
    if entry.reference is not None:
        reference = entry.reference(data)
        ref_mean, ref_sd = reference.mean, reference.sd
        sites = tuple(ref_mean)
        notes.append(f"({key}) reference: exact (zoo `{name}` conjugate answer).")
    else:
        ref_fit = _fit(
            entry.model,
            data,
            "nuts",
            s["reference_chains"],
            s["reference_warmup"],
            s["reference_draws"],
            s["seed"] + 1000,
            {},
            None,
        )
        sites = tuple(site.name for site in ref_fit.target.sites)
        ref_mean, ref_sd, ref_noise = _reference_from_fit(ref_fit, sites)
        notes.append(
            f"({key}) reference: nuts, {s['reference_chains']} chains x {s['reference_draws']} draws after "
            f"{s['reference_warmup']} warm-up steps, seed {s['seed'] + 1000}; its largest MCSE of a mean is "
            f"{ref_noise:.3g} reference sd."
        )
    table, measured = [], {}
    keep = s.get("rows", {}).get(key)
    for label, method, options, precision in rows:
        if keep is not None and label not in keep:
            continue
        draws = s["nuts_draws"] if method == "nuts" else s["draws"]
        thin = 1
        if label.endswith(EQUAL_TIME) and "nuts" in measured:
            # as many transitions as fit in nuts's sampling seconds, at the speed the same method just ran at
            base = measured[label[: -len(EQUAL_TIME)]]
            transitions = int(s["draws"] * measured["nuts"]["sampling_s"] / max(base["sampling_s"], 1e-9))
            thin = max(1, transitions // s["draws"])
        options = dict(options)
        warmup = options.pop("warmup", s["warmup"])  # a row may set its own warm-up length
        fit = _fit(entry.model, data, method, s["chains"], warmup, draws, s["seed"], options, precision, thin=thin)
        row = measure(fit, sites, ref_mean, ref_sd, thin)
        row["draws"] = f"{s['chains']} x {draws * thin}" + (f" (every {thin}th kept)" if thin > 1 else "")
        measured[label] = row
        table.append(
            [
                f"({key}) {title}",
                label,
                _defaults_used(method, fit, warmup if warmup != s["warmup"] else None),
                row["gradients_per_draw"],
                row["draws"],
                row["mean_error"],
                row["sd_error"],
                row["noise"],
                row["min_ess"],
                row["ess_per_k_gradients"],
                row["ess_per_s"],
                row["sampling_s"],
                row["warmup_s"],
                row["compile_s"],
                f"{row['divergent']} / {row['out_of_domain']}",
            ]
        )
    return table, notes, measured


def verdicts(results: dict) -> list[str]:
    """Plain statements read off the measured numbers: who is most accurate and most efficient on each problem."""
    lines = []
    for key, title, _, _, _ in PROBLEMS:
        measured = results.get(key)
        if not measured:
            continue
        if len(measured) < 2:
            lines.append(f"({key}) {title}: only {', '.join(measured)} ran (quick run), nothing to compare.")
            continue
        best_error = min(measured, key=lambda label: measured[label]["mean_error"])
        best_sd = min(measured, key=lambda label: measured[label]["sd_error"])
        best_gradient = max(measured, key=lambda label: measured[label]["ess_per_k_gradients"])
        best_second = max(measured, key=lambda label: measured[label]["ess_per_s"])
        bplmc = measured.get("bplmc")
        nuts = measured.get("nuts")
        wins = [
            what
            for what, winner in (
                ("mean error", best_error),
                ("sd error", best_sd),
                ("ESS per gradient", best_gradient),
                ("ESS per second", best_second),
            )
            if winner.startswith("bplmc")
        ]
        loses = [what for what in ("mean error", "sd error", "ESS per gradient", "ESS per second") if what not in wins]
        line = (
            f"({key}) {title}: most accurate means {best_error} ({measured[best_error]['mean_error']:.3g} sd), "
            f"sds {best_sd} ({measured[best_sd]['sd_error']:.3g}); most ESS per 1k gradients {best_gradient} "
            f"({measured[best_gradient]['ess_per_k_gradients']:.3g}); most ESS per second {best_second} "
            f"({measured[best_second]['ess_per_s']:.3g}). "
        )
        line += (f"bplmc wins on {', '.join(wins)}" if wins else "bplmc wins on none of these") + (
            f" and does not win on {', '.join(loses)}." if loses and wins else "."
        )
        if bplmc:
            ratio = bplmc["mean_error"] / max(bplmc["noise"], 1e-12)
            if bplmc["min_ess"] < MIN_TRUSTED_ESS:
                line += (
                    f" Its smallest ESS is {bplmc['min_ess']:.3g}, too few for its MCSE, or the comparison of "
                    "its error with noise, to be trusted: it mixes too slowly here."
                )
            else:
                line += (
                    f" Its largest mean error is {ratio:.1f} times its median MCSE "
                    f"({'bias, not noise' if ratio > BIAS_RATIO else 'within what noise explains'})."
                )
            if nuts:
                line += f" nuts: {nuts['mean_error']:.3g} sd at a median MCSE of {nuts['noise']:.3g} sd."
        if nuts:
            line += " " + equal_time_verdict(measured, nuts)
        lines.append(line)
    return lines


def equal_time_verdict(measured: dict, nuts: dict) -> str:
    """Which bplmc / myula rows reach a lower mean error than nuts in no more sampling seconds (same run, same load)."""
    wins, loses = [], []
    for label, row in measured.items():
        if label == "nuts":
            continue
        text = f"{label} ({row['mean_error']:.3g} sd in {row['sampling_s']:.2g} s)"
        faster = row["sampling_s"] <= TIME_SLACK * nuts["sampling_s"]
        (wins if row["mean_error"] < nuts["mean_error"] and faster else loses).append(text)
    head = (
        f"At no more sampling time than nuts (within {TIME_SLACK - 1:.0%}; nuts: {nuts['mean_error']:.3g} sd in "
        f"{nuts['sampling_s']:.2g} s): "
    )
    return (
        head
        + (f"lower mean error: {', '.join(wins)}" if wins else "no row reaches a lower mean error")
        + (f"; not: {', '.join(loses)}." if loses else ".")
    )


def main(out_dir: Path, quick: bool = False) -> Path:
    """Run the three comparisons and write ``out_dir/bplmc.md``; return its path."""
    out_dir = Path(out_dir)
    s = QUICK if quick else FULL
    info = common.machine_info()
    start = time.perf_counter()
    table, notes, results = [], [], {}
    with contextlib.nullcontext() if quick else common.persistent_cache_disabled():
        for problem in PROBLEMS:
            rows, problem_notes, measured = run_problem(problem, s)
            table += rows
            notes += problem_notes
            results[problem[0]] = measured
    elapsed = time.perf_counter() - start
    statements = verdicts(results)
    summary = "bplmc vs myula vs nuts on a Bayesian LASSO, a sparse Dirichlet and a posterior piled at a bound" + (
        " (quick smoke run)" if quick else ""
    )
    body = f"""
Command: `{common.command_for(TOPIC, quick)}` ({elapsed / 60:.1f} min in all{QUICK_NOTE if quick else ""}).

Settings: {s["chains"]} chains, {s["warmup"]} warm-up steps, {s["draws"]} draws per chain for bplmc and myula and
{s["nuts_draws"]} for nuts (nuts spends many gradients per draw), seed {s["seed"]}, float32 unless the row says
otherwise, every method at its defaults (bplmc: smoothing 0.1, auto step size; "defaults used" shows what they resolved
to). (a) uses p = {s["lasso_features"]}, n = {s["lasso_observations"]}.

## Results

{common.markdown_table(HEADERS, table)}

## Where bplmc wins and where it does not

{chr(10).join("- " + line for line in statements)}

Reading the table: on (a) every site is real, so bplmc and myula run unadjusted by default (the paper's methods) and
sample the smoothed posterior pi^lambda. The smoothing of the L1 kink (lambda = 0.1, comparable to the posterior sds
of ~0.1) and the Euler step leave a bias that more draws do not remove. The adjusted rows test on the exact
posterior (the envelope only steers the proposal), which removes both biases; "myula adjusted" also adapts a diagonal
preconditioner (on by default when adjusted), which nuts has too. With beta = 1, much wider than the posterior sds,
the hyperbolic-entropy map is nearly Euclidean, so bplmc behaves like unpreconditioned myula with a smaller step.
On (b) and (c) bplmc is adjusted and targets the exact posterior, so its errors are Monte Carlo noise or slow mixing.
On (b), a 49-dimensional sparse simplex, adjusted steps must be small: a step moves log x by about sqrt(2 gamma),
while the posterior spreads log x over a range of about 2. myula on (b) and (c) runs on NumPyro's unconstrained
coordinates: plain ULA (biased by its step) or, adjusted, preconditioned MALA. The ", equal time" rows rerun the row
above them with as many transitions as fit in nuts's sampling seconds (measured in this run: the machine is shared,
so the times carry its load), keeping every k-th draw. Without a progress bar `fit` compiles warm-up and sampling
into one program, so "sampling s" includes the warm-up for every row alike and "warm-up s" reads 0.

{chr(10).join("- " + note for note in notes)}

## Machine

{common.machine_markdown(info)}
"""
    return common.write_page(out_dir, TOPIC, "bplmc benchmarks", summary, body)


if __name__ == "__main__":  # pragma: no cover
    common.topic_cli(main, __doc__)
