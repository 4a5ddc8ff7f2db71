"""The HTML diagnostics report: one self-contained page that says whether a fit's draws can be trusted.

    fit.report("report.html")                                        # from Python
    write_report(samplax.load("fit.nc"), "report.html")              # from a saved fit (what the command line does)

The page reads top to bottom:

1. the verdict in plain words, from `diagnostics.convergence_warnings` (Stan's advice: each problem with its next step),
   which judges latent sites only; deterministic sites (functions of the latent ones, `diagnostics.site_roles`) get the
   one informational line of `diagnostics.deterministic_note`;
2. the checks behind it, against the Stan/ArviZ thresholds: R-hat <= 1.01, bulk and tail ESS >= 400, no divergent
   transition after warm-up, E-BFMI >= 0.3 (when ``sample_stats.energy`` exists). Weighted and i.i.d. draws
   (``attrs["draws_kind"]`` in {"weighted", "iid"} or ``sample_stats.log_weight``) are independent repeats, not Markov
   chains, so R-hat is not used: weighted draws are judged by the importance weights' ESS ``(sum w)^2 / sum w^2``
   (>= 400) and Pareto k-hat (<= 0.7, Vehtari et al. 2024);
3. the summary table (`diagnostics.summary`: mean, sd, HDI, MCSE, bulk/tail ESS, R-hat, bulk ESS per second), latent
   sites first, each of their cells that fails a threshold marked; deterministic sites follow, their cells that would
   fail marked as a note, not a failure;
4. plots: trace, rank, a pair plot of the most correlated parameters with divergent draws marked, the energy plot;
5. method panels, each shown when its records exist (names listed in docs/report.md): sampler statistics, importance
   weights and evidence (smc, cmcd, ais), ELBO (variational methods), ELBO against flow length and numerical health
   (mixflow), consensus residuals (admm), smoothing and envelope gradients (bplmc, myula), acceptance per block
   (gibbs, meta_gibbs), and any other record a method stores;
6. the run: method, options, timing, versions.

``var_names`` restricts the page to those sites (verdict, checks, table and plots); the checks of the whole run
(divergences, E-BFMI, importance weights) still apply. Only ``fit.idata``, ``fit.timing``, ``fit.log_evidence``,
``fit.elbo``, ``fit.method`` and ``fit.options`` are read, so a fit loaded from NetCDF (no model attached) reports
exactly like the original.

Safety and size: every name that comes from the model or the file (site names, coordinates, attrs, options, warning
texts that quote them) is HTML-escaped, and dollar signs are escaped before matplotlib sees them (no mathtext).
Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas (no pyplot state, the user's backend untouched)
and embedded as base64 PNG data URIs; the page has inline CSS, no JavaScript and no network access. Plots are
thinned (<= 1000 draws and <= 8 chains each, <= 8 parameters in trace and rank plots, <= 4 in the pair plot, vector
sites flattened to their scalar coordinates and the problematic ones shown first); the verdict, the checks and the
table use every draw.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import io
import json
import math
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from samplax.infer import arviz_compat, diagnostics

__all__ = ["render_report", "write_report"]

RHAT_THRESHOLD = 1.01
ESS_THRESHOLD = 400
BFMI_THRESHOLD = 0.3
PARETO_K_THRESHOLD = diagnostics.PARETO_K_UNRELIABLE

MAX_PLOT_DRAWS = 1000        # per chain, in every plot
MAX_PLOT_CHAINS = 8          # chains (repeats) drawn in a plot
MAX_TRACE_PARAMETERS = 8     # scalar parameters in the trace and rank plots
MAX_PAIR_PARAMETERS = 4      # scalar parameters in the pair plot
MAX_PAIR_CANDIDATES = 32     # scalar parameters searched for the strongest correlations
MAX_PAIR_POINTS = 4000       # non-divergent points per pair-plot panel
MAX_DIVERGENT_MARKS = 2000   # divergent draws marked per plot
MAX_TABLE_ROWS = 100         # rows of the summary table
MAX_LINES = 16               # lines (agents, blocks) in a method panel plot

FIGURE_DPI = 80
CHAIN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DIVERGENT_COLOUR = "#d62728"

# names the panels read; anything else a method stores shows up under "Other records"
STAT_NAMES_READ = {"diverging", "acceptance_rate", "step_size", "energy", "tree_depth", "n_steps", "log_weight",
                   "envelope_grad_norm", "consensus_residual", "block_acceptance", "inversion_error",
                   "shadowing_window", "nonfinite_fraction"}
ATTRS_READ = {"extra_tempering_steps", "extra_final_acceptance", "extra_elbo_vs_flow_length",
              "extra_inversion_error", "extra_shadowing_window", "extra_nonfinite_fraction"}
NUMERICAL_HEALTH = {
    "inversion_error": "one-step inversion error |T^-1(T(s)) - s| (round-off of the flow map; ~1e-14 in float64)",
    "shadowing_window": "shadowing window 2 lambda delta (Xu & Campbell 2023): how far the computed orbit may be "
                        "from an exact one",
    "nonfinite_fraction": "fraction of non-finite log-densities or draws",
}


def write_report(fit: Any, path: str | os.PathLike, var_names: str | list[str] | None = None) -> str | os.PathLike:
    """Write the self-contained HTML report of ``fit`` (a `samplax.Fit`, an InferenceData or a DataTree) to ``path``.

    ``var_names`` (a site name or a list of them) restricts the report to those sites; an unknown name is a
    ``ValueError`` that lists the valid ones. Returns ``path``. The file is written to a temporary name and renamed,
    so a reader never sees half a page.
    """
    target = os.fspath(path)
    if not target or os.path.isdir(target):
        raise ValueError(f"path must name a file to write the report to, got {target!r}; for example 'report.html'")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ValueError(f"the folder {folder!r} for the report does not exist; create it first or pick another path")
    page = render_report(fit, var_names=var_names)
    partial = target + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(partial, target)
    return path


def render_report(fit: Any, var_names: str | list[str] | None = None) -> str:
    """The report of ``fit`` (a `samplax.Fit`, an ArviZ InferenceData or an ArviZ 1.x DataTree) as one HTML string.

    ``var_names`` restricts it to those sites, as in `write_report`.
    """
    context = _Context.build(_as_fit(fit), var_names)
    body = [_header(context), _section("verdict", "Verdict", _verdict_html(context))]
    body.append(_guarded("checks", "Checks", _checks_html, context))
    body.append(_guarded("summary", "Summary", _summary_html, context))
    body.append(_guarded("trace", "Trace plots", _trace_html, context))
    if context.kind == "mcmc":
        body.append(_guarded("rank", "Rank plots", _rank_html, context))
    body.append(_guarded("pair", "Pair plot", _pair_html, context))
    body.append(_guarded("energy", "Energy", _energy_html, context))
    for panel in PANELS:
        body.append(_guarded(panel.anchor, panel.title, panel.render, context))
    body.append(_guarded("other", "Other records", _other_records_html, context))
    body.append(_guarded("run", "Run", _run_html, context))
    sections = [part for part in body if part]
    return _page(context, sections)


# ---------------------------------------------------------------------------------------------------------------------
# what the report works from
def _as_fit(fit: Any):
    if arviz_compat.is_idata(fit):
        from samplax.infer.fit import Fit

        fit = Fit(fit)
    if not hasattr(fit, "idata") or not arviz_compat.is_idata(fit.idata):
        raise ValueError(f"fit must be a samplax Fit (from samplax.fit or samplax.load), an arviz.InferenceData or "
                         f"(ArviZ 1.x) an xarray.DataTree, got {type(fit).__name__}")
    if not arviz_compat.has_group(fit.idata, "posterior"):
        raise ValueError("fit.idata has no posterior group: there are no draws to report on")
    return fit


class _Parameter(NamedTuple):
    """One scalar coordinate of a site, labelled the way az.summary labels it (``theta[0, 1]``)."""

    label: str
    site: str
    index: tuple


@dataclasses.dataclass
class _Context:
    fit: Any
    idata: Any          # arviz.InferenceData (ArviZ 0.x) or xarray.DataTree
    posterior: Any
    stats: Any
    kind: str
    parameters: list
    chains: int
    draws: int
    chain_index: np.ndarray
    draw_index: np.ndarray
    latent: list = dataclasses.field(default_factory=list)         # latent site names shown, in model order
    deterministic: list = dataclasses.field(default_factory=list)  # deterministic site names shown
    var_names: list | None = None
    table: pd.DataFrame | None = None   # every row shown: latent sites first, then deterministic ones
    table_error: str | None = None
    rhat: pd.Series | None = None       # the judged scores: latent sites' rows only
    ess_bulk: pd.Series | None = None
    ess_tail: pd.Series | None = None
    messages: list = dataclasses.field(default_factory=list)
    messages_error: str | None = None
    note: str | None = None             # diagnostics.deterministic_note
    weights: dict | None = None
    weights_error: str | None = None
    bfmi: np.ndarray | None = None

    @classmethod
    def build(cls, fit, var_names: str | list[str] | None = None) -> "_Context":
        idata = fit.idata
        posterior = arviz_compat.group(idata, "posterior")
        for dim in ("chain", "draw"):
            if dim not in posterior.dims:
                raise ValueError(f"the posterior group must have dims ('chain', 'draw', ...); missing {dim!r}")
        if not posterior.data_vars:
            raise ValueError("the posterior group has no variables: there are no draws to report on")
        latent, deterministic = diagnostics.site_roles(idata, var_names=var_names)
        posterior = posterior[latent + deterministic]  # the sites shown, latent first
        chains, draws = int(posterior.sizes["chain"]), int(posterior.sizes["draw"])
        stride = max(1, math.ceil(draws / MAX_PLOT_DRAWS))
        stats = arviz_compat.group(idata, "sample_stats")
        context = cls(fit=fit, idata=idata, posterior=posterior, stats=stats,
                      kind=diagnostics.draws_kind(idata), parameters=_parameters(posterior), chains=chains,
                      draws=draws, chain_index=np.arange(min(chains, MAX_PLOT_CHAINS)),
                      draw_index=np.arange(0, draws, stride), latent=latent, deterministic=deterministic,
                      var_names=None if var_names is None else latent + deterministic)
        context._score()
        return context

    def _score(self):
        thresholds = {"ess_threshold": ESS_THRESHOLD, "rhat_threshold": RHAT_THRESHOLD}
        try:
            self.messages = diagnostics.convergence_warnings(self.idata, bfmi_threshold=BFMI_THRESHOLD,
                                                             var_names=self.var_names, **thresholds)
            self.note = diagnostics.deterministic_note(self.idata, var_names=self.var_names, **thresholds)
        except (ValueError, FloatingPointError) as error:
            self.messages_error = str(error)
        try:
            self.table, self.rhat, self.ess_bulk, self.ess_tail = _summary_and_scores(self)
        except (ValueError, FloatingPointError) as error:
            self.table_error = str(error)
        log_weight = self.stat_values("log_weight")
        if log_weight is not None:
            try:
                self.weights = diagnostics.importance_diagnostics(log_weight)
            except ValueError as error:
                self.weights_error = str(error)
        if self.has_stat("energy"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self.bfmi = arviz_compat.bfmi(self.stats)

    # -- helpers used by the sections
    def is_latent(self, label: str) -> bool:
        """Whether a table row (``theta[0]``) belongs to a latent site (judged), not to a deterministic one."""
        return self.rhat is not None and label in self.rhat.index

    def has_stat(self, name: str) -> bool:
        return self.stats is not None and name in self.stats

    def stat_values(self, name: str) -> np.ndarray | None:
        """A sample statistic as an array with (chain, draw) leading, or None when absent."""
        if not self.has_stat(name):
            return None
        da = self.stats[name]
        if "chain" not in da.dims or "draw" not in da.dims:
            return np.asarray(da.values)
        return np.asarray(da.transpose("chain", "draw", ...).values)

    def thinned(self, parameter: _Parameter) -> np.ndarray:
        """(plotted chains, plotted draws) values of one scalar parameter."""
        values = np.asarray(self.posterior[parameter.site].transpose("chain", "draw", ...).values)
        values = values[(slice(None), slice(None)) + parameter.index]
        return np.asarray(values[np.ix_(self.chain_index, self.draw_index)], dtype=np.float64)

    def diverging(self) -> np.ndarray | None:
        values = self.stat_values("diverging")
        if values is None or values.ndim != 2:
            return None
        return values.astype(bool)

    @property
    def method(self) -> str:
        return str(self.fit.method) if self.fit.method is not None else "unknown"

    @property
    def options(self) -> dict:
        return self.fit.options if isinstance(self.fit.options, dict) else {}

    @property
    def sampling_seconds(self) -> float | None:
        return self.seconds("sampling_s")

    def seconds(self, field: str) -> float | None:
        """A positive finite time from ``fit.timing`` (``sampling_s``, ``total_s``, ...), else None."""
        seconds = (self.fit.timing or {}).get(field)
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            return None
        return seconds if math.isfinite(seconds) and seconds > 0 else None


def _parameters(posterior) -> list[_Parameter]:
    parameters = []
    for name, da in posterior.data_vars.items():
        site_dims = [dim for dim in da.transpose("chain", "draw", ...).dims if dim not in ("chain", "draw")]
        coords = [da.coords[dim].values if dim in da.coords else np.arange(da.sizes[dim]) for dim in site_dims]
        for index in np.ndindex(*[da.sizes[dim] for dim in site_dims]):
            label = (f"{name}[{', '.join(str(coord[i]) for coord, i in zip(coords, index))}]" if index else str(name))
            parameters.append(_Parameter(label, str(name), index))
    return parameters


def _summary_and_scores(context: _Context):
    """The unrounded summary table (labels as ours) and its R-hat, bulk and tail ESS columns.

    Unrounded because ArviZ's default rounding (two decimals) would turn an R-hat of 1.013 into a passing 1.01.
    """
    seconds, wall = context.sampling_seconds, context.seconds("total_s")
    # explicit positive times, always: with None the summary would read attrs["timing"], which may hold NaN
    table = diagnostics.summary(context.idata, sampling_seconds=seconds or 1.0, wall_seconds=wall or 1.0,
                                round_to="none", var_names=context.var_names)
    if seconds is None:
        table["ess_bulk_per_sampling_s"] = np.nan
    if wall is None:
        table["ess_bulk_per_s"] = np.nan
    latent_sites = set(context.latent)
    if len(table) == len(context.parameters):
        table.index = [parameter.label for parameter in context.parameters]
        latent_rows = [p.site in latent_sites for p in context.parameters]
    else:  # ArviZ left some rows out (non-numeric sites): read the site from its label
        latent_rows = [str(label).split("[", 1)[0] in latent_sites for label in table.index]
    judged = table.loc[np.asarray(latent_rows, dtype=bool)]  # only latent sites are judged
    return table, judged["r_hat"], judged["ess_bulk"], judged["ess_tail"]


# ---------------------------------------------------------------------------------------------------------------------
# verdict and checks
class _Check(NamedTuple):
    name: str          # plain words (ours)
    value: str         # HTML (escaped)
    threshold: str     # HTML (ours)
    status: str        # "pass", "fail", "note" (worth a look, not a failure) or "info"
    kind: str = "bias"  # a failing "bias" check makes the draws untrustworthy; a failing "noise" check only noisy


def _checks(context: _Context) -> list[_Check]:
    checks = []
    nonfinite = [name for name in context.latent if np.issubdtype(context.posterior[name].dtype, np.number)
                 and not np.isfinite(context.posterior[name].values).all()]
    checks.append(_Check("Non-finite draws", _esc(", ".join(nonfinite)) if nonfinite else "none", "none",
                         "fail" if nonfinite else "pass"))
    diverging = context.diverging()
    if diverging is not None:
        count = int(diverging.sum())
        per_chain = diverging.sum(axis=1)
        value = f"{count} of {diverging.size} ({100.0 * count / diverging.size:.2g}%)"
        if count and context.chains > 1:
            value += f"; per chain {_esc(_short_list(per_chain.tolist()))}"
        what = "Divergent transitions after warm-up" if context.kind == "mcmc" else "Failed draws (flagged diverging)"
        checks.append(_Check(what, value, "0", "fail" if count else "pass"))
    if context.kind == "weighted":
        checks.extend(_weight_checks(context))
    elif context.rhat is not None and len(context.rhat):
        if context.kind == "mcmc":
            checks.append(_extreme_check("Largest R-hat", context.rhat, "max", f"&le; {RHAT_THRESHOLD:g}",
                                         lambda v: v <= RHAT_THRESHOLD, "{:.3f}", "bias"))
        for name, series in (("Smallest bulk ESS", context.ess_bulk), ("Smallest tail ESS", context.ess_tail)):
            checks.append(_extreme_check(name, series, "min", f"&ge; {ESS_THRESHOLD:g}",
                                         lambda v: v >= ESS_THRESHOLD, "{:.0f}", "noise"))
        if context.kind == "iid":
            total = context.chains * context.draws
            checks.append(_Check("Independent draws", f"{total}", f"&ge; {ESS_THRESHOLD:g}",
                                 "pass" if total >= ESS_THRESHOLD else "fail", "noise"))
    if context.bfmi is not None and context.kind == "mcmc":
        finite = context.bfmi[np.isfinite(context.bfmi)]
        lowest = float(finite.min()) if finite.size else math.nan
        ok = bool(finite.size == context.bfmi.size and lowest >= BFMI_THRESHOLD)
        checks.append(_Check("Smallest E-BFMI (over chains)", _num(lowest, 3), f"&ge; {BFMI_THRESHOLD:g}",
                             "pass" if ok else "fail"))
    tree_depth, max_depth = context.stat_values("tree_depth"), context.options.get("max_tree_depth")
    if tree_depth is not None and isinstance(max_depth, (int, float)):
        hits = int((tree_depth >= max_depth).sum())
        checks.append(_Check(f"Draws that hit the maximum tree depth ({int(max_depth)})",
                             f"{hits} of {tree_depth.size}", "few (efficiency, not validity)",
                             "note" if hits else "pass"))
    if context.ess_bulk is not None and context.sampling_seconds is not None and context.kind != "weighted":
        per_second = context.ess_bulk / context.sampling_seconds
        finite = per_second[np.isfinite(per_second)]
        if len(finite):
            checks.append(_Check("Smallest bulk ESS per second of sampling",
                                 f"{_num(finite.min())} ({_esc(finite.idxmin())})", "higher is faster", "info"))
    if context.deterministic:
        checks.append(_deterministic_check(context))
    return checks


def _deterministic_check(context: _Context) -> _Check:
    """One line for every deterministic site: described, not judged ("note" when some values would fail)."""
    size = sum(int(np.prod(context.posterior[name].shape[2:], dtype=np.int64)) for name in context.deterministic)
    value = f"{_esc(_short_list(context.deterministic, limit=5))} ({size} value{'s' if size != 1 else ''})"
    would_fail = 0
    if context.table is not None and context.kind == "mcmc":
        rows = context.table.loc[[label for label in context.table.index if not context.is_latent(label)]]
        would_fail = int(((rows["r_hat"] > RHAT_THRESHOLD)
                          | (np.fmin(rows["ess_bulk"], rows["ess_tail"]) < ESS_THRESHOLD)).sum())
        if would_fail:
            value += f"; {would_fail} would fail R-hat or ESS"
    return _Check("Deterministic sites (functions of the latent sites)", value, "not judged",
                  "note" if would_fail else "info")


def _weight_checks(context: _Context) -> list[_Check]:
    if context.weights is None:
        reason = context.weights_error or "sample_stats has no log_weight"
        return [_Check("Importance weights", _esc(reason), "usable log-weights", "fail")]
    weights = context.weights
    total = weights["num_repeats"] * weights["num_draws"]
    k_max = weights["pareto_k_max"]
    checks = [
        _Check("Importance-weight ESS", f"{weights['ess']:.0f} of {total} draws ({100 * weights['ess_fraction']:.3g}%)",
               f"&ge; {ESS_THRESHOLD:g}", "pass" if weights["ess"] >= ESS_THRESHOLD else "fail", "noise"),
        _Check("Largest Pareto k-hat (over repeats)", _num(k_max, 3) if not math.isnan(k_max) else "not estimable",
               f"&le; {PARETO_K_THRESHOLD:g}", "fail" if k_max > PARETO_K_THRESHOLD else "pass"),
    ]
    if context.rhat is not None and len(context.ess_bulk):
        checks.append(_Check("R-hat", "not used", "&mdash;", "info"))
    return checks


def _extreme_check(name, series, which, threshold, ok, fmt, kind) -> _Check:
    undefined = series[series.isna()]
    if len(undefined):
        return _Check(name, f"undefined for {len(undefined)} parameter(s), e.g. {_esc(undefined.index[0])}",
                      threshold, "fail", "bias")
    label = series.idxmax() if which == "max" else series.idxmin()
    value = float(series[label])
    return _Check(name, f"{fmt.format(value)} ({_esc(label)})", threshold, "pass" if ok(value) else "fail", kind)


def _verdict(context: _Context) -> tuple[str, str, list[str]]:
    """(level, headline, reasons as HTML): level is "good", "caution" or "bad"."""
    if context.messages_error is not None:
        return ("bad", "Not trustworthy: the diagnostics could not be computed.",
                [_esc(context.messages_error)])
    failing = [check for check in _checks(context) if check.status == "fail"]
    reasons = [_esc(message) for message in context.messages]
    if not reasons:
        reasons = [f"{check.name}: {check.value} (threshold {check.threshold})." for check in failing]
    if not reasons:
        return "good", "Trustworthy: no diagnostic found a problem with these draws.", [_good_reason(context)]
    if failing and all(check.kind == "noise" for check in failing):
        return ("caution", "Use with caution: no sign of bias, but too few effective draws, so estimates are noisy.",
                reasons)
    return "bad", "Not trustworthy: do not use these draws as they are.", reasons


def _good_reason(context: _Context) -> str:
    parts = []
    if context.kind == "mcmc" and context.rhat is not None and len(context.rhat):
        parts.append(f"all {context.chains} chains agree (largest R-hat {context.rhat.max():.3f}, at most "
                     f"{RHAT_THRESHOLD:g})")
        parts.append(f"every {'latent ' if context.deterministic else ''}parameter has bulk and tail ESS of at "
                     f"least {ESS_THRESHOLD} (smallest "
                     f"{min(context.ess_bulk.min(), context.ess_tail.min()):.0f})")
    if context.kind == "weighted" and context.weights is not None:
        parts.append(f"the importance weights keep an ESS of {context.weights['ess']:.0f} draws (at least "
                     f"{ESS_THRESHOLD}) and their largest Pareto k-hat is "
                     f"{_num(context.weights['pareto_k_max'], 3)} (at most {PARETO_K_THRESHOLD:g}); R-hat is not "
                     "used because the chains are independent repeats, not Markov chains")
    if context.kind == "iid":
        parts.append(f"the {context.chains * context.draws} draws are independent (R-hat is not used)")
    if not context.latent:
        parts.append("no latent site is among the sites shown, so only the checks of the whole run apply")
    diverging = context.diverging()
    if diverging is not None:
        parts.append(f"none of the {diverging.size} transitions diverged")
    if context.bfmi is not None and context.kind == "mcmc":
        parts.append(f"E-BFMI is at least {BFMI_THRESHOLD:g} in every chain (smallest {np.min(context.bfmi):.2f})")
    if not parts:
        return "No warning was raised."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _verdict_html(context: _Context) -> str:
    level, headline, reasons = _verdict(context)
    kind_note = {"mcmc": "Markov chains", "weighted": "weighted draws (independent repeats)",
                 "iid": "independent draws"}[context.kind]
    items = "".join(f"<li>{reason}</li>" for reason in reasons)
    return (f'<div class="verdict {level}"><p class="headline">{_esc(headline)}</p>'
            f'<p class="why">{"Why" if level != "good" else "Because"}:</p><ul>{items}</ul>'
            f'<p class="small">Judged as {kind_note}, with Stan/ArviZ thresholds: '
            + (f"R-hat &le; {RHAT_THRESHOLD:g}, bulk and tail ESS &ge; {ESS_THRESHOLD}, no divergent transitions, "
               f"E-BFMI &ge; {BFMI_THRESHOLD:g}." if context.kind == "mcmc" else
               f"importance-weight ESS &ge; {ESS_THRESHOLD}, Pareto k-hat &le; {PARETO_K_THRESHOLD:g}."
               if context.kind == "weighted" else f"ESS &ge; {ESS_THRESHOLD}.")
            + "</p>"
            + (f'<p class="small deterministic">{_esc(context.note)}</p>' if context.note else "")
            + "</div>")


def _checks_html(context: _Context) -> str:
    rows = []
    for check in _checks(context):
        mark = {"pass": "ok", "fail": "FAIL", "note": "note", "info": ""}[check.status]
        rows.append(f'<tr class="{check.status}"><td>{_esc(check.name)}</td><td>{check.value}</td>'
                    f'<td>{check.threshold}</td><td class="status">{mark}</td></tr>')
    return ('<table class="checks"><thead><tr><th>check</th><th>value</th><th>threshold</th><th></th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


# ---------------------------------------------------------------------------------------------------------------------
# summary table
SUMMARY_COLUMNS = (  # column, header, format, which draws kinds show it
    ("mean", "mean", "num", ("mcmc", "iid", "weighted")),
    ("sd", "sd", "num", ("mcmc", "iid", "weighted")),
    ("hdi_lower", "HDI low", "num", ("mcmc", "iid", "weighted")),
    ("hdi_upper", "HDI high", "num", ("mcmc", "iid", "weighted")),
    ("mcse_mean", "MCSE mean", "num", ("mcmc", "iid")),
    ("mcse_sd", "MCSE sd", "num", ("mcmc", "iid")),
    ("approx_mcse", "&asymp; MCSE mean", "num", ("weighted",)),
    ("ess_bulk", "ESS bulk", "int", ("mcmc", "iid")),
    ("ess_tail", "ESS tail", "int", ("mcmc", "iid")),
    ("r_hat", "R-hat", "rhat", ("mcmc",)),
    ("ess_bulk_per_s", "ESS bulk / s (whole fit)", "num", ("mcmc", "iid")),
    ("ess_bulk_per_sampling_s", "ESS bulk / s (sampling)", "num", ("mcmc", "iid")),
)


def _summary_html(context: _Context) -> str:
    if context.table is None:
        return f'<p class="error">The summary could not be computed: {_esc(context.table_error)}</p>'
    table = context.table.copy()
    hdi = [column for column in table.columns if column.startswith("hdi_")]
    hdi_header = ""
    if len(hdi) == 2:
        table = table.rename(columns={hdi[0]: "hdi_lower", hdi[1]: "hdi_upper"})
        hdi_header = f"{hdi[0][4:]}&ndash;{hdi[1][4:]}"
    if context.kind == "weighted" and context.weights is not None:
        table["approx_mcse"] = table["sd"] / math.sqrt(max(context.weights["ess"], 1.0))
    columns = [c for c in SUMMARY_COLUMNS if context.kind in c[3] and c[0] in table.columns]
    rows_shown = _rows_to_show(context, table)
    header = "".join(f"<th>{title}</th>" for _, title, _, _ in columns)
    rows = []
    in_deterministic = False
    for label in rows_shown:
        latent = context.is_latent(label)
        if not latent and not in_deterministic:
            in_deterministic = True
            rows.append(f'<tr class="group"><th colspan="{len(columns) + 1}">Deterministic sites: functions of the '
                        "latent sites, reported but not judged</th></tr>")
        cells = [f"<th>{_esc(label)}</th>"]
        for column, _, fmt, _ in columns:
            value = table.at[label, column]
            flag = _flag(context, label, column)
            text = {"num": _num, "int": _int, "rhat": _rhat}[fmt](value)
            if flag and not latent:
                flag += " (not judged: a deterministic site)"
            title = f' title="{flag}"' if flag else ""
            cells.append(f'<td class="{("bad" if latent else "note") if flag else ""}"{title}>{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = []
    if len(rows_shown) < len(table):
        notes.append(f"Showing {len(rows_shown)} of {len(table)} scalar parameters: the latent ones that fail a "
                     "threshold first, then latent sites before deterministic ones, in the model's order. "
                     "<code>fit.summary()</code> has them all.")
    notes.append("Marked cells fail a threshold: "
                 + (f"R-hat above {RHAT_THRESHOLD:g} or undefined, " if context.kind == "mcmc" else "")
                 + f"bulk or tail ESS below {ESS_THRESHOLD}."
                 + (" Cells of deterministic sites that would fail are marked as notes, not failures."
                    if context.deterministic and context.kind != "weighted" else "")
                 + (f" HDI: highest-density interval {hdi_header}." if hdi_header else "")
                 + " MCSE: Monte Carlo standard error. ESS bulk/s: bulk ESS per second of sampling (warm-up and "
                 "compilation excluded).")
    if context.kind == "weighted":
        notes[-1] = ("The mean, sd and HDI are of the draws in the posterior group as stored; ArviZ's ESS, MCSE "
                     "and R-hat do not apply to weighted draws and are left out. &asymp; MCSE mean = sd / "
                     "&radic;(importance-weight ESS)." + (f" HDI: {hdi_header}." if hdi_header else ""))
    if context.kind == "iid":
        notes.append("The draws are independent, so R-hat is left out.")
    return (f'<div class="scroll"><table class="summary"><thead><tr><th>parameter</th>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            + "".join(f'<p class="small">{note}</p>' for note in notes))


def _flag(context: _Context, label: str, column: str) -> str:
    """Why a cell fails its threshold ('' when it passes). Undefined values (draws that do not vary) fail for latent
    sites only: a deterministic site may well be constant."""
    latent = context.is_latent(label)
    if column == "r_hat" and context.kind == "mcmc":
        value = float(context.table.at[label, "r_hat"])
        if value > RHAT_THRESHOLD or (latent and math.isnan(value)):
            return f"R-hat above {RHAT_THRESHOLD:g}" if math.isfinite(value) else "R-hat undefined"
    if column in ("ess_bulk", "ess_tail") and context.kind != "weighted":
        value = float(context.table.at[label, column])
        if value < ESS_THRESHOLD or (latent and math.isnan(value)):
            return f"ESS below {ESS_THRESHOLD}"
    return ""


def _problem_labels(context: _Context) -> list[str]:
    """Labels that fail a threshold, worst first (R-hat descending, then smallest ESS)."""
    if context.rhat is None or context.kind == "weighted":
        return []
    frame = pd.DataFrame({"rhat": context.rhat, "ess": np.minimum(context.ess_bulk, context.ess_tail)})
    rhat_bad = ~(frame["rhat"] <= RHAT_THRESHOLD) if context.kind == "mcmc" else False
    bad = frame[rhat_bad | ~(frame["ess"] >= ESS_THRESHOLD)]
    bad = bad.assign(rhat_key=bad["rhat"].fillna(np.inf) if context.kind == "mcmc" else 0.0,
                     ess_key=bad["ess"].fillna(-np.inf))
    return list(bad.sort_values(["rhat_key", "ess_key"], ascending=[False, True]).index)


def _rows_to_show(context: _Context, table: pd.DataFrame) -> list[str]:
    """At most MAX_TABLE_ROWS labels in table order: failing latent rows, the other latent rows, deterministic rows
    that would fail, then the rest."""
    labels = list(table.index)
    if len(labels) <= MAX_TABLE_ROWS:
        return labels
    deterministic = [label for label in labels if not context.is_latent(label)]
    noted = [label for label in deterministic
             if any(_flag(context, label, column) for column in ("r_hat", "ess_bulk", "ess_tail"))]
    latent = [label for label in labels if context.is_latent(label)]
    chosen: dict[str, None] = {}
    for label in _problem_labels(context) + latent + noted + deterministic:
        if len(chosen) >= MAX_TABLE_ROWS:
            break
        chosen[label] = None
    return [label for label in labels if label in chosen]


# ---------------------------------------------------------------------------------------------------------------------
# plots of the draws
def _plotted_parameters(context: _Context, limit: int) -> list[_Parameter]:
    """Up to ``limit`` scalar parameters: those failing a threshold first, then each site's first coordinates."""
    by_label = {p.label: p for p in context.parameters}
    chosen = [by_label[label] for label in _problem_labels(context) if label in by_label][:limit]
    sites = list(dict.fromkeys(p.site for p in context.parameters))
    per_site = max(1, limit // max(len(sites), 1))
    for cap in (per_site, limit):
        for site in sites:
            taken = sum(p.site == site for p in chosen)
            for p in (p for p in context.parameters if p.site == site):
                if len(chosen) >= limit or taken >= cap:
                    break
                if p not in chosen:
                    chosen.append(p)
                    taken += 1
    order = {p.label: i for i, p in enumerate(context.parameters)}
    return sorted(chosen[:limit], key=lambda p: order[p.label])


def _plot_note(context: _Context, shown: int, what: str) -> str:
    parts = [f"{shown} of {len(context.parameters)} scalar parameters ({what})"]
    if shown == len(context.parameters) and len(context.chain_index) == context.chains and len(
            context.draw_index) == context.draws:
        return ""
    if len(context.chain_index) < context.chains:
        parts.append(f"the first {len(context.chain_index)} of {context.chains} chains")
    if len(context.draw_index) < context.draws:
        parts.append(f"one draw in {int(context.draw_index[1] - context.draw_index[0])} "
                     f"({len(context.draw_index)} of {context.draws} per chain)")
    return '<p class="small">Showing ' + ", ".join(parts) + ".</p>"


def _trace_html(context: _Context) -> str:
    parameters = _plotted_parameters(context, MAX_TRACE_PARAMETERS)
    diverging = context.diverging()
    fig = _figure(13.0, 1.55 * len(parameters) + 0.5)
    axes = fig.subplots(len(parameters), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.6]})
    _margins(fig, left=0.25, top=0.3, bottom=0.5, hspace=0.65, wspace=0.12)
    for row, parameter in enumerate(parameters):
        values = context.thinned(parameter)
        density_ax, trace_ax = axes[row]
        for c, chain in enumerate(context.chain_index):
            colour = CHAIN_COLOURS[c % len(CHAIN_COLOURS)]
            finite = values[c][np.isfinite(values[c])]
            if finite.size:
                density_ax.hist(finite, bins=30, density=True, histtype="step", color=colour, linewidth=1)
            trace_ax.plot(context.draw_index, values[c], color=colour, linewidth=0.6, alpha=0.85)
        density_ax.set_title(_mpl(parameter.label), loc="left", fontsize=9)
        density_ax.set_yticks([])
        trace_ax.tick_params(labelsize=8)
        density_ax.tick_params(labelsize=8)
        if diverging is not None:
            chain_rows, draws = np.nonzero(diverging[context.chain_index])
            if draws.size:
                keep = slice(0, MAX_DIVERGENT_MARKS)
                bottom = trace_ax.get_ylim()[0]
                trace_ax.plot(draws[keep], np.full(draws[keep].shape, bottom), "|", color=DIVERGENT_COLOUR,
                              markersize=8, label="divergent")
    axes[-1, 1].set_xlabel("draw", fontsize=9)
    caption = ("Left: the marginal of each chain (one colour per chain); right: the draws in order. Chains that "
               "overlap and look like stationary noise are what you want"
               + ("; red ticks on the x-axis mark divergent draws." if diverging is not None and diverging.any()
                  else "."))
    return (_png(fig, "trace plots") + f'<p class="caption">{caption}</p>'
            + _plot_note(context, len(parameters), "problems first"))


def _rank_html(context: _Context) -> str:
    if len(context.chain_index) < 2:
        return '<p class="small">Rank plots compare chains: this fit has one chain.</p>'
    parameters = [p for p in _plotted_parameters(context, MAX_TRACE_PARAMETERS)
                  if np.isfinite(context.thinned(p)).all()]
    if not parameters:
        return '<p class="small">No parameter has finite draws to rank.</p>'
    columns = 2 if len(parameters) > 1 else 1
    rows = math.ceil(len(parameters) / columns)
    fig = _figure(13.0, 1.9 * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    _margins(fig, left=0.45, top=0.3, bottom=0.15, hspace=0.45, wspace=0.15)
    bins = 20
    for ax, parameter in zip(axes, parameters):
        values = context.thinned(parameter)
        ranks = _ranks(values.ravel()).reshape(values.shape)
        edges = np.linspace(0, ranks.size, bins + 1)
        per_chain = values.shape[1]
        expected = per_chain / bins
        band = 2.576 * math.sqrt(per_chain * (1 / bins) * (1 - 1 / bins))
        ax.axhspan(max(expected - band, 0), expected + band, color="#dddddd", zorder=0)
        ax.axhline(expected, color="#888888", linestyle="--", linewidth=0.8)
        for c in range(values.shape[0]):
            counts, _ = np.histogram(ranks[c], bins=edges)
            ax.stairs(counts, edges, baseline=None, color=CHAIN_COLOURS[c % len(CHAIN_COLOURS)], linewidth=1.1)
        ax.set_title(_mpl(parameter.label), loc="left", fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=8)
    for ax in axes[len(parameters):]:
        ax.set_visible(False)
    return (_png(fig, "rank plots")
            + '<p class="caption">Histogram of each chain\'s ranks among all draws (one colour per chain). If the '
            "chains sample the same distribution, every histogram is flat, inside the grey 99% band around the "
            "dashed line; a chain whose bars slope or bulge is exploring somewhere else.</p>"
            + _plot_note(context, len(parameters), "problems first"))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size)
    return ranks


def _pair_html(context: _Context) -> str:
    candidates = _plotted_parameters(context, MAX_PAIR_CANDIDATES)
    pooled = {p.label: context.thinned(p).ravel() for p in candidates}
    usable = [p for p in candidates if np.isfinite(pooled[p.label]).all() and np.ptp(pooled[p.label]) > 0]
    if len(usable) < 2:
        return '<p class="small">A pair plot needs at least two varying, finite scalar parameters.</p>'
    diverging = context.diverging()
    anchor = _most_divergence_related(context, usable, diverging)
    chosen = _most_correlated(usable, pooled, MAX_PAIR_PARAMETERS, anchor)
    divergent_mask = (diverging[np.ix_(context.chain_index, context.draw_index)].ravel()
                      if diverging is not None else np.zeros(len(pooled[chosen[0].label]), dtype=bool))
    full_divergent = None
    if diverging is not None and diverging[context.chain_index].any():
        chains, draws = np.nonzero(diverging[context.chain_index])
        chains, draws = chains[:MAX_DIVERGENT_MARKS], draws[:MAX_DIVERGENT_MARKS]
        full_divergent = {}
        for p in chosen:
            values = np.asarray(context.posterior[p.site].transpose("chain", "draw", ...).values)
            values = values[(slice(None), slice(None)) + p.index]
            full_divergent[p.label] = values[context.chain_index[chains], draws]
    keep = np.flatnonzero(~divergent_mask)
    keep = keep[:: max(1, math.ceil(keep.size / MAX_PAIR_POINTS))]
    point_size, point_alpha = (3, 0.35) if keep.size > 1500 else (7, 0.55)
    k = len(chosen)
    size = max(4.0, 2.3 * (k - 1)) + 0.6
    fig = _figure(size + 0.6, size)
    _margins(fig, left=0.95, right=0.15, top=0.15, bottom=0.8, hspace=0.08, wspace=0.08)
    grid = fig.add_gridspec(k - 1, k - 1)
    correlations = np.corrcoef(np.vstack([pooled[p.label] for p in chosen]))
    column_axes: dict[int, Any] = {}
    for i in range(1, k):
        row_axis = None
        for j in range(i):
            ax = fig.add_subplot(grid[i - 1, j], sharex=column_axes.get(j), sharey=row_axis)
            column_axes.setdefault(j, ax)
            row_axis = row_axis or ax
            if i < k - 1:
                ax.tick_params(labelbottom=False)
            if j > 0:
                ax.tick_params(labelleft=False)
            x, y = pooled[chosen[j].label], pooled[chosen[i].label]
            ax.scatter(x[keep], y[keep], s=point_size, color="#1f77b4", alpha=point_alpha, linewidths=0,
                       rasterized=True)
            if full_divergent is not None:
                ax.scatter(full_divergent[chosen[j].label], full_divergent[chosen[i].label], s=14,
                           color=DIVERGENT_COLOUR, edgecolors="#7a0000", linewidths=0.4, label="divergent")
            ax.text(0.02, 0.96, f"r = {correlations[i, j]:.2f}", transform=ax.transAxes, fontsize=8, va="top")
            ax.tick_params(labelsize=7)
            if i == k - 1:
                ax.set_xlabel(_mpl(chosen[j].label), fontsize=9)
            if j == 0:
                ax.set_ylabel(_mpl(chosen[i].label), fontsize=9)
    caption = ("The most strongly correlated parameters (correlation r over the plotted draws). Narrow ridges or "
               "funnels are where samplers struggle")
    if full_divergent is not None:
        caption += "; red points are divergent transitions: where they cluster is where the posterior is too curved"
        if anchor is not None:
            caption += (f" ({_esc(usable[anchor].label)}, whose divergent draws lie furthest from the others, is "
                        "always shown)")
    return _png(fig, "pair plot") + f'<p class="caption">{caption}.</p>' + _plot_note(
        context, k, f"the most correlated among {len(usable)} candidates")


def _most_divergence_related(context: _Context, parameters: list[_Parameter], diverging) -> int | None:
    """Index of the parameter whose divergent draws sit furthest from the rest (in sds), or None."""
    if diverging is None:
        return None
    mask = diverging[context.chain_index]
    if not mask.any() or mask.all():
        return None
    scores = []
    for p in parameters:
        values = np.asarray(context.posterior[p.site].transpose("chain", "draw", ...).values)
        values = np.asarray(values[(slice(None), slice(None)) + p.index][context.chain_index], dtype=np.float64)
        scores.append(abs(values[mask].mean() - values[~mask].mean()) / (values.std() or 1.0))
    scores = np.nan_to_num(np.asarray(scores), nan=-1.0)
    return int(np.argmax(scores))


def _most_correlated(parameters: list[_Parameter], pooled: dict, limit: int,
                     anchor: int | None = None) -> list[_Parameter]:
    """Up to ``limit`` parameters taken pair by pair in order of |correlation| (``anchor`` always included)."""
    if len(parameters) <= limit:
        return parameters
    with np.errstate(all="ignore"):
        strength = np.abs(np.corrcoef(np.vstack([pooled[p.label] for p in parameters])))
    strength = np.nan_to_num(strength)
    np.fill_diagonal(strength, -1.0)
    chosen: list[int] = [] if anchor is None else [anchor]
    for flat in np.argsort(strength, axis=None)[::-1]:
        i, j = np.unravel_index(flat, strength.shape)
        for index in (int(i), int(j)):
            if index not in chosen and len(chosen) < limit:
                chosen.append(index)
        if len(chosen) >= limit:
            break
    return [parameters[i] for i in sorted(chosen)]


def _energy_html(context: _Context) -> str | None:
    energy = context.stat_values("energy")
    if energy is None or energy.ndim != 2:
        return None
    energy = np.asarray(energy, dtype=np.float64)
    marginal = (energy - energy.mean(axis=1, keepdims=True)).ravel()
    transition = np.diff(energy, axis=1).ravel()
    marginal, transition = marginal[np.isfinite(marginal)], transition[np.isfinite(transition)]
    if not marginal.size or not transition.size:
        return '<p class="small">The energy statistic has no finite values.</p>'
    fig = _figure(7.5, 3.0)
    ax = fig.subplots()
    _margins(fig, left=0.3, top=0.15)
    low, high = np.percentile(np.concatenate([marginal, transition]), [0.5, 99.5])
    edges = np.linspace(low, high, 50) if high > low else 50
    ax.hist(marginal, bins=edges, density=True, alpha=0.5, color="#1f77b4", label="marginal energy (centred)")
    ax.hist(transition, bins=edges, density=True, alpha=0.5, color="#ff7f0e", label="energy transition")
    ax.legend(fontsize=8, frameon=False)
    ax.set_yticks([])
    ax.tick_params(labelsize=8)
    bfmi = "" if context.bfmi is None else ("E-BFMI per chain: " + _esc(_short_list(
        [round(float(v), 2) for v in context.bfmi])) + ". ")
    return (_png(fig, "energy plot") + f'<p class="caption">{bfmi}When the energy-transition histogram is much '
            f"narrower than the marginal energy (E-BFMI below {BFMI_THRESHOLD:g}), momentum resampling cannot move "
            "the sampler through the energy levels fast enough and the tails are explored slowly.</p>")


# ---------------------------------------------------------------------------------------------------------------------
# method panels: each appears when its records exist; names in docs/report.md
class _Panel(NamedTuple):
    anchor: str
    title: str
    render: Callable[[_Context], str | None]


def _sampler_panel(context: _Context) -> str | None:
    names = [n for n in ("acceptance_rate", "step_size", "tree_depth", "n_steps", "diverging")
             if context.has_stat(n) and context.stat_values(n).ndim == 2]
    if not names or context.kind != "mcmc":
        return None
    titles = {"acceptance_rate": "mean acceptance", "step_size": "step size (median)",
              "tree_depth": "mean tree depth", "n_steps": "mean leapfrog steps", "diverging": "divergences"}
    values = {n: np.asarray(context.stat_values(n), dtype=np.float64) for n in names}
    rows = []
    for chain in range(min(context.chains, 32)):
        cells = [f"<th>{chain}</th>"]
        for n in names:
            row = values[n][chain]
            value = (f"{int(row.sum())}" if n == "diverging" else _num(np.median(row)) if n == "step_size"
                     else _num(np.nanmean(row), 3))
            cells.append(f'<td class="{"bad" if n == "diverging" and row.sum() else ""}">{value}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    target = context.options.get("target_accept")
    note = (f'<p class="small">Warm-up adapted the step size towards a mean acceptance of {_esc(target)}; a mean '
            "far from it, or chains with very different step sizes, point at a warm-up that did not settle.</p>"
            if target is not None else "")
    more = (f'<p class="small">Showing the first 32 of {context.chains} chains.</p>' if context.chains > 32 else "")
    header = "".join(f"<th>{titles[n]}</th>" for n in names)
    return (f'<table><thead><tr><th>chain</th>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + more + note)


def _evidence_panel(context: _Context) -> str | None:
    fit = context.fit
    parts = []
    estimates = [(name, value) for name, value in (("log-evidence log Z", fit.log_evidence), ("ELBO", fit.elbo))
                 if value is not None]
    if estimates:
        rows = "".join(f"<tr><th>{name}</th><td>{_num(e.value, 6)}</td><td>{_num(e.se, 3)}</td></tr>"
                       for name, e in estimates)
        parts.append('<table><thead><tr><th>estimate</th><th>value</th><th>standard error</th></tr></thead>'
                     f"<tbody>{rows}</tbody></table>"
                     f'<p class="small">Standard errors come from the spread over the {context.chains} independent '
                     "repeats (chains). log Z from averaged importance weights is biased low at finite size; "
                     "compare values within a few standard errors.</p>")
    if context.weights is not None:
        parts.append(_weights_table(context))
        parts.append(_log_weight_figure(context))
    elif context.weights_error is not None:
        parts.append(f'<p class="error">The log-weights cannot be used: {_esc(context.weights_error)}</p>')
    elif context.kind == "weighted":
        parts.append('<p class="error">The fit says its draws are weighted but sample_stats has no log_weight.</p>')
    if not parts:
        return None
    return "".join(parts)


def _weights_table(context: _Context) -> str:
    weights = context.weights
    extra = {name: _attr_array(context, f"extra_{name}") for name in ("tempering_steps", "final_acceptance")}
    extra = {name: value for name, value in extra.items()
             if value is not None and value.ndim == 1 and value.size == weights["num_repeats"]}
    header = "".join(f"<th>{name.replace('_', ' ')}</th>" for name in extra)
    rows = []
    for r in range(min(weights["num_repeats"], 32)):
        k = float(weights["pareto_k"][r])
        cells = [f"<th>{r}</th>", f"<td>{weights['ess_per_repeat'][r]:.0f} of {weights['num_draws']}</td>",
                 f'<td class="{"bad" if k > PARETO_K_THRESHOLD else ""}">'
                 f"{_num(k, 3) if not math.isnan(k) else 'not estimable'}</td>"]
        cells += [f"<td>{_num(value[r], 4)}</td>" for value in extra.values()]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return ('<table><thead><tr><th>repeat</th><th>weight ESS</th><th>Pareto k-hat</th>'
            f'{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p class="small">Weight ESS = (&sum;w)&sup2; / &sum;w&sup2; per repeat; Pareto k-hat from ArviZ\'s PSIS '
            f"(above {PARETO_K_THRESHOLD:g}: the weights are heavy-tailed and estimates unreliable; "
            "&ldquo;not estimable&rdquo;: too few distinct large weights to fit a tail).</p>")


def _log_weight_figure(context: _Context) -> str:
    log_weight = np.asarray(context.stat_values("log_weight"), dtype=np.float64)
    log_weight = log_weight.reshape(log_weight.shape[0], -1)[: MAX_PLOT_CHAINS]
    fig = _figure(7.5, 2.8)
    ax = fig.subplots()
    _margins(fig, left=0.5, top=0.15, bottom=0.55)
    for r, row in enumerate(log_weight):
        finite = row[np.isfinite(row)]
        if finite.size:
            ax.hist(finite - finite.max(), bins=40, histtype="step", color=CHAIN_COLOURS[r % len(CHAIN_COLOURS)])
    ax.set_xlabel("log-weight minus its repeat's largest", fontsize=9)
    ax.tick_params(labelsize=8)
    return (_png(fig, "log-weights histogram")
            + '<p class="caption">Log-weights per repeat (one colour each). A long left tail is harmless; a few '
            "points far to the right of the bulk, near 0, carry most of the weight.</p>")


def _mixflow_panel(context: _Context) -> str | None:
    parts = []
    curve = _attr_array(context, "extra_elbo_vs_flow_length")
    if curve is not None and curve.ndim == 2 and curve.shape[1] in (2, 3) and curve.shape[0] >= 1:
        fig = _figure(6.5, 2.8)
        ax = fig.subplots()
        _margins(fig, left=0.8, top=0.15, bottom=0.55)
        se = curve[:, 2] if curve.shape[1] == 3 else None
        ax.errorbar(curve[:, 0], curve[:, 1], yerr=se, marker="o", markersize=3, capsize=2, linewidth=1)
        ax.set_xlabel("flow length N", fontsize=9)
        ax.set_ylabel("ELBO", fontsize=9)
        ax.tick_params(labelsize=8)
        parts.append(_png(fig, "ELBO against flow length")
                     + '<p class="caption">ELBO against the number of flow maps N (&plusmn; one standard error). It '
                     "should rise and level off; an ELBO that falls as N grows means the step size is too large.</p>")
    rows = []
    for name, meaning in NUMERICAL_HEALTH.items():
        values = _attr_array(context, f"extra_{name}")
        if values is None and context.has_stat(name):
            values = np.asarray(context.stat_values(name), dtype=np.float64)
        if values is None or values.size == 0:
            continue
        finite = values[np.isfinite(values)]
        stats = (_num(finite.min()), _num(np.median(finite)), _num(finite.max())) if finite.size else ("nan",) * 3
        rows.append(f"<tr><th>{name.replace('_', ' ')}</th><td>{stats[0]}</td><td>{stats[1]}</td><td>{stats[2]}</td>"
                    f'<td class="small">{_esc(meaning)}</td></tr>')
    if rows:
        parts.append('<h3>Numerical health</h3><table><thead><tr><th>record</th><th>min</th><th>median</th>'
                     f'<th>max</th><th>meaning</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return "".join(parts) or None


def _admm_panel(context: _Context) -> str | None:
    residual = context.stat_values("consensus_residual")
    if residual is None or residual.ndim not in (2, 3):
        return None
    residual = np.asarray(residual, dtype=np.float64)
    if residual.ndim == 2:
        residual = residual[..., None]
    per_agent = np.nanmean(residual, axis=0)[context.draw_index]  # (draws, agents)
    names = _last_dim_names(context, "consensus_residual", per_agent.shape[1], "agent")
    fig = _figure(7.5, 3.0)
    ax = fig.subplots()
    _margins(fig, left=0.8, top=0.15, bottom=0.55)
    for a in range(min(per_agent.shape[1], MAX_LINES)):
        ax.plot(context.draw_index, per_agent[:, a], linewidth=0.8, label=_mpl(names[a]))
    if np.all(per_agent[np.isfinite(per_agent)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("draw", fontsize=9)
    ax.set_ylabel("consensus residual", fontsize=9)
    ax.tick_params(labelsize=8)
    if 1 < per_agent.shape[1] <= 10:
        ax.legend(fontsize=7, frameon=False, ncol=2)
    final = per_agent[-1]
    note = "" if per_agent.shape[1] <= MAX_LINES else f" Showing {MAX_LINES} of {per_agent.shape[1]} agents."
    return (_png(fig, "consensus residual per agent")
            + f'<p class="caption">Each agent\'s distance from the consensus (mean over chains). It should fall and '
            f"stay at the noise level; an agent that stays apart holds data that disagree with the others, or its "
            f"penalty is too weak.{note} Last value per agent: {_esc(_short_list([_num(v, 3) for v in final]))}.</p>")


def _proximal_panel(context: _Context) -> str | None:
    norm = context.stat_values("envelope_grad_norm")
    if norm is None and context.method not in ("bplmc", "myula"):
        return None
    rows = []
    for name in ("smoothing", "step_size", "side", "legendre", "adjusted"):
        if name in context.options:
            rows.append(f"<tr><th>{name.replace('_', ' ')} (option)</th><td>{_esc(context.options[name])}</td></tr>")
    step = context.stat_values("step_size")
    if step is not None:
        rows.append(f"<tr><th>step size per chain</th><td>"
                    f"{_esc(_short_list([_num(np.median(row)) for row in step]))}</td></tr>")
    out_of_domain = context.stat_values("out_of_domain")
    if out_of_domain is not None:
        rows.append(f"<tr><th>out-of-domain proposals per chain (rejected)</th><td>"
                    f"{_esc(_short_list(np.asarray(out_of_domain).sum(axis=1).tolist()))}</td></tr>")
    diverging = context.diverging()
    if diverging is not None:
        rows.append(f"<tr><th>divergent (non-finite, or out of domain when unadjusted) steps per chain</th><td>"
                    f"{_esc(_short_list(diverging.sum(axis=1).tolist()))}</td></tr>")
    parts = [f"<table><tbody>{''.join(rows)}</tbody></table>"] if rows else []
    if norm is not None and norm.ndim == 2:
        norm = np.asarray(norm, dtype=np.float64)
        fig = _figure(7.5, 2.8)
        ax = fig.subplots()
        _margins(fig, left=0.8, top=0.15, bottom=0.55)
        for c, chain in enumerate(context.chain_index):
            ax.plot(context.draw_index, norm[chain, context.draw_index], linewidth=0.7,
                    color=CHAIN_COLOURS[c % len(CHAIN_COLOURS)])
        finite = norm[np.isfinite(norm)]
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_xlabel("draw", fontsize=9)
        ax.set_ylabel("|grad envelope|", fontsize=9)
        ax.tick_params(labelsize=8)
        parts.append(_png(fig, "envelope gradient norm")
                     + '<p class="caption">Norm of the gradient of the (Bregman-)Moreau envelope per chain. Spikes '
                     "mean the chain sits where the smoothing is sharp: smaller steps, or a larger smoothing, keep "
                     "the unadjusted steps stable (at the price of more smoothing bias).</p>")
    return "".join(parts) or None


def _block_panel(context: _Context) -> str | None:
    acceptance = context.stat_values("block_acceptance")
    if acceptance is None or acceptance.ndim not in (2, 3):
        return None
    acceptance = np.asarray(acceptance, dtype=np.float64)
    if acceptance.ndim == 2:
        acceptance = acceptance[..., None]
    rate = np.nanmean(acceptance, axis=(0, 1))
    names = _last_dim_names(context, "block_acceptance", rate.size, "block")
    shown = min(rate.size, 40)
    fig = _figure(7.5, 0.28 * shown + 0.9)
    ax = fig.subplots()
    _margins(fig, left=min(3.0, 0.25 + 0.075 * max(len(n) for n in names[:shown])), top=0.15, bottom=0.55)
    positions = np.arange(shown)
    ax.barh(positions, rate[:shown], color="#1f77b4")
    ax.set_yticks(positions, [_mpl(n) for n in names[:shown]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean acceptance", fontsize=9)
    ax.tick_params(labelsize=8)
    low = [names[i] for i in np.flatnonzero(rate < 0.05)]
    note = (f" Blocks accepting under 5% of proposals: {_esc(_short_list(low))}." if low else "")
    more = "" if shown == rate.size else f" Showing {shown} of {rate.size} blocks."
    return (_png(fig, "acceptance per block")
            + '<p class="caption">Mean acceptance of each block update. A block that almost never accepts is not '
            "moving: its proposal does not match the block's conditional (retrain it, or fall back to single-site "
            f"Gibbs there).{note}{more}</p>")


PANELS = (
    _Panel("sampler", "Sampler statistics", _sampler_panel),
    _Panel("evidence", "Importance weights and evidence (smc, cmcd, ais, variational methods)", _evidence_panel),
    _Panel("mixflow", "Flow diagnostics (mixflow)", _mixflow_panel),
    _Panel("admm", "Consensus (admm)", _admm_panel),
    _Panel("proximal", "Proximal Langevin (bplmc, myula)", _proximal_panel),
    _Panel("blocks", "Acceptance per block (gibbs, meta_gibbs)", _block_panel),
)


def _other_records_html(context: _Context) -> str | None:
    rows = []
    if context.stats is not None:
        for name, da in context.stats.data_vars.items():
            if name in STAT_NAMES_READ:
                continue
            rows.append(_record_row(f"sample_stats.{name}", np.asarray(da.values), da.dims))
    for name, value in arviz_compat.root_attrs(context.idata).items():
        if not str(name).startswith("extra_") or name in ATTRS_READ:
            continue
        rows.append(_record_row(f"attrs.{name}", _attr_array(context, name, raw=value), None))
    rows = [row for row in rows if row]
    if not rows:
        return None
    return ('<table><thead><tr><th>record</th><th>shape</th><th>min</th><th>mean</th><th>max</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table><p class="small">Records this report has no panel for, '
            "summarised over all chains and draws.</p>")


def _record_row(name: str, values, dims) -> str:
    if values is None:
        return ""
    values = np.asarray(values)
    shape = " &times; ".join(f"{_esc(d)}={n}" for d, n in zip(dims, values.shape)) if dims else _esc(values.shape)
    if values.dtype == bool:
        values = values.astype(np.float64)
    if not np.issubdtype(values.dtype, np.number) or values.size == 0:
        return f"<tr><th>{_esc(name)}</th><td>{shape}</td><td colspan=3>(not numeric)</td></tr>"
    finite = values[np.isfinite(values)].astype(np.float64)
    cells = (_num(finite.min()), _num(finite.mean()), _num(finite.max())) if finite.size else ("nan",) * 3
    return f"<tr><th>{_esc(name)}</th><td>{shape}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _attr_array(context: _Context, name: str, raw: Any = None) -> np.ndarray | None:
    attrs = arviz_compat.root_attrs(context.idata)
    value = attrs.get(name) if raw is None else raw
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array


def _last_dim_names(context: _Context, stat: str, count: int, default: str) -> list[str]:
    da = context.stats[stat]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if extra and extra[-1] in da.coords and da.sizes[extra[-1]] == count:
        return [str(v) for v in da.coords[extra[-1]].values]
    return [f"{default} {i}" for i in range(count)]


# ---------------------------------------------------------------------------------------------------------------------
# run details
def _run_html(context: _Context) -> str:
    fit, attrs = context.fit, arviz_compat.root_attrs(context.idata)
    rows = [("method", _esc(context.method)), ("draws kind", _esc(context.kind)),
            ("chains &times; draws", f"{context.chains} &times; {context.draws}")]
    for name in ("seed", "precision"):
        if name in attrs:
            rows.append((name, _esc(attrs[name])))
    timing = fit.timing or {}
    for name, title in (("compile_s", "compilation"), ("warmup_s", "warm-up"), ("sampling_s", "sampling")):
        if name in timing:
            rows.append((f"{title} time", _seconds(timing[name])))
    options = context.options
    table = "".join(f"<tr><th>{title}</th><td>{value}</td></tr>" for title, value in rows)
    option_rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(json.dumps(v, default=str))}</td></tr>"
                          for k, v in sorted(options.items()))
    versions = attrs.get("versions")
    try:
        versions = json.loads(versions) if isinstance(versions, str) else (versions or {})
    except json.JSONDecodeError:
        versions = {}
    version_text = ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in versions.items()) if isinstance(versions, dict) else ""
    return (f'<div class="columns"><div><h3>Settings and time</h3><table><tbody>{table}</tbody></table></div>'
            + (f'<div><h3>Method options</h3><table><tbody>{option_rows}</tbody></table></div>' if option_rows else "")
            + "</div>"
            + (f'<p class="small">Versions: {version_text}.</p>' if version_text else ""))


# ---------------------------------------------------------------------------------------------------------------------
# page assembly
def _header(context: _Context) -> str:
    created = context.posterior.attrs.get("created_at", "")
    sites = list(context.posterior.data_vars)
    sites_text = _esc(_short_list([str(s) for s in sites], limit=8))
    nav = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in (
        ("verdict", "verdict"), ("checks", "checks"), ("summary", "summary"), ("trace", "plots"), ("run", "run")))
    return (f"<header><h1>Diagnostics report: {_esc(context.method)}</h1>"
            f'<p class="meta">{context.chains} chains &times; {context.draws} draws &middot; {len(sites)} '
            f"site{'s' if len(sites) != 1 else ''} ({sites_text}"
            + (f"; {len(context.deterministic)} deterministic" if context.deterministic else "")
            + f") &middot; {len(context.parameters)} scalar parameters"
            + (f" &middot; selected with var_names from "
               f"{len(arviz_compat.group(context.idata, 'posterior').data_vars)} sites"
               if context.var_names is not None else "")
            + (f" &middot; fitted {_esc(created)}" if created else "")
            + f'</p><nav>{nav}</nav></header>')


def _section(anchor: str, title: str, content: str | None) -> str:
    if not content:
        return ""
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>{content}</section>'


def _guarded(anchor: str, title: str, render: Callable[[_Context], str | None], context: _Context) -> str:
    """A section; a failure while drawing it becomes a note on the page instead of no report at all."""
    try:
        content = render(context)
    except Exception as error:  # noqa: BLE001 - one broken panel must not hide the rest of the report
        content = (f'<p class="error">This section could not be drawn: {_esc(type(error).__name__)}: '
                   f"{_esc(error)}</p>")
    return _section(anchor, title, content)


def _page(context: _Context, sections: list[str]) -> str:
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>samplax report: {_esc(context.method)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(sections)}"
            f'<footer>Generated by samplax on {generated}. Thresholds follow Stan and ArviZ (Vehtari et al. 2021, '
            "&ldquo;Rank-normalization, folding, and localization: an improved R-hat&rdquo;).</footer>"
            "</main></body></html>\n")


CSS = """
:root { --ink: #1d232b; --muted: #5b6570; --line: #dfe3e8; --good: #1e7b34; --warn: #9a6700; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; min-height: 100vh; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.meta { color: var(--muted); margin: 0 0 8px; }
nav a { margin-right: 14px; color: #0b5cad; text-decoration: none; font-size: 14px; }
section { margin-top: 28px; }
h2 { font-size: 19px; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 12px 0 6px; }
.verdict { border-left: 6px solid; border-radius: 4px; padding: 10px 16px; }
.verdict.good { border-color: var(--good); background: #eaf6ec; }
.verdict.caution { border-color: var(--warn); background: #fff5da; }
.verdict.bad { border-color: var(--bad); background: #fdecea; }
.verdict .headline { font-size: 18px; font-weight: 600; margin: 4px 0 6px; }
.verdict.good .headline { color: var(--good); } .verdict.caution .headline { color: var(--warn); }
.verdict.bad .headline { color: var(--bad); }
.verdict .why { margin: 0; font-weight: 600; } .verdict ul { margin: 4px 0 8px; padding-left: 22px; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
thead th { background: #eef1f4; font-weight: 600; }
tbody th { text-align: left; font-weight: 500; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.bad { background: #fbd9d5; color: var(--bad); font-weight: 600; }
td.note { color: var(--warn); font-weight: 600; }
tr.group th { text-align: left; background: #eef1f4; color: var(--muted); font-weight: 600; }
table.checks th { text-align: left; }
table.checks td { text-align: left; white-space: normal; }
table.checks tr.fail td.status { color: var(--bad); font-weight: 700; }
table.checks tr.pass td.status { color: var(--good); font-weight: 600; }
table.checks tr.note td.status { color: var(--warn); font-weight: 600; }
td.small { text-align: left; white-space: normal; color: var(--muted); }
.scroll { overflow-x: auto; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.caption { color: var(--ink); font-size: 14px; margin: 2px 0 4px; }
.small { color: var(--muted); font-size: 13px; margin: 2px 0 6px; }
.error { color: var(--bad); font-weight: 600; }
.columns { display: flex; flex-wrap: wrap; gap: 32px; }
code { background: #eef1f4; padding: 0 4px; border-radius: 3px; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


# ---------------------------------------------------------------------------------------------------------------------
# small helpers
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _mpl(text: str) -> str:
    """Text for matplotlib: a dollar sign would start mathtext."""
    return str(text).replace("$", r"\$")


def _num(value: Any, digits: int = 4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "&infin;" if value > 0 else "&minus;&infin;"
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.{digits - 1}e}"
    return np.format_float_positional(value, precision=digits, unique=False, fractional=False, trim="-")


def _as_number(value: Any, finite: Callable[[float], str], non_finite: Callable[[float], str]) -> str:
    """``finite(x)`` or ``non_finite(x)`` of float(value); the escaped value itself when it is not a number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    return finite(value) if math.isfinite(value) else non_finite(value)


def _int(value: Any) -> str:
    return _as_number(value, lambda x: f"{x:.0f}", _num)


def _rhat(value: Any) -> str:
    return _as_number(value, lambda x: f"{x:.3f}", _num)


def _seconds(value: Any) -> str:
    return _as_number(value, lambda x: f"{x:.3g} s", lambda x: "n/a")


def _short_list(values: list, limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig, *, left=0.6, right=0.2, top=0.35, bottom=0.45, hspace=0.55, wspace=0.25):
    """Fixed margins in inches (cheaper than constrained layout, which dominates the drawing time)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        hspace=hspace, wspace=wspace)


def _png(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{encoded}">'
