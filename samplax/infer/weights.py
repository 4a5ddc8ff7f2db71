"""Weighted draws: the effective sample size and Pareto k-hat of importance weights, and self-normalised moments.

Variational, importance-sampling and SMC fits carry ``sample_stats.log_weight`` (one row per independent repeat).
``importance_diagnostics`` scores them: ``ESS = (sum_i w_i)^2 / sum_i w_i^2`` per repeat and the Pareto k-hat of the
weights' tail (Vehtari et al. 2024, "Pareto smoothed importance sampling", JMLR 25(72)), through ArviZ's ``psislw``.
``weighted_moments`` gives self-normalised means and sds with their delta-method Monte Carlo standard errors.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from samplax.infer import arviz_compat

__all__ = ["PARETO_K_UNRELIABLE", "importance_diagnostics", "log_weights_of", "weighted_moments"]

PARETO_K_UNRELIABLE = 0.7  # above it the weights' variance is effectively infinite (Vehtari et al. 2024)


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


def log_weights_of(idata: Any) -> np.ndarray | None:
    """``sample_stats.log_weight`` as a (chain, draw) float64 array, or None when the fit has no weights."""
    stats = arviz_compat.group(idata, "sample_stats")
    if stats is None or "log_weight" not in stats:
        return None
    return np.asarray(stats["log_weight"].transpose("chain", "draw").values, dtype=np.float64)


def weighted_moments(values: np.ndarray, log_weight: np.ndarray):
    """Self-normalised mean, sd and their delta-method MCSEs, per repeat then averaged over repeats."""
    if log_weight.shape != values.shape[:2]:
        raise ValueError(
            f"log_weights has shape {log_weight.shape}, but the draws have (chain, draw) = {values.shape[:2]}"
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
