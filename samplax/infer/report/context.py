"""What every section of the report reads: the fit, its draws and statistics, and the scores computed once.

`Context.build(fit, var_names)` selects the sites shown (latent first, then deterministic), scores them once
(`diagnostics.convergence_warnings`, the unrounded summary table, importance weights, E-BFMI) and keeps the thinned
indices the plots use; the sections and panels only read it. `as_fit` accepts a `samplax.Fit` or a bare
InferenceData (a DataTree under ArviZ 1.x), read the way `samplax.load` reads a file, without importing
`samplax.infer.fit` (the report sits below the driver).

The thresholds are Stan's and ArviZ's; the plot limits keep the page small whatever the size of the fit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from samplax.infer import arviz_compat, diagnostics
from samplax.infer.assemble import Estimate, recorded_estimate

__all__ = [
    "BFMI_THRESHOLD",
    "Context",
    "ESS_THRESHOLD",
    "FitRecord",
    "MAX_LINES",
    "MAX_PLOT_CHAINS",
    "MAX_PLOT_DRAWS",
    "PARETO_K_THRESHOLD",
    "Parameter",
    "RHAT_THRESHOLD",
    "as_fit",
]

RHAT_THRESHOLD = 1.01
ESS_THRESHOLD = 400
BFMI_THRESHOLD = 0.3
PARETO_K_THRESHOLD = diagnostics.PARETO_K_UNRELIABLE

MAX_PLOT_DRAWS = 1000  # per chain, in every plot
MAX_PLOT_CHAINS = 8  # chains (repeats) drawn in a plot
MAX_LINES = 16  # lines (agents, blocks) in a method panel plot


@dataclasses.dataclass
class FitRecord:
    """The parts of a fit the report reads, for an InferenceData given without its `samplax.Fit`.

    Parsed from the root attrs exactly as `samplax.Fit` parses them (``method``, JSON ``options``, ``timing``,
    ``log_evidence`` and ``elbo``), so a bare InferenceData reports like the Fit it came from.
    """

    idata: Any
    method: str | None
    options: dict
    timing: dict
    log_evidence: Estimate | None
    elbo: Estimate | None

    @classmethod
    def from_idata(cls, idata: Any) -> FitRecord:
        """Read the record from ``idata``'s root attrs."""
        attrs = arviz_compat.root_attrs(idata)
        estimates = {name: recorded_estimate(attrs, name) for name in ("log_evidence", "elbo")}
        return cls(
            idata=idata,
            method=attrs.get("method"),
            options=json.loads(attrs.get("options", "{}")),
            timing=json.loads(attrs.get("timing", "{}")),
            **estimates,
        )


def as_fit(fit: Any):
    """``fit`` itself when it is a Fit-like object with an ``idata``, a `FitRecord` for a bare InferenceData.

    Raises:
        ValueError: ``fit`` is neither, or has no posterior group.
    """
    if arviz_compat.is_idata(fit):
        fit = FitRecord.from_idata(fit)
    if not hasattr(fit, "idata") or not arviz_compat.is_idata(fit.idata):
        raise ValueError(
            f"fit must be a samplax Fit (from samplax.fit or samplax.load), an arviz.InferenceData or "
            f"(ArviZ 1.x) an xarray.DataTree, got {type(fit).__name__}"
        )
    if not arviz_compat.has_group(fit.idata, "posterior"):
        raise ValueError("fit.idata has no posterior group: there are no draws to report on")
    return fit


class Parameter(NamedTuple):
    """One scalar coordinate of a site, labelled the way az.summary labels it (``theta[0, 1]``)."""

    label: str
    site: str
    index: tuple


@dataclasses.dataclass
class Context:
    """The fit, the sites shown and their scores: what the sections and panels read (see the module docstring)."""

    fit: Any
    idata: Any  # arviz.InferenceData (ArviZ 0.x) or xarray.DataTree
    posterior: Any
    stats: Any
    kind: str
    parameters: list
    chains: int
    draws: int
    chain_index: np.ndarray
    draw_index: np.ndarray
    latent: list = dataclasses.field(default_factory=list)  # latent site names shown, in model order
    deterministic: list = dataclasses.field(default_factory=list)  # deterministic site names shown
    var_names: list | None = None
    table: pd.DataFrame | None = None  # every row shown: latent sites first, then deterministic ones
    table_error: str | None = None
    rhat: pd.Series | None = None  # the judged scores: latent sites' rows only
    ess_bulk: pd.Series | None = None
    ess_tail: pd.Series | None = None
    messages: list = dataclasses.field(default_factory=list)
    messages_error: str | None = None
    note: str | None = None  # diagnostics.deterministic_note
    weights: dict | None = None
    weights_error: str | None = None
    bfmi: np.ndarray | None = None

    @classmethod
    def build(cls, fit, var_names: str | list[str] | None = None) -> Context:
        """Select and score the sites of ``fit`` (from `as_fit`); ``var_names`` restricts the sites shown.

        Raises:
            ValueError: the posterior has no ``chain``/``draw`` dims or no variables, or a name in ``var_names`` is
                not a site (the message lists the valid ones).
        """
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
        context = cls(
            fit=fit,
            idata=idata,
            posterior=posterior,
            stats=stats,
            kind=diagnostics.draws_kind(idata),
            parameters=_parameters(posterior),
            chains=chains,
            draws=draws,
            chain_index=np.arange(min(chains, MAX_PLOT_CHAINS)),
            draw_index=np.arange(0, draws, stride),
            latent=latent,
            deterministic=deterministic,
            var_names=None if var_names is None else latent + deterministic,
        )
        context._score()
        return context

    def _score(self):
        thresholds = {"ess_threshold": ESS_THRESHOLD, "rhat_threshold": RHAT_THRESHOLD}
        try:
            self.messages = diagnostics.convergence_warnings(
                self.idata, bfmi_threshold=BFMI_THRESHOLD, var_names=self.var_names, **thresholds
            )
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
        """Whether ``sample_stats`` holds ``name``."""
        return self.stats is not None and name in self.stats

    def stat_values(self, name: str) -> np.ndarray | None:
        """A sample statistic as an array with (chain, draw) leading, or None when absent."""
        if not self.has_stat(name):
            return None
        da = self.stats[name]
        if "chain" not in da.dims or "draw" not in da.dims:
            return np.asarray(da.values)
        return np.asarray(da.transpose("chain", "draw", ...).values)

    def thinned(self, parameter: Parameter) -> np.ndarray:
        """(plotted chains, plotted draws) values of one scalar parameter."""
        values = np.asarray(self.posterior[parameter.site].transpose("chain", "draw", ...).values)
        values = values[(slice(None), slice(None)) + parameter.index]
        return np.asarray(values[np.ix_(self.chain_index, self.draw_index)], dtype=np.float64)

    def diverging(self) -> np.ndarray | None:
        """``sample_stats.diverging`` as a (chain, draw) boolean array, or None."""
        values = self.stat_values("diverging")
        if values is None or values.ndim != 2:
            return None
        return values.astype(bool)

    def attr_json(self, name: str) -> Any:
        """A root attribute parsed from its JSON text (a dict, list or number), else None."""
        value = arviz_compat.root_attrs(self.idata).get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return None
        return value

    def attr_array(self, name: str, raw: Any = None) -> np.ndarray | None:
        """A root attribute (JSON text or a number sequence; ``raw`` when given) as a float64 array, else None."""
        attrs = arviz_compat.root_attrs(self.idata)
        value = attrs.get(name) if raw is None else raw
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None

    def last_dim_names(self, stat: str, count: int, default: str) -> list[str]:
        """Names of the last axis of a statistic (its coordinate values), else ``"<default> <i>"``."""
        da = self.stats[stat]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if extra and extra[-1] in da.coords and da.sizes[extra[-1]] == count:
            return [str(v) for v in da.coords[extra[-1]].values]
        return [f"{default} {i}" for i in range(count)]

    @property
    def method(self) -> str:
        """The method's name, or ``"unknown"``."""
        return str(self.fit.method) if self.fit.method is not None else "unknown"

    @property
    def options(self) -> dict:
        """The method's options (empty when the fit has none)."""
        return self.fit.options if isinstance(self.fit.options, dict) else {}

    @property
    def sampling_seconds(self) -> float | None:
        """The sampling time (warm-up and compilation excluded), or None."""
        return self.seconds("sampling_s")

    def seconds(self, field: str) -> float | None:
        """A positive finite time from ``fit.timing`` (``sampling_s``, ``total_s``, ...), else None."""
        seconds = (self.fit.timing or {}).get(field)
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            return None
        return seconds if math.isfinite(seconds) and seconds > 0 else None


def _parameters(posterior) -> list[Parameter]:
    parameters = []
    for name, da in posterior.data_vars.items():
        site_dims = [dim for dim in da.transpose("chain", "draw", ...).dims if dim not in ("chain", "draw")]
        coords = [da.coords[dim].values if dim in da.coords else np.arange(da.sizes[dim]) for dim in site_dims]
        for index in np.ndindex(*[da.sizes[dim] for dim in site_dims]):
            label = f"{name}[{', '.join(str(coord[i]) for coord, i in zip(coords, index))}]" if index else str(name)
            parameters.append(Parameter(label, str(name), index))
    return parameters


def _summary_and_scores(context: Context):
    """The unrounded summary table (labels as ours) and its R-hat, bulk and tail ESS columns.

    Unrounded because ArviZ's default rounding (two decimals) would turn an R-hat of 1.013 into a passing 1.01.
    """
    seconds, wall = context.sampling_seconds, context.seconds("total_s")
    # explicit positive times, always: with None the summary would read attrs["timing"], which may hold NaN
    table = diagnostics.summary(
        context.idata,
        sampling_seconds=seconds or 1.0,
        wall_seconds=wall or 1.0,
        round_to="none",
        var_names=context.var_names,
    )
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
