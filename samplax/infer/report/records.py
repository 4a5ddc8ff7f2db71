"""The "Other records" section: every sample statistic and ``extra_*`` attribute that no section or panel reads.

A method may store any record; the ones the report has no panel for are summarised here (shape, min, mean, max over
all chains and draws), so nothing a method records is hidden. The names read are those of `CORE_STATS` (the checks
and the generic plots) and of each panel's ``stats`` and ``attrs``.
"""

from __future__ import annotations

import numpy as np

from samplax.infer import arviz_compat
from samplax.infer.report.context import Context
from samplax.infer.report.html import esc, num
from samplax.infer.report.panels import PANELS

__all__ = ["CORE_STATS", "other_records_html"]

CORE_STATS = frozenset({"diverging", "energy", "log_weight", "tree_depth"})  # read by the checks and generic plots


def other_records_html(context: Context) -> str | None:
    """A table of the records no panel reads, or None when there are none."""
    stats_read = CORE_STATS.union(*(panel.stats for panel in PANELS.values()))
    attrs_read = frozenset().union(*(panel.attrs for panel in PANELS.values()))
    rows = []
    if context.stats is not None:
        for name, da in context.stats.data_vars.items():
            if name in stats_read:
                continue
            rows.append(_record_row(f"sample_stats.{name}", np.asarray(da.values), da.dims))
    for name, value in arviz_compat.root_attrs(context.idata).items():
        if not str(name).startswith("extra_") or name in attrs_read:
            continue
        rows.append(_record_row(f"attrs.{name}", context.attr_array(name, raw=value), None))
    rows = [row for row in rows if row]
    if not rows:
        return None
    return (
        "<table><thead><tr><th>record</th><th>shape</th><th>min</th><th>mean</th><th>max</th></tr></thead>"
        f'<tbody>{"".join(rows)}</tbody></table><p class="small">Records this report has no panel for, '
        "summarised over all chains and draws.</p>"
    )


def _record_row(name: str, values, dims) -> str:
    if values is None:
        return ""
    values = np.asarray(values)
    shape = " &times; ".join(f"{esc(d)}={n}" for d, n in zip(dims, values.shape)) if dims else esc(values.shape)
    if values.dtype == bool:
        values = values.astype(np.float64)
    if not np.issubdtype(values.dtype, np.number) or values.size == 0:
        return f"<tr><th>{esc(name)}</th><td>{shape}</td><td colspan=3>(not numeric)</td></tr>"
    finite = values[np.isfinite(values)].astype(np.float64)
    cells = (num(finite.min()), num(finite.mean()), num(finite.max())) if finite.size else ("nan",) * 3
    return f"<tr><th>{esc(name)}</th><td>{shape}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
