"""Tests for samplax.models.zoo: registry, data generators, and every exact answer against an independent one.

Exact answers are checked three ways: (1) identities that hold to rounding, e.g. log Z = log p(data, theta) -
log p(theta | data) at any theta with the joint taken from NumPyro's own `log_density`, so the constants are
NumPyro's; (2) quadrature of NumPyro's joint density on a fine grid (1-D and 2-D), in float64; (3) Monte Carlo
with tolerances of 4 standard errors. Everything runs in float64 through `jax.enable_x64(True)`.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density
from scipy import optimize, stats
from scipy.integrate import trapezoid
from scipy.special import expit, gammaln, logsumexp, xlogy

from samplax.models import zoo

ALL_NAMES = (
    "normal_normal",
    "eight_schools",
    "eight_schools_centered",
    "logistic_regression",
    "breast_cancer",
    "funnel",
    "banana",
    "sparse_regression",
    "dirichlet_multinomial",
    "dirichlet_multinomial_sparse",
    "gamma_poisson",
    "gaussian_mixture",
    "box_bounded",
)
OBSERVED_NAMES = {"y", "counts", "successes"}


def _has_sklearn() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


RUNNABLE_NAMES = [name for name in ALL_NAMES if name != "breast_cancer" or _has_sklearn()]


def _json_round_trip(data: dict) -> dict:
    as_lists = {
        key: (np.asarray(value).tolist() if isinstance(value, np.ndarray) else value) for key, value in data.items()
    }
    return json.loads(json.dumps(as_lists))


def _trace(model, data: dict, seed: int = 0):
    """The model under numpyro's seed + trace handlers: {site: (type, observed, value)}."""
    trace = handlers.trace(handlers.seed(model, jax.random.PRNGKey(seed))).get_trace(**data)
    return {
        name: (site["type"], site.get("is_observed", False), np.asarray(site["value"]))
        for name, site in trace.items()
        if site["type"] in ("sample", "deterministic")
    }


def _latent_values(sites) -> dict:
    return {name: value for name, (kind, observed, value) in sites.items() if kind == "sample" and not observed}


def _log_joint(model, data: dict):
    """params -> NumPyro's log joint density in constrained space (numpyro.infer.util.log_density), jitted."""
    return jax.jit(lambda params: log_density(model, (), data, params)[0])


def _batched_log_joint(model, data: dict):
    """params (each with a leading batch axis) -> NumPyro's log joint density, in constrained space."""
    return jax.jit(jax.vmap(lambda params: log_density(model, (), data, params)[0]))


def _grid_moments(log_joint, site: str, grid, to_value, log_jacobian):
    """log Z, mean, sd of a scalar site by the trapezoid rule on `grid` in a transformed coordinate t."""
    values = to_value(grid)
    log_weights = np.asarray(log_joint({site: jnp.asarray(values)})) + log_jacobian(grid)
    shift = log_weights.max()
    weights = np.exp(log_weights - shift)
    mass = trapezoid(weights, grid)
    mean = trapezoid(weights * values, grid) / mass
    variance = trapezoid(weights * (values - mean) ** 2, grid) / mass
    return np.log(mass) + shift, mean, np.sqrt(variance)


# --- registry ------------------------------------------------------------------------------------------------------


# discrete-latent models of the meta_gibbs issue, tested in tests/infer/test_gibbs.py
DISCRETE_NAMES = ["grid_network", "open_universe_mixture"]


def test_registry_lists_every_model_and_rejects_unknown_names():
    assert zoo.names() == sorted(list(ALL_NAMES) + DISCRETE_NAMES)
    listing = dict(zoo.listing())
    assert set(listing) == set(list(ALL_NAMES) + DISCRETE_NAMES)
    for name in list(ALL_NAMES) + DISCRETE_NAMES:
        entry = zoo.get(name)
        assert isinstance(entry, zoo.ZooModel) and entry.name == name
        assert listing[name] == entry.description and entry.description
        assert entry.tags and all(isinstance(tag, str) for tag in entry.tags)
    with pytest.raises(ValueError, match="unknown zoo model 'nope'.*normal_normal"):
        zoo.get("nope")


def test_breast_cancer_names_the_extra_when_scikit_learn_is_missing(monkeypatch):
    """The model stays registered without scikit-learn; asking for its data names the `data` extra."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert "breast_cancer" in dict(zoo.listing())
    with pytest.raises(ImportError, match=r"samplax\[data\]"):
        zoo.get("breast_cancer").make_data()


@pytest.mark.skipif(not _has_sklearn(), reason="scikit-learn (the `data` extra) is not installed")
def test_breast_cancer_data_is_standardised():
    data = zoo.get("breast_cancer").make_data()
    assert data["X"].shape == (569, 30) and data["y"].shape == (569,)
    np.testing.assert_allclose(data["X"].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(data["X"].std(axis=0), 1.0, atol=1e-10)
    assert set(np.unique(data["y"])) == {0, 1}


# --- every model: runs, JSON-able data, prior predictive -------------------------------------------------------------


@pytest.mark.parametrize("name", RUNNABLE_NAMES)
@pytest.mark.slow
def test_model_runs_on_its_json_round_tripped_data(name):
    """make_data survives JSON; the model traces on it and gives the same log joint as on the numpy data, which
    may also be passed to jit as traced arguments."""
    entry = zoo.get(name)
    data = entry.make_data(seed=0)
    loaded = _json_round_trip(data)
    sites = _trace(entry.model, loaded)
    latents = _latent_values(sites)
    assert latents, "every zoo model has latent sites"
    for name, (kind, observed, value) in sites.items():
        if kind == "sample" and observed:
            assert name in OBSERVED_NAMES and name in data
            np.testing.assert_allclose(value, np.asarray(data[name]), rtol=1e-6)  # float32
    # The numpy arrays go in as jit arguments (traced), as a bridge that jits over data would pass them.
    arrays = {key: value for key, value in data.items() if isinstance(value, np.ndarray)}
    scalars = {key: value for key, value in data.items() if key not in arrays}
    over_data = jax.jit(lambda arrays, params: log_density(entry.model, (), {**arrays, **scalars}, params)[0])
    from_numpy = over_data(arrays, latents)
    from_json = _log_joint(entry.model, loaded)(latents)
    assert np.isfinite(from_numpy)
    np.testing.assert_allclose(from_json, from_numpy, rtol=1e-6)  # both float32: the same numbers, the same ops


@pytest.mark.parametrize("name", RUNNABLE_NAMES)
def test_prior_predictive_with_observed_arguments_none(name):
    """Observed arguments set to None: the model draws them instead, with the data's shape."""
    entry = zoo.get(name)
    data = entry.make_data(seed=0)
    observed = [key for key in data if key in OBSERVED_NAMES]
    sites = _trace(entry.model, {**data, **{key: None for key in observed}}, seed=1)
    for key in observed:
        kind, is_observed, value = sites[key]
        assert kind == "sample" and not is_observed
        assert value.shape == np.shape(data[key])


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("normal_normal", {}),
        ("gamma_poisson", {}),
        ("dirichlet_multinomial", {}),
        ("box_bounded", {"true_probability": 0.4}),
        ("logistic_regression", {}),
        ("sparse_regression", {}),
        ("gaussian_mixture", {}),
    ],
)
def test_make_data_depends_on_the_seed_alone(name, sizes):
    make_data = zoo.get(name).make_data
    first, again, other = make_data(seed=0, **sizes), make_data(seed=0, **sizes), make_data(seed=1, **sizes)
    assert json.dumps(_json_round_trip(first)) == json.dumps(_json_round_trip(again))
    assert json.dumps(_json_round_trip(first)) != json.dumps(_json_round_trip(other))


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_observations"):
        zoo.get("normal_normal").make_data(num_observations=0)
    with pytest.raises(ValueError, match="num_observations"):
        _trace(zoo.get("normal_normal").model, {"y": None})
    with pytest.raises(ValueError, match="dimension"):
        zoo.get("funnel").make_data(dimension=1)
    with pytest.raises(ValueError, match="num_nonzero"):
        zoo.get("sparse_regression").make_data(num_features=3, num_nonzero=4)
    with pytest.raises(ValueError, match="concentration"):
        zoo.get("dirichlet_multinomial").make_data(concentration=-1.0)
    data = zoo.get("dirichlet_multinomial").make_data()
    with pytest.raises(ValueError, match="total_count"):
        _trace(zoo.get("dirichlet_multinomial").model, {**data, "total_count": data["total_count"] + 1})
    with pytest.raises(ValueError, match="'y'.*sigma"):
        _trace(zoo.get("eight_schools").model, {"y": np.zeros(7), "sigma": np.ones(8)})
    with pytest.raises(ValueError, match="'X'"):
        _trace(zoo.get("logistic_regression").model, {"X": np.zeros(5), "y": None})


# --- one-dimensional conjugate models: quadrature of NumPyro's joint --------------------------------------------------

_IDENTITY = (lambda t: t, lambda t: np.zeros_like(t))
_LOG = (np.exp, lambda t: t)
_LOGIT = (expit, lambda t: np.log(expit(t)) + np.log(expit(-t)))


@pytest.mark.parametrize(
    "name, sizes, site, grid, transform",
    [
        ("normal_normal", {}, "mu", np.linspace(-15.0, 15.0, 20001), _IDENTITY),
        ("gamma_poisson", {}, "lam", np.linspace(-40.0, 5.0, 20001), _LOG),
        # shape 0.5, rare counts: the posterior shape a + sum y is below 1 and the density is infinite at 0.
        (
            "gamma_poisson",
            {"shape": 0.5, "true_rate": 0.05, "num_observations": 5},
            "lam",
            np.linspace(-120.0, 5.0, 40001),
            _LOG,
        ),
        ("box_bounded", {}, "theta", np.linspace(-60.0, 10.0, 40001), _LOGIT),
        ("box_bounded", {"prior_alpha": 0.5, "prior_beta": 2.0}, "theta", np.linspace(-120.0, 10.0, 40001), _LOGIT),
    ],
)
def test_one_dimensional_reference_matches_quadrature(name, sizes, site, grid, transform):
    """Exact mean, sd and log Z against the trapezoid rule on NumPyro's joint density.

    The grid is in a coordinate where the integrand is smooth and decays exponentially at both ends (log for a
    rate, logit for a probability), where the trapezoid rule converges geometrically; the grid's ends carry
    weight below e^-25 of the peak, so the quadrature error is far below the 1e-7 relative tolerance.
    """
    entry = zoo.get(name)
    data = entry.make_data(seed=0, **sizes)
    reference = entry.reference(data)
    with jax.enable_x64(True):
        log_z, mean, sd = _grid_moments(_batched_log_joint(entry.model, data), site, grid, *transform)
    np.testing.assert_allclose(log_z, reference.log_z, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(mean, reference.mean[site], rtol=1e-7)
    np.testing.assert_allclose(sd, reference.sd[site], rtol=1e-7)


def test_shapes_below_one_pile_mass_at_the_bound():
    """The documented boundary cases really have posterior shape below 1 (density unbounded at the bound)."""
    data = zoo.get("gamma_poisson").make_data(seed=0, shape=0.5, true_rate=0.05, num_observations=5)
    assert 0.5 + np.sum(data["y"]) < 1.0
    box = zoo.get("box_bounded").make_data(seed=0)
    assert box["successes"] == 0


# --- Dirichlet-multinomial ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, sizes", [("dirichlet_multinomial", {"concentration": 0.5}), ("dirichlet_multinomial_sparse", {})]
)
def test_dirichlet_multinomial_log_z_is_joint_minus_posterior(name, sizes):
    """log Z = log p(counts, p) - log Dirichlet(p; alpha + counts) at every p, with the joint from NumPyro."""
    entry = zoo.get(name)
    data = entry.make_data(seed=0, **sizes)
    reference = entry.reference(data)
    posterior = np.asarray(data["concentration"]) + np.asarray(data["counts"])
    draws = np.random.default_rng(1).dirichlet(posterior, size=5)
    draws = np.clip(draws, 1e-300, None)
    draws /= draws.sum(axis=1, keepdims=True)
    with jax.enable_x64(True):
        log_joint = np.asarray(_batched_log_joint(entry.model, data)({"probs": jnp.asarray(draws)}))
    log_posterior = np.array([stats.dirichlet.logpdf(p, posterior) for p in draws])
    np.testing.assert_allclose(log_joint - log_posterior, reference.log_z, rtol=1e-9)
    np.testing.assert_allclose(reference.mean["probs"].sum(), 1.0, rtol=1e-12)


def test_dirichlet_multinomial_monte_carlo_with_concentration_below_one():
    """Z = E_prior[p(counts | p)] and E[p | counts] by importance sampling from the prior, alpha = 0.5, K = 3.

    200k prior draws; Z-hat's standard error is sd(L) / sqrt(M); the self-normalised mean's standard error comes
    from the delta method, sqrt(sum L^2 (p - mean)^2) / sum L. Both must agree with the exact answers within 4
    standard errors. The sd is checked against 200k exact posterior draws (standard error of the sample variance
    sqrt((m4 - var^2) / M)).
    """
    entry = zoo.get("dirichlet_multinomial")
    data = entry.make_data(seed=0, categories=3, total_count=10, concentration=0.5)
    reference = entry.reference(data)
    counts, alpha = np.asarray(data["counts"]), np.asarray(data["concentration"])
    generator = np.random.default_rng(2)
    num_draws = 200_000
    prior = generator.dirichlet(alpha, size=num_draws)
    log_coefficient = gammaln(counts.sum() + 1.0) - gammaln(counts + 1.0).sum()
    likelihood = np.exp(log_coefficient + xlogy(counts, prior).sum(axis=1))
    z_hat = likelihood.mean()
    assert abs(z_hat - np.exp(reference.log_z)) < 4.0 * likelihood.std() / np.sqrt(num_draws)
    mean_hat = likelihood @ prior / likelihood.sum()
    mean_se = np.sqrt((likelihood[:, None] ** 2 * (prior - mean_hat) ** 2).sum(axis=0)) / likelihood.sum()
    assert np.all(np.abs(mean_hat - reference.mean["probs"]) < 4.0 * mean_se)
    posterior = generator.dirichlet(alpha + counts, size=num_draws)
    centred = posterior - posterior.mean(axis=0)
    variance_se = np.sqrt(((centred**4).mean(axis=0) - centred.var(axis=0) ** 2) / num_draws)
    assert np.all(np.abs(centred.var(axis=0) - reference.sd["probs"] ** 2) < 4.0 * variance_se)


def test_dirichlet_multinomial_two_categories_matches_beta_binomial_quadrature():
    """With 2 categories the model is a Beta-binomial: integrate NumPyro's joint over p_1 (logit grid)."""
    entry = zoo.get("dirichlet_multinomial")
    data = {"counts": np.array([0, 7]), "concentration": np.array([0.5, 0.5]), "total_count": 7}
    reference = entry.reference(data)
    grid = np.linspace(-80.0, 40.0, 40001)
    first = expit(grid)
    with jax.enable_x64(True):
        log_joint = _batched_log_joint(entry.model, data)
        log_weights = np.asarray(log_joint({"probs": jnp.stack([first, expit(-grid)], axis=1)}))
    log_weights = log_weights + np.log(first) + np.log(expit(-grid))
    weights = np.exp(log_weights)
    mass = trapezoid(weights, grid)
    mean = trapezoid(weights * first, grid) / mass
    sd = np.sqrt(trapezoid(weights * (first - mean) ** 2, grid) / mass)
    np.testing.assert_allclose(np.log(mass), reference.log_z, rtol=1e-7)
    np.testing.assert_allclose(mean, reference.mean["probs"][0], rtol=1e-7)
    np.testing.assert_allclose(sd, reference.sd["probs"][0], rtol=1e-7)
    beta_binomial = stats.betabinom.logpmf(0, 7, 0.5, 0.5)
    np.testing.assert_allclose(reference.log_z, beta_binomial, rtol=1e-12)


# --- funnel and banana: 2-D quadrature of NumPyro's joint ------------------------------------------------------------


def test_funnel_reference_matches_two_dimensional_quadrature():
    """dimension=2: integrate NumPyro's joint over (v, u) with x = exp(v/2) u (Jacobian exp(v/2)).

    Exact: integral 1 (log Z = 0), sd v = 3, E x^2 = E exp(v) = exp(9/2). Trapezoid on 2401 x 801 nodes over
    10 sd in v and 10 sd in u: error far below the 1e-6 tolerance.
    """
    entry = zoo.get("funnel")
    data = entry.make_data(dimension=2)
    reference = entry.reference(data)
    v = np.linspace(-30.0, 30.0, 2401)
    u = np.linspace(-10.0, 10.0, 801)
    grid_v, grid_u = np.meshgrid(v, u, indexing="ij")
    grid_x = np.exp(grid_v / 2.0) * grid_u
    with jax.enable_x64(True):
        log_joint = _batched_log_joint(entry.model, data)
        values = log_joint({"v": jnp.asarray(grid_v.ravel()), "x": jnp.asarray(grid_x.reshape(-1, 1))})
    density = np.exp(np.asarray(values).reshape(grid_v.shape) + grid_v / 2.0)
    integrate = lambda f: trapezoid(trapezoid(f, u, axis=1), v)  # noqa: E731
    mass = integrate(density)
    np.testing.assert_allclose(np.log(mass), reference.log_z, atol=1e-6)
    np.testing.assert_allclose(integrate(density * grid_v) / mass, reference.mean["v"], atol=1e-6)
    np.testing.assert_allclose(np.sqrt(integrate(density * grid_v**2) / mass), reference.sd["v"], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(integrate(density * grid_x**2) / mass), reference.sd["x"][0], rtol=1e-6)


def test_funnel_default_is_neals_normalised_density():
    """dimension=10 (v plus 9 x's): NumPyro's joint equals the product of normalised normal densities."""
    entry = zoo.get("funnel")
    data = entry.make_data()
    reference = entry.reference(data)
    assert reference.mean["x"].shape == (9,) and reference.log_z == 0.0
    np.testing.assert_allclose(reference.sd["x"], np.exp(9.0 / 4.0))
    generator = np.random.default_rng(3)
    v = 3.0 * generator.normal(size=4)
    x = np.exp(v / 2.0)[:, None] * generator.normal(size=(4, 9))
    with jax.enable_x64(True):
        log_joint = np.asarray(_batched_log_joint(entry.model, data)({"v": jnp.asarray(v), "x": jnp.asarray(x)}))
    expected = stats.norm.logpdf(v, 0.0, 3.0) + stats.norm.logpdf(x, 0.0, np.exp(v / 2.0)[:, None]).sum(axis=1)
    np.testing.assert_allclose(log_joint, expected, rtol=1e-12)


def test_banana_reference_matches_two_dimensional_quadrature():
    """Integrate NumPyro's joint over (x1, u) with x2 = u + b (x1^2 - s^2) (Jacobian 1); exact log Z = 0,
    sd x1 = s, sd x2 = sqrt(1 + 2 b^2 s^4). Trapezoid over 10 sd in each coordinate."""
    entry = zoo.get("banana")
    data = entry.make_data()
    reference = entry.reference(data)
    s, b = data["scale"], data["curvature"]
    x1 = np.linspace(-10.0 * s, 10.0 * s, 2001)
    u = np.linspace(-10.0, 10.0, 801)
    grid_x1, grid_u = np.meshgrid(x1, u, indexing="ij")
    grid_x2 = grid_u + b * (grid_x1**2 - s**2)
    with jax.enable_x64(True):
        values = _batched_log_joint(entry.model, data)(
            {"x1": jnp.asarray(grid_x1.ravel()), "x2": jnp.asarray(grid_x2.ravel())}
        )
    density = np.exp(np.asarray(values).reshape(grid_x1.shape))
    integrate = lambda f: trapezoid(trapezoid(f, u, axis=1), x1)  # noqa: E731
    mass = integrate(density)
    np.testing.assert_allclose(np.log(mass), reference.log_z, atol=1e-7)
    for site, grid in (("x1", grid_x1), ("x2", grid_x2)):
        mean = integrate(density * grid) / mass
        np.testing.assert_allclose(mean, reference.mean[site], atol=1e-6)
        np.testing.assert_allclose(
            np.sqrt(integrate(density * (grid - mean) ** 2) / mass), reference.sd[site], rtol=1e-6
        )


# --- models without an analytic answer: exact log-density identities -------------------------------------------------


def test_eight_schools_centred_and_non_centred_agree_up_to_the_jacobian():
    """theta = mu + tau theta_tilde: log p_centred(mu, tau, theta) = log p_noncentred(mu, tau, theta_tilde) - 8 log tau.
    Also: the published data are typed in, and theta is a deterministic site of the non-centred model."""
    data = zoo.get("eight_schools").make_data()
    np.testing.assert_array_equal(data["y"], [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(data["sigma"], [15, 10, 16, 11, 9, 11, 10, 18])
    generator = np.random.default_rng(4)
    mu, tau, theta_tilde = generator.normal(size=3), np.exp(generator.normal(size=3)), generator.normal(size=(3, 8))
    theta = mu[:, None] + tau[:, None] * theta_tilde
    with jax.enable_x64(True):
        non_centred = _batched_log_joint(zoo.get("eight_schools").model, data)(
            {"mu": jnp.asarray(mu), "tau": jnp.asarray(tau), "theta_tilde": jnp.asarray(theta_tilde)}
        )
        centred = _batched_log_joint(zoo.get("eight_schools_centered").model, data)(
            {"mu": jnp.asarray(mu), "tau": jnp.asarray(tau), "theta": jnp.asarray(theta)}
        )
    np.testing.assert_allclose(np.asarray(centred), np.asarray(non_centred) - 8.0 * np.log(tau), rtol=1e-10)
    sites = {name: (kind, value) for name, (kind, _, value) in _trace(zoo.get("eight_schools").model, data).items()}
    assert sites["theta"][0] == "deterministic"
    np.testing.assert_allclose(sites["theta"][1], sites["mu"][1] + sites["tau"][1] * sites["theta_tilde"][1], rtol=1e-5)
    expected = stats.norm.logpdf(mu[0], 0, 5) + stats.halfcauchy.logpdf(tau[0], scale=5)
    expected += (
        stats.norm.logpdf(theta[0], mu[0], tau[0]).sum() + stats.norm.logpdf(data["y"], theta[0], data["sigma"]).sum()
    )
    np.testing.assert_allclose(np.asarray(centred)[0], expected, rtol=1e-10)


def test_logistic_regression_density_and_truth():
    """NumPyro's joint equals the written formula; with n = 3000 the maximum-likelihood estimate lies within 4
    asymptotic standard errors (inverse Fisher information) of `true_parameters` in every coordinate."""
    entry = zoo.get("logistic_regression")
    data = entry.make_data(seed=0, num_observations=3000, num_features=4)
    truth = entry.true_parameters(seed=0, num_observations=3000, num_features=4)
    X, y = data["X"], data["y"]
    design = np.column_stack([np.ones(len(y)), X])
    negative_log_likelihood = lambda beta: np.sum(np.logaddexp(0.0, design @ beta) - y * (design @ beta))  # noqa: E731
    beta = optimize.minimize(negative_log_likelihood, np.zeros(5), method="BFGS").x
    probability = expit(design @ beta)
    covariance = np.linalg.inv(design.T @ (design * (probability * (1 - probability))[:, None]))
    true_beta = np.concatenate([[truth["intercept"]], truth["weights"]])
    assert np.all(np.abs(beta - true_beta) < 4.0 * np.sqrt(np.diag(covariance)))
    small = entry.make_data(seed=0)
    assert small["X"].shape == (100, 5)
    with jax.enable_x64(True):
        value = _log_joint(entry.model, small)({"intercept": 0.3, "weights": jnp.full(5, 0.1)})
    logits = 0.3 + small["X"] @ np.full(5, 0.1)
    expected = stats.norm.logpdf(0.3) + stats.norm.logpdf(np.full(5, 0.1)).sum()
    expected += np.sum(small["y"] * logits - np.logaddexp(0.0, logits))
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_sparse_regression_density_truth_and_sizes():
    """Laplace(0, b) prior with the fixed scale from the data, Gaussian likelihood; least squares with n = 2000
    lies within 4 standard errors (sigma sqrt(diag (X^T X)^-1)) of the sparse truth; p = 50 works."""
    entry = zoo.get("sparse_regression")
    data = entry.make_data(seed=0, prior_scale=0.5)
    truth = entry.true_parameters(seed=0)
    assert np.count_nonzero(truth["weights"]) == 3
    weights = np.linspace(-1.0, 1.0, 10)
    with jax.enable_x64(True):
        value = _log_joint(entry.model, data)({"weights": jnp.asarray(weights)})
    expected = (
        stats.laplace.logpdf(weights, 0.0, 0.5).sum() + stats.norm.logpdf(data["y"], data["X"] @ weights, 1.0).sum()
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    big = entry.make_data(seed=0, num_observations=2000)
    estimate, *_ = np.linalg.lstsq(big["X"], big["y"], rcond=None)
    standard_errors = np.sqrt(np.diag(np.linalg.inv(big["X"].T @ big["X"])))
    assert np.all(
        np.abs(estimate - entry.true_parameters(seed=0, num_observations=2000)["weights"]) < 4.0 * standard_errors
    )
    wide = entry.make_data(seed=0, num_features=50, learn_noise=True)
    sites = _trace(entry.model, wide)
    assert sites["weights"][2].shape == (50,)
    assert "sigma" in _latent_values(sites) and wide["noise_sd"] is None


def test_gaussian_mixture_density_and_label_symmetry():
    """NumPyro's joint equals the written mixture formula, and is unchanged by swapping the two labels."""
    entry = zoo.get("gaussian_mixture")
    data = entry.make_data(seed=0)
    params = {"weights": np.array([0.25, 0.75]), "locs": np.array([-1.5, 2.5]), "scales": np.array([0.5, 1.5])}
    swapped = {key: value[::-1] for key, value in params.items()}
    with jax.enable_x64(True):
        log_joint = _log_joint(entry.model, data)
        value, value_swapped = log_joint(params), log_joint(swapped)
    y = data["y"]
    components = np.log(params["weights"]) + stats.norm.logpdf(y[:, None], params["locs"], params["scales"])
    expected = (
        stats.dirichlet.logpdf(params["weights"], [1.0, 1.0])
        + stats.norm.logpdf(params["locs"], 0.0, 5.0).sum()
        + stats.halfnorm.logpdf(params["scales"], scale=2.0).sum()
        + logsumexp(components, axis=1).sum()
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(value_swapped, value, rtol=1e-12)
