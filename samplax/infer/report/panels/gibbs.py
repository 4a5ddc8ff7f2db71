"""Acceptance per block panel (gibbs, block_gibbs, meta_gibbs): how often each block update is accepted.

``sample_stats.block_acceptance`` (chain, draw[, block]) holds the acceptance of each block's Metropolis-Hastings
update (1 for exact Gibbs updates). A block that almost never accepts is not moving: its proposal does not match the
block's conditional (retrain it, or fall back to single-site Gibbs there).
"""

from __future__ import annotations

import numpy as np

from samplax.infer.report.context import Context
from samplax.infer.report.figures import figure, margins, png
from samplax.infer.report.html import esc, mpl, short_list
from samplax.infer.report.panels.base import Panel

__all__ = ["PANEL", "render"]

STAT = "block_acceptance"
MAX_BLOCKS = 40  # bars in the plot
LOW_ACCEPTANCE = 0.05  # blocks below this are named in the caption


def render(context: Context) -> str | None:
    """A bar per block (mean acceptance over chains and draws); None without ``block_acceptance``."""
    acceptance = context.stat_values(STAT)
    if acceptance is None or acceptance.ndim not in (2, 3):
        return None
    acceptance = np.asarray(acceptance, dtype=np.float64)
    if acceptance.ndim == 2:
        acceptance = acceptance[..., None]
    rate = np.nanmean(acceptance, axis=(0, 1))
    names = context.last_dim_names(STAT, rate.size, "block")
    shown = min(rate.size, MAX_BLOCKS)
    fig = figure(7.5, 0.28 * shown + 0.9)
    ax = fig.subplots()
    margins(fig, left=min(3.0, 0.25 + 0.075 * max(len(n) for n in names[:shown])), top=0.15, bottom=0.55)
    positions = np.arange(shown)
    ax.barh(positions, rate[:shown], color="#1f77b4")
    ax.set_yticks(positions, [mpl(n) for n in names[:shown]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean acceptance", fontsize=9)
    ax.tick_params(labelsize=8)
    low = [names[i] for i in np.flatnonzero(rate < LOW_ACCEPTANCE)]
    note = f" Blocks accepting under 5% of proposals: {esc(short_list(low))}." if low else ""
    more = "" if shown == rate.size else f" Showing {shown} of {rate.size} blocks."
    return (
        png(fig, "acceptance per block")
        + '<p class="caption">Mean acceptance of each block update. A block that almost never accepts is not '
        "moving: its proposal does not match the block's conditional (retrain it, or fall back to single-site "
        f"Gibbs there).{note}{more}</p>"
    )


PANEL = Panel("blocks", "Acceptance per block (gibbs, meta_gibbs)", render, stats=frozenset({STAT}))
