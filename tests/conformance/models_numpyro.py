"""Models of NumPyro's own examples (pyro-ppl/numpyro, ``examples/``), written as their authors wrote them.

Each model keeps the example's signature and style: data arguments read as Python values (shapes, ``len``,
``int``), observed arguments that default to ``None``, named plates, ``numpyro.deterministic`` sites and effect
handlers (``reparam``, ``condition``, ``scan``). The examples download their data at run time; here the data are
either the published figures typed in (baseball, UCB admissions) or generated with a fixed numpy seed by the
example's own ``get_data`` recipe at a smaller size. A few models are not NumPyro examples but are written the way
NumPyro users write such models (marked "user-style" in their docstrings): a hierarchical logistic regression that
reads its number of groups with ``int(group.max()) + 1`` and a normal truncated by a ``-inf`` factor.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import expit
from numpyro.contrib.control_flow import scan
from numpyro.handlers import reparam
from numpyro.infer.reparam import LocScaleReparam, TransformReparam

# --------------------------------------------------------------------------------------------------------------------
# baseball.py: Efron and Morris (1975), hits in the first 45 at-bats of the 1970 season for 18 players.
# --------------------------------------------------------------------------------------------------------------------

BASEBALL_PLAYERS = (
    "Clemente",
    "Robinson",
    "Howard",
    "Johnstone",
    "Berry",
    "Spencer",
    "Kessinger",
    "Alvarado",
    "Santo",
    "Swoboda",
    "Unser",
    "Williams",
    "Scott",
    "Petrocelli",
    "Rodriguez",
    "Campaneris",
    "Munson",
    "Alvis",
)
BASEBALL_HITS = (18, 17, 16, 15, 14, 14, 13, 12, 11, 11, 10, 10, 10, 10, 10, 9, 8, 7)


def baseball_data() -> dict:
    """Efron and Morris's 18 players: 45 at-bats each and their hits (Efron and Morris 1975, table 1)."""
    return {"at_bats": np.full(18, 45), "hits": np.array(BASEBALL_HITS)}


def partially_pooled(at_bats, hits=None):
    """baseball.py ``partially_pooled``: Beta-Binomial hierarchy with a Pareto prior on the concentration."""
    m = numpyro.sample("m", dist.Uniform(0, 1))
    kappa = numpyro.sample("kappa", dist.Pareto(1, 1.5))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi_prior = dist.Beta(m * kappa, (1 - m) * kappa)
        phi = numpyro.sample("phi", phi_prior)
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled_with_logit(at_bats, hits=None):
    """baseball.py ``partially_pooled_with_logit``: logit-normal hierarchy."""
    loc = numpyro.sample("loc", dist.Normal(-1, 1))
    scale = numpyro.sample("scale", dist.HalfCauchy(1))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        alpha = numpyro.sample("alpha", dist.Normal(loc, scale))
        return numpyro.sample("obs", dist.Binomial(at_bats, logits=alpha), obs=hits)


# --------------------------------------------------------------------------------------------------------------------
# funnel.py: Neal's funnel, centred and with LocScaleReparam.
# --------------------------------------------------------------------------------------------------------------------


def funnel(dim=10):
    """funnel.py ``model``: Neal's funnel in its centred form (no data)."""
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


funnel_reparam = reparam(funnel, config={"x": LocScaleReparam(0)})
funnel_reparam.__doc__ = "funnel.py ``reparam_model``: the funnel non-centred by ``LocScaleReparam(0)``."


def funnel_data() -> dict:
    """The example's default: ten dimensions."""
    return {"dim": 10}


# --------------------------------------------------------------------------------------------------------------------
# sparse_regression.py: the SKIM kernel model (Agrawal et al. 2019), small.
# --------------------------------------------------------------------------------------------------------------------


def _dot(X, Z):
    return jnp.dot(X, Z[..., None])[..., 0]


def _skim_kernel(X, Z, eta1, eta2, c, jitter=1.0e-4):
    eta1sq = jnp.square(eta1)
    eta2sq = jnp.square(eta2)
    k1 = 0.5 * eta2sq * jnp.square(1.0 + _dot(X, Z))
    k2 = -0.5 * eta2sq * _dot(jnp.square(X), jnp.square(Z))
    k3 = (eta1sq - eta2sq) * _dot(X, Z)
    k4 = jnp.square(c) - 0.5 * eta2sq
    if X.shape == Z.shape:
        k4 += jitter * jnp.eye(X.shape[0])
    return k1 + k2 + k3 + k4


def sparse_regression(X, Y, hypers):
    """sparse_regression.py ``model``: hyperparameters passed as a dict of Python floats."""
    S, P, N = hypers["expected_sparsity"], X.shape[1], X.shape[0]
    sigma = numpyro.sample("sigma", dist.HalfNormal(hypers["alpha3"]))
    phi = sigma * (S / jnp.sqrt(N)) / (P - S)
    eta1 = numpyro.sample("eta1", dist.HalfCauchy(phi))
    msq = numpyro.sample("msq", dist.InverseGamma(hypers["alpha1"], hypers["beta1"]))
    xisq = numpyro.sample("xisq", dist.InverseGamma(hypers["alpha2"], hypers["beta2"]))
    eta2 = jnp.square(eta1) * jnp.sqrt(xisq) / msq
    lam = numpyro.sample("lambda", dist.HalfCauchy(jnp.ones(P)))
    kappa = jnp.sqrt(msq) * lam / jnp.sqrt(msq + jnp.square(eta1 * lam))
    kX = kappa * X
    k = _skim_kernel(kX, kX, eta1, eta2, hypers["c"]) + sigma**2 * jnp.eye(N)
    assert k.shape == (N, N)
    numpyro.sample("Y", dist.MultivariateNormal(loc=jnp.zeros(X.shape[0]), covariance_matrix=k), obs=Y)


def sparse_regression_data(N=20, S=2, P=5, sigma_obs=0.05) -> dict:
    """The example's ``get_data`` (seed 0) with five dimensions instead of ten, and its ``hypers``."""
    np.random.seed(0)
    X = np.random.randn(N, P)
    W = 0.5 + 2.5 * np.random.rand(S)
    Y = np.sum(X[:, 0:S] * W, axis=-1) + X[:, 0] * X[:, 1] + sigma_obs * np.random.randn(N)
    Y -= np.mean(Y)
    Y = Y / np.std(Y)
    hypers = {
        "expected_sparsity": max(1.0, P / 10),
        "alpha1": 3.0,
        "beta1": 1.0,
        "alpha2": 3.0,
        "beta2": 1.0,
        "alpha3": 1.0,
        "c": 1.0,
    }
    return {"X": X, "Y": Y, "hypers": hypers}


# --------------------------------------------------------------------------------------------------------------------
# stochastic_volatility.py: Gaussian random walk log-volatility with Student-t returns.
# --------------------------------------------------------------------------------------------------------------------


def stochastic_volatility(returns):
    """stochastic_volatility.py ``model``."""
    step_size = numpyro.sample("sigma", dist.Exponential(50.0))
    s = numpyro.sample("s", dist.GaussianRandomWalk(scale=step_size, num_steps=jnp.shape(returns)[0]))
    nu = numpyro.sample("nu", dist.Exponential(0.1))
    return numpyro.sample("r", dist.StudentT(df=nu, loc=0.0, scale=jnp.exp(s)), obs=returns)


def stochastic_volatility_data(T=100) -> dict:
    """Returns simulated from the model (numpy seed 0, log-volatility a random walk from 0) in place of the S&P 500."""
    rng = np.random.default_rng(0)
    s = np.cumsum(rng.normal(0.0, 0.05, T))
    returns = np.exp(s) * rng.standard_t(8.0, T)
    return {"returns": returns}


# --------------------------------------------------------------------------------------------------------------------
# ucbadmit.py: 1973 UC Berkeley admissions by department and gender (McElreath's UCBadmit, 12 rows).
# --------------------------------------------------------------------------------------------------------------------


def ucbadmit_data() -> dict:
    """The 12 rows of UCBadmit (departments A-F, male then female), typed in."""
    admit = np.array([512, 89, 353, 17, 120, 202, 138, 131, 53, 94, 22, 24])
    applications = np.array([825, 108, 560, 25, 325, 593, 417, 375, 191, 393, 373, 341])
    dept = np.repeat(np.arange(6), 2)
    male = np.tile(np.array([1, 0]), 6)
    return {"dept": dept, "male": male, "applications": applications, "admit": admit}


def glmm(dept, male, applications, admit=None):
    """ucbadmit.py ``glmm``: correlated department effects (LKJ Cholesky), ``num_dept`` read with ``np.unique``."""
    v_mu = numpyro.sample("v_mu", dist.Normal(0, jnp.array([4.0, 1.0])))
    sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.ones(2)))
    L_Rho = numpyro.sample("L_Rho", dist.LKJCholesky(2, concentration=2))
    scale_tril = sigma[..., jnp.newaxis] * L_Rho
    # non-centered parameterization
    num_dept = len(np.unique(dept))
    z = numpyro.sample("z", dist.Normal(jnp.zeros((num_dept, 2)), 1))
    v = jnp.dot(scale_tril, z.T).T
    logits = v_mu[0] + v[dept, 0] + (v_mu[1] + v[dept, 1]) * male
    if admit is None:
        # we use a Delta site to record probs for predictive distribution
        probs = expit(logits)
        numpyro.sample("probs", dist.Delta(probs), obs=probs)
    numpyro.sample("admit", dist.Binomial(applications, logits=logits), obs=admit)


# --------------------------------------------------------------------------------------------------------------------
# gp.py: GP regression with a squared-exponential kernel and log-normal hyperpriors.
# --------------------------------------------------------------------------------------------------------------------


def _gp_kernel(X, Z, var, length, noise, jitter=1.0e-6, include_noise=True):
    deltaXsq = jnp.power((X[:, None] - Z) / length, 2.0)
    k = var * jnp.exp(-0.5 * deltaXsq)
    if include_noise:
        k += (noise + jitter) * jnp.eye(X.shape[0])
    return k


def gp_regression(X, Y):
    """gp.py ``model``."""
    var = numpyro.sample("kernel_var", dist.LogNormal(0.0, 10.0))
    noise = numpyro.sample("kernel_noise", dist.LogNormal(0.0, 10.0))
    length = numpyro.sample("kernel_length", dist.LogNormal(0.0, 10.0))
    k = _gp_kernel(X, X, var, length, noise)
    numpyro.sample("Y", dist.MultivariateNormal(loc=jnp.zeros(X.shape[0]), covariance_matrix=k), obs=Y)


def gp_regression_data(N=25, sigma_obs=0.15) -> dict:
    """gp.py ``get_data`` (seed 0) with 25 points instead of 30."""
    np.random.seed(0)
    X = np.linspace(-1, 1, N)
    Y = X + 0.2 * np.power(X, 3.0) + 0.5 * np.power(0.5 + X, 2.0) * np.sin(4.0 * X)
    Y += sigma_obs * np.random.randn(N)
    Y -= np.mean(Y)
    Y /= np.std(Y)
    return {"X": X, "Y": Y}


# --------------------------------------------------------------------------------------------------------------------
# ar2.py: AR(2) with numpyro.contrib.control_flow.scan and a conditioned site.
# --------------------------------------------------------------------------------------------------------------------


def ar2_scan(y):
    """ar2.py ``ar2_scan``: the likelihood inside ``scan`` under ``condition``, the means as a deterministic site."""
    alpha_1 = numpyro.sample("alpha_1", dist.Normal(0, 1))
    alpha_2 = numpyro.sample("alpha_2", dist.Normal(0, 1))
    const = numpyro.sample("const", dist.Normal(0, 1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1))

    def transition(carry, _):
        y_prev, y_prev_prev = carry
        m_t = const + alpha_1 * y_prev + alpha_2 * y_prev_prev
        y_t = numpyro.sample("y", dist.Normal(m_t, sigma))
        carry = (y_t, y_prev)
        return carry, m_t

    timesteps = jnp.arange(y.shape[0] - 2)
    init = (y[1], y[0])
    with numpyro.handlers.condition(data={"y": y[2:]}):
        _, mu = scan(transition, init, timesteps)
    numpyro.deterministic("mu", mu)


def ar2_data(num_data=60) -> dict:
    """ar2.py's data recipe, ``sin(t)`` plus noise, 60 points (numpy seed 0), passed as a JAX array like the example."""
    rng = np.random.default_rng(0)
    t = np.arange(0, num_data)
    return {"y": jnp.asarray(np.sin(t) + rng.normal(size=num_data) * 0.1)}


# --------------------------------------------------------------------------------------------------------------------
# bnn.py: a two-hidden-layer tanh network, tiny.
# --------------------------------------------------------------------------------------------------------------------


def bnn(X, Y, D_H, D_Y=1):
    """bnn.py ``model`` plus a deterministic site for the network's output (used for the comparison)."""
    N, D_X = X.shape
    w1 = numpyro.sample("w1", dist.Normal(jnp.zeros((D_X, D_H)), jnp.ones((D_X, D_H))))
    assert w1.shape == (D_X, D_H)
    z1 = jnp.tanh(jnp.matmul(X, w1))
    w2 = numpyro.sample("w2", dist.Normal(jnp.zeros((D_H, D_H)), jnp.ones((D_H, D_H))))
    z2 = jnp.tanh(jnp.matmul(z1, w2))
    w3 = numpyro.sample("w3", dist.Normal(jnp.zeros((D_H, D_Y)), jnp.ones((D_H, D_Y))))
    z3 = numpyro.deterministic("z3", jnp.matmul(z2, w3))
    if Y is not None:
        assert z3.shape == Y.shape
    prec_obs = numpyro.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / jnp.sqrt(prec_obs)
    with numpyro.plate("data", N):
        numpyro.sample("Y", dist.Normal(z3, sigma_obs).to_event(1), obs=Y)


def bnn_data(N=20, D_X=3, sigma_obs=0.05) -> dict:
    """bnn.py ``get_data`` (seed 0) with 20 points and two hidden units (``D_H=2``)."""
    np.random.seed(0)
    X = np.linspace(-1, 1, N)
    X = np.power(X[:, np.newaxis], np.arange(D_X))
    W = 0.5 * np.random.randn(D_X)
    Y = np.dot(X, W) + 0.5 * np.power(0.5 + X[:, 1], 2.0) * np.sin(4.0 * X[:, 1])
    Y += sigma_obs * np.random.randn(N)
    Y = Y[:, np.newaxis]
    Y -= np.mean(Y)
    Y /= np.std(Y)
    return {"X": X, "Y": Y, "D_H": 2}


# --------------------------------------------------------------------------------------------------------------------
# proportion_test.py: logistic regression with a MultivariateNormal prior on the coefficients.
# --------------------------------------------------------------------------------------------------------------------


def proportion_test(design_matrix, outcome=None):
    """proportion_test.py ``model``."""
    beta = numpyro.sample(
        "coefficients",
        dist.MultivariateNormal(loc=0.0, covariance_matrix=jnp.eye(design_matrix.shape[1])),
    )
    logits = design_matrix.dot(beta)
    with numpyro.plate("data", design_matrix.shape[0]):
        numpyro.sample("obs", dist.Bernoulli(logits=logits), obs=outcome)


def proportion_test_data(num_calls=1000, num_no_calls=1000) -> dict:
    """proportion_test.py ``make_dataset`` with 2,000 customers instead of 100,000 (numpy seed 0), as JAX arrays."""
    rng = np.random.default_rng(0)
    made_purchase = np.concatenate([rng.binomial(1, 0.084, num_calls), rng.binomial(1, 0.061, num_no_calls)])
    is_female = rng.binomial(1, 0.5, num_calls + num_no_calls)
    got_called = np.concatenate([np.ones(num_calls), np.zeros(num_no_calls)])
    design_matrix = np.stack([np.ones(num_calls + num_no_calls), got_called, is_female], axis=1)
    return {"design_matrix": jnp.asarray(design_matrix), "outcome": jnp.asarray(made_purchase)}


# --------------------------------------------------------------------------------------------------------------------
# zero_inflated_poisson.py
# --------------------------------------------------------------------------------------------------------------------


def zero_inflated_poisson(X, Y):
    """zero_inflated_poisson.py ``model``: ``expand``/``to_event`` priors, gate and rate by regression."""
    D_X = X.shape[1]
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([D_X]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0).expand([D_X]).to_event(1))
    q = jax.scipy.special.expit(jnp.dot(X, b1[:, None])).reshape(-1)
    lam = jnp.exp(jnp.dot(X, b2[:, None]).reshape(-1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("Y", dist.ZeroInflatedPoisson(gate=q, rate=lam), obs=Y)


def zero_inflated_poisson_data(N=200) -> dict:
    """Simulated like the example (intercept and two covariates), 200 rows, numpy seed 0."""
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, 2))])
    gate = expit(X @ np.array([-0.5, 0.8, 0.0]))
    rate = np.exp(X @ np.array([1.0, 0.0, 0.5]))
    Y = np.where(rng.uniform(size=N) < gate, 0, rng.poisson(rate))
    return {"X": X, "Y": Y}


# --------------------------------------------------------------------------------------------------------------------
# horseshoe_regression.py
# --------------------------------------------------------------------------------------------------------------------


def horseshoe_regression(X, Y):
    """horseshoe_regression.py ``model_normal_likelihood``: half-Cauchy local and global scales."""
    D_X = X.shape[1]
    lambdas = numpyro.sample("lambdas", dist.HalfCauchy(jnp.ones(D_X)))
    tau = numpyro.sample("tau", dist.HalfCauchy(jnp.ones(1)))
    unscaled_betas = numpyro.sample("unscaled_betas", dist.Normal(0.0, jnp.ones(D_X)))
    scaled_betas = numpyro.deterministic("betas", tau * lambdas * unscaled_betas)
    mean_function = jnp.dot(X, scaled_betas)
    prec_obs = numpyro.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / jnp.sqrt(prec_obs)
    numpyro.sample("Y", dist.Normal(mean_function, sigma_obs), obs=Y)


def horseshoe_regression_data(N=50, D_X=4, sigma_obs=0.05) -> dict:
    """horseshoe_regression.py ``get_data`` (seed 0, continuous response) with four covariates."""
    np.random.seed(0)
    X = np.random.randn(N, D_X)
    W = np.array([2.0, -1.0, 0.50])
    Y = np.dot(X[:, :3], W)
    Y -= np.mean(Y)
    Y += sigma_obs * np.random.randn(N)
    return {"X": X, "Y": Y}


# --------------------------------------------------------------------------------------------------------------------
# holt_winters.py: exponential smoothing with trend and seasonality inside scan.
# --------------------------------------------------------------------------------------------------------------------


def holt_winters(y, n_seasons, future=0):
    """holt_winters.py ``holt_winters``: Beta smoothing weights, a seasonal plate, ``scan`` under ``condition``."""
    T = y.shape[0]
    level_smoothing = numpyro.sample("level_smoothing", dist.Beta(1, 1))
    trend_smoothing = numpyro.sample("trend_smoothing", dist.Beta(1, 1))
    seasonality_smoothing = numpyro.sample("seasonality_smoothing", dist.Beta(1, 1))
    adj_seasonality_smoothing = seasonality_smoothing * (1 - level_smoothing)
    noise = numpyro.sample("noise", dist.HalfNormal(1))
    level_init = numpyro.sample("level_init", dist.Normal(0, 1))
    trend_init = numpyro.sample("trend_init", dist.Normal(0, 1))
    with numpyro.plate("n_seasons", n_seasons):
        seasonality_init = numpyro.sample("seasonality_init", dist.Normal(0, 1))

    def transition_fn(carry, t):
        previous_level, previous_trend, previous_seasonality = carry
        level = jnp.where(
            t < T,
            level_smoothing * (y[t] - previous_seasonality[0])
            + (1 - level_smoothing) * (previous_level + previous_trend),
            previous_level,
        )
        trend = jnp.where(
            t < T,
            trend_smoothing * (level - previous_level) + (1 - trend_smoothing) * previous_trend,
            previous_trend,
        )
        new_season = jnp.where(
            t < T,
            adj_seasonality_smoothing * (y[t] - (previous_level + previous_trend))
            + (1 - adj_seasonality_smoothing) * previous_seasonality[0],
            previous_seasonality[0],
        )
        step = jnp.where(t < T, 1, t - T + 1)
        mu = previous_level + step * previous_trend + previous_seasonality[0]
        pred = numpyro.sample("pred", dist.Normal(mu, noise))
        seasonality = jnp.concatenate([previous_seasonality[1:], new_season[None]], axis=0)
        return (level, trend, seasonality), pred

    with numpyro.handlers.condition(data={"pred": y}):
        _, preds = scan(transition_fn, (level_init, trend_init, seasonality_init), jnp.arange(T + future))
    if future > 0:
        numpyro.deterministic("y_forecast", preds[-future:])


def holt_winters_data(T=48, n_seasons=6) -> dict:
    """A seasonal series with trend (period 6, 48 points, numpy seed 0, a JAX array) in place of the lynx data."""
    rng = np.random.default_rng(0)
    t = np.arange(T)
    y = 0.02 * t + np.sin(2 * np.pi * t / n_seasons) + rng.normal(0, 0.2, T)
    return {"y": jnp.asarray(y), "n_seasons": n_seasons}


# --------------------------------------------------------------------------------------------------------------------
# Eight schools as in NumPyro's README (plain, non-centred by TransformReparam).
# --------------------------------------------------------------------------------------------------------------------


def eight_schools_readme_data() -> dict:
    """NumPyro README: ``J``, ``y`` and ``sigma`` as numpy arrays."""
    return {
        "J": 8,
        "y": np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]),
        "sigma": np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]),
    }


def eight_schools_transform_reparam(J, sigma, y=None):
    """README ``eight_schools_noncentered``: ``TransformedDistribution`` reparametrised by ``TransformReparam``."""
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        with numpyro.handlers.reparam(config={"theta": TransformReparam()}):
            theta = numpyro.sample(
                "theta",
                dist.TransformedDistribution(dist.Normal(0.0, 1.0), dist.transforms.AffineTransform(mu, tau)),
            )
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


# --------------------------------------------------------------------------------------------------------------------
# User-style models for the features the examples leave out.
# --------------------------------------------------------------------------------------------------------------------


def hierarchical_logistic_regression(x, group, y=None):
    """User-style: varying intercepts and a common slope; the number of groups read with ``int(group.max()) + 1``."""
    num_groups = int(group.max()) + 1
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0))
    with numpyro.plate("groups", num_groups):
        alpha_raw = numpyro.sample("alpha_raw", dist.Normal(0.0, 1.0))
    alpha = numpyro.deterministic("alpha", mu + sigma * alpha_raw)
    with numpyro.plate("obs", len(x)):
        numpyro.sample("y", dist.Bernoulli(logits=alpha[group] + beta * x), obs=y)


def hierarchical_logistic_regression_data(num_groups=8, per_group=25) -> dict:
    """Eight groups of 25 Bernoulli outcomes (numpy seed 0)."""
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(num_groups), per_group)
    x = rng.normal(size=group.size)
    alpha = rng.normal(-0.3, 0.8, num_groups)
    y = rng.binomial(1, expit(alpha[group] + 1.2 * x))
    return {"x": x, "group": group, "y": y}


def truncated_by_factor(y=None):
    """User-style: a normal prior truncated to ``x > 0`` by a factor that is ``-inf`` on the other side."""
    x = numpyro.sample("x", dist.Normal(0.0, 2.0))
    numpyro.factor("pos", jnp.where(x > 0, 0.0, -jnp.inf))
    with numpyro.plate("n", len(y)):
        numpyro.sample("y", dist.Normal(x, 1.0), obs=y)


def truncated_by_factor_data() -> dict:
    """Five observations with mean 0.32, so that the truncation at zero shapes the posterior."""
    return {"y": np.array([0.6, -0.5, 0.4, 1.2, -0.1])}
