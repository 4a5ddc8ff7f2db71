"""`samplax.numpyro.Kernel`: any samplax MCMC method inside `numpyro.infer.MCMC`."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC

import samplax.numpyro as samplax_numpyro


def normal_mean(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


Y = np.random.default_rng(0).normal(1.0, 1.0, 20)
POSTERIOR_VAR = 1.0 / (1.0 / 4.0 + Y.size)
POSTERIOR_MEAN = POSTERIOR_VAR * Y.sum()


def test_myula_runs_inside_numpyro_mcmc():
    """myula through NumPyro's MCMC (vectorised chains, get_samples, print_summary) recovers the conjugate posterior:
    mean within 4 MCSE plus myula's step-size bias allowance (0.1 posterior sd), sd within 15 %."""
    mcmc = MCMC(
        samplax_numpyro.Kernel(normal_mean, method="myula"),
        num_warmup=300,
        num_samples=1500,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), y=Y)
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    ess = float(effective_sample_size(draws))
    sd = POSTERIOR_VAR**0.5
    assert ess > 100
    assert abs(draws.mean() - POSTERIOR_MEAN) < 4 * sd / ess**0.5 + 0.1 * sd
    assert abs(draws.std() / sd - 1.0) < 0.15
    assert mcmc.get_extra_fields()["diverging"].sum() == 0
    mcmc.print_summary()


@pytest.mark.parametrize(
    "method, message", [("smc", "not a Markov chain"), ("gibbs", "factor tables"), ("bogus", "unknown method")]
)
def test_methods_that_cannot_run_inside_numpyro_are_refused(method, message):
    with pytest.raises(ValueError, match=message):
        samplax_numpyro.Kernel(normal_mean, method=method)


def test_options_are_checked_when_the_kernel_is_built():
    with pytest.raises(ValueError, match="unknown option"):
        samplax_numpyro.Kernel(normal_mean, method="mala", max_tree_depth=5)
    with pytest.raises(ValueError, match="step_size|target_accept"):
        samplax_numpyro.Kernel(normal_mean, method="mala", target_accept=float("nan"))
