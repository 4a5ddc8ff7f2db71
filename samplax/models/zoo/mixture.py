"""A two-component 1-D Gaussian mixture with the assignments summed out.

The latent space is continuous:

    weights ~ Dirichlet(1, 1),  locs_k ~ N(0, 5),  scales_k ~ HalfNormal(2),  k = 1, 2,
    y_i ~ sum_k weights_k N(locs_k, scales_k)      (numpyro MixtureSameFamily).

The means are NOT ordered: the posterior is invariant under swapping the labels, so it has two symmetric modes
(label switching). A sampler that stays in one mode gives correct label-free summaries but R-hat across chains
that found different labels flags it; that is the point of the "multimodal" tag. No analytic answer.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from samplax.models.zoo.base import ZooModel, as_array, check_positive_int, observation_count, rng

__all__ = ["GAUSSIAN_MIXTURE"]

NUM_COMPONENTS = 2
TRUE_WEIGHTS = (0.3, 0.7)
TRUE_LOCS = (-2.0, 2.0)
TRUE_SCALES = (0.7, 1.0)


def gaussian_mixture_model(y=None, num_observations=None):
    """Two-component mixture with Dirichlet weights; `num_observations` sizes the prior predictive."""
    y = as_array(y, "y")
    n = observation_count(y, num_observations, "y")
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(NUM_COMPONENTS)))
    locs = numpyro.sample("locs", dist.Normal(0.0, 5.0).expand([NUM_COMPONENTS]).to_event(1))
    scales = numpyro.sample("scales", dist.HalfNormal(2.0).expand([NUM_COMPONENTS]).to_event(1))
    mixture = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(locs, scales))
    with numpyro.plate("observations", n):
        numpyro.sample("y", mixture, obs=y)


def gaussian_mixture_data(seed=0, num_observations=100) -> dict:
    """Draws from 0.3 N(-2, 0.7) + 0.7 N(2, 1)."""
    n = check_positive_int(num_observations, "num_observations")
    generator = rng(seed)
    labels = generator.choice(NUM_COMPONENTS, size=n, p=np.array(TRUE_WEIGHTS))
    y = np.asarray(TRUE_LOCS)[labels] + np.asarray(TRUE_SCALES)[labels] * generator.normal(size=n)
    return {"y": y, "num_observations": n}


GAUSSIAN_MIXTURE = ZooModel(
    name="gaussian_mixture",
    description="Two-component 1-D Gaussian mixture, assignments summed out, unordered means (label switching).",
    model=gaussian_mixture_model,
    make_data=gaussian_mixture_data,
    reference=None,
    tags=("multimodal", "simplex", "positive"),
    true_parameters=lambda seed=0, **sizes: {
        "weights": np.array(TRUE_WEIGHTS),
        "locs": np.array(TRUE_LOCS),
        "scales": np.array(TRUE_SCALES),
    },
)
