"""The summary table: ArviZ's summary of every site shown, with the cells that fail a threshold marked.

Latent sites come first and are judged; deterministic sites follow, their cells that would fail marked as a note,
not a failure. The table is `diagnostics.summary` unrounded (ArviZ's two decimals would turn an R-hat of 1.013 into
a passing 1.01) plus bulk ESS per second; weighted draws show mean, sd, HDI and an approximate MCSE from the
importance-weight ESS, never R-hat. At most `MAX_TABLE_ROWS` rows: problems first (`problem_labels`, which the plots
use too).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from samplax.infer.report.context import ESS_THRESHOLD, RHAT_THRESHOLD, Context
from samplax.infer.report.html import esc, int_text, num, rhat_text

__all__ = ["MAX_TABLE_ROWS", "SUMMARY_COLUMNS", "problem_labels", "summary_html"]

MAX_TABLE_ROWS = 100  # rows of the summary table

SUMMARY_COLUMNS = (  # column, header, format, which draws kinds show it
    ("mean", "mean", "num", ("mcmc", "iid", "weighted")),
    ("sd", "sd", "num", ("mcmc", "iid", "weighted")),
    ("hdi_lower", "HDI low", "num", ("mcmc", "iid", "weighted")),
    ("hdi_upper", "HDI high", "num", ("mcmc", "iid", "weighted")),
    ("mcse_mean", "MCSE mean", "num", ("mcmc", "iid")),
    ("mcse_sd", "MCSE sd", "num", ("mcmc", "iid")),
    ("approx_mcse", "&asymp; MCSE mean", "num", ("weighted",)),
    ("ess_bulk", "ESS bulk", "int", ("mcmc", "iid")),
    ("ess_tail", "ESS tail", "int", ("mcmc", "iid")),
    ("r_hat", "R-hat", "rhat", ("mcmc",)),
    ("ess_bulk_per_s", "ESS bulk / s (whole fit)", "num", ("mcmc", "iid")),
    ("ess_bulk_per_sampling_s", "ESS bulk / s (sampling)", "num", ("mcmc", "iid")),
)


def summary_html(context: Context) -> str:
    """The table, its notes, or the error that kept it from being computed."""
    if context.table is None:
        return f'<p class="error">The summary could not be computed: {esc(context.table_error)}</p>'
    table = context.table.copy()
    hdi = [column for column in table.columns if column.startswith("hdi_")]
    hdi_header = ""
    if len(hdi) == 2:
        table = table.rename(columns={hdi[0]: "hdi_lower", hdi[1]: "hdi_upper"})
        hdi_header = f"{hdi[0][4:]}&ndash;{hdi[1][4:]}"
    if context.kind == "weighted" and context.weights is not None:
        table["approx_mcse"] = table["sd"] / math.sqrt(max(context.weights["ess"], 1.0))
    columns = [c for c in SUMMARY_COLUMNS if context.kind in c[3] and c[0] in table.columns]
    rows_shown = _rows_to_show(context, table)
    header = "".join(f"<th>{title}</th>" for _, title, _, _ in columns)
    rows = []
    in_deterministic = False
    for label in rows_shown:
        latent = context.is_latent(label)
        if not latent and not in_deterministic:
            in_deterministic = True
            rows.append(
                f'<tr class="group"><th colspan="{len(columns) + 1}">Deterministic sites: functions of the '
                "latent sites, reported but not judged</th></tr>"
            )
        cells = [f"<th>{esc(label)}</th>"]
        for column, _, fmt, _ in columns:
            value = table.at[label, column]
            flag = _flag(context, label, column)
            text = {"num": num, "int": int_text, "rhat": rhat_text}[fmt](value)
            if flag and not latent:
                flag += " (not judged: a deterministic site)"
            title = f' title="{flag}"' if flag else ""
            cells.append(f'<td class="{("bad" if latent else "note") if flag else ""}"{title}>{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = []
    if len(rows_shown) < len(table):
        notes.append(
            f"Showing {len(rows_shown)} of {len(table)} scalar parameters: the latent ones that fail a "
            "threshold first, then latent sites before deterministic ones, in the model's order. "
            "<code>fit.summary()</code> has them all."
        )
    notes.append(
        "Marked cells fail a threshold: "
        + (f"R-hat above {RHAT_THRESHOLD:g} or undefined, " if context.kind == "mcmc" else "")
        + f"bulk or tail ESS below {ESS_THRESHOLD}."
        + (
            " Cells of deterministic sites that would fail are marked as notes, not failures."
            if context.deterministic and context.kind != "weighted"
            else ""
        )
        + (f" HDI: highest-density interval {hdi_header}." if hdi_header else "")
        + " MCSE: Monte Carlo standard error. ESS bulk/s: bulk ESS per second of sampling (warm-up and "
        "compilation excluded)."
    )
    if context.kind == "weighted":
        notes[-1] = (
            "The mean, sd and HDI are of the draws in the posterior group as stored; ArviZ's ESS, MCSE "
            "and R-hat do not apply to weighted draws and are left out. &asymp; MCSE mean = sd / "
            "&radic;(importance-weight ESS)." + (f" HDI: {hdi_header}." if hdi_header else "")
        )
    if context.kind == "iid":
        notes.append("The draws are independent, so R-hat is left out.")
    return (
        f'<div class="scroll"><table class="summary"><thead><tr><th>parameter</th>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>" + "".join(f'<p class="small">{note}</p>' for note in notes)
    )


def _flag(context: Context, label: str, column: str) -> str:
    """Why a cell fails its threshold ('' when it passes).

    Undefined values (draws that do not vary) fail for latent sites only: a deterministic site may well be constant.
    """
    latent = context.is_latent(label)
    if column == "r_hat" and context.kind == "mcmc":
        value = float(context.table.at[label, "r_hat"])
        if value > RHAT_THRESHOLD or (latent and math.isnan(value)):
            return f"R-hat above {RHAT_THRESHOLD:g}" if math.isfinite(value) else "R-hat undefined"
    if column in ("ess_bulk", "ess_tail") and context.kind != "weighted":
        value = float(context.table.at[label, column])
        if value < ESS_THRESHOLD or (latent and math.isnan(value)):
            return f"ESS below {ESS_THRESHOLD}"
    return ""


def problem_labels(context: Context) -> list[str]:
    """Labels that fail a threshold, worst first (R-hat descending, then smallest ESS)."""
    if context.rhat is None or context.kind == "weighted":
        return []
    frame = pd.DataFrame({"rhat": context.rhat, "ess": np.minimum(context.ess_bulk, context.ess_tail)})
    rhat_bad = ~(frame["rhat"] <= RHAT_THRESHOLD) if context.kind == "mcmc" else False
    bad = frame[rhat_bad | ~(frame["ess"] >= ESS_THRESHOLD)]
    bad = bad.assign(
        rhat_key=bad["rhat"].fillna(np.inf) if context.kind == "mcmc" else 0.0, ess_key=bad["ess"].fillna(-np.inf)
    )
    return list(bad.sort_values(["rhat_key", "ess_key"], ascending=[False, True]).index)


def _rows_to_show(context: Context, table: pd.DataFrame) -> list[str]:
    """At most MAX_TABLE_ROWS labels in table order.

    Failing latent rows, the other latent rows, deterministic rows that would fail, then the rest.
    """
    labels = list(table.index)
    if len(labels) <= MAX_TABLE_ROWS:
        return labels
    deterministic = [label for label in labels if not context.is_latent(label)]
    noted = [
        label
        for label in deterministic
        if any(_flag(context, label, column) for column in ("r_hat", "ess_bulk", "ess_tail"))
    ]
    latent = [label for label in labels if context.is_latent(label)]
    chosen: dict[str, None] = {}
    for label in problem_labels(context) + latent + noted + deterministic:
        if len(chosen) >= MAX_TABLE_ROWS:
            break
        chosen[label] = None
    return [label for label in labels if label in chosen]
