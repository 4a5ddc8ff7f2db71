"""Scoring a fit: ArviZ diagnostics, importance weights, kernel Stein discrepancy, reference checks.

Everything here reads an ArviZ ``InferenceData`` or, under ArviZ 1.x, an ``xarray.DataTree`` (posterior with dims
``chain, draw, *site dims``; sample_stats with ``diverging``, ``acceptance_rate``, ``step_size``, maybe ``energy`` and
``log_weight``) or plain arrays. ESS, R-hat, MCSE, PSIS and E-BFMI come from ArviZ (summary, ess, rhat, mcse,
psislw, bfmi), called through `samplax.infer.arviz_compat` so that ArviZ 0.x and 1.x give the same results here;
this module adds what ArviZ does not have:

- ``summary``: ArviZ's summary plus bulk ESS per second of sampling.
- ``importance_diagnostics``: the normalised-weight effective sample size
  ``ESS = (sum_i w_i)^2 / sum_i w_i^2`` and the Pareto k-hat of the weights' tail (Vehtari et al. 2024,
  "Pareto smoothed importance sampling", JMLR 25(72)).
- ``kernel_stein_discrepancy``: the Langevin kernel Stein discrepancy with the inverse multiquadric (IMQ)
  kernel (Gorham & Mackey 2017, "Measuring sample quality with kernels", ICML). With
  ``k(x, y) = (c^2 + |x - y|^2)^beta`` and the score ``s = grad log p``, the Stein kernel is

      k_p(x, y) = s(x).s(y) k + s(x).grad_y k + s(y).grad_x k + tr(grad_x grad_y k)
                = q^beta s(x).s(y) + 2 beta q^(beta-1) (s(y) - s(x)).(x - y)
                  - 2 beta d q^(beta-1) - 4 beta (beta-1) |x - y|^2 q^(beta-2),      q = c^2 + |x - y|^2,

  and ``KSD = sqrt( (1/n^2) sum_{i,j} k_p(x_i, x_j) )`` (the V-statistic). It needs only draws and scores,
  never the normalising constant, and tends to zero exactly when the draws converge to ``p`` (for
  ``-1 < beta < 0``).
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

import functools
import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from samplax.infer import arviz_compat

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
PARETO_K_UNRELIABLE = 0.7


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
    """ArviZ's summary (mean, sd, HDI, MCSE, bulk/tail ESS, R-hat) plus ``ess_bulk_per_s`` and
    ``ess_bulk_per_sampling_s``.

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
    table["ess_bulk_per_sampling_s"] = table["ess_bulk"] / (np.nan if sampling_seconds is None
                                                            else float(sampling_seconds))
    return table


def _recorded_timing(idata: Any) -> dict:
    """samplax's ``attrs["timing"]`` as a dict (empty when absent or unreadable)."""
    timing = (getattr(idata, "attrs", None) or {}).get("timing")
    if isinstance(timing, str):
        try:
            timing = json.loads(timing)
        except ValueError:
            timing = None
    return dict(timing) if isinstance(timing, Mapping) else {}


def _recorded_sampling_seconds(idata: Any, posterior: xr.Dataset) -> float | None:
    return _recorded_timing(idata).get("sampling_s") or posterior.attrs.get("sampling_time")


# ------------------------------------------------------------------------------- importance weights


def importance_diagnostics(log_weights: Any) -> dict[str, Any]:
    """Effective sample size and Pareto k-hat of (unnormalised) importance log-weights.

    ``log_weights`` has shape ``(repeats, draws)`` (one row per independent repeat, e.g. per chain of an SMC
    or variational fit) or is flat ``(draws,)`` (one repeat). ``-inf`` is a zero weight; NaN and ``+inf`` are
    errors. Each repeat's weights are normalised within the repeat. Returns

    - ``ess_per_repeat``: ``(sum w)^2 / sum w^2`` per repeat, between 1 and the number of draws;
    - ``ess``: their sum, the ESS of the estimate that averages the repeats' self-normalised estimates;
    - ``ess_fraction``: ``ess`` over the total number of draws;
    - ``pareto_k`` (per repeat) and ``pareto_k_max`` (NaN-ignoring): ArviZ's ``psislw`` shape estimate.
      Above 0.7 the weights' variance is effectively infinite and estimates are unreliable. NaN means the tail
      could not be fitted (fewer than five draws strictly above the tail cut-off: very few draws, or a few
      tied largest weights, which are bounded rather than heavy-tailed); ``-inf`` means all weights are equal;
    - ``num_repeats`` and ``num_draws`` (per repeat).
    """
    log_w = np.asarray(log_weights, dtype=np.float64)
    if log_w.ndim == 1:
        log_w = log_w[None, :]
    if log_w.ndim != 2 or log_w.shape[-1] == 0 or log_w.shape[0] == 0:
        raise ValueError(
            f"log_weights must have shape (repeats, draws) or (draws,) with at least one draw, got shape "
            f"{np.shape(log_weights)}; stack the repeats' log-weights along the first axis"
        )
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError(
            "log_weights contain NaN or +inf: the log-densities behind the weights overflowed or are "
            "undefined; use precision='float64' or check the target's log-density"
        )
    row_max = log_w.max(axis=1, keepdims=True)
    if np.isneginf(row_max).any():
        bad = np.flatnonzero(np.isneginf(row_max[:, 0])).tolist()
        raise ValueError(f"log_weights of repeat(s) {bad} are all -inf (every weight is zero)")
    shifted = np.exp(log_w - row_max)
    ess_per_repeat = shifted.sum(axis=1) ** 2 / (shifted**2).sum(axis=1)
    finite = np.where(np.isneginf(log_w), row_max - 800.0, log_w)  # psislw needs finite input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, pareto_k = arviz_compat.psislw(finite)
    pareto_k = np.atleast_1d(np.asarray(pareto_k, dtype=np.float64)).copy()
    pareto_k[~np.isfinite(pareto_k)] = np.nan
    pareto_k[np.ptp(log_w, axis=1) == 0.0] = -np.inf
    pareto_k_max = float(np.nanmax(pareto_k)) if not np.isnan(pareto_k).all() else math.nan
    total_draws = log_w.size
    ess = float(ess_per_repeat.sum())
    return {
        "ess_per_repeat": ess_per_repeat,
        "ess": ess,
        "ess_fraction": ess / total_draws,
        "pareto_k": pareto_k,
        "pareto_k_max": pareto_k_max,
        "num_repeats": int(log_w.shape[0]),
        "num_draws": int(log_w.shape[1]),
    }


# -------------------------------------------------------------------------- kernel Stein discrepancy


def kernel_stein_discrepancy(
    draws: Any,
    scores: Any,
    *,
    c: float = 1.0,
    beta: float = -0.5,
    block_size: int | None = None,
) -> float:
    """Langevin kernel Stein discrepancy of ``draws`` with the IMQ kernel ``(c^2 + |x - y|^2)^beta``.

    ``draws`` and ``scores`` (``grad log p`` at each draw) have shape ``(n, d)``, or ``(..., d)`` with
    leading dims (chains, draws) flattened, or ``(n,)`` for ``d = 1``. Returns the square root of the
    V-statistic ``(1/n^2) sum_{i,j} k_p(x_i, x_j)`` (see the module docstring). The double sum runs in a
    jit-compiled ``lax.map`` over blocks of ``block_size`` rows, so memory is ``O(block_size * n)`` (default:
    about 2^21 pair entries per block) and n = 10^4 in d = 50 fits comfortably; cost is ``O(n^2 d)``.
    Smaller is better; compare values at the same n, c and beta.
    """
    x = jnp.asarray(draws)
    s = jnp.asarray(scores)
    if x.shape != s.shape:
        raise ValueError(
            f"draws and scores must have the same shape, got {x.shape} and {s.shape}; scores[i] must be "
            "grad log p(draws[i])"
        )
    if x.ndim == 0 or x.size == 0:
        raise ValueError(f"draws must be a non-empty array of shape (n, d), got shape {x.shape}")
    if x.ndim == 1:
        x, s = x[:, None], s[:, None]
    x = x.reshape(-1, x.shape[-1])
    s = s.reshape(-1, s.shape[-1])
    if not (_is_real(c) and c > 0):
        raise ValueError(f"c must be a positive number, got {c!r}; the default c=1.0 suits standardised draws")
    if not (_is_real(beta) and -1.0 < beta < 0.0):
        raise ValueError(
            f"beta must lie in (-1, 0) (where the IMQ Stein discrepancy detects non-convergence), got "
            f"{beta!r}; the default is beta=-0.5"
        )
    if not (bool(jnp.isfinite(x).all()) and bool(jnp.isfinite(s).all())):
        raise ValueError("draws and scores must be finite; drop or fix the draws with NaN/inf scores")
    n = x.shape[0]
    if block_size is None:
        block_size = max(1, min(n, (1 << 21) // n))
    if not (isinstance(block_size, (int, np.integer)) and block_size >= 1):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    block_size = min(int(block_size), n)
    dtype = jnp.result_type(x.dtype, s.dtype, jnp.float32)
    value = _ksd_v_statistic(x.astype(dtype), s.astype(dtype), float(c), float(beta), block_size)
    return float(jnp.sqrt(jnp.maximum(value, 0.0)))


@functools.partial(jax.jit, static_argnames=("block_size",))
def _ksd_v_statistic(x, s, c, beta, block_size):
    """``(1/n^2) sum_{i,j} k_p(x_i, x_j)`` with rows processed ``block_size`` at a time."""
    n, d = x.shape
    x = x - jnp.mean(x, axis=0)  # translation-invariant kernel; centring keeps |x_i - x_j|^2 accurate
    dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    sq_norm = jnp.sum(x * x, axis=1)
    score_dot_x = jnp.sum(s * x, axis=1)
    num_blocks = -(-n // block_size)
    pad = num_blocks * block_size - n

    def padded(a):
        return jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(num_blocks, block_size, *a.shape[1:])

    mask = padded(jnp.ones(n, dtype=x.dtype))

    def block_total(block):
        x_i, s_i, sq_i, sx_i, mask_i = block
        sq_dist = jnp.maximum(sq_i[:, None] + sq_norm[None, :] - 2.0 * dot(x_i, x.T), 0.0)
        q = c**2 + sq_dist
        score_score = dot(s_i, s.T)
        # (s(y) - s(x)).(x - y) with x = x_i, y = x_j
        score_diff_dot_u = (dot(x_i, s.T) - score_dot_x[None, :]) - (sx_i[:, None] - dot(s_i, x.T))
        stein = (
            q**beta * score_score
            + 2.0 * beta * q ** (beta - 1.0) * (score_diff_dot_u - d)
            - 4.0 * beta * (beta - 1.0) * sq_dist * q ** (beta - 2.0)
        )
        return jnp.sum(stein.sum(axis=1) * mask_i)

    totals = jax.lax.map(block_total, (padded(x), padded(s), padded(sq_norm), padded(score_dot_x), mask))
    return jnp.sum(totals) / n**2


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
    text = (f"Deterministic sites ({_plain_list(deterministic)}: {size} value{'s' if size != 1 else ''}) are "
            f"functions of the latent sites: {judged} reported in the summary but not judged.")
    notes = []
    nonfinite = _nonfinite_sites(posterior, deterministic)
    if nonfinite:
        notes.append(f"{_plain_list(nonfinite)} contain{'s' if len(nonfinite) == 1 else ''} NaN or infinite values "
                     "(the deterministic expression overflows or is undefined at some draws)")
    if kind == "mcmc":
        rhat, ess_bulk, ess_tail = _chain_scores(posterior, [n for n in deterministic if n not in nonfinite])
        ess = np.fmin(ess_bulk, ess_tail)
        failing = (rhat > rhat_threshold) | (ess < ess_threshold)  # NaN: a constant value, nothing to judge
        if failing.any():
            worst = (f"largest R-hat: {rhat.idxmax()} = {rhat.max():.3f}" if (rhat > rhat_threshold).any()
                     else f"lowest ESS: {ess.idxmin()} = {ess.min():.0f}")
            count = int(failing.sum())
            notes.append(f"{count} of the {size} values {'has' if count == 1 else 'have'} R-hat above "
                         f"{rhat_threshold:g} or bulk/tail ESS below {ess_threshold:g} ({worst}); if you report "
                         "them, run more draws until they pass")
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
        raise ValueError(f"var_names is empty; name at least one of {sorted(map(str, posterior.data_vars))}, or "
                         "pass None for every site")
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
    return [name for name in names
            if np.issubdtype(posterior[name].dtype, np.number) and not np.isfinite(posterior[name].values).all()]


def _chain_scores(posterior: xr.Dataset, names: list[str]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """R-hat, bulk ESS and tail ESS of every scalar coordinate of the named sites (empty series for no names)."""
    if not names:
        empty = pd.Series([], dtype=np.float64)
        return empty, empty.copy(), empty.copy()
    subset = posterior[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (_scalar_series(arviz_compat.rhat(subset)), _scalar_series(arviz_compat.ess(subset, method="bulk")),
                _scalar_series(arviz_compat.ess(subset, method="tail")))


def _log_weights(idata: Any) -> np.ndarray | None:
    stats = arviz_compat.group(idata, "sample_stats")
    if stats is None or "log_weight" not in stats:
        return None
    return np.asarray(stats["log_weight"].transpose("chain", "draw").values, dtype=np.float64)


def _weighted_moments(values: np.ndarray, log_weight: np.ndarray):
    """Self-normalised mean, sd and their delta-method MCSEs, per repeat then averaged over repeats."""
    if log_weight.shape != values.shape[:2]:
        raise ValueError(
            f"log_weights has shape {log_weight.shape}, but the draws have (chain, draw) = "
            f"{values.shape[:2]}"
        )
    importance_diagnostics(log_weight)  # validates the weights
    w = np.exp(log_weight - log_weight.max(axis=1, keepdims=True))
    w = (w / w.sum(axis=1, keepdims=True)).reshape(w.shape + (1,) * (values.ndim - 2))
    x = values.astype(np.float64)
    mean_r = (w * x).sum(axis=1)
    centred = x - mean_r[:, None]
    var_r = (w * centred**2).sum(axis=1)
    mcse_mean_r2 = (w**2 * centred**2).sum(axis=1)
    mcse_var_r2 = (w**2 * (centred**2 - var_r[:, None]) ** 2).sum(axis=1)
    repeats = x.shape[0]
    estimate = mean_r.mean(axis=0)
    sd = np.sqrt(var_r.mean(axis=0))
    mcse = np.sqrt(mcse_mean_r2.sum(axis=0)) / repeats
    with np.errstate(divide="ignore", invalid="ignore"):
        sd_mcse = np.sqrt(mcse_var_r2.sum(axis=0)) / repeats / (2.0 * sd)
    return estimate, sd, mcse, sd_mcse


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
