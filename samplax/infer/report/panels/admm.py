"""Consensus panel (admm, dsgld): each agent's distance from the consensus over the draws, and how admm tuned itself.

In distributed ADMM sampling (Tzikas et al. 2024) every agent holds a private copy of the parameters, tied to its
neighbours' by a penalty; ``sample_stats.consensus_residual`` (chain, draw[, agent]) records how far each copy is from
the consensus. It should fall and stay at the noise level; an agent that stays apart holds data that disagree with
the others, or its penalty is too weak.

The tuning table reads what admm chose during warm-up (``extra_rho`` and its rule, the noise scale, the
preconditioner and its condition number), how well the local proximal problems were solved (``extra_prox_tolerance``,
``extra_max_prox_residual``, ``sample_stats.prox_residual``; a solve that misses the tolerance is a divergence), and
the method's own bias: for a Gaussian target the exact stationary variance of admm's network average is
``extra_variance_ratio`` times the posterior's (per coordinate; min and max in ``extra_variance_ratio_min/max``), so
the sds in the summary are that much too small.
"""

from __future__ import annotations

import numpy as np

from samplax.infer.report.context import MAX_LINES, Context
from samplax.infer.report.figures import figure, margins, png
from samplax.infer.report.html import esc, mpl, num, short_list
from samplax.infer.report.panels.base import Panel

__all__ = ["PANEL", "render"]

STAT = "consensus_residual"
TUNING = {  # attr -> what it is
    "extra_rho": "penalty rho",
    "extra_rho_rule": "how rho was chosen",
    "extra_noise_scale": "noise scale",
    "extra_precondition": "preconditioner",
    "extra_precondition_condition_number": "condition number of the curvature it removes",
    "extra_solver": "local solver",
    "extra_prox_tolerance": "local-solve tolerance (posterior sds)",
    "extra_max_prox_residual": "largest local-solve residual (posterior sds)",
    "extra_divergences": "local solves that missed the tolerance (divergences)",
}
RATIO = ("extra_variance_ratio_min", "extra_variance_ratio_max")


def tuning_table(context: Context) -> str:
    """What admm chose and how well its local problems were solved, and the stated variance deficit."""
    rows = []
    for name, meaning in TUNING.items():
        value = context.attr_json(name)
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = num(value, 3)
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            text = short_list([num(v, 3) for v in value])
        else:
            text = esc(str(value))
        rows.append(f"<tr><th>{esc(meaning)}</th><td>{text}</td></tr>")
    low, high = (context.attr_json(name) for name in RATIO)
    note = ""
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        rows.append(
            f"<tr><th>stated variance ratio (admm / posterior)</th><td>{num(low, 3)} &ndash; {num(high, 3)}</td></tr>"
        )
        note = (
            f'<p class="caption">admm\'s own bias: for a Gaussian target with this curvature, the exact stationary '
            f"variance of the network average is {num(low, 3)}&ndash;{num(high, 3)} times the posterior's "
            "(per coordinate), so the posterior sds in the summary are too small by the square root of that "
            "factor. Means are unbiased for Gaussian targets.</p>"
        )
    if not rows:
        return ""
    return "<h3>Tuning and local solves</h3><table><tbody>" + "".join(rows) + "</tbody></table>" + note


def render(context: Context) -> str | None:
    """The residual per agent (mean over chains) against the draw; None without ``consensus_residual``."""
    residual = context.stat_values(STAT)
    if residual is None or residual.ndim not in (2, 3):
        return tuning_table(context) or None
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
    return (
        png(fig, "consensus residual per agent")
        + f'<p class="caption">Each agent\'s distance from the consensus (mean over chains). It should fall and '
        f"stay at the noise level; an agent that stays apart holds data that disagree with the others, or its "
        f"penalty is too weak.{note} Last value per agent: {esc(short_list([num(v, 3) for v in final]))}.</p>"
        + tuning_table(context)
    )


PANEL = Panel(
    "admm",
    "Consensus (admm)",
    render,
    stats=frozenset({STAT, "prox_residual"}),
    attrs=frozenset(TUNING) | frozenset(RATIO) | {"extra_variance_ratio"},
)
