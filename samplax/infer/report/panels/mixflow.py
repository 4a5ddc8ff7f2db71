"""Flow diagnostics panel (mixflow): the ELBO against the flow length and the flow's numerical health.

MixFlows (Xu, Chen and Campbell 2023) average N maps of a measure-preserving flow; the ELBO should rise with N and
level off. The numerical-health records say how far floating-point round-off takes the computed flow from the exact
one (Xu and Campbell 2023, "Embracing the chaos"): the one-step inversion error, the shadowing window and the fraction
of non-finite values. Each is read from the root attr ``extra_<name>`` or, failing that, ``sample_stats.<name>``.

The method's own check (``extra_mixflow_check``): the ELBO at N/2 against N, the draws' moments against the
importance-corrected ones (exact density), and a short NUTS run started from the flow's draws; failed checks are
also convergence warnings (``extra_method_warnings``). ``extra_cost`` gives the gradient evaluations of each stage,
known before the run (expected counts: a draw without its density stops after a uniform number of maps).
"""

from __future__ import annotations

import numpy as np

from samplax.infer.report.context import Context
from samplax.infer.report.figures import figure, margins, png
from samplax.infer.report.html import esc, num
from samplax.infer.report.panels.base import Panel

__all__ = ["NUMERICAL_HEALTH", "PANEL", "render"]

NUMERICAL_HEALTH = {
    "inversion_error": "one-step inversion error |T^-1(T(s)) - s| (round-off of the flow map; ~1e-14 in float64)",
    "shadowing_window": "shadowing window 2 lambda delta (Xu & Campbell 2023): how far the computed orbit may be "
    "from an exact one",
    "nonfinite_fraction": "fraction of non-finite log-densities or draws",
}
CURVE = "extra_elbo_vs_flow_length"  # rows (N, ELBO) or (N, ELBO, standard error)
CHECK = "extra_mixflow_check"
COST = "extra_cost"
STEPS, SPREAD = "extra_leapfrog_steps", "extra_spread_over_reference"  # the travel rule's L and pilot spread
CHECK_ROWS = {  # key in extra_mixflow_check -> what it is
    "elbo_half_flow_length": "ELBO at N/2",
    "elbo_flow_length": "ELBO at N",
    "elbo_gain_over_half": "ELBO gain from N/2 to N",
    "importance_pareto_k": "Pareto k-hat of target / flow at the draws",
    "moment_shift_max_sd": "largest mean shift, draws vs importance-corrected (sds)",
    "sd_ratio_min": "smallest sd ratio, draws / importance-corrected",
    "sd_ratio_max": "largest sd ratio, draws / importance-corrected",
    "nuts_mean_shift_max_sd": "largest mean gap to a short NUTS run (sds)",
    "nuts_sd_ratio_min": "smallest sd ratio to the NUTS run",
    "nuts_sd_ratio_max": "largest sd ratio to the NUTS run",
    "nuts_check_passed": "agrees with the NUTS run",
}


def _cell(value) -> str:
    return num(value, 3) if isinstance(value, float) else esc(str(value))


def check_table(context: Context) -> str:
    """The method's own check and the cost of each stage, when the fit recorded them."""
    parts = []
    check = context.attr_json(CHECK)
    if isinstance(check, dict):
        rows = [
            f"<tr><th>{esc(meaning)}</th><td>{_cell(check[key])}</td></tr>"
            for key, meaning in CHECK_ROWS.items()
            if key in check and check[key] is not None
        ]
        warned = context.attr_json("extra_method_warnings") or []
        verdict = (
            "every check passed"
            if not warned
            else f"{len(warned)} check(s) failed: " + " ".join(str(w) for w in warned)
        )
        if rows:
            parts.append(
                f"<h3>Does the flow match the target?</h3><p>{esc(verdict)}</p><table><tbody>{''.join(rows)}"
                "</tbody></table>"
            )
    steps, spread = context.attr_json(STEPS), context.attr_array(SPREAD)
    if steps is not None and spread is not None and spread.size:
        parts.append(
            f"<p>Leapfrog steps per map as run: {esc(str(steps))} (travel rule: the flow's spread reached "
            f"{num(float(np.max(spread)), 3)} reference sds; above 1.5 the maps are lengthened by that factor).</p>"
        )
    cost = context.attr_json(COST)
    if isinstance(cost, dict):
        rows = [f"<tr><th>{esc(str(stage))}</th><td>{_cell(value)}</td></tr>" for stage, value in cost.items()]
        parts.append(
            "<h3>Cost (gradient evaluations per stage, known before the run)</h3><table><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            + '<p class="caption">sampling: the draws that carry their exact density and orbit ELBO cost 2N maps of '
            "L gradients each, the others about N/2 maps (the expected count); L is the one the fit ran (the "
            "travel rule may lengthen the maps); estimated_sampling_s is timed from the tuning.</p>"
        )
    return "".join(parts)


def render(context: Context) -> str | None:
    """The ELBO curve and the numerical-health table; None when the fit has neither."""
    parts = []
    curve = context.attr_array(CURVE)
    if curve is not None and curve.ndim == 2 and curve.shape[1] in (2, 3) and curve.shape[0] >= 1:
        fig = figure(6.5, 2.8)
        ax = fig.subplots()
        margins(fig, left=0.8, top=0.15, bottom=0.55)
        se = curve[:, 2] if curve.shape[1] == 3 else None
        ax.errorbar(curve[:, 0], curve[:, 1], yerr=se, marker="o", markersize=3, capsize=2, linewidth=1)
        ax.set_xlabel("flow length N", fontsize=9)
        ax.set_ylabel("ELBO", fontsize=9)
        ax.tick_params(labelsize=8)
        parts.append(
            png(fig, "ELBO against flow length")
            + '<p class="caption">ELBO against the number of flow maps N (&plusmn; one standard error). It '
            "should rise and level off; an ELBO that falls as N grows means the step size is too large.</p>"
        )
    rows = []
    for name, meaning in NUMERICAL_HEALTH.items():
        values = context.attr_array(f"extra_{name}")
        if values is None and context.has_stat(name):
            values = np.asarray(context.stat_values(name), dtype=np.float64)
        if values is None or values.size == 0:
            continue
        finite = values[np.isfinite(values)]
        stats = (num(finite.min()), num(np.median(finite)), num(finite.max())) if finite.size else ("nan",) * 3
        rows.append(
            f"<tr><th>{name.replace('_', ' ')}</th><td>{stats[0]}</td><td>{stats[1]}</td><td>{stats[2]}</td>"
            f'<td class="small">{esc(meaning)}</td></tr>'
        )
    if rows:
        parts.append(
            "<h3>Numerical health</h3><table><thead><tr><th>record</th><th>min</th><th>median</th>"
            f"<th>max</th><th>meaning</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append(check_table(context))
    return "".join(parts) or None


PANEL = Panel(
    "mixflow",
    "Flow diagnostics (mixflow)",
    render,
    stats=frozenset(NUMERICAL_HEALTH),
    attrs=frozenset(
        {CURVE, CHECK, COST, STEPS, SPREAD, "extra_method_warnings"} | {f"extra_{name}" for name in NUMERICAL_HEALTH}
    ),
)
