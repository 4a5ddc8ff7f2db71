"""Tests for samplax.infer.calibration: simulation-based calibration with exact and wrong samplers."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from samplax.infer.calibration import SBCResult, sbc

matplotlib.use("Agg")

NUM_OBS = 8
NUM_DRAWS = 99  # L: ranks take values 0..99
PRIOR_SD_THETA, NOISE_Z = 2.0, 0.5


def normal_normal(y=None, z=None, num_obs=NUM_OBS):
    """mu ~ N(0, 1), y_i ~ N(mu, 1); theta ~ N(0, 2^2) in R^2, z_i ~ N(theta, 0.5^2): conjugate everywhere."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    theta = numpyro.sample("theta", dist.Normal(0.0, PRIOR_SD_THETA).expand([2]).to_event(1))
    with numpyro.plate("obs", num_obs):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        numpyro.sample("z", dist.Normal(theta, NOISE_Z).to_event(1), obs=z)


def analytic_sampler(sd_scale=1.0):
    """Exact posterior draws: mu | y ~ N(sum y / (1 + n), 1 / (1 + n)); theta_j | z ~ N(m_j, 1 / prec) with
    prec = 1 / 2^2 + n / 0.5^2 and m_j = (sum_i z_ij / 0.5^2) / prec. ``sd_scale`` != 1 makes it wrong."""

    def sampler(key, data):
        y, z = data["y"], data["z"]
        n = y.shape[0]
        precision_mu = 1.0 + n
        precision_theta = 1.0 / PRIOR_SD_THETA**2 + n / NOISE_Z**2
        mean_theta = z.sum(axis=0) / NOISE_Z**2 / precision_theta
        key_mu, key_theta = jax.random.split(key)
        return {
            "mu": y.sum() / precision_mu + sd_scale * jax.random.normal(key_mu, (NUM_DRAWS,)) / jnp.sqrt(precision_mu),
            "theta": mean_theta + sd_scale * jax.random.normal(key_theta, (NUM_DRAWS, 2)) / jnp.sqrt(precision_theta),
        }

    return sampler


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {"y": rng.normal(size=NUM_OBS), "z": rng.normal(size=(NUM_OBS, 2)), "num_obs": NUM_OBS}


@pytest.fixture(scope="module")
def exact_result(data):
    return sbc(normal_normal, data, num_datasets=200, sampler=analytic_sampler(), vectorized=True, thin=1, seed=0)


def test_exact_sampler_passes_uniformity(exact_result):
    """Exact posterior draws make every rank uniform on 0..99 (Talts et al. 2018, theorem 1).

    Chi-square over 20 bins with 200 data sets: p > 0.01 for every coordinate (fixed seed)."""
    assert exact_result.num_ranks == NUM_DRAWS + 1
    assert exact_result.thinning == 1
    assert exact_result.ranks["mu"].shape == (200,)
    assert exact_result.ranks["theta"].shape == (200, 2)
    for ranks in exact_result.ranks.values():
        assert ranks.min() >= 0 and ranks.max() <= NUM_DRAWS
    pvalues = exact_result.uniformity_pvalues()
    assert set(pvalues) == {"mu", "theta"} and pvalues["theta"].shape == (2,)
    assert all(np.all(p > 0.01) for p in pvalues.values()), pvalues


def test_overconfident_sampler_fails_uniformity(data):
    """A sampler whose posterior sd is halved puts the prior draw outside most posterior draws: U-shaped ranks.

    Under the wrong sampler P(rank in the outer 10 %) is about 0.4 instead of 0.1, so the chi-square test
    over 200 data sets rejects with p far below 1e-3 for every coordinate."""
    result = sbc(normal_normal, data, num_datasets=200, sampler=analytic_sampler(0.5), vectorized=True, thin=1)
    pvalues = result.uniformity_pvalues()
    assert all(np.all(p < 1e-3) for p in pvalues.values()), pvalues


def test_prior_draws_follow_the_prior(exact_result):
    """The simulated parameters are prior draws: mean 0 and sd 1 (mu), 2 (theta) within 5 standard errors."""
    mu, theta = exact_result.prior_draws["mu"], exact_result.prior_draws["theta"]
    assert abs(mu.mean()) < 5 / np.sqrt(200)
    assert np.all(np.abs(theta.mean(axis=0)) < 5 * PRIOR_SD_THETA / np.sqrt(200))
    assert abs(mu.std() - 1.0) < 5 / np.sqrt(400)


def test_host_loop_matches_vectorised_run(data, exact_result):
    """The looped sampler path uses the same per-data-set keys as the vmapped one: identical ranks."""
    looped = sbc(normal_normal, data, num_datasets=200, sampler=jax.jit(analytic_sampler()), thin=1, seed=0)
    for name in exact_result.ranks:
        np.testing.assert_array_equal(looped.ranks[name], exact_result.ranks[name])


def test_thinning_and_explicit_observed(data):
    """thin=3 keeps ceil(99 / 3) = 33 draws (ranks 0..33); observed may be named explicitly."""
    result = sbc(
        normal_normal, data, num_datasets=20, sampler=analytic_sampler(), vectorized=True, thin=3, observed=["y", "z"]
    )
    assert result.num_ranks == 34 and result.thinning == 3
    assert result.ranks["mu"].max() <= 33


def test_auto_thinning_on_autocorrelated_draws(data):
    """An AR(1) 'sampler' with rho = 0.9 has ESS about n (1 - rho) / (1 + rho) = n / 19: "auto" must thin by
    a stride well above 1 (checked > 5), while exact draws keep a stride of 1 or 2."""

    def sticky_sampler(key, data):
        exact = analytic_sampler()(key, data)
        rho = 0.9

        def ar1(draws):
            centred = draws - draws.mean(axis=0)

            def step(previous, innovation):
                current = rho * previous + jnp.sqrt(1 - rho**2) * innovation
                return current, current

            _, path = jax.lax.scan(step, centred[0], centred[1:])
            return draws.mean(axis=0) + jnp.concatenate([centred[:1], path])

        return {name: ar1(values) for name, values in exact.items()}

    sticky = sbc(normal_normal, data, num_datasets=20, sampler=sticky_sampler, vectorized=True)
    exact = sbc(normal_normal, data, num_datasets=20, sampler=analytic_sampler(), vectorized=True)
    assert sticky.thinning > 5
    assert exact.thinning <= 2


def test_uniformity_pvalue_of_perfectly_flat_ranks():
    """Ranks that fill every value 0..9 equally often have chi-square statistic 0 and p = 1; ranks all at 0
    have p ~ 0. Unequal bins (10 ranks, 3 bins) use expected counts proportional to bin widths."""
    flat = SBCResult(ranks={"a": np.tile(np.arange(10), 6)}, num_ranks=10, prior_draws={}, thinning=1)
    assert flat.uniformity_pvalues(num_bins=5)["a"] == pytest.approx(1.0)
    assert flat.uniformity_pvalues(num_bins=3)["a"] == pytest.approx(1.0)
    piled = SBCResult(ranks={"a": np.zeros(60, dtype=int)}, num_ranks=10, prior_draws={}, thinning=1)
    assert piled.uniformity_pvalues(num_bins=5)["a"] < 1e-10
    with pytest.raises(ValueError, match="num_bins"):
        flat.uniformity_pvalues(num_bins=11)


def test_plot_draws_one_panel_per_coordinate(exact_result):
    import matplotlib.pyplot as plt

    axes = exact_result.plot()
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == ["mu", "theta[0]", "theta[1]"]
    assert all(len(ax.collections) >= 1 and len(ax.patches) >= 2 for ax in axes)  # band, expected, ranks
    plt.close("all")
    _, too_few = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="Axes"):
        exact_result.plot(ax=too_few)
    plt.close("all")


def test_errors(data):
    sampler = analytic_sampler()
    with pytest.raises(ValueError, match="not in data"):
        sbc(normal_normal, data, num_datasets=5, sampler=sampler, observed="w")
    with pytest.raises(ValueError, match="num_datasets"):
        sbc(normal_normal, data, num_datasets=1, sampler=sampler)
    with pytest.raises(ValueError, match="thin"):
        sbc(normal_normal, data, num_datasets=5, sampler=sampler, thin=0)
    with pytest.raises(ValueError, match="vectorized=True needs sampler"):
        sbc(normal_normal, data, num_datasets=5, vectorized=True)
    with pytest.raises(ValueError, match="samplax.fit"):
        sbc(normal_normal, data, num_datasets=5, sampler=sampler, warmup=10)
    with pytest.raises(ValueError, match="no observed sample site"):
        sbc(normal_normal, {"num_obs": NUM_OBS}, num_datasets=5, sampler=sampler)
    with pytest.raises(ValueError, match="latent site 'theta'"):
        sbc(normal_normal, data, num_datasets=5, sampler=lambda key, d: {"mu": jnp.zeros(10)})
    with pytest.raises(ValueError, match="shape"):
        sbc(
            normal_normal,
            data,
            num_datasets=5,
            sampler=lambda key, d: {"mu": jnp.zeros(10), "theta": jnp.zeros((10, 3))},
        )


def test_observed_site_fed_by_a_transformed_argument_needs_a_mapping():
    """A site whose value is not literally an argument cannot be matched automatically; a dict names it."""

    def scaled(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y_scaled", dist.Normal(mu, 1.0).expand([4]), obs=None if y is None else 2.0 * y)

    data = {"y": np.ones(4)}
    with pytest.raises(ValueError, match="does not take its value from any data argument"):
        sbc(scaled, data, num_datasets=5, sampler=lambda key, d: {"mu": jnp.zeros(10)})


def test_observed_mapping_when_data_holds_no_observations():
    """With observed={argument: site}, data may hold only sizes: the sites are simulated and ranked as usual."""
    result = sbc(
        normal_normal,
        {"num_obs": NUM_OBS},
        observed={"y": "y", "z": "z"},
        num_datasets=20,
        sampler=analytic_sampler(),
        vectorized=True,
        thin=1,
    )
    assert set(result.ranks) == {"mu", "theta"} and result.num_ranks == NUM_DRAWS + 1
    with pytest.raises(ValueError, match="not a sample site"):
        sbc(normal_normal, {"num_obs": NUM_OBS}, observed={"y": "w"}, num_datasets=5, sampler=analytic_sampler())


def test_default_path_calls_samplax_fit_per_dataset(data, monkeypatch):
    """Without sampler=, each data set goes to samplax.fit(model, data, method=..., progress=False, seed=...,
    **fit_kwargs) and its posterior group (chain, draw) is ranked; the fits' warnings come back as one.
    samplax.fit is replaced by a stand-in that returns exact draws in 2 chains x 49 draws."""
    import types

    import arviz as az

    import samplax

    calls = []

    def fake_fit(model, fit_data, *, method, progress, seed, **options):
        calls.append({"method": method, "progress": progress, "seed": seed, **options})
        draws = analytic_sampler()(jax.random.PRNGKey(seed), fit_data)
        posterior = {
            "mu": np.asarray(draws["mu"][:98]).reshape(2, 49),
            "theta": np.asarray(draws["theta"][:98]).reshape(2, 49, 2),
        }
        if len(calls) % 2:
            import warnings

            warnings.warn("R-hat is above 1.01", UserWarning, stacklevel=2)
        return types.SimpleNamespace(idata=az.from_dict(posterior=posterior))

    monkeypatch.setattr(samplax, "fit", fake_fit)
    with pytest.warns(UserWarning, match="2 of 4 SBC fits raised warnings"):
        result = sbc(normal_normal, data, num_datasets=4, method="mala", thin=2, warmup=10)
    assert len(calls) == 4 and len({c["seed"] for c in calls}) == 4
    assert all(c["method"] == "mala" and c["progress"] is False and c["warmup"] == 10 for c in calls)
    assert result.num_ranks == 2 * 25 + 1  # ceil(49 / 2) per chain and result.thinning == 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sbc_with_real_nuts_fits_is_uniform():
    """SBC of samplax's NUTS on the normal-normal zoo model: 40 data sets, ranks of the prior draw among thinned
    posterior draws pass a chi-square uniformity test (p > 0.001). Compiled programs are cached across data sets of
    the same shapes, so only the first fit compiles."""
    from samplax.models import zoo

    entry = zoo.get("normal_normal")
    data = entry.make_data(seed=0, num_observations=5)
    result = sbc(entry.model, data, num_datasets=40, method="nuts", chains=2, warmup=200, draws=200, thin=4, seed=3)
    pvalues = result.uniformity_pvalues()
    assert all(p > 1e-3 for p in pvalues.values()), pvalues
