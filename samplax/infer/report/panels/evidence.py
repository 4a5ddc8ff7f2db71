"""Importance weights and evidence panel (smc, cmcd and its baselines mcd, ula and ais, and variational methods).

Shows the log-evidence log Z and the ELBO with their standard errors (from the spread over the independent repeats),
and per repeat the importance weights' ESS ``(sum w)^2 / sum w^2`` and Pareto k-hat (ArviZ's PSIS, Vehtari et al.
2024), with SMC's tempering steps and final acceptance when the fit stores them, and a histogram of the log-weights.
"""

from __future__ import annotations

import math

import numpy as np

from samplax.infer.report.context import MAX_PLOT_CHAINS, PARETO_K_THRESHOLD, Context
from samplax.infer.report.figures import CHAIN_COLOURS, figure, margins, png
from samplax.infer.report.html import esc, num
from samplax.infer.report.panels.base import Panel

__all__ = ["PANEL", "render"]

EXTRA_PER_REPEAT = ("tempering_steps", "final_acceptance")  # attrs extra_<name>: one value per repeat (smc)
MAX_REPEATS = 32  # rows of the weights table


def render(context: Context) -> str | None:
    """The estimates, the weights table and the log-weights histogram; None when the fit has none of them."""
    fit = context.fit
    parts = []
    estimates = [
        (name, value)
        for name, value in (("log-evidence log Z", fit.log_evidence), ("ELBO", fit.elbo))
        if value is not None
    ]
    if estimates:
        rows = "".join(
            f"<tr><th>{name}</th><td>{num(e.value, 6)}</td><td>{num(e.se, 3)}</td></tr>" for name, e in estimates
        )
        parts.append(
            "<table><thead><tr><th>estimate</th><th>value</th><th>standard error</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f'<p class="small">Standard errors come from the spread over the {context.chains} independent '
            "repeats (chains). log Z from averaged importance weights is biased low at finite size; "
            "compare values within a few standard errors.</p>"
        )
    if context.weights is not None:
        parts.append(_weights_table(context))
        parts.append(_log_weight_figure(context))
    elif context.weights_error is not None:
        parts.append(f'<p class="error">The log-weights cannot be used: {esc(context.weights_error)}</p>')
    elif context.kind == "weighted":
        parts.append('<p class="error">The fit says its draws are weighted but sample_stats has no log_weight.</p>')
    if not parts:
        return None
    return "".join(parts)


def _weights_table(context: Context) -> str:
    weights = context.weights
    extra = {name: context.attr_array(f"extra_{name}") for name in EXTRA_PER_REPEAT}
    extra = {
        name: value
        for name, value in extra.items()
        if value is not None and value.ndim == 1 and value.size == weights["num_repeats"]
    }
    header = "".join(f"<th>{name.replace('_', ' ')}</th>" for name in extra)
    rows = []
    for r in range(min(weights["num_repeats"], MAX_REPEATS)):
        k = float(weights["pareto_k"][r])
        cells = [
            f"<th>{r}</th>",
            f"<td>{weights['ess_per_repeat'][r]:.0f} of {weights['num_draws']}</td>",
            f'<td class="{"bad" if k > PARETO_K_THRESHOLD else ""}">'
            f"{num(k, 3) if not math.isnan(k) else 'not estimable'}</td>",
        ]
        cells += [f"<td>{num(value[r], 4)}</td>" for value in extra.values()]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<table><thead><tr><th>repeat</th><th>weight ESS</th><th>Pareto k-hat</th>"
        f"{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="small">Weight ESS = (&sum;w)&sup2; / &sum;w&sup2; per repeat; Pareto k-hat from ArviZ\'s PSIS '
        f"(above {PARETO_K_THRESHOLD:g}: the weights are heavy-tailed and estimates unreliable; "
        "&ldquo;not estimable&rdquo;: too few distinct large weights to fit a tail).</p>"
    )


def _log_weight_figure(context: Context) -> str:
    log_weight = np.asarray(context.stat_values("log_weight"), dtype=np.float64)
    log_weight = log_weight.reshape(log_weight.shape[0], -1)[:MAX_PLOT_CHAINS]
    fig = figure(7.5, 2.8)
    ax = fig.subplots()
    margins(fig, left=0.5, top=0.15, bottom=0.55)
    for r, row in enumerate(log_weight):
        finite = row[np.isfinite(row)]
        if finite.size:
            ax.hist(finite - finite.max(), bins=40, histtype="step", color=CHAIN_COLOURS[r % len(CHAIN_COLOURS)])
    ax.set_xlabel("log-weight minus its repeat's largest", fontsize=9)
    ax.tick_params(labelsize=8)
    return (
        png(fig, "log-weights histogram")
        + '<p class="caption">Log-weights per repeat (one colour each). A long left tail is harmless; a few '
        "points far to the right of the bulk, near 0, carry most of the weight.</p>"
    )


PANEL = Panel(
    "evidence",
    "Importance weights and evidence (smc, cmcd, ais, variational methods)",
    render,
    stats=frozenset({"log_weight"}),
    attrs=frozenset(f"extra_{name}" for name in EXTRA_PER_REPEAT),
)
