"""The open-universe Gaussian mixture of Wang, Wu, Moore and Russell.

From "Meta-Learning MCMC Proposals", NeurIPS 2018:

    M ~ Uniform{1, ..., m}                          (number of active components, "num_components")
    mu_j ~ N(0, mean_scale^2 I_d),  j = 1..m        ("means", shape (m, d); components j > M are inactive)
    y_i ~ (1 / M) sum_{j <= M} N(mu_j, noise_scale^2 I_d),  i = 1..n      (assignments summed out)

A discrete site (M) next to a continuous one (the means): the model of the paper's "two means" motif, where a block
proposal moves two component means at once given the data and the other means. `open_universe_data` draws
``num_active`` well-spread clusters (default m // 2).

Exact answer (`open_universe_reference`) for tiny problems only (m <= 3, n <= 8): given M = k and an assignment of the
points to the k active components, the means integrate out in closed form (a Gaussian with covariance
noise^2 I + mean_scale^2 11^T per coordinate), so summing over all k^n assignments gives p(y | M = k) exactly, hence
P(M = k | y) and log p(y).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp

from samplax.models.zoo.base import Reference, ZooModel, as_array, check_positive, check_positive_int, rng

__all__ = [
    "OPEN_UNIVERSE_MIXTURE",
    "open_universe_model",
    "open_universe_data",
    "open_universe_reference",
    "mixture_log_likelihood",
]

INACTIVE_LOGIT = -1e9  # a finite stand-in for log 0 (NumPyro validates logits when they are concrete)


def open_universe_model(y=None, max_components=12, num_observations=None, dim=2, mean_scale=5.0, noise_scale=1.0):
    """Sites: ``num_components`` (M), ``means`` (max_components, dim) and the observed ``y`` (n, dim)."""
    y = as_array(y, "y")
    m = check_positive_int(max_components, "max_components")
    if y is not None:
        if jnp.ndim(y) != 2:
            raise ValueError(f"argument 'y': expected an (n, dim) array of points, got shape {jnp.shape(y)}")
        n, d = (int(s) for s in jnp.shape(y))
    else:
        if num_observations is None:
            raise ValueError(
                "argument 'y' is None (prior predictive) and 'num_observations' is None: pass "
                "num_observations to size the prior predictive"
            )
        n, d = check_positive_int(num_observations, "num_observations"), check_positive_int(dim, "dim")
    num_active = numpyro.sample("num_components", dist.DiscreteUniform(1, m))
    with numpyro.plate("components", m):
        means = numpyro.sample("means", dist.Normal(0.0, mean_scale).expand([d]).to_event(1))
    logits = jnp.where(jnp.arange(m) < num_active, 0.0, INACTIVE_LOGIT)
    mixture = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(means, noise_scale).to_event(1))
    with numpyro.plate("observations", n):
        numpyro.sample("y", mixture, obs=y)


def open_universe_data(
    seed=0, max_components=12, num_observations=90, dim=2, mean_scale=5.0, noise_scale=1.0, num_active=None
) -> dict:
    """``num_active`` clusters (default m // 2) with means drawn from the prior, points split evenly at random."""
    m = check_positive_int(max_components, "max_components")
    n = check_positive_int(num_observations, "num_observations")
    d = check_positive_int(dim, "dim")
    check_positive(mean_scale, "mean_scale")
    check_positive(noise_scale, "noise_scale")
    k = max(1, m // 2) if num_active is None else check_positive_int(num_active, "num_active")
    if k > m:
        raise ValueError(f"argument 'num_active': at most max_components = {m}, got {k}")
    generator = rng(seed)
    means = generator.normal(scale=mean_scale, size=(k, d))
    labels = generator.integers(k, size=n)
    y = means[labels] + noise_scale * generator.normal(size=(n, d))
    return {
        "y": y,
        "max_components": m,
        "num_observations": n,
        "dim": d,
        "mean_scale": float(mean_scale),
        "noise_scale": float(noise_scale),
    }


def _true_parameters(
    seed=0, max_components=12, num_observations=90, dim=2, mean_scale=5.0, noise_scale=1.0, num_active=None
) -> dict:
    m = check_positive_int(max_components, "max_components")
    k = max(1, m // 2) if num_active is None else int(num_active)
    means = rng(seed).normal(scale=mean_scale, size=(k, dim))
    return {"num_components": np.asarray(k), "active_means": means}


def mixture_log_likelihood(y, means, num_active, noise_scale=1.0):
    """The model's log-likelihood log p(y | means, M), summed over the points.

    Numpy or JAX arrays; batched over leading axes of ``means`` and ``num_active``.
    """
    y = jnp.asarray(y)
    means = jnp.asarray(means)
    m = means.shape[-2]
    d = y.shape[-1]
    active = jnp.arange(m) < jnp.asarray(num_active)[..., None]
    sq = jnp.sum((y[..., :, None, :] - means[..., None, :, :]) ** 2, axis=-1)  # (..., n, m)
    log_component = -0.5 * sq / noise_scale**2 - 0.5 * d * jnp.log(2 * jnp.pi * noise_scale**2)
    log_component = jnp.where(active[..., None, :], log_component, -jnp.inf)
    log_count = jnp.log(jnp.asarray(num_active, dtype=log_component.dtype))[..., None]
    per_point = logsumexp(log_component, axis=-1) - log_count
    return jnp.sum(per_point, axis=-1)


def _log_marginal_cluster(points: np.ndarray, mean_scale: float, noise_scale: float) -> float:
    """The log marginal likelihood of one component's points, with its mean integrated out.

    log of the integral of prod_i N(y_i; mu, noise^2 I) N(mu; 0, mean_scale^2 I) over mu (0 points: 0).
    """
    count = points.shape[0]
    if count == 0:
        return 0.0
    s2, v2 = mean_scale**2, noise_scale**2
    total = points.sum(axis=0)
    quad = (np.sum(points**2, axis=0) - s2 * total**2 / (v2 + count * s2)) / v2
    per_dim = -0.5 * count * np.log(2 * np.pi * v2) - 0.5 * np.log1p(count * s2 / v2) - 0.5 * quad
    return float(np.sum(per_dim))


def open_universe_reference(data: dict) -> Reference:
    """Exact P(M = k | y) summaries (mean, sd of ``num_components``) and log p(y), for m <= 3 and n <= 8."""
    y = np.asarray(data["y"], dtype=float)
    m = int(data.get("max_components", 12))
    mean_scale = float(data.get("mean_scale", 5.0))
    noise_scale = float(data.get("noise_scale", 1.0))
    n = y.shape[0]
    if m > 3 or n > 8:
        raise ValueError(
            f"the exact answer sums over M^n assignments and is offered for max_components <= 3 and at "
            f"most 8 points; got max_components={m}, n={n}"
        )
    log_evidence_given_k = []
    for k in range(1, m + 1):
        terms = []
        for assignment in itertools.product(range(k), repeat=n):
            labels = np.asarray(assignment)
            terms.append(sum(_log_marginal_cluster(y[labels == j], mean_scale, noise_scale) for j in range(k)))
        terms = np.asarray(terms)
        top = terms.max()
        log_evidence_given_k.append(float(top + np.log(np.exp(terms - top).sum()) - n * np.log(k)))
    joint = np.asarray(log_evidence_given_k) - np.log(m)
    top = joint.max()
    log_z = float(top + np.log(np.exp(joint - top).sum()))
    posterior = np.exp(joint - log_z)
    ks = np.arange(1, m + 1)
    mean = float(np.sum(posterior * ks))
    sd = float(np.sqrt(np.sum(posterior * (ks - mean) ** 2)))
    return Reference(mean={"num_components": np.asarray(mean)}, sd={"num_components": np.asarray(sd)}, log_z=log_z)


OPEN_UNIVERSE_MIXTURE = ZooModel(
    name="open_universe_mixture",
    description="Open-universe Gaussian mixture: unknown number of active components (discrete) and their means.",
    model=open_universe_model,
    make_data=open_universe_data,
    reference=open_universe_reference,
    tags=("discrete", "multimodal"),
    true_parameters=_true_parameters,
)
