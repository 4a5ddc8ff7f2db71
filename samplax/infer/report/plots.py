"""The plots every fit gets: trace, rank, pair and energy.

Plots are thinned (`MAX_PLOT_DRAWS` draws and `MAX_PLOT_CHAINS` chains each, `MAX_TRACE_PARAMETERS` parameters in the
trace and rank plots, `MAX_PAIR_PARAMETERS` in the pair plot), vector sites are flattened to their scalar coordinates
and the problematic ones are shown first; the verdict, the checks and the table use every draw. Divergent draws are
marked in red. The rank plot (Vehtari et al. 2021) is drawn for Markov chains only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from samplax.infer.report.context import BFMI_THRESHOLD, Context, Parameter
from samplax.infer.report.figures import CHAIN_COLOURS, DIVERGENT_COLOUR, figure, margins, png
from samplax.infer.report.html import esc, mpl, short_list
from samplax.infer.report.summary import problem_labels

__all__ = ["energy_html", "pair_html", "rank_html", "trace_html"]

MAX_TRACE_PARAMETERS = 8  # scalar parameters in the trace and rank plots
MAX_PAIR_PARAMETERS = 4  # scalar parameters in the pair plot
MAX_PAIR_CANDIDATES = 32  # scalar parameters searched for the strongest correlations
MAX_PAIR_POINTS = 4000  # non-divergent points per pair-plot panel
MAX_DIVERGENT_MARKS = 2000  # divergent draws marked per plot


def _plotted_parameters(context: Context, limit: int) -> list[Parameter]:
    """Up to ``limit`` scalar parameters: those failing a threshold first, then each site's first coordinates."""
    by_label = {p.label: p for p in context.parameters}
    chosen = [by_label[label] for label in problem_labels(context) if label in by_label][:limit]
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


def _plot_note(context: Context, shown: int, what: str) -> str:
    parts = [f"{shown} of {len(context.parameters)} scalar parameters ({what})"]
    if (
        shown == len(context.parameters)
        and len(context.chain_index) == context.chains
        and len(context.draw_index) == context.draws
    ):
        return ""
    if len(context.chain_index) < context.chains:
        parts.append(f"the first {len(context.chain_index)} of {context.chains} chains")
    if len(context.draw_index) < context.draws:
        parts.append(
            f"one draw in {int(context.draw_index[1] - context.draw_index[0])} "
            f"({len(context.draw_index)} of {context.draws} per chain)"
        )
    return '<p class="small">Showing ' + ", ".join(parts) + ".</p>"


def trace_html(context: Context) -> str:
    """Marginal histograms and draws in order, one row per plotted parameter."""
    parameters = _plotted_parameters(context, MAX_TRACE_PARAMETERS)
    diverging = context.diverging()
    fig = figure(13.0, 1.55 * len(parameters) + 0.5)
    axes = fig.subplots(len(parameters), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.6]})
    margins(fig, left=0.25, top=0.3, bottom=0.5, hspace=0.65, wspace=0.12)
    for row, parameter in enumerate(parameters):
        values = context.thinned(parameter)
        density_ax, trace_ax = axes[row]
        for c, _chain in enumerate(context.chain_index):
            colour = CHAIN_COLOURS[c % len(CHAIN_COLOURS)]
            finite = values[c][np.isfinite(values[c])]
            if finite.size:
                density_ax.hist(finite, bins=30, density=True, histtype="step", color=colour, linewidth=1)
            trace_ax.plot(context.draw_index, values[c], color=colour, linewidth=0.6, alpha=0.85)
        density_ax.set_title(mpl(parameter.label), loc="left", fontsize=9)
        density_ax.set_yticks([])
        trace_ax.tick_params(labelsize=8)
        density_ax.tick_params(labelsize=8)
        if diverging is not None:
            chain_rows, draws = np.nonzero(diverging[context.chain_index])
            if draws.size:
                keep = slice(0, MAX_DIVERGENT_MARKS)
                bottom = trace_ax.get_ylim()[0]
                trace_ax.plot(
                    draws[keep],
                    np.full(draws[keep].shape, bottom),
                    "|",
                    color=DIVERGENT_COLOUR,
                    markersize=8,
                    label="divergent",
                )
    axes[-1, 1].set_xlabel("draw", fontsize=9)
    caption = (
        "Left: the marginal of each chain (one colour per chain); right: the draws in order. Chains that "
        "overlap and look like stationary noise are what you want"
        + ("; red ticks on the x-axis mark divergent draws." if diverging is not None and diverging.any() else ".")
    )
    return (
        png(fig, "trace plots")
        + f'<p class="caption">{caption}</p>'
        + _plot_note(context, len(parameters), "problems first")
    )


def rank_html(context: Context) -> str:
    """Histograms of each chain's ranks among all draws, with a 99% band for uniform ranks."""
    if len(context.chain_index) < 2:
        return '<p class="small">Rank plots compare chains: this fit has one chain.</p>'
    parameters = [
        p for p in _plotted_parameters(context, MAX_TRACE_PARAMETERS) if np.isfinite(context.thinned(p)).all()
    ]
    if not parameters:
        return '<p class="small">No parameter has finite draws to rank.</p>'
    columns = 2 if len(parameters) > 1 else 1
    rows = math.ceil(len(parameters) / columns)
    fig = figure(13.0, 1.9 * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    margins(fig, left=0.45, top=0.3, bottom=0.15, hspace=0.45, wspace=0.15)
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
        ax.set_title(mpl(parameter.label), loc="left", fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=8)
    for ax in axes[len(parameters) :]:
        ax.set_visible(False)
    return (
        png(fig, "rank plots")
        + '<p class="caption">Histogram of each chain\'s ranks among all draws (one colour per chain). If the '
        "chains sample the same distribution, every histogram is flat, inside the grey 99% band around the "
        "dashed line; a chain whose bars slope or bulge is exploring somewhere else.</p>"
        + _plot_note(context, len(parameters), "problems first")
    )


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size)
    return ranks


def pair_html(context: Context) -> str:
    """Scatter plots of the most correlated parameters, divergent draws in red."""
    candidates = _plotted_parameters(context, MAX_PAIR_CANDIDATES)
    pooled = {p.label: context.thinned(p).ravel() for p in candidates}
    usable = [p for p in candidates if np.isfinite(pooled[p.label]).all() and np.ptp(pooled[p.label]) > 0]
    if len(usable) < 2:
        return '<p class="small">A pair plot needs at least two varying, finite scalar parameters.</p>'
    diverging = context.diverging()
    anchor = _most_divergence_related(context, usable, diverging)
    chosen = _most_correlated(usable, pooled, MAX_PAIR_PARAMETERS, anchor)
    divergent_mask = (
        diverging[np.ix_(context.chain_index, context.draw_index)].ravel()
        if diverging is not None
        else np.zeros(len(pooled[chosen[0].label]), dtype=bool)
    )
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
    fig = figure(size + 0.6, size)
    margins(fig, left=0.95, right=0.15, top=0.15, bottom=0.8, hspace=0.08, wspace=0.08)
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
            ax.scatter(
                x[keep], y[keep], s=point_size, color="#1f77b4", alpha=point_alpha, linewidths=0, rasterized=True
            )
            if full_divergent is not None:
                ax.scatter(
                    full_divergent[chosen[j].label],
                    full_divergent[chosen[i].label],
                    s=14,
                    color=DIVERGENT_COLOUR,
                    edgecolors="#7a0000",
                    linewidths=0.4,
                    label="divergent",
                )
            ax.text(0.02, 0.96, f"r = {correlations[i, j]:.2f}", transform=ax.transAxes, fontsize=8, va="top")
            ax.tick_params(labelsize=7)
            if i == k - 1:
                ax.set_xlabel(mpl(chosen[j].label), fontsize=9)
            if j == 0:
                ax.set_ylabel(mpl(chosen[i].label), fontsize=9)
    caption = (
        "The most strongly correlated parameters (correlation r over the plotted draws). Narrow ridges or "
        "funnels are where samplers struggle"
    )
    if full_divergent is not None:
        caption += "; red points are divergent transitions: where they cluster is where the posterior is too curved"
        if anchor is not None:
            caption += (
                f" ({esc(usable[anchor].label)}, whose divergent draws lie furthest from the others, is always shown)"
            )
    return (
        png(fig, "pair plot")
        + f'<p class="caption">{caption}.</p>'
        + _plot_note(context, k, f"the most correlated among {len(usable)} candidates")
    )


def _most_divergence_related(context: Context, parameters: list[Parameter], diverging) -> int | None:
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


def _most_correlated(
    parameters: list[Parameter], pooled: dict, limit: int, anchor: int | None = None
) -> list[Parameter]:
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


def energy_html(context: Context) -> str | None:
    """Marginal energy against energy transitions (HMC-family methods; None without ``energy``)."""
    energy = context.stat_values("energy")
    if energy is None or energy.ndim != 2:
        return None
    energy = np.asarray(energy, dtype=np.float64)
    marginal = (energy - energy.mean(axis=1, keepdims=True)).ravel()
    transition = np.diff(energy, axis=1).ravel()
    marginal, transition = marginal[np.isfinite(marginal)], transition[np.isfinite(transition)]
    if not marginal.size or not transition.size:
        return '<p class="small">The energy statistic has no finite values.</p>'
    fig = figure(7.5, 3.0)
    ax = fig.subplots()
    margins(fig, left=0.3, top=0.15)
    low, high = np.percentile(np.concatenate([marginal, transition]), [0.5, 99.5])
    edges = np.linspace(low, high, 50) if high > low else 50
    ax.hist(marginal, bins=edges, density=True, alpha=0.5, color="#1f77b4", label="marginal energy (centred)")
    ax.hist(transition, bins=edges, density=True, alpha=0.5, color="#ff7f0e", label="energy transition")
    ax.legend(fontsize=8, frameon=False)
    ax.set_yticks([])
    ax.tick_params(labelsize=8)
    bfmi = (
        ""
        if context.bfmi is None
        else ("E-BFMI per chain: " + esc(short_list([round(float(v), 2) for v in context.bfmi])) + ". ")
    )
    return (
        png(fig, "energy plot") + f'<p class="caption">{bfmi}When the energy-transition histogram is much '
        f"narrower than the marginal energy (E-BFMI below {BFMI_THRESHOLD:g}), momentum resampling cannot move "
        "the sampler through the energy levels fast enough and the tails are explored slowly.</p>"
    )
