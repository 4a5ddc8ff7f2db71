"""Models written the way NumPyro users write them: flat priors, data read as Python values, -inf regions, plates
with names, predictive runs. Each statistical check has an exact answer; tolerances are 4 Monte Carlo standard errors
(ArviZ's MCSE) for means and 10 % for standard deviations (their estimation error is about sd / sqrt(2 ESS), under
2 % at the ESS these runs reach, so 10 % is over 5 standard errors)."""

import json

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import numpy as jnp
from numpyro.distributions import constraints

import samplax
from samplax.models.bridge import UnsupportedModelError, build_target

RUN = dict(chains=4, warmup=500, draws=500, seed=0, progress=False)


def assert_moments(fit, name, mean, sd, index=()):
    """Posterior mean within 4 MCSE of ``mean`` and posterior sd within 10 % of ``sd`` (component ``index``)."""
    draws = fit.idata.posterior[name]
    summary = az.summary(fit.idata, var_names=[name], kind="all")
    row = summary.iloc[int(np.ravel_multi_index(index, draws.shape[2:])) if index else 0]
    values = draws.values.reshape(draws.shape[:2] + (-1,))[
        ..., int(np.ravel_multi_index(index, draws.shape[2:])) if index else 0
    ]
    assert abs(values.mean() - mean) < 4 * row["mcse_mean"], (name, index, values.mean(), mean, row["mcse_mean"])
    assert abs(values.std() / sd - 1) < 0.10, (name, index, values.std(), sd)


# ----------------------------------------------------------------------------------------------------------------
def flat_prior_mean(y, sigma=2.0):
    """Stan's default: no prior statement, so a flat prior on the real line."""
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
    with numpyro.plate("obs", len(y)):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


@pytest.mark.slow
def test_flat_prior_gives_the_likelihood_posterior():
    """mu | y ~ N(mean(y), sigma / sqrt(n)) under a flat prior: NumPyro initialises with init_to_uniform, so does
    samplax (a prior draw does not exist)."""
    y = np.random.default_rng(3).normal(1.5, 2.0, size=50)
    fit = samplax.fit(flat_prior_mean, {"y": y}, **RUN)
    assert_moments(fit, "mu", y.mean(), 2.0 / np.sqrt(50))
    assert fit.idata.posterior["mu"].dims == ("chain", "draw")


def counts_model(counts):
    """Data read as Python values: the total count and the number of categories."""
    categories = int(counts.shape[0])
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(categories)))
    numpyro.sample("counts", dist.Multinomial(int(counts.sum()), p), obs=counts)


@pytest.mark.slow
def test_data_read_as_python_values_runs_with_data_as_constants():
    """int(counts.sum()) cannot be traced with the data as arguments: samplax closes over them instead, records the
    mode, and the posterior is the exact Dirichlet(1 + counts)."""
    counts = np.array([10, 20, 30])
    fit = samplax.fit(counts_model, {"counts": counts}, **RUN)
    assert fit.idata.attrs["data_mode"] == "constants"
    alpha = 1.0 + counts
    mean = alpha / alpha.sum()
    sd = np.sqrt(alpha * (alpha.sum() - alpha) / (alpha.sum() ** 2 * (alpha.sum() + 1)))
    for k in range(3):
        assert_moments(fit, "p", mean[k], sd[k], index=(k,))


def test_data_mode_is_keyed_on_the_data():
    """Closed-over data are part of the compiled program, so other counts must give another posterior."""
    a = build_target(counts_model, {"counts": np.array([10, 20, 30])})
    b = build_target(counts_model, {"counts": np.array([30, 20, 10])})
    assert a.data_mode == b.data_mode == "constants"
    assert a.static_data_key() != b.static_data_key()
    plain = build_target(flat_prior_mean, {"y": np.ones(5)})
    assert plain.data_mode == "arguments" and plain.data_arrays()


def half_normal_by_factor():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.factor("positive", jnp.where(x > 0, 0.0, -jnp.inf))


@pytest.mark.slow
def test_minus_infinity_region_half_normal():
    """A factor that is -inf for x < 0 turns N(0, 1) into a half-normal: mean sqrt(2/pi), sd sqrt(1 - 2/pi).
    Half of the uniform starts are in the -inf region and are redrawn; divergences at the wall are expected."""
    target = build_target(half_normal_by_factor, {})
    starts = target.init(jax.random.key(0), 64)
    assert (np.asarray(starts) > 0).all()
    assert target.factor_sites == ("positive",) and not target.observed
    with pytest.warns(samplax.ConvergenceWarning):
        fit = samplax.fit(half_normal_by_factor, {}, chains=4, warmup=500, draws=1000, seed=1, progress=False)
    assert_moments(fit, "x", np.sqrt(2 / np.pi), np.sqrt(1 - 2 / np.pi))
    assert "log_likelihood" not in fit.idata.groups()  # a factor is not an observation


def test_all_starts_invalid_names_the_site():
    def impossible():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.factor("wall", jnp.where(x > 100.0, 0.0, -jnp.inf))

    with pytest.raises(ValueError, match=r"after 100 draws.*site 'wall'"):
        build_target(impossible, {}).init(jax.random.key(0), 2)


def gp_poisson(x, k):
    """posteriordb's gp_pois_regr: a latent GP through exp into a Poisson rate (a uniform start can overflow exp)."""
    rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
    f_tilde = numpyro.sample("f_tilde", dist.Normal(jnp.zeros(len(x)), 1.0).to_event(1))
    cov = alpha**2 * jnp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / rho**2) + 1e-6 * jnp.eye(len(x))
    f = numpyro.deterministic("f", jnp.linalg.cholesky(cov) @ f_tilde)
    numpyro.sample("k", dist.Poisson(jnp.exp(f)), obs=k)


@pytest.mark.slow
def test_gp_poisson_initialises():
    x = np.linspace(-10, 10, 11)
    k = np.array([40, 37, 29, 12, 4, 3, 9, 19, 77, 82, 33])
    target = build_target(gp_poisson, {"x": x, "k": k})
    starts = target.init(jax.random.key(0), 8)
    logdensity = np.asarray(jax.vmap(target.logdensity)(starts))
    assert np.isfinite(logdensity).all() and target.dim == 13


def test_init_strategies_are_numpyros():
    target = build_target(flat_prior_mean, {"y": np.ones(5)})
    for strategy in ("uniform", "median", "sample", "feasible", "prior"):
        starts = np.asarray(target.init(jax.random.key(1), 3, strategy))
        assert starts.shape == (3, 1) and np.isfinite(starts).all()
        assert (np.abs(starts) <= 2).all()  # a flat prior has no draws: median and sample fall back to uniform
    np.testing.assert_array_equal(np.asarray(target.init(jax.random.key(1), 2, "feasible")), 0.0)
    with pytest.raises(ValueError, match=r"init names \['nu'\].*\['mu'\]"):
        target.init(jax.random.key(0), 1, {"nu": 1.0})
    positive = build_target(lambda: numpyro.sample("s", dist.HalfNormal(1.0)), {})
    with pytest.raises(ValueError, match=r"site 's'.*outside its support"):
        positive.init(jax.random.key(0), 1, {"s": -1.0})


# ----------------------------------------------------------------------------------------------------------------
def schools_by_group(group, x, y=None):
    """A hierarchical regression with named plates, a derived (deterministic) mean and categories from the data."""
    num_groups = int(group.max()) + 1
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    with numpyro.plate("groups", num_groups):
        a = numpyro.sample("a", dist.Normal(mu, tau))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", len(x)):
        m = numpyro.deterministic("m", a[group] + b * x)
        numpyro.sample("y", dist.Normal(m, sigma), obs=y)


@pytest.fixture(scope="module")
def grouped():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 4, 40)
    x = rng.normal(size=40)
    data = {"group": group, "x": x, "y": rng.normal(0.5 * group + x, 0.5)}
    fit = samplax.fit(
        schools_by_group,
        data,
        chains=2,
        warmup=200,
        draws=100,
        seed=0,
        progress=False,
        coords={"groups": ["w", "x", "y", "z"]},
        dims={"b": ["slope"]},
    )
    return fit, data


@pytest.mark.slow
def test_dims_are_named_from_plates_as_arviz_names_them(grouped):
    from arviz.data.io_numpyro import infer_dims

    fit, data = grouped
    expected = infer_dims(schools_by_group, (), data)
    for group in ("posterior", "log_likelihood", "observed_data"):
        for name, da in fit.idata[group].data_vars.items():
            site_dims = [d for d in da.dims if d not in ("chain", "draw")]
            if name in expected:
                assert site_dims == expected[name], (group, name)
    assert fit.idata.posterior["a"].coords["groups"].values.tolist() == ["w", "x", "y", "z"]
    assert fit.idata.posterior["b"].dims == ("chain", "draw")  # dims for a scalar site are ignored, as in ArviZ
    assert sorted(fit.idata.constant_data.data_vars) == ["group", "x"]
    np.testing.assert_array_equal(fit.idata.constant_data["group"].values, data["group"])
    assert json.loads(fit.idata.attrs["deterministic_sites"]) == ["m"]
    assert json.loads(fit.idata.attrs["observed_data_keys"]) == {"y": "y"}


def test_bad_coords_and_dims_are_refused_before_tracing():
    with pytest.raises(ValueError, match="coords must be a dict"):
        samplax.fit(flat_prior_mean, {"y": np.ones(3)}, coords=["obs"], progress=False)
    with pytest.raises(ValueError, match=r"dims\['y'\] must be a list"):
        samplax.fit(flat_prior_mean, {"y": np.ones(3)}, dims={"y": "obs"}, progress=False)


def test_predict_after_load_needs_only_the_model(grouped, tmp_path):
    fit, data = grouped
    path = fit.save(tmp_path / "fit.nc")
    loaded = samplax.load(path)
    with pytest.raises(ValueError, match="pass it: fit.predict"):
        loaded.predict()
    idata = loaded.predict(model=schools_by_group, seed=2)
    predicted = idata.posterior_predictive["y"]
    assert predicted.dims == ("chain", "draw", "obs") and predicted.shape == (2, 100, 40)
    # y_rep | theta ~ N(m, sigma): standardised residuals of the replicates are N(0, 1)
    post = loaded.idata.posterior
    z = (predicted - post["m"]) / post["sigma"]
    assert abs(float(z.mean())) < 4 / np.sqrt(z.size) and abs(float(z.std()) - 1) < 0.05
    again = fit.predict(seed=2)  # the live fit gives the same draws from the same seed
    np.testing.assert_allclose(again.posterior_predictive["y"].values, predicted.values, rtol=1e-5)


def conjugate(y=None, n=10):
    mu = numpyro.sample("mu", dist.Normal(1.0, 2.0))
    with numpyro.plate("obs", n):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_prior_predictive_moments_and_groups():
    """mu ~ N(1, 2) and y_i | mu ~ N(mu, 1): prior mean 1, sd 2; prior predictive mean 1, sd sqrt(5)."""
    draws = 4000
    idata = samplax.prior_predictive(conjugate, {"y": np.zeros(10)}, draws=draws, seed=0)
    assert {"prior", "prior_predictive", "observed_data"} <= set(idata.groups())
    mu = idata.prior["mu"].values.ravel()
    y = idata.prior_predictive["y"]
    assert y.dims == ("chain", "draw", "obs") and y.shape == (1, draws, 10)
    assert abs(mu.mean() - 1.0) < 4 * 2.0 / np.sqrt(draws) and abs(mu.std() / 2.0 - 1) < 0.05
    first = y.values[..., 0].ravel()
    assert abs(first.mean() - 1.0) < 4 * np.sqrt(5 / draws) and abs(first.std() / np.sqrt(5) - 1) < 0.05
    with pytest.raises(ValueError, match=r"\['mu'\] have improper"):
        samplax.prior_predictive(flat_prior_mean, {"y": np.ones(3)})


def test_methods_refuse_unsupported_features_before_compiling():
    with pytest.raises(UnsupportedModelError, match="improper_prior") as info:
        samplax.fit(flat_prior_mean, {"y": np.ones(5)}, method="smc", progress=False)
    assert info.value.feature == "improper_prior" and info.value.method == "smc"

    def no_plate(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(UnsupportedModelError, match="no_observation_plate"):
        samplax.fit(no_plate, {"y": 1.0}, method="admm", progress=False)

    def eight_schools(sigma, y=None):  # one effect per school, in the observations' plate: shards cannot split it
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("schools", len(sigma)):
            theta = numpyro.sample("theta", dist.Normal(mu, tau))
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    data = {"sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18]), "y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12])}
    for method in ("admm", "dsgld"):
        with pytest.raises(UnsupportedModelError, match="latent_in_observation_plate"):
            samplax.fit(eight_schools, data, method=method, progress=False)

    def bounded_below(y=None):  # a support bplmc has no Legendre function for: refused, naming the site and the fix
        kappa = numpyro.sample("kappa", dist.Pareto(1.0, 1.5))
        with numpyro.plate("obs", 3):
            numpyro.sample("y", dist.Normal(kappa, 1.0), obs=y)

    with pytest.raises(UnsupportedModelError, match="site 'kappa'.*legendre="):
        samplax.fit(bounded_below, {"y": np.ones(3)}, method="bplmc", progress=False)


def ar2_scan(y):
    """NumPyro's ar2 example: the likelihood inside numpyro.contrib.control_flow.scan under condition; the data are
    a JAX array indexed with scan's traced step (NumPy data would fail there, in NumPyro too)."""
    from numpyro.contrib.control_flow import scan

    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))

    def transition(y_prev, _):
        y_t = numpyro.sample("y", dist.Normal(alpha * y_prev, sigma))
        return y_t, None

    with numpyro.handlers.condition(data={"y": y[1:]}):
        scan(transition, y[0], jnp.arange(y.shape[0] - 1))


def test_scan_models_keep_jax_data_and_nested_settings_are_data():
    target = build_target(ar2_scan, {"y": jnp.sin(jnp.arange(20.0))})
    assert target.dim == 2 and list(target.observed) == ["y"]

    def with_settings(x, hypers, y=None):
        scale = numpyro.sample("scale", dist.HalfNormal(hypers["prior_scale"]))
        with numpyro.plate("obs", len(x)):
            numpyro.sample("y", dist.Normal(0.0, scale), obs=y)

    small = build_target(with_settings, {"x": np.ones(3), "y": np.ones(3), "hypers": {"prior_scale": 1.0}})
    large = build_target(with_settings, {"x": np.ones(3), "y": np.ones(3), "hypers": {"prior_scale": 2.0}})
    assert small.static_data_key() != large.static_data_key()  # a nested setting is part of the program's key
    with pytest.raises(ValueError, match=r"data 'hypers\['prior_scale'\]' has dtype <U1"):
        build_target(with_settings, {"x": np.ones(3), "y": np.ones(3), "hypers": {"prior_scale": np.array(["a"])}})


def test_a_site_named_like_a_sample_statistic_keeps_both():
    """posteriordb's mesquite model observes a site called "log_weight", the name of the weighted methods' sample
    statistic: the statistic (chain, draw) must not receive the site's plate dims (it raised KeyError 'N')."""
    from samplax.infer.fit import _inference_data

    def model(N, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("N", N):
            numpyro.sample("log_weight", dist.Normal(mu, 1.0), obs=y)

    target = build_target(model, {"N": 5, "y": np.zeros(5)})
    groups = {
        "posterior": {"mu": np.zeros((2, 3))},
        "sample_stats": {"log_weight": np.zeros((2, 3))},
        "log_likelihood": {"log_weight": np.zeros((2, 3, 5))},
    }
    idata = _inference_data(target, groups, {})
    assert idata.sample_stats["log_weight"].dims == ("chain", "draw")
    assert idata.log_likelihood["log_weight"].shape == (2, 3, 5)


def test_sharding_methods_refuse_observations_that_are_a_slice_of_the_data():
    # an AR(2) model as users write it: the likelihood observes y[2:], so no data array runs along its plate
    def ar2(y):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([2]))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        mu = alpha + beta[0] * y[1:-1] + beta[1] * y[:-2]
        with numpyro.plate("time", len(y) - 2):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y[2:])

    y = np.cumsum(np.random.default_rng(0).normal(size=40)) * 0.1
    for method in ("admm", "dsgld"):
        with pytest.raises(UnsupportedModelError, match="observations_not_along_data.*y\\[K:\\]"):
            samplax.fit(ar2, {"y": y}, method=method, progress=False)


def test_model_relations_survive_a_prior_draw_that_fails_validation():
    # posteriordb's surgical model: NumPyro's get_model_relations traces a prior draw, and inside fit's compiled
    # warm-up InverseGamma(0.001, 0.001) drew a variance that failed Binomial's validation ("invalid logits");
    # bplmc, myula and the Gibbs motif compiler read the relations through samplax.models.composite.model_relations
    from samplax.models.composite import latent_dependencies

    def surgical(n, r=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1000.0))
        sigmasq = numpyro.sample("sigmasq", dist.InverseGamma(0.001, 0.001))
        with numpyro.plate("hospitals", len(n)):
            b = numpyro.sample("b", dist.Normal(mu, jnp.sqrt(sigmasq)))
            numpyro.sample("r", dist.Binomial(n, logits=b), obs=r)

    data = {
        "n": np.array([47, 148, 119, 810, 211, 196, 148, 215, 207, 97, 256, 360]),
        "r": np.array([0, 18, 8, 46, 8, 13, 9, 31, 14, 8, 29, 24]),
    }
    assert latent_dependencies(surgical, (), data) == {"mu": (), "sigmasq": (), "b": ("mu", "sigmasq"), "r": ("b",)}
    fit = samplax.fit(surgical, data, method="myula", chains=1, warmup=10, draws=10, progress=False)
    assert fit.idata.posterior["b"].shape == (1, 10, 12)
