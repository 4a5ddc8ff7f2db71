"""Matplotlib figures for the report, drawn without pyplot and embedded as PNG data URIs.

Figures are `matplotlib.figure.Figure` objects on the Agg canvas: no pyplot state, and the user's backend is left
untouched. Margins are fixed in inches (constrained layout would dominate the drawing time).

    fig = figure(7.5, 2.8)
    ax = fig.subplots()
    margins(fig, left=0.8)
    ax.plot(...)
    html = png(fig, "what the figure shows")
"""

from __future__ import annotations

import base64
import io

from samplax.infer.report.html import esc

__all__ = ["CHAIN_COLOURS", "DIVERGENT_COLOUR", "FIGURE_DPI", "figure", "margins", "png"]

FIGURE_DPI = 80
CHAIN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DIVERGENT_COLOUR = "#d62728"


def figure(width: float, height: float):
    """A new ``width`` x ``height`` inch Figure on the Agg canvas (matplotlib is imported on first use)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    return fig


def margins(fig, *, left=0.6, right=0.2, top=0.35, bottom=0.45, hspace=0.55, wspace=0.25):
    """Fixed margins in inches (cheaper than constrained layout, which dominates the drawing time)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        hspace=hspace,
        wspace=wspace,
    )


def png(fig, alt: str) -> str:
    """The figure as an ``<img>`` tag with an embedded base64 PNG and the (escaped) alternative text ``alt``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{encoded}">'
