"""Consensus panel (admm, dsgld): each agent's distance from the consensus over the draws.

In distributed ADMM sampling (Tzikas et al. 2024) every agent holds a private copy of the parameters, tied to its
neighbours' by a penalty; ``sample_stats.consensus_residual`` (chain, draw[, agent]) records how far each copy is from
the consensus. It should fall and stay at the noise level; an agent that stays apart holds data that disagree with
the others, or its penalty is too weak.
"""

from __future__ import annotations

import numpy as np

from samplax.infer.report.context import MAX_LINES, Context
from samplax.infer.report.figures import figure, margins, png
from samplax.infer.report.html import esc, mpl, num, short_list
from samplax.infer.report.panels.base import Panel

__all__ = ["PANEL", "render"]

STAT = "consensus_residual"


def render(context: Context) -> str | None:
    """The residual per agent (mean over chains) against the draw; None without ``consensus_residual``."""
    residual = context.stat_values(STAT)
    if residual is None or residual.ndim not in (2, 3):
        return None
    residual = np.asarray(residual, dtype=np.float64)
    if residual.ndim == 2:
        residual = residual[..., None]
    per_agent = np.nanmean(residual, axis=0)[context.draw_index]  # (draws, agents)
    names = context.last_dim_names(STAT, per_agent.shape[1], "agent")
    fig = figure(7.5, 3.0)
    ax = fig.subplots()
    margins(fig, left=0.8, top=0.15, bottom=0.55)
    for a in range(min(per_agent.shape[1], MAX_LINES)):
        ax.plot(context.draw_index, per_agent[:, a], linewidth=0.8, label=mpl(names[a]))
    if np.all(per_agent[np.isfinite(per_agent)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("draw", fontsize=9)
    ax.set_ylabel("consensus residual", fontsize=9)
    ax.tick_params(labelsize=8)
    if 1 < per_agent.shape[1] <= 10:
        ax.legend(fontsize=7, frameon=False, ncol=2)
    final = per_agent[-1]
    note = "" if per_agent.shape[1] <= MAX_LINES else f" Showing {MAX_LINES} of {per_agent.shape[1]} agents."
    return (png(fig, "consensus residual per agent")
            + f'<p class="caption">Each agent\'s distance from the consensus (mean over chains). It should fall and '
            f"stay at the noise level; an agent that stays apart holds data that disagree with the others, or its "
            f"penalty is too weak.{note} Last value per agent: {esc(short_list([num(v, 3) for v in final]))}.</p>")


PANEL = Panel("admm", "Consensus (admm)", render, stats=frozenset({STAT}))
