"""The verdict and the checks behind it: in plain words, whether a fit's draws can be trusted.

The verdict comes from `diagnostics.convergence_warnings` (Stan's advice: each problem with its next step), which
judges latent sites only; deterministic sites get one informational line. The checks compare the run with the
Stan/ArviZ thresholds of `context`: R-hat <= 1.01, bulk and tail ESS >= 400, no divergent transition after warm-up,
E-BFMI >= 0.3 (when ``sample_stats.energy`` exists). Weighted draws (independent repeats, not Markov chains) are
judged by the importance weights' ESS ``(sum w)^2 / sum w^2`` (>= 400) and Pareto k-hat (<= 0.7, Vehtari et al.
2024), never by R-hat. A failing "bias" check makes the draws untrustworthy; failing "noise" checks alone only make
them noisy ("use with caution").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from samplax.infer.report.context import BFMI_THRESHOLD, ESS_THRESHOLD, PARETO_K_THRESHOLD, RHAT_THRESHOLD, Context
from samplax.infer.report.html import esc, num, short_list

__all__ = ["Check", "checks", "checks_html", "verdict", "verdict_html"]


class Check(NamedTuple):
    """One row of the checks table."""

    name: str  # plain words (ours)
    value: str  # HTML (escaped)
    threshold: str  # HTML (ours)
    status: str  # "pass", "fail", "note" (worth a look, not a failure) or "info"
    kind: str = "bias"  # a failing "bias" check makes the draws untrustworthy; a failing "noise" check only noisy


def checks(context: Context) -> list[Check]:
    """Every check that applies to this fit, in the order the page lists them."""
    found = []
    nonfinite = [
        name
        for name in context.latent
        if np.issubdtype(context.posterior[name].dtype, np.number)
        and not np.isfinite(context.posterior[name].values).all()
    ]
    found.append(
        Check(
            "Non-finite draws",
            esc(", ".join(nonfinite)) if nonfinite else "none",
            "none",
            "fail" if nonfinite else "pass",
        )
    )
    diverging = context.diverging()
    if diverging is not None:
        count = int(diverging.sum())
        per_chain = diverging.sum(axis=1)
        value = f"{count} of {diverging.size} ({100.0 * count / diverging.size:.2g}%)"
        if count and context.chains > 1:
            value += f"; per chain {esc(short_list(per_chain.tolist()))}"
        what = "Divergent transitions after warm-up" if context.kind == "mcmc" else "Failed draws (flagged diverging)"
        found.append(Check(what, value, "0", "fail" if count else "pass"))
    if context.kind == "weighted":
        found.extend(_weight_checks(context))
    elif context.rhat is not None and len(context.rhat):
        if context.kind == "mcmc":
            found.append(
                _extreme_check(
                    "Largest R-hat",
                    context.rhat,
                    "max",
                    f"&le; {RHAT_THRESHOLD:g}",
                    lambda v: v <= RHAT_THRESHOLD,
                    "{:.3f}",
                    "bias",
                )
            )
        for name, series in (("Smallest bulk ESS", context.ess_bulk), ("Smallest tail ESS", context.ess_tail)):
            found.append(
                _extreme_check(
                    name, series, "min", f"&ge; {ESS_THRESHOLD:g}", lambda v: v >= ESS_THRESHOLD, "{:.0f}", "noise"
                )
            )
        if context.kind == "iid":
            total = context.chains * context.draws
            found.append(
                Check(
                    "Independent draws",
                    f"{total}",
                    f"&ge; {ESS_THRESHOLD:g}",
                    "pass" if total >= ESS_THRESHOLD else "fail",
                    "noise",
                )
            )
    if context.bfmi is not None and context.kind == "mcmc":
        finite = context.bfmi[np.isfinite(context.bfmi)]
        lowest = float(finite.min()) if finite.size else math.nan
        ok = bool(finite.size == context.bfmi.size and lowest >= BFMI_THRESHOLD)
        found.append(
            Check("Smallest E-BFMI (over chains)", num(lowest, 3), f"&ge; {BFMI_THRESHOLD:g}", "pass" if ok else "fail")
        )
    tree_depth, max_depth = context.stat_values("tree_depth"), context.options.get("max_tree_depth")
    if tree_depth is not None and isinstance(max_depth, (int, float)):
        hits = int((tree_depth >= max_depth).sum())
        found.append(
            Check(
                f"Draws that hit the maximum tree depth ({int(max_depth)})",
                f"{hits} of {tree_depth.size}",
                "few (efficiency, not validity)",
                "note" if hits else "pass",
            )
        )
    if context.ess_bulk is not None and context.sampling_seconds is not None and context.kind != "weighted":
        per_second = context.ess_bulk / context.sampling_seconds
        finite = per_second[np.isfinite(per_second)]
        if len(finite):
            found.append(
                Check(
                    "Smallest bulk ESS per second of sampling",
                    f"{num(finite.min())} ({esc(finite.idxmin())})",
                    "higher is faster",
                    "info",
                )
            )
    if context.deterministic:
        found.append(_deterministic_check(context))
    return found


def _deterministic_check(context: Context) -> Check:
    """One line for every deterministic site: described, not judged ("note" when some values would fail)."""
    size = sum(int(np.prod(context.posterior[name].shape[2:], dtype=np.int64)) for name in context.deterministic)
    value = f"{esc(short_list(context.deterministic, limit=5))} ({size} value{'s' if size != 1 else ''})"
    would_fail = 0
    if context.table is not None and context.kind == "mcmc":
        rows = context.table.loc[[label for label in context.table.index if not context.is_latent(label)]]
        would_fail = int(
            ((rows["r_hat"] > RHAT_THRESHOLD) | (np.fmin(rows["ess_bulk"], rows["ess_tail"]) < ESS_THRESHOLD)).sum()
        )
        if would_fail:
            value += f"; {would_fail} would fail R-hat or ESS"
    return Check(
        "Deterministic sites (functions of the latent sites)", value, "not judged", "note" if would_fail else "info"
    )


def _weight_checks(context: Context) -> list[Check]:
    if context.weights is None:
        reason = context.weights_error or "sample_stats has no log_weight"
        return [Check("Importance weights", esc(reason), "usable log-weights", "fail")]
    weights = context.weights
    total = weights["num_repeats"] * weights["num_draws"]
    k_max = weights["pareto_k_max"]
    found = [
        Check(
            "Importance-weight ESS",
            f"{weights['ess']:.0f} of {total} draws ({100 * weights['ess_fraction']:.3g}%)",
            f"&ge; {ESS_THRESHOLD:g}",
            "pass" if weights["ess"] >= ESS_THRESHOLD else "fail",
            "noise",
        ),
        Check(
            "Largest Pareto k-hat (over repeats)",
            num(k_max, 3) if not math.isnan(k_max) else "not estimable",
            f"&le; {PARETO_K_THRESHOLD:g}",
            "fail" if k_max > PARETO_K_THRESHOLD else "pass",
        ),
    ]
    if context.rhat is not None and len(context.ess_bulk):
        found.append(Check("R-hat", "not used", "&mdash;", "info"))
    return found


def _extreme_check(name, series, which, threshold, ok, fmt, kind) -> Check:
    undefined = series[series.isna()]
    if len(undefined):
        return Check(
            name,
            f"undefined for {len(undefined)} parameter(s), e.g. {esc(undefined.index[0])}",
            threshold,
            "fail",
            "bias",
        )
    label = series.idxmax() if which == "max" else series.idxmin()
    value = float(series[label])
    return Check(name, f"{fmt.format(value)} ({esc(label)})", threshold, "pass" if ok(value) else "fail", kind)


def verdict(context: Context) -> tuple[str, str, list[str]]:
    """(level, headline, reasons as HTML): level is "good", "caution" or "bad"."""
    if context.messages_error is not None:
        return ("bad", "Not trustworthy: the diagnostics could not be computed.", [esc(context.messages_error)])
    failing = [check for check in checks(context) if check.status == "fail"]
    reasons = [esc(message) for message in context.messages]
    if not reasons:
        reasons = [f"{check.name}: {check.value} (threshold {check.threshold})." for check in failing]
    if not reasons:
        return "good", "Trustworthy: no diagnostic found a problem with these draws.", [_good_reason(context)]
    if failing and all(check.kind == "noise" for check in failing):
        return (
            "caution",
            "Use with caution: no sign of bias, but too few effective draws, so estimates are noisy.",
            reasons,
        )
    return "bad", "Not trustworthy: do not use these draws as they are.", reasons


def _good_reason(context: Context) -> str:
    parts = []
    if context.kind == "mcmc" and context.rhat is not None and len(context.rhat):
        parts.append(
            f"all {context.chains} chains agree (largest R-hat {context.rhat.max():.3f}, at most {RHAT_THRESHOLD:g})"
        )
        parts.append(
            f"every {'latent ' if context.deterministic else ''}parameter has bulk and tail ESS of at "
            f"least {ESS_THRESHOLD} (smallest "
            f"{min(context.ess_bulk.min(), context.ess_tail.min()):.0f})"
        )
    if context.kind == "weighted" and context.weights is not None:
        parts.append(
            f"the importance weights keep an ESS of {context.weights['ess']:.0f} draws (at least "
            f"{ESS_THRESHOLD}) and their largest Pareto k-hat is "
            f"{num(context.weights['pareto_k_max'], 3)} (at most {PARETO_K_THRESHOLD:g}); R-hat is not "
            "used because the chains are independent repeats, not Markov chains"
        )
    if context.kind == "iid":
        parts.append(f"the {context.chains * context.draws} draws are independent (R-hat is not used)")
    if not context.latent:
        parts.append("no latent site is among the sites shown, so only the checks of the whole run apply")
    diverging = context.diverging()
    if diverging is not None:
        parts.append(f"none of the {diverging.size} transitions diverged")
    if context.bfmi is not None and context.kind == "mcmc":
        parts.append(f"E-BFMI is at least {BFMI_THRESHOLD:g} in every chain (smallest {np.min(context.bfmi):.2f})")
    if not parts:
        return "No warning was raised."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def verdict_html(context: Context) -> str:
    """The verdict box: headline, reasons, the thresholds used and the deterministic-site note."""
    level, headline, reasons = verdict(context)
    kind_note = {
        "mcmc": "Markov chains",
        "weighted": "weighted draws (independent repeats)",
        "iid": "independent draws",
    }[context.kind]
    items = "".join(f"<li>{reason}</li>" for reason in reasons)
    return (
        f'<div class="verdict {level}"><p class="headline">{esc(headline)}</p>'
        f'<p class="why">{"Why" if level != "good" else "Because"}:</p><ul>{items}</ul>'
        f'<p class="small">Judged as {kind_note}, with Stan/ArviZ thresholds: '
        + (
            f"R-hat &le; {RHAT_THRESHOLD:g}, bulk and tail ESS &ge; {ESS_THRESHOLD}, no divergent transitions, "
            f"E-BFMI &ge; {BFMI_THRESHOLD:g}."
            if context.kind == "mcmc"
            else f"importance-weight ESS &ge; {ESS_THRESHOLD}, Pareto k-hat &le; {PARETO_K_THRESHOLD:g}."
            if context.kind == "weighted"
            else f"ESS &ge; {ESS_THRESHOLD}."
        )
        + "</p>"
        + (f'<p class="small deterministic">{esc(context.note)}</p>' if context.note else "")
        + "</div>"
    )


def checks_html(context: Context) -> str:
    """The checks as a table, one row per check with its status."""
    rows = []
    for check in checks(context):
        mark = {"pass": "ok", "fail": "FAIL", "note": "note", "info": ""}[check.status]
        rows.append(
            f'<tr class="{check.status}"><td>{esc(check.name)}</td><td>{check.value}</td>'
            f'<td>{check.threshold}</td><td class="status">{mark}</td></tr>'
        )
    return (
        '<table class="checks"><thead><tr><th>check</th><th>value</th><th>threshold</th><th></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
