"""Sampler statistics panel (every Markov chain method).

Per chain: the mean acceptance, the adapted step size, the tree depth and leapfrog steps (NUTS) and the number of
divergences.

Warm-up adapts the step size towards a target acceptance; a mean acceptance far from ``target_accept``, or chains with
very different step sizes, point at a warm-up that did not settle.
"""

from __future__ import annotations

import numpy as np

from samplax.infer.report.context import Context
from samplax.infer.report.html import esc, num
from samplax.infer.report.panels.base import Panel

__all__ = ["PANEL", "render"]

TITLES = {
    "acceptance_rate": "mean acceptance",
    "step_size": "step size (median)",
    "tree_depth": "mean tree depth",
    "n_steps": "mean leapfrog steps",
    "diverging": "divergences",
}
MAX_CHAINS = 32  # rows of the table


def render(context: Context) -> str | None:
    """One row per chain (at most `MAX_CHAINS`) with the statistics the fit has; None for non-Markov draws."""
    names = [n for n in TITLES if context.has_stat(n) and context.stat_values(n).ndim == 2]
    if not names or context.kind != "mcmc":
        return None
    values = {n: np.asarray(context.stat_values(n), dtype=np.float64) for n in names}
    rows = []
    for chain in range(min(context.chains, MAX_CHAINS)):
        cells = [f"<th>{chain}</th>"]
        for n in names:
            row = values[n][chain]
            value = (
                f"{int(row.sum())}"
                if n == "diverging"
                else num(np.median(row))
                if n == "step_size"
                else num(np.nanmean(row), 3)
            )
            cells.append(f'<td class="{"bad" if n == "diverging" and row.sum() else ""}">{value}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    target = context.options.get("target_accept")
    note = (
        f'<p class="small">Warm-up adapted the step size towards a mean acceptance of {esc(target)}; a mean '
        "far from it, or chains with very different step sizes, point at a warm-up that did not settle.</p>"
        if target is not None
        else ""
    )
    more = (
        f'<p class="small">Showing the first {MAX_CHAINS} of {context.chains} chains.</p>'
        if context.chains > MAX_CHAINS
        else ""
    )
    header = "".join(f"<th>{TITLES[n]}</th>" for n in names)
    return f"<table><thead><tr><th>chain</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>" + more + note


PANEL = Panel("sampler", "Sampler statistics", render, stats=frozenset(TITLES))
