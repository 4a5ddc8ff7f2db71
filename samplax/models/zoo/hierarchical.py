"""Eight schools (Rubin 1981; Gelman et al., Bayesian Data Analysis, section 5.5), posteriordb's priors.

    mu ~ N(0, 5),  tau ~ HalfCauchy(5),  y_j ~ N(theta_j, sigma_j),  j = 1..8,
    centred:      theta_j ~ N(mu, tau)
    non-centred:  theta_tilde_j ~ N(0, 1),  theta_j = mu + tau theta_tilde_j  (a deterministic site)

The centred form has a funnel between tau and theta that gradient samplers struggle with (divergences); the
non-centred form is the usual cure. No analytic answer.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

from samplax.models.zoo.base import ZooModel, as_array

__all__ = ["EIGHT_SCHOOLS", "EIGHT_SCHOOLS_CENTERED", "SCHOOL_EFFECTS", "SCHOOL_STANDARD_ERRORS"]

SCHOOL_EFFECTS = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SCHOOL_STANDARD_ERRORS = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def _school_inputs(y, sigma):
    sigma = as_array(sigma, "sigma")
    if sigma.ndim != 1:
        raise ValueError(f"argument 'sigma': expected a 1-D array of standard errors, got shape {sigma.shape}")
    y = as_array(y, "y")
    if y is not None and y.shape != sigma.shape:
        raise ValueError(f"argument 'y': shape {y.shape} does not match 'sigma' {sigma.shape}; pass one per school")
    return y, sigma


def eight_schools_model(y=None, sigma=SCHOOL_STANDARD_ERRORS):
    """Non-centred eight schools; `theta` is recorded as a deterministic site."""
    y, sigma = _school_inputs(y, sigma)
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_centered_model(y=None, sigma=SCHOOL_STANDARD_ERRORS):
    """Centred eight schools: theta_j ~ N(mu, tau) directly."""
    y, sigma = _school_inputs(y, sigma)
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_data(seed=0) -> dict:
    """The published data (the seed is accepted for a uniform signature and ignored)."""
    return {"y": np.array(SCHOOL_EFFECTS), "sigma": np.array(SCHOOL_STANDARD_ERRORS)}


EIGHT_SCHOOLS = ZooModel(
    name="eight_schools",
    description="Eight schools, non-centred (theta = mu + tau * theta_tilde); posteriordb priors; no exact answer.",
    model=eight_schools_model,
    make_data=eight_schools_data,
    reference=None,
    tags=("hierarchical", "positive"),
)

EIGHT_SCHOOLS_CENTERED = ZooModel(
    name="eight_schools_centered",
    description="Eight schools, centred (theta ~ N(mu, tau)): a funnel that causes divergences; no exact answer.",
    model=eight_schools_centered_model,
    make_data=eight_schools_data,
    reference=None,
    tags=("hierarchical", "positive"),
)
