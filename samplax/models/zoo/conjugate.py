"""Conjugate models: the posterior and the evidence are known exactly.

- normal_normal: mu ~ N(m0, s0), y_i | mu ~ N(mu, sigma), sigma known. Posterior N(m_n, s_n) with
  1/s_n^2 = 1/s0^2 + n/sigma^2 and m_n = s_n^2 (m0/s0^2 + sum y / sigma^2); y ~ N(m0 1, sigma^2 I + s0^2 1 1^T).
- gamma_poisson: lam ~ Gamma(a, b) (shape a, rate b), y_i | lam ~ Poisson(lam). Posterior Gamma(a + S, b + n),
  S = sum y; log Z = a log b - log Gamma(a) + log Gamma(a + S) - (a + S) log(b + n) - sum log y_i!.
- dirichlet_multinomial: p ~ Dirichlet(alpha), c | p ~ Multinomial(N, p). Posterior Dirichlet(alpha + c);
  log Z = log N! - sum log c_k! + log B(alpha + c) - log B(alpha), B the multivariate Beta function.
- box_bounded: theta ~ Beta(a, b), s | theta ~ Binomial(n, theta) with data favouring theta = 0.
  Posterior Beta(a + s, b + n - s); log Z = log C(n, s) + log B(a + s, b + n - s) - log B(a, b).

Every log Z includes the constants NumPyro's log_prob includes (-log y! for the Poisson, the multinomial and
binomial coefficients), so it equals log of the integral of exp(numpyro.infer.util.log_density(...)).
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.special import betaln, gammaln

from samplax.models.zoo.base import (
    Reference,
    ZooModel,
    as_array,
    check_positive,
    check_positive_int,
    concrete,
    observation_count,
    rng,
)

__all__ = ["NORMAL_NORMAL", "GAMMA_POISSON", "DIRICHLET_MULTINOMIAL", "DIRICHLET_MULTINOMIAL_SPARSE", "BOX_BOUNDED"]


# --- normal_normal ------------------------------------------------------------------------------------------------


def normal_normal_model(y=None, prior_mean=0.0, prior_sd=2.0, noise_sd=1.0, num_observations=None):
    """Normal mean with known noise: mu ~ N(prior_mean, prior_sd); y_i ~ N(mu, noise_sd).

    `num_observations` sizes the prior predictive.
    """
    y = as_array(y, "y")
    n = observation_count(y, num_observations, "y")
    mu = numpyro.sample("mu", dist.Normal(prior_mean, prior_sd))
    with numpyro.plate("observations", n):
        numpyro.sample("y", dist.Normal(mu, noise_sd), obs=y)


def normal_normal_data(seed=0, num_observations=20, prior_mean=0.0, prior_sd=2.0, noise_sd=1.0, true_mean=1.0) -> dict:
    n = check_positive_int(num_observations, "num_observations")
    check_positive(prior_sd, "prior_sd")
    check_positive(noise_sd, "noise_sd")
    y = rng(seed).normal(float(true_mean), float(noise_sd), size=n)
    return {
        "y": y,
        "prior_mean": float(prior_mean),
        "prior_sd": float(prior_sd),
        "noise_sd": float(noise_sd),
        "num_observations": n,
    }


def normal_normal_reference(data: dict) -> Reference:
    y = np.asarray(data["y"], dtype=np.float64)
    m0 = float(data.get("prior_mean", 0.0))
    s0 = float(data.get("prior_sd", 2.0))
    sigma = float(data.get("noise_sd", 1.0))
    n = y.shape[0]
    precision = 1.0 / s0**2 + n / sigma**2
    mean = (m0 / s0**2 + y.sum() / sigma**2) / precision
    # y ~ N(m0 1, sigma^2 (I + a 1 1^T)), a = s0^2 / sigma^2; Sherman-Morrison for the inverse and determinant.
    a = s0**2 / sigma**2
    r = y - m0
    quadratic = (np.sum(r**2) - a * np.sum(r) ** 2 / (1.0 + n * a)) / sigma**2
    log_z = -0.5 * n * np.log(2.0 * np.pi * sigma**2) - 0.5 * np.log1p(n * a) - 0.5 * quadratic
    return Reference(mean={"mu": np.asarray(mean)}, sd={"mu": np.asarray(precision**-0.5)}, log_z=float(log_z))


NORMAL_NORMAL = ZooModel(
    name="normal_normal",
    description="Normal mean with known noise sd and a normal prior; exact posterior and log Z.",
    model=normal_normal_model,
    make_data=normal_normal_data,
    reference=normal_normal_reference,
    tags=("conjugate",),
    true_parameters=lambda seed=0, true_mean=1.0, **sizes: {"mu": float(true_mean)},
)


# --- gamma_poisson ------------------------------------------------------------------------------------------------


def gamma_poisson_model(y=None, shape=2.0, rate=1.0, num_observations=None):
    """Gamma-Poisson rate: lam ~ Gamma(shape, rate); y_i ~ Poisson(lam).

    `num_observations` sizes the prior predictive.
    """
    y = as_array(y, "y")
    n = observation_count(y, num_observations, "y")
    lam = numpyro.sample("lam", dist.Gamma(shape, rate))
    with numpyro.plate("observations", n):
        numpyro.sample("y", dist.Poisson(lam), obs=y)


def gamma_poisson_data(seed=0, num_observations=10, shape=2.0, rate=1.0, true_rate=1.0) -> dict:
    n = check_positive_int(num_observations, "num_observations")
    check_positive(shape, "shape")
    check_positive(rate, "rate")
    check_positive(true_rate, "true_rate")
    y = rng(seed).poisson(float(true_rate), size=n).astype(np.int64)
    return {"y": y, "shape": float(shape), "rate": float(rate), "num_observations": n}


def gamma_poisson_reference(data: dict) -> Reference:
    y = np.asarray(data["y"], dtype=np.float64)
    a = float(data.get("shape", 2.0))
    b = float(data.get("rate", 1.0))
    a_post = a + y.sum()
    b_post = b + y.shape[0]
    log_z = a * np.log(b) - gammaln(a) + gammaln(a_post) - a_post * np.log(b_post) - gammaln(y + 1.0).sum()
    return Reference(
        mean={"lam": np.asarray(a_post / b_post)},
        sd={"lam": np.asarray(np.sqrt(a_post) / b_post)},
        log_z=float(log_z),
    )


GAMMA_POISSON = ZooModel(
    name="gamma_poisson",
    description="Poisson rate with a Gamma(shape, rate) prior (shapes below 1 allowed); exact posterior and log Z.",
    model=gamma_poisson_model,
    make_data=gamma_poisson_data,
    reference=gamma_poisson_reference,
    tags=("conjugate", "positive"),
    true_parameters=lambda seed=0, true_rate=1.0, **sizes: {"lam": float(true_rate)},
)


# --- dirichlet_multinomial ----------------------------------------------------------------------------------------


def dirichlet_multinomial_model(counts=None, concentration=(1.0, 1.0, 1.0), total_count=None):
    """Dirichlet-multinomial: probs ~ Dirichlet(concentration); counts ~ Multinomial(total_count, probs).

    `concentration` has one entry per category. With counts given, total_count defaults to their sum; it is
    needed (an integer) for the prior predictive.
    """
    concentration = as_array(concentration, "concentration")
    if concentration.ndim != 1 or concentration.shape[0] < 2:
        raise ValueError(
            f"argument 'concentration': expected a 1-D array with one entry per category (at least 2), "
            f"got shape {concentration.shape}"
        )
    host_counts = concrete(counts)
    counts = as_array(counts, "counts")
    if counts is not None:
        if counts.shape != concentration.shape:
            raise ValueError(
                f"argument 'counts': shape {counts.shape} does not match 'concentration' {concentration.shape}; "
                "pass one count per category"
            )
        if total_count is None:
            total_count = counts.sum()
        elif host_counts is not None and int(host_counts.sum()) != int(total_count):
            raise ValueError(
                f"argument 'total_count' = {total_count} but the counts sum to {int(host_counts.sum())}; "
                "pass total_count=None or the sum of the counts"
            )
    elif total_count is None:
        raise ValueError(
            "arguments 'counts' and 'total_count' are both None: pass total_count for the prior predictive"
        )
    probs = numpyro.sample("probs", dist.Dirichlet(concentration))
    numpyro.sample("counts", dist.Multinomial(total_count, probs), obs=counts)


def dirichlet_multinomial_data(seed=0, categories=5, total_count=50, concentration=1.0) -> dict:
    """Counts from probs ~ Dirichlet(concentration) (a scalar is repeated over the categories, or give a list)."""
    k = check_positive_int(categories, "categories", minimum=2)
    total = check_positive_int(total_count, "total_count", minimum=0)
    alpha = np.broadcast_to(np.asarray(concentration, dtype=np.float64), (k,)).copy()
    if not np.all(np.isfinite(alpha) & (alpha > 0)):
        raise ValueError(f"argument 'concentration': expected entries > 0, got {concentration!r}")
    generator = rng(seed)
    probs = generator.dirichlet(alpha)
    counts = generator.multinomial(total, probs).astype(np.int64)
    return {"counts": counts, "concentration": alpha, "total_count": total}


def dirichlet_multinomial_reference(data: dict) -> Reference:
    counts = np.asarray(data["counts"], dtype=np.float64)
    alpha = np.asarray(data["concentration"], dtype=np.float64)
    alpha_post = alpha + counts
    a0 = alpha_post.sum()
    mean = alpha_post / a0
    sd = np.sqrt(alpha_post * (a0 - alpha_post) / (a0**2 * (a0 + 1.0)))
    n = counts.sum()
    log_multivariate_beta = lambda a: gammaln(a).sum() - gammaln(a.sum())  # noqa: E731
    log_z = (
        gammaln(n + 1.0)
        - gammaln(counts + 1.0).sum()
        + log_multivariate_beta(alpha_post)
        - log_multivariate_beta(alpha)
    )
    return Reference(mean={"probs": mean}, sd={"probs": sd}, log_z=float(log_z))


DIRICHLET_MULTINOMIAL = ZooModel(
    name="dirichlet_multinomial",
    description="Category probabilities with a Dirichlet prior and multinomial counts; exact posterior and log Z.",
    model=dirichlet_multinomial_model,
    make_data=dirichlet_multinomial_data,
    reference=dirichlet_multinomial_reference,
    tags=("conjugate", "simplex"),
)


def sparse_dirichlet_multinomial_data(seed=0, categories=50, total_count=10, concentration=0.5) -> dict:
    """Many categories, few counts, concentration below 1: most posterior mass sits near the simplex's faces."""
    return dirichlet_multinomial_data(seed, categories=categories, total_count=total_count, concentration=concentration)


DIRICHLET_MULTINOMIAL_SPARSE = ZooModel(
    name="dirichlet_multinomial_sparse",
    description="dirichlet_multinomial with 50 categories, 10 counts and concentration 0.5 (mass at the faces).",
    model=dirichlet_multinomial_model,
    make_data=sparse_dirichlet_multinomial_data,
    reference=dirichlet_multinomial_reference,
    tags=("conjugate", "simplex"),
)


# --- box_bounded --------------------------------------------------------------------------------------------------


def box_bounded_model(successes=None, trials=20, prior_alpha=1.0, prior_beta=1.0):
    """Beta-binomial with the posterior against a bound.

    theta ~ Beta(prior_alpha, prior_beta) on [0, 1]; successes ~ Binomial(trials, theta).
    """
    successes = as_array(successes, "successes")
    theta = numpyro.sample("theta", dist.Beta(prior_alpha, prior_beta))
    numpyro.sample("successes", dist.Binomial(trials, theta), obs=successes)


def box_bounded_data(seed=0, trials=20, true_probability=0.02, prior_alpha=1.0, prior_beta=1.0) -> dict:
    """A rare event: with the defaults most seeds give 0 or 1 successes in 20 trials, piling theta against 0."""
    n = check_positive_int(trials, "trials")
    check_positive(prior_alpha, "prior_alpha")
    check_positive(prior_beta, "prior_beta")
    if not 0.0 <= float(true_probability) <= 1.0:
        raise ValueError(f"argument 'true_probability': expected a value in [0, 1], got {true_probability!r}")
    successes = int(rng(seed).binomial(n, float(true_probability)))
    return {"successes": successes, "trials": n, "prior_alpha": float(prior_alpha), "prior_beta": float(prior_beta)}


def box_bounded_reference(data: dict) -> Reference:
    s = float(data["successes"])
    n = float(data.get("trials", 20))
    a = float(data.get("prior_alpha", 1.0)) + s
    b = float(data.get("prior_beta", 1.0)) + n - s
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    log_binomial = gammaln(n + 1.0) - gammaln(s + 1.0) - gammaln(n - s + 1.0)
    prior_a, prior_b = float(data.get("prior_alpha", 1.0)), float(data.get("prior_beta", 1.0))
    log_z = log_binomial + betaln(a, b) - betaln(prior_a, prior_b)
    return Reference(mean={"theta": np.asarray(mean)}, sd={"theta": np.asarray(sd)}, log_z=float(log_z))


BOX_BOUNDED = ZooModel(
    name="box_bounded",
    description="Success probability on [0, 1] (Beta prior, default uniform) with data favouring 0; exact answers.",
    model=box_bounded_model,
    make_data=box_bounded_data,
    reference=box_bounded_reference,
    tags=("conjugate", "bounded"),
    true_parameters=lambda seed=0, true_probability=0.02, **sizes: {"theta": float(true_probability)},
)
