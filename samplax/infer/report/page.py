"""The report page: its sections in order, and writing it to a file.

`render_report` builds the `Context` once and lays out the header, the verdict, the checks, the summary table, the
generic plots, each method panel of `PANELS`, the other records and the run details. Every section but the verdict is
guarded: a failure while drawing one becomes a note on the page.
"""

from __future__ import annotations

import json
import os
from typing import Any

from samplax.infer import arviz_compat
from samplax.infer.report.checks import checks_html, verdict_html
from samplax.infer.report.context import Context, as_fit
from samplax.infer.report.html import document, esc, guarded, seconds_text, section, short_list
from samplax.infer.report.panels import PANELS
from samplax.infer.report.plots import energy_html, pair_html, rank_html, trace_html
from samplax.infer.report.records import other_records_html
from samplax.infer.report.summary import summary_html

__all__ = ["render_report", "write_report"]


def write_report(fit: Any, path: str | os.PathLike, var_names: str | list[str] | None = None) -> str | os.PathLike:
    """Write the self-contained HTML report of ``fit`` to ``path``.

    The file is written to a temporary name and renamed, so a reader never sees half a page.

    Args:
        fit: a `samplax.Fit`, an ArviZ InferenceData or (ArviZ 1.x) an xarray DataTree.
        path: the HTML file to write.
        var_names: a site name or a list of them: only those sites in the verdict, checks, table and plots.

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` is a folder or its folder does not exist; ``fit`` is not a fit; a name in ``var_names``
            is not a site (the message lists the valid ones).
    """
    target = os.fspath(path)
    if not target or os.path.isdir(target):
        raise ValueError(f"path must name a file to write the report to, got {target!r}; for example 'report.html'")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ValueError(f"the folder {folder!r} for the report does not exist; create it first or pick another path")
    page = render_report(fit, var_names=var_names)
    partial = target + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(partial, target)
    return path


def render_report(fit: Any, var_names: str | list[str] | None = None) -> str:
    """The report of ``fit`` as one HTML string.

    Args:
        fit: a `samplax.Fit`, an ArviZ InferenceData or (ArviZ 1.x) an xarray DataTree.
        var_names: restricts the page to those sites, as in `write_report`.

    Returns:
        The whole page (inline CSS, embedded PNG figures, no JavaScript).
    """
    context = Context.build(as_fit(fit), var_names)
    body = [_header(context), section("verdict", "Verdict", verdict_html(context))]
    body.append(guarded("checks", "Checks", checks_html, context))
    body.append(guarded("summary", "Summary", summary_html, context))
    body.append(guarded("trace", "Trace plots", trace_html, context))
    if context.kind == "mcmc":
        body.append(guarded("rank", "Rank plots", rank_html, context))
    body.append(guarded("pair", "Pair plot", pair_html, context))
    body.append(guarded("energy", "Energy", energy_html, context))
    for panel in PANELS.values():
        body.append(guarded(panel.anchor, panel.title, panel.render, context))
    body.append(guarded("other", "Other records", other_records_html, context))
    body.append(guarded("run", "Run", _run_html, context))
    return document(context.method, [part for part in body if part])


def _header(context: Context) -> str:
    created = context.posterior.attrs.get("created_at", "")
    sites = list(context.posterior.data_vars)
    sites_text = esc(short_list([str(s) for s in sites], limit=8))
    nav = "".join(
        f'<a href="#{anchor}">{title}</a>'
        for anchor, title in (
            ("verdict", "verdict"),
            ("checks", "checks"),
            ("summary", "summary"),
            ("trace", "plots"),
            ("run", "run"),
        )
    )
    return (
        f"<header><h1>Diagnostics report: {esc(context.method)}</h1>"
        f'<p class="meta">{context.chains} chains &times; {context.draws} draws &middot; {len(sites)} '
        f"site{'s' if len(sites) != 1 else ''} ({sites_text}"
        + (f"; {len(context.deterministic)} deterministic" if context.deterministic else "")
        + f") &middot; {len(context.parameters)} scalar parameters"
        + (
            f" &middot; selected with var_names from "
            f"{len(arviz_compat.group(context.idata, 'posterior').data_vars)} sites"
            if context.var_names is not None
            else ""
        )
        + (f" &middot; fitted {esc(created)}" if created else "")
        + f"</p><nav>{nav}</nav></header>"
    )


def _run_html(context: Context) -> str:
    """Method, draws kind, chains x draws, seed, precision, times, the method's options and package versions."""
    fit, attrs = context.fit, arviz_compat.root_attrs(context.idata)
    rows = [
        ("method", esc(context.method)),
        ("draws kind", esc(context.kind)),
        ("chains &times; draws", f"{context.chains} &times; {context.draws}"),
    ]
    for name in ("seed", "precision"):
        if name in attrs:
            rows.append((name, esc(attrs[name])))
    timing = fit.timing or {}
    for name, title in (("compile_s", "compilation"), ("warmup_s", "warm-up"), ("sampling_s", "sampling")):
        if name in timing:
            rows.append((f"{title} time", seconds_text(timing[name])))
    options = context.options
    table = "".join(f"<tr><th>{title}</th><td>{value}</td></tr>" for title, value in rows)
    option_rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v, default=str))}</td></tr>" for k, v in sorted(options.items())
    )
    versions = attrs.get("versions")
    try:
        versions = json.loads(versions) if isinstance(versions, str) else (versions or {})
    except json.JSONDecodeError:
        versions = {}
    version_text = ", ".join(f"{esc(k)} {esc(v)}" for k, v in versions.items()) if isinstance(versions, dict) else ""
    return (
        f'<div class="columns"><div><h3>Settings and time</h3><table><tbody>{table}</tbody></table></div>'
        + (f"<div><h3>Method options</h3><table><tbody>{option_rows}</tbody></table></div>" if option_rows else "")
        + "</div>"
        + (f'<p class="small">Versions: {version_text}.</p>' if version_text else "")
    )
