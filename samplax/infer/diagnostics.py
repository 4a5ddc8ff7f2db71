"""Scoring a fit: ArviZ diagnostics, convergence warnings and reference checks.

Importance weights live in `samplax.infer.weights` and the kernel Stein discrepancy in `samplax.infer.stein`;
both are re-exported here, where users have always found them.

Everything here reads an ArviZ ``InferenceData`` or, under ArviZ 1.x, an ``xarray.DataTree`` (posterior with dims
``chain, draw, *site dims``; sample_stats with ``diverging``, ``acceptance_rate``, ``step_size``, maybe ``energy`` and
``log_weight``) or plain arrays. ESS, R-hat, MCSE, PSIS and E-BFMI come from ArviZ (summary, ess, rhat, mcse,
psislw, bfmi), called through `samplax.infer.arviz_compat` so that ArviZ 0.x and 1.x give the same results here;
this module adds what ArviZ does not have:

- ``summary``: ArviZ's summary plus bulk ESS per second of sampling.
- ``importance_diagnostics`` (`samplax.infer.weights`): the effective sample size and Pareto k-hat of
  importance weights.
- ``kernel_stein_discrepancy`` (`samplax.infer.stein`): the IMQ kernel Stein discrepancy of draws.
- ``compare_to_reference`` / ``compare_log_evidence``: estimates against known answers in units of their
  Monte Carlo standard error.
- ``convergence_warnings``: Stan-style plain-English warnings, each naming the problem and the next step.
- ``site_roles`` / ``deterministic_note``: which posterior sites are latent (sampled) and which deterministic
  (functions of the latent sites, ``numpyro.deterministic``), and the one line that describes the latter.

Latent and deterministic sites: a deterministic site is a function of the latent sites, so its R-hat and ESS say
nothing about whether the sampler converged that the latent sites do not already say, and a 150-element derived
vector would otherwise flood the warnings. ``convergence_warnings`` and the report's verdict judge latent sites only;
``deterministic_note`` describes the deterministic ones in one informational line; ``summary`` lists latent sites
first, then deterministic ones. A fit records its deterministic sites as ``attrs["deterministic_sites"]`` (a JSON list
of names); without that attribute (old files, other libraries' InferenceData) every posterior variable is latent.

Weighted and i.i.d. draws (variational, importance-sampling and SMC methods: ``sample_stats.log_weight``
present, or ``attrs["draws_kind"]`` in ``{"iid", "weighted"}``) are judged by their importance weights, not by
R-hat: their chains are independent repeats, not Markov chains.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from samplax.infer import arviz_compat
from samplax.infer.stein import kernel_stein_discrepancy
from samplax.infer.weights import PARETO_K_UNRELIABLE, importance_diagnostics
from samplax.infer.weights import log_weights_of as _log_weights
from samplax.infer.weights import weighted_moments as _weighted_moments

__all__ = [
    "summary",
    "site_roles",
    "deterministic_note",
    "importance_diagnostics",
    "kernel_stein_discrepancy",
    "compare_to_reference",
    "compare_log_evidence",
    "convergence_warnings",
    "draws_kind",
]

SAMPLE_DIMS = ("chain", "draw")


# --------------------------------------------------------------------------------------------- summary


def summary(
    idata: Any,
    *,
    sampling_seconds: float | None = None,
    wall_seconds: float | None = None,
    var_names: str | list[str] | None = None,
    hdi_prob: float = 0.94,
    round_to: int | str | None = None,
) -> pd.DataFrame:
    """ArviZ's summary (mean, sd, HDI, MCSE, bulk/tail ESS, R-hat) plus ESS per second.

    ``ess_bulk_per_s`` divides by ``wall_seconds``, the whole fit's wall time (tracing, compiling, warm-up,
    sampling, post-processing: what a user waits for, and the figure to compare methods by);
    ``ess_bulk_per_sampling_s`` divides by the sampling phase alone (the kernel's own speed). When None they are read
    from samplax's ``attrs["timing"]`` (``total_s``, ``sampling_s``; ArviZ's posterior ``sampling_time`` for the
    sampling phase), else NaN.

    Rows list the latent sites first, then the deterministic ones (see ``site_roles``), each group in the
    posterior's order. ``var_names`` (a site name or a list of them) keeps only those sites, in the same order; an
    unknown name is a ``ValueError`` that lists the posterior's sites. ``round_to`` is passed to ArviZ's summary
    (None: two decimals; ``"none"``: unrounded). The columns are the same under ArviZ 0.x and 1.x
    (``arviz_compat.summary``): ``mean, sd, hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat``.

    ``sampling_seconds`` is the wall time of the sampling phase (warm-up excluded); when it is None it is read
    from the attributes if present (samplax's ``attrs["timing"]["sampling_s"]``, or ArviZ's posterior
    ``sampling_time``), else ``ess_bulk_per_s`` is NaN. For weighted draws the ArviZ columns ignore the weights: use ``importance_diagnostics`` and
    ``compare_to_reference`` for those fits.
    """
    posterior = _posterior(idata)
    if not 0.0 < hdi_prob < 1.0:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob!r}; pass for example hdi_prob=0.94")
    if sampling_seconds is None:
        sampling_seconds = _recorded_sampling_seconds(idata, posterior)
    if wall_seconds is None:
        wall_seconds = _recorded_timing(idata).get("total_s")
    for name, value in (("sampling_seconds", sampling_seconds), ("wall_seconds", wall_seconds)):
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0.0):
            raise ValueError(
                f"{name} must be a positive number of seconds, got {value!r}; pass the wall time (for example "
                "fit.timing['sampling_s'] or fit.timing['total_s']) or None"
            )
    latent, deterministic = site_roles(idata, var_names=var_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = arviz_compat.summary(posterior[latent + deterministic], hdi_prob=hdi_prob, round_to=round_to)
    table["ess_bulk_per_s"] = table["ess_bulk"] / (np.nan if wall_seconds is None else float(wall_seconds))
    table["ess_bulk_per_sampling_s"] = table["ess_bulk"] / (
        np.nan if sampling_seconds is None else float(sampling_seconds)
    )
    return table


def _recorded_timing(idata: Any) -> dict:
    """The fit's ``attrs["timing"]`` (samplax's) as a dict (empty when absent or unreadable)."""
    timing = (getattr(idata, "attrs", None) or {}).get("timing")
    if isinstance(timing, str):
        try:
            timing = json.loads(timing)
        except ValueError:
            timing = None
    return dict(timing) if isinstance(timing, Mapping) else {}


def _recorded_sampling_seconds(idata: Any, posterior: xr.Dataset) -> float | None:
    return _recorded_timing(idata).get("sampling_s") or posterior.attrs.get("sampling_time")


# ---------------------------------------------------------------------------- reference comparisons


def compare_to_reference(
    idata: Any,
    mean: Mapping[str, Any],
    sd: Mapping[str, Any] | None = None,
    *,
    log_weights: Any = None,
) -> pd.DataFrame:
    """Posterior means and sds against reference values, in units of their Monte Carlo standard errors.

    ``mean`` (and ``sd``, optional) map site names to reference values of the site's shape (scalars
    broadcast). One row per scalar coordinate, labelled like ArviZ's summary (``theta[0]``), with columns
    ``estimate``, ``mcse``, ``reference``, ``standardised_error = (estimate - reference) / mcse`` and
    ``sd``, ``sd_mcse``, ``reference_sd``, ``sd_standardised_error``, ``relative_sd_error =
    (sd - reference_sd) / reference_sd``. For a correct sampler the standardised errors are roughly N(0, 1);
    |value| > 4 is a red flag.

    By default the posterior draws count equally and the MCSEs come from ArviZ's mcse (MCMC and i.i.d. draws,
    and resampled draws such as samplax's SMC posterior group). Pass ``log_weights`` of shape ``(chain,
    draw)`` when the posterior holds the weighted draws themselves: then the estimates are self-normalised
    within each repeat (chain) and averaged over repeats, with the delta-method MCSE
    ``sqrt(sum_i w_i^2 (x_i - mean)^2)`` per repeat. (``sample_stats.log_weight`` is not used implicitly: a
    fit may store the weights of particles that it has already resampled into the posterior.)
    """
    posterior = _posterior(idata)
    if not isinstance(mean, Mapping) or not mean:
        raise ValueError("mean must be a non-empty dict mapping site names to reference means")
    if sd is not None and not isinstance(sd, Mapping):
        raise ValueError("sd must be a dict mapping site names to reference standard deviations, or None")
    _check_var_names(posterior, list(mean) + list(sd or {}))
    log_weight = None if log_weights is None else np.asarray(log_weights, dtype=np.float64)
    rows, labels = [], []
    for name, ref_mean in mean.items():
        da = posterior[name]
        site_shape = da.shape[2:]
        ref_mean = _broadcast_reference(ref_mean, site_shape, name, "mean")
        ref_sd = (
            _broadcast_reference(sd[name], site_shape, name, "sd")
            if sd is not None and name in sd
            else np.full(site_shape, np.nan)
        )
        if log_weight is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                estimate = da.mean(SAMPLE_DIMS).values
                est_sd = da.std(SAMPLE_DIMS, ddof=1).values
                mcse = arviz_compat.mcse(da.to_dataset(name=name), method="mean")[name].values
                sd_mcse = arviz_compat.mcse(da.to_dataset(name=name), method="sd")[name].values
        else:
            estimate, est_sd, mcse, sd_mcse = _weighted_moments(da.values, log_weight)
        for index, label in _scalar_labels(da):
            ref_m, ref_s = float(ref_mean[index]), float(ref_sd[index])
            est, err, s_est, s_err = (float(np.asarray(a)[index]) for a in (estimate, mcse, est_sd, sd_mcse))
            labels.append(label)
            rows.append(
                {
                    "estimate": est,
                    "mcse": err,
                    "reference": ref_m,
                    "standardised_error": _ratio(est - ref_m, err),
                    "sd": s_est,
                    "sd_mcse": s_err,
                    "reference_sd": ref_s,
                    "sd_standardised_error": _ratio(s_est - ref_s, s_err),
                    "relative_sd_error": (s_est - ref_s) / ref_s if ref_s != 0 else np.nan,
                }
            )
    return pd.DataFrame(rows, index=labels)


def compare_log_evidence(value: float, se: float, reference: float) -> dict[str, float | bool]:
    """A log-evidence estimate against a reference value: ``z = (value - reference) / se``.

    Returns ``value``, ``se``, ``reference``, ``error`` (value - reference), ``z`` and ``consistent``
    (``|z| <= 3``). ``se = 0`` gives ``z = +-inf`` unless the error is exactly zero.
    """
    value, se, reference = float(value), float(se), float(reference)
    if not (math.isfinite(se) and se >= 0.0):
        raise ValueError(
            f"se must be a finite non-negative standard error, got {se!r}; estimate it from the spread over "
            "independent repeats (chains)"
        )
    if not (math.isfinite(value) and math.isfinite(reference)):
        raise ValueError(f"value and reference must be finite, got value={value!r}, reference={reference!r}")
    error = value - reference
    z = _ratio(error, se)
    return {"value": value, "se": se, "reference": reference, "error": error, "z": z, "consistent": abs(z) <= 3.0}


# ------------------------------------------------------------------------------ convergence warnings


def draws_kind(idata: Any) -> str:
    """``"weighted"``, ``"iid"`` or ``"mcmc"``: how a fit's draws must be judged.

    ``attrs["draws_kind"]`` (on the InferenceData or its posterior) wins; otherwise a ``log_weight`` sample
    statistic means weighted draws; otherwise the draws are treated as Markov chains.
    """
    posterior = _posterior(idata)
    for attrs in (getattr(idata, "attrs", None) or {}, posterior.attrs):
        kind = attrs.get("draws_kind")
        if kind is not None:
            if kind not in ("mcmc", "iid", "weighted"):
                raise ValueError(f"attrs['draws_kind'] must be 'mcmc', 'iid' or 'weighted', got {kind!r}")
            return kind
    return "weighted" if _log_weights(idata) is not None else "mcmc"


def method_warnings(idata: Any) -> list[str]:
    """The warnings a method's own check recorded in ``attrs["extra_method_warnings"]``.

    A JSON list of strings (mixflow's flow-length and moment checks write it); empty when absent or unreadable.
    """
    value = (getattr(idata, "attrs", None) or {}).get("extra_method_warnings")
    try:
        messages = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return []
    return [str(m) for m in messages] if isinstance(messages, list) else []


def site_roles(idata: Any, var_names: str | list[str] | None = None) -> tuple[list[str], list[str]]:
    """``(latent_names, deterministic_names)``: the posterior's sites split by role, each in the posterior's order.

    Deterministic sites are those named in ``attrs["deterministic_sites"]`` (a JSON list of names, recorded by
    ``samplax.fit``; on the InferenceData or its posterior group); names there that the posterior lacks are
    ignored. Without the attribute (old files, other libraries' InferenceData) every posterior variable is latent.
    ``var_names`` (a site name or a list of them) keeps only those sites; an unknown name is a ``ValueError`` that
    lists the valid ones.
    """
    posterior = _posterior(idata)
    selected = _check_var_names(posterior, var_names)
    deterministic_attr = _deterministic_attr(idata, posterior)
    names = [str(name) for name in posterior.data_vars if selected is None or name in selected]
    latent = [name for name in names if name not in deterministic_attr]
    deterministic = [name for name in names if name in deterministic_attr]
    return latent, deterministic


def _deterministic_attr(idata: Any, posterior: xr.Dataset) -> set[str]:
    for attrs in (getattr(idata, "attrs", None) or {}, posterior.attrs):
        value = attrs.get("deterministic_sites")
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(
                    f"attrs['deterministic_sites'] must be a JSON list of site names, got {value!r}"
                ) from None
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
            raise ValueError(f"attrs['deterministic_sites'] must be a JSON list of site names, got {value!r}")
        return set(value)
    return set()


def convergence_warnings(
    idata: Any,
    *,
    ess_threshold: float = 400,
    rhat_threshold: float = 1.01,
    bfmi_threshold: float = 0.3,
    var_names: str | list[str] | None = None,
) -> list[str]:
    """Plain-English warnings about a fit, each naming the problem and the next step. Empty when all is well.

    Markov chains: divergences after warm-up (``sample_stats.diverging``), R-hat above ``rhat_threshold``,
    bulk or tail ESS below ``ess_threshold``, E-BFMI below ``bfmi_threshold`` (when ``sample_stats.energy``
    exists). Weighted draws: importance-weight ESS below ``ess_threshold`` and Pareto k-hat above 0.7. I.i.d.
    draws: fewer than ``ess_threshold`` draws. Any kind: non-finite draws. The kind comes from ``draws_kind``.

    Only latent sites are judged (``site_roles``): deterministic sites are functions of them, and
    ``deterministic_note`` describes them in one informational line instead. ``var_names`` (a site name or a list
    of them) restricts the per-site checks (non-finite draws, R-hat, ESS) to those sites; the checks of the whole
    run (divergences, E-BFMI, importance weights, the number of i.i.d. draws) concern every site and always apply.
    """
    posterior = _posterior(idata)
    _check_thresholds(ess_threshold, rhat_threshold, bfmi_threshold)
    latent, _ = site_roles(idata, var_names=var_names)
    stats = arviz_compat.group(idata, "sample_stats")
    kind = draws_kind(idata)
    messages: list[str] = []

    bad_sites = _nonfinite_sites(posterior, latent)
    if bad_sites:
        messages.append(
            f"Posterior draws of {_name_list(bad_sites)} contain NaN or infinite values: the sampler failed "
            "numerically. Check the model's log-density for overflow, try precision='float64', or take smaller "
            "steps."
        )
    messages.extend(method_warnings(idata))

    if kind == "mcmc" and stats is not None and "diverging" in stats:
        diverging = np.asarray(stats["diverging"].values, dtype=bool)
        num_divergent = int(diverging.sum())
        if num_divergent:
            messages.append(
                f"{num_divergent} of {diverging.size} transitions after warm-up were divergent "
                f"({100.0 * num_divergent / diverging.size:.2g}%): the sampler could not follow the posterior's "
                "curvature, so the draws may be biased. Raise the target acceptance rate (for example to 0.95) "
                "to take smaller steps, or reparameterise the model (for example a non-centred hierarchical "
                "prior)."
            )

    if kind == "weighted":
        log_weight = _log_weights(idata)
        if log_weight is None:
            messages.append(
                "The fit says its draws are weighted but sample_stats has no log_weight: the draws cannot be "
                "judged. Keep the importance log-weights in sample_stats['log_weight']."
            )
            return messages
        weights = importance_diagnostics(log_weight)
        total = weights["num_repeats"] * weights["num_draws"]
        if weights["ess"] < ess_threshold:
            messages.append(
                f"The importance weights' ESS is {weights['ess']:.0f} of {total} draws (below {ess_threshold:g}): "
                "a few draws carry most of the weight, so estimates are noisy. Draw more (increase draws or "
                "chains) or improve the proposal (more warm-up, tempering or optimisation steps)."
            )
        k = weights["pareto_k"]
        # With nearly uniform weights (ESS above 90 % of the draws) the generalised Pareto fit to the largest
        # weights is noise: ArviZ then returns k-hat > 1 for weights that are fine (seen on conjugate models).
        nearly_uniform = np.asarray(weights["ess_per_repeat"]) > 0.9 * weights["num_draws"]
        unreliable = (k > PARETO_K_UNRELIABLE) & ~nearly_uniform
        if unreliable.any():
            messages.append(
                f"Pareto k-hat is above {PARETO_K_UNRELIABLE} in {int(unreliable.sum())} of {k.size} repeats "
                f"(worst {weights['pareto_k_max']:.2f}): the importance weights are heavy-tailed, so estimates "
                "and their standard errors are unreliable. Improve the proposal (more warm-up, tempering or "
                "optimisation steps) rather than drawing more."
            )
        return messages

    if kind == "iid":
        total = posterior.sizes["chain"] * posterior.sizes["draw"]
        if total < ess_threshold:
            messages.append(
                f"Only {total} independent draws (below {ess_threshold:g}): Monte Carlo errors are large. "
                "Run more draws."
            )
        return messages

    finite_sites = [name for name in latent if name not in bad_sites]
    rhat, ess_bulk, ess_tail = _chain_scores(posterior, finite_sites)

    high_rhat = rhat[~(rhat <= rhat_threshold)]
    if len(high_rhat):
        undefined = high_rhat[high_rhat.isna()]
        finite = high_rhat.dropna()
        if len(finite):
            messages.append(
                f"R-hat is above {rhat_threshold:g} for {len(finite)} parameter(s) (worst: {finite.idxmax()} = "
                f"{finite.max():.3g}): the chains disagree, so they have not converged to one distribution. Run "
                "longer chains (more warm-up and draws), and check for multiple modes or a poorly identified "
                "model."
            )
        if len(undefined):
            messages.append(
                f"R-hat cannot be computed for {_name_list(list(undefined.index))}: the draws do not vary, so the "
                "chains did not move. Check the initial values and the step size, then run longer chains."
            )
    for label, ess, meaning in (
        ("Bulk", ess_bulk, "posterior means and medians"),
        ("Tail", ess_tail, "posterior intervals (tail quantiles)"),
    ):
        low = ess[ess < ess_threshold]  # NaN (draws that do not vary) is reported with R-hat above
        if len(low):
            messages.append(
                f"{label} ESS is below {ess_threshold:g} for {len(low)} parameter(s) (lowest: {low.idxmin()} = "
                f"{low.min():.0f}): estimates of {meaning} are unreliable. Run more draws (or more chains) until "
                f"the {label.lower()} ESS exceeds {ess_threshold:g}."
            )

    if stats is not None and "energy" in stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bfmi = arviz_compat.bfmi(stats)
        low_chains = np.flatnonzero(~(bfmi >= bfmi_threshold))
        if low_chains.size:
            messages.append(
                f"E-BFMI is below {bfmi_threshold:g} in chain(s) {low_chains.tolist()} (lowest "
                f"{np.nanmin(bfmi) if np.isfinite(bfmi).any() else float('nan'):.2f}): momentum resampling barely "
                "changes the energy, so the chains explore the tails slowly. Reparameterise the model (for example "
                "non-centred) or run a longer warm-up to adapt the mass matrix."
            )
    return messages


def deterministic_note(
    idata: Any,
    *,
    ess_threshold: float = 400,
    rhat_threshold: float = 1.01,
    var_names: str | list[str] | None = None,
) -> str | None:
    """The one informational line about a fit's deterministic sites, or None when it has none (see ``site_roles``).

    Deterministic sites are functions of the latent sites, so they are described, never judged: the line names
    them and counts their scalar values, and, for Markov chains, says how many values have R-hat above
    ``rhat_threshold`` or bulk/tail ESS below ``ess_threshold`` (a low ESS of a derived quantity makes its own
    estimates noisy, though the latent sites passed); for any kind it names deterministic sites with non-finite
    values. ``var_names`` keeps only those sites, as in ``convergence_warnings``.
    """
    posterior = _posterior(idata)
    _check_thresholds(ess_threshold, rhat_threshold)
    _, deterministic = site_roles(idata, var_names=var_names)
    if not deterministic:
        return None
    kind = draws_kind(idata)
    size = sum(int(np.prod(posterior[name].shape[2:], dtype=np.int64)) for name in deterministic)
    judged = "their R-hat and ESS are" if kind == "mcmc" else "their diagnostics are"
    text = (
        f"Deterministic sites ({_plain_list(deterministic)}: {size} value{'s' if size != 1 else ''}) are "
        f"functions of the latent sites: {judged} reported in the summary but not judged."
    )
    notes = []
    nonfinite = _nonfinite_sites(posterior, deterministic)
    if nonfinite:
        notes.append(
            f"{_plain_list(nonfinite)} contain{'s' if len(nonfinite) == 1 else ''} NaN or infinite values "
            "(the deterministic expression overflows or is undefined at some draws)"
        )
    if kind == "mcmc":
        rhat, ess_bulk, ess_tail = _chain_scores(posterior, [n for n in deterministic if n not in nonfinite])
        ess = np.fmin(ess_bulk, ess_tail)
        failing = (rhat > rhat_threshold) | (ess < ess_threshold)  # NaN: a constant value, nothing to judge
        if failing.any():
            worst = (
                f"largest R-hat: {rhat.idxmax()} = {rhat.max():.3f}"
                if (rhat > rhat_threshold).any()
                else f"lowest ESS: {ess.idxmin()} = {ess.min():.0f}"
            )
            count = int(failing.sum())
            notes.append(
                f"{count} of the {size} values {'has' if count == 1 else 'have'} R-hat above "
                f"{rhat_threshold:g} or bulk/tail ESS below {ess_threshold:g} ({worst}); if you report "
                "them, run more draws until they pass"
            )
    if notes:
        text += " For information: " + "; ".join(notes) + "."
    return text


# ------------------------------------------------------------------------------------------ helpers


def _posterior(idata: Any) -> xr.Dataset:
    posterior = arviz_compat.group(idata, "posterior")
    if posterior is None:
        raise ValueError(
            "idata has no posterior group; pass the InferenceData (a DataTree under ArviZ 1.x) of a fit "
            "(fit.idata) or build one with arviz.from_dict"
        )
    missing = [dim for dim in SAMPLE_DIMS if dim not in posterior.dims]
    if missing:
        raise ValueError(f"the posterior group must have dims ('chain', 'draw', ...); missing {missing}")
    return posterior


def _check_var_names(posterior: xr.Dataset, var_names: str | list[str] | None) -> list[str] | None:
    """``var_names`` as a list (a single name becomes a one-element list), or None; unknown names are an error."""
    if var_names is None:
        return None
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    if not names:
        raise ValueError(
            f"var_names is empty; name at least one of {sorted(map(str, posterior.data_vars))}, or "
            "pass None for every site"
        )
    unknown = [name for name in names if name not in posterior.data_vars]
    if unknown:
        raise ValueError(f"unknown variable(s) {unknown}; the posterior has {sorted(map(str, posterior.data_vars))}")
    return names


def _check_thresholds(ess_threshold: float, rhat_threshold: float, bfmi_threshold: float = 0.3) -> None:
    if not ess_threshold > 0:
        raise ValueError(f"ess_threshold must be positive, got {ess_threshold!r}")
    if not rhat_threshold > 1.0:
        raise ValueError(f"rhat_threshold must exceed 1, got {rhat_threshold!r}; Stan's default is 1.01")
    if not bfmi_threshold > 0:
        raise ValueError(f"bfmi_threshold must be positive, got {bfmi_threshold!r}; the usual value is 0.3")


def _nonfinite_sites(posterior: xr.Dataset, names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if np.issubdtype(posterior[name].dtype, np.number) and not np.isfinite(posterior[name].values).all()
    ]


def _chain_scores(posterior: xr.Dataset, names: list[str]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """R-hat, bulk ESS and tail ESS of every scalar coordinate of the named sites (empty series for no names)."""
    if not names:
        empty = pd.Series([], dtype=np.float64)
        return empty, empty.copy(), empty.copy()
    subset = posterior[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            _scalar_series(arviz_compat.rhat(subset)),
            _scalar_series(arviz_compat.ess(subset, method="bulk")),
            _scalar_series(arviz_compat.ess(subset, method="tail")),
        )


def _broadcast_reference(value: Any, shape: tuple[int, ...], name: str, what: str) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(value, shape)
    except ValueError:
        raise ValueError(
            f"reference {what} for site {name!r} has shape {value.shape}, but the site has shape {shape}; pass "
            "one value per coordinate (or a scalar)"
        ) from None


def _scalar_labels(da: xr.DataArray):
    """``(index, label)`` for each scalar coordinate of a site, labelled the way ArviZ's summary does."""
    site_dims = [dim for dim in da.dims if dim not in SAMPLE_DIMS]
    coords = [da.coords[dim].values if dim in da.coords else np.arange(da.sizes[dim]) for dim in site_dims]
    for index in np.ndindex(*[da.sizes[dim] for dim in site_dims]):
        if index:
            yield index, f"{da.name}[{', '.join(str(coord[i]) for coord, i in zip(coords, index))}]"
        else:
            yield index, str(da.name)


def _scalar_series(dataset: xr.Dataset) -> pd.Series:
    values, labels = [], []
    for name, da in dataset.data_vars.items():
        da = da.rename(name)
        for index, label in _scalar_labels(da):
            labels.append(label)
            values.append(float(np.asarray(da.values)[index]))
    return pd.Series(values, index=labels, dtype=np.float64)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    if numerator == 0:
        return 0.0
    return math.copysign(math.inf, numerator) if denominator == 0 else math.nan


def _name_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _plain_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(str(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
