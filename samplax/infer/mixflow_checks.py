"""Mixflow's own check: do the flow's draws match the target?

Xu, Chen & Campbell 2023 give exact densities, so the draws can be compared with importance-corrected moments, with
the ELBO at half the flow length, and with a short NUTS run started from the flow's draws.

The results go to ``idata.attrs["extra_mixflow_check"]`` and failed checks to ``attrs["extra_method_warnings"]``,
which `samplax.infer.diagnostics.convergence_warnings` turns into `ConvergenceWarning`s.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer.weights import importance_diagnostics
from samplax.kernels import mixflow as kernel

__all__ = ["flow_length_check", "moment_check", "nuts_check", "check_warnings", "pareto_k"]

MOMENT_SHIFT_LIMIT = 0.2  # |importance-corrected mean - mean of the draws|, in posterior sds
SD_RATIO_LIMITS = (0.8, 1.25)  # sd of the draws / importance-corrected sd
PARETO_K_LIMIT = 0.7  # above it the importance-corrected moments are themselves unreliable (Vehtari et al.)
ELBO_DROP_SES = 3.0  # an ELBO at N below the ELBO at N/2 by this many standard errors: the step size is too large


def flow_length_check(
    flow,
    logdensity_fn,
    reference,
    rng_key,
    *,
    flow_length: int,
    leapfrog_steps: int,
    step_size: float,
    momentum: str,
    whiten: bool,
    num_orbits: int,
    batch_size: int,
) -> dict:
    """The ELBO at N against the ELBO at N/2, paired on the same reference draws.

    With a small enough step the ELBO rises (or levels off) as N grows; with too large a step it rises and then
    falls (Xu, Chen and Campbell 2023, section 6): a significant fall says the chosen step makes the flow drift
    away from the target.
    """
    half_length = max(1, flow_length // 2)
    half = kernel.mixflow(
        logdensity_fn,
        reference.mean,
        reference.scale,
        flow_length=half_length,
        step_size=step_size,
        num_steps=leapfrog_steps,
        momentum=momentum,
        whiten=whiten,
        batch_size=batch_size,
    )
    key = jax.random.fold_in(rng_key, 1)
    full, halved = flow.elbo(key, num_orbits), half.elbo(key, num_orbits)
    diff = full - halved
    finite = np.isfinite(diff)

    def standard_error(values):
        values = values[np.isfinite(values)]
        return float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")

    return {
        "elbo_flow_length": float(np.mean(full)),
        "elbo_flow_length_se": standard_error(full),
        "elbo_half_flow_length": float(np.mean(halved)),
        "elbo_half_flow_length_se": standard_error(halved),
        "flow_length": flow_length,
        "half_flow_length": half_length,
        "elbo_gain_over_half": float(np.mean(diff[finite])) if finite.any() else float("nan"),
        "elbo_gain_over_half_se": standard_error(diff),
    }


def moment_check(z: np.ndarray, log_ratio: np.ndarray) -> dict:
    """The draws' means and sds against the same moments importance-corrected by the exact density.

    Each draw carries log pibar - log q_N on the augmented space, and E_q[w f(x)] / E_q[w] = E_pi[f(x)] for
    w = pibar / q_N: the self-normalised, truncated (weights capped at sqrt(S) times their mean, Ionides 2008)
    estimate is consistent for the target's moments whatever q_N is, so a gap between it and the plain mean of
    the draws measures the draws' bias, in posterior sds. Its reliability is the weights' Pareto k-hat.
    """
    z = np.asarray(z, np.float64).reshape(-1, np.shape(z)[-1])
    log_ratio = np.asarray(log_ratio, np.float64).reshape(-1)
    keep = np.isfinite(log_ratio) & np.all(np.isfinite(z), axis=-1)
    z, log_ratio = z[keep], log_ratio[keep]
    if z.shape[0] < 2:
        return {
            "moment_shift_max_sd": float("nan"),
            "sd_ratio_min": float("nan"),
            "sd_ratio_max": float("nan"),
            "importance_ess": 0.0,
            "importance_pareto_k": float("nan"),
        }
    weights = np.exp(log_ratio - np.max(log_ratio))
    weights = np.minimum(weights, np.mean(weights) * math.sqrt(weights.size))
    weights = weights / np.sum(weights)
    mean, sd = z.mean(0), z.std(0)
    mean_w = weights @ z
    sd_w = np.sqrt(weights @ (z - mean_w) ** 2)
    scale = np.where(sd_w > 0, sd_w, sd)
    k = pareto_k(log_ratio[None])
    return {
        "moment_shift_max_sd": float(np.max(np.abs(mean - mean_w) / scale)),
        "sd_ratio_min": float(np.min(sd / scale)),
        "sd_ratio_max": float(np.max(sd / scale)),
        "importance_ess": float(1.0 / np.sum(weights**2)),
        "importance_pareto_k": float(k[0]),
    }


NUTS_CHECK_SHIFT = 0.1  # posterior sds: a mean gap above this (plus 2 Monte Carlo SEs) is reported
NUTS_CHECK_SD_RATIO = 1.1  # a sd ratio beyond this factor (plus 2 Monte Carlo SEs on the log scale) is reported


def nuts_check(
    logdensity_fn, z_flow: np.ndarray, rng_key, *, chains: int = 4, warmup: int = 300, draws: int = 250
) -> dict:
    """The flow's means and sds (unconstrained coordinates) against a short NUTS run from its draws.

    NUTS (BlackJAX, Stan's window adaptation) starts from ``chains`` of the flow's draws; gaps in posterior sds and sd
    ratios, each with its Monte Carlo standard error (NUTS's from ArviZ's MCSE, the flow's from its i.i.d. draws).
    """
    from samplax.infer import arviz_compat
    from samplax.kernels import baselines

    flat = np.asarray(z_flow, np.float64).reshape(-1, np.shape(z_flow)[-1])
    with jax.enable_x64(True):
        warm = baselines.nuts_warmup(logdensity_fn, warmup)

        def one(key, position):
            key_warmup, key_draws = jax.random.split(key)
            state, params, _ = warm(key_warmup, position)
            step = baselines.nuts_step(logdensity_fn, params)

            def body(state, key):
                state, info = step(key, state)
                return state, (state.position, info.is_divergent)

            return jax.lax.scan(body, state, jax.random.split(key_draws, draws))[1]

        starts = jnp.asarray(flat[np.linspace(0, flat.shape[0] - 1, chains).astype(int)])
        positions, divergent = jax.device_get(jax.jit(jax.vmap(one))(jax.random.split(rng_key, chains), starts))
    positions = np.asarray(positions, np.float64)
    mean_nuts, sd_nuts = positions.reshape(-1, flat.shape[1]).mean(0), positions.reshape(-1, flat.shape[1]).std(0)
    mcse = np.asarray(arviz_compat.mcse({"z": positions})["z"], np.float64).reshape(-1)
    ess = np.maximum((sd_nuts / np.maximum(mcse, 1e-300)) ** 2, 2.0)
    mean_flow, sd_flow = flat.mean(0), flat.std(0)
    scale = np.where(sd_nuts > 0, sd_nuts, 1.0)
    shift = np.abs(mean_flow - mean_nuts) / scale
    shift_se = np.sqrt(1.0 / ess + (sd_flow / scale) ** 2 / flat.shape[0])
    log_ratio = np.log(np.maximum(sd_flow, 1e-300) / scale)
    log_ratio_se = np.sqrt(1.0 / (2 * ess) + 1.0 / (2 * flat.shape[0]))
    shift_fails = shift > NUTS_CHECK_SHIFT + 2 * shift_se
    sd_fails = np.abs(log_ratio) > math.log(NUTS_CHECK_SD_RATIO) + 2 * log_ratio_se
    return {
        "nuts_chains": chains,
        "nuts_warmup": warmup,
        "nuts_draws": draws,
        "nuts_divergences": int(np.sum(divergent)),
        "nuts_min_ess": float(np.min(ess)),
        "nuts_mean_shift_max_sd": float(np.max(shift)),
        "nuts_mean_shift_se": float(shift_se[np.argmax(shift)]),
        "nuts_sd_ratio_min": float(np.exp(np.min(log_ratio))),
        "nuts_sd_ratio_max": float(np.exp(np.max(log_ratio))),
        "nuts_coordinates_off": int(np.sum(shift_fails | sd_fails)),
        "nuts_check_passed": bool(not np.any(shift_fails | sd_fails)),
    }


def check_warnings(check: dict) -> list[str]:
    """Plain-English warnings from `flow_length_check`, `moment_check` and `nuts_check` (empty when all pass)."""
    messages = []
    gain, se = check.get("elbo_gain_over_half", np.nan), check.get("elbo_gain_over_half_se", np.nan)
    elbo_fell = np.isfinite(gain) and np.isfinite(se) and gain < -ELBO_DROP_SES * se and gain < -0.01
    # The ELBO judges the augmented density (x, rho, u), whose energy error grows with long maps while the x-marginal
    # can stay right; when a NUTS run has checked the draws' moments directly and agreed, the fall is not a warning.
    if elbo_fell and check.get("nuts_check_passed") is not True:
        messages.append(
            f"mixflow: the ELBO falls from {check['elbo_half_flow_length']:.3g} at flow_length "
            f"{check['half_flow_length']} to {check['elbo_flow_length']:.3g} at twice that ({gain:.3g} +- {se:.2g}): "
            "the step size is too large for this target, so the draws drift from it. Pass a smaller step_size "
            "(or more step_size_grid points), or a shorter flow_length."
        )
    if check.get("nuts_check_passed") is False:
        messages.append(
            f"mixflow: the draws disagree with a short NUTS run on {check['nuts_coordinates_off']} unconstrained "
            f"coordinate(s): means differ by up to {check['nuts_mean_shift_max_sd']:.2f} posterior sds, sds by a "
            f"factor {check['nuts_sd_ratio_min']:.2f}-{check['nuts_sd_ratio_max']:.2f} (beyond Monte Carlo error). "
            "The flow has not reached the target (a curved or heavy-tailed posterior): use method='nuts', or "
            "increase flow_length and leapfrog_steps and check again."
        )
    k = check.get("importance_pareto_k", np.nan)
    shift, low, high = (check.get(name, np.nan) for name in ("moment_shift_max_sd", "sd_ratio_min", "sd_ratio_max"))
    if np.isfinite(k) and k > PARETO_K_LIMIT:
        messages.append(
            f"mixflow: the importance ratios target / flow at the draws have Pareto k-hat {k:.2f} (above "
            f"{PARETO_K_LIMIT}): the flow misses part of the target (often a curved or heavy-tailed one), so its "
            "draws' means and sds may be off. Increase flow_length or leapfrog_steps, or check against "
            "method='nuts'."
        )
    elif np.isfinite(shift) and (shift > MOMENT_SHIFT_LIMIT or low < SD_RATIO_LIMITS[0] or high > SD_RATIO_LIMITS[1]):
        messages.append(
            f"mixflow: the draws' moments differ from the importance-corrected ones (exact density): means by up "
            f"to {shift:.2f} sds, sds by a factor {low:.2f}-{high:.2f}. The flow has not converged to the target: "
            "increase flow_length or leapfrog_steps, or check against method='nuts'."
        )
    return messages


def pareto_k(log_ratio: np.ndarray) -> np.ndarray:
    """PSIS k-hat per repeat of the augmented importance ratios pibar / q_N at the draws (NaN if not computable)."""
    try:
        return np.asarray(importance_diagnostics(log_ratio)["pareto_k"], np.float64)
    except ValueError:
        return np.full(log_ratio.shape[0], np.nan)
