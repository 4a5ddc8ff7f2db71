"""Proximal Langevin panel (bplmc, myula).

It shows the smoothing options, step sizes, rejected out-of-domain proposals and the norm of the envelope's gradient.

Both methods replace the nonsmooth part g of the potential by its (Bregman-)Moreau envelope (Lau and Liu 2022;
Durmus, Moulines and Pereyra 2018 for myula's Euclidean one); spikes in |grad envelope| mean the chain sits where the
smoothing is sharp.
"""

from __future__ import annotations

import numpy as np

from samplax.infer.report.context import Context
from samplax.infer.report.figures import CHAIN_COLOURS, figure, margins, png
from samplax.infer.report.html import esc, num, short_list
from samplax.infer.report.panels.base import Panel

__all__ = ["PANEL", "render"]

METHODS = ("bplmc", "myula")
OPTIONS = ("smoothing", "step_size", "side", "legendre", "adjusted")  # shown when the fit has them


def render(context: Context) -> str | None:
    """The settings table and the envelope-gradient plot.

    None unless the fit is one of `METHODS` or stores ``envelope_grad_norm``.
    """
    norm = context.stat_values("envelope_grad_norm")
    if norm is None and context.method not in METHODS:
        return None
    rows = []
    for name in OPTIONS:
        if name in context.options:
            rows.append(f"<tr><th>{name.replace('_', ' ')} (option)</th><td>{esc(context.options[name])}</td></tr>")
    step = context.stat_values("step_size")
    if step is not None:
        rows.append(
            f"<tr><th>step size per chain</th><td>{esc(short_list([num(np.median(row)) for row in step]))}</td></tr>"
        )
    out_of_domain = context.stat_values("out_of_domain")
    if out_of_domain is not None:
        rows.append(
            f"<tr><th>out-of-domain proposals per chain (rejected)</th><td>"
            f"{esc(short_list(np.asarray(out_of_domain).sum(axis=1).tolist()))}</td></tr>"
        )
    diverging = context.diverging()
    if diverging is not None:
        rows.append(
            f"<tr><th>divergent (non-finite, or out of domain when unadjusted) steps per chain</th><td>"
            f"{esc(short_list(diverging.sum(axis=1).tolist()))}</td></tr>"
        )
    parts = [f"<table><tbody>{''.join(rows)}</tbody></table>"] if rows else []
    if norm is not None and norm.ndim == 2:
        norm = np.asarray(norm, dtype=np.float64)
        fig = figure(7.5, 2.8)
        ax = fig.subplots()
        margins(fig, left=0.8, top=0.15, bottom=0.55)
        for c, chain in enumerate(context.chain_index):
            ax.plot(
                context.draw_index,
                norm[chain, context.draw_index],
                linewidth=0.7,
                color=CHAIN_COLOURS[c % len(CHAIN_COLOURS)],
            )
        finite = norm[np.isfinite(norm)]
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_xlabel("draw", fontsize=9)
        ax.set_ylabel("|grad envelope|", fontsize=9)
        ax.tick_params(labelsize=8)
        parts.append(
            png(fig, "envelope gradient norm")
            + '<p class="caption">Norm of the gradient of the (Bregman-)Moreau envelope per chain. Spikes '
            "mean the chain sits where the smoothing is sharp: smaller steps, or a larger smoothing, keep "
            "the unadjusted steps stable (at the price of more smoothing bias).</p>"
        )
    return "".join(parts) or None


# out_of_domain is shown here and, as before the split, also summarised under "Other records"
PANEL = Panel(
    "proximal",
    "Proximal Langevin (bplmc, myula)",
    render,
    stats=frozenset({"envelope_grad_norm", "step_size", "diverging"}),
)
