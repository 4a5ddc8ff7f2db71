"""posteriordb posteriors (stan-dev/posteriordb, commit 28f8d3d6) and Inference Gym targets, translated to NumPyro.

Each translation follows the Stan program line by line, the way a NumPyro user would port it: the Stan data block
becomes the keyword arguments (integers such as ``N`` or ``K`` arrive as Python ints and are used as such), the
observed variable defaults to ``None``, and every parameter Stan leaves without a sampling statement gets Stan's
implicit flat prior, ``dist.ImproperUniform`` on the parameter's declared support (``constraints.real``,
``constraints.positive``, ``constraints.interval``). Bounded parameters with an explicit uniform prior keep
``dist.Uniform``. The data are copies of the posteriordb data files in ``data/`` (see each file's ``source``).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

DATA_DIR = pathlib.Path(__file__).parent / "data"


def load_json(filename: str) -> dict:
    """Load ``data/<filename>`` and turn lists into numpy arrays (ints stay ints), as a user loading JSON would."""
    raw = json.loads((DATA_DIR / filename).read_text())
    raw = raw.get("data", raw)
    out = {}
    for key, value in raw.items():
        if isinstance(value, list):
            array = np.array(
                [np.nan if v is None else v for v in value] if value and not isinstance(value[0], list) else value
            )
            out[key] = array
        else:
            out[key] = value
    return out


def posteriordb_loader(posterior: str, drop=()):
    """A data loader for posteriordb ``posterior`` (its ``data/<posterior>.data.json``), minus the keys in ``drop``."""

    def load() -> dict:
        data = load_json(f"{posterior}.data.json")
        return {k: v for k, v in data.items() if k not in drop}

    load.__doc__ = f"Data of posteriordb {posterior}."
    return load


# --------------------------------------------------------------------------------------------------------------------
# The ten posteriors whose data samplax is evaluated on.
# --------------------------------------------------------------------------------------------------------------------


def arK(K, T, y):
    """posteriordb arK-arK: AR(K) with lags built from the Python ints ``K`` and ``T``."""
    alpha = numpyro.sample("alpha", dist.Normal(0, 10))
    beta = numpyro.sample("beta", dist.Normal(0, 10).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    lags = jnp.stack([y[K - k - 1 : T - k - 1] for k in range(K)], axis=-1)  # lags[t, k] = y[t + K - k - 1]
    mu = alpha + lags @ beta
    with numpyro.plate("time", T - K):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y[K:])


def eight_schools_centered(J, sigma, y=None):
    """posteriordb eight_schools-eight_schools_centered."""
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(J, sigma, y=None):
    """posteriordb eight_schools-eight_schools_noncentered: ``theta`` as a deterministic site."""
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0, 1))
        theta = numpyro.deterministic("theta", theta_trans * tau + mu)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def garch11(T, y, sigma1):
    """posteriordb garch-garch11: flat priors, ``beta1`` on ``(0, 1 - alpha1)``, the volatility recursion in a scan."""
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
    alpha0 = numpyro.sample("alpha0", dist.ImproperUniform(constraints.positive, (), ()))
    alpha1 = numpyro.sample("alpha1", dist.ImproperUniform(constraints.unit_interval, (), ()))
    beta1 = numpyro.sample("beta1", dist.ImproperUniform(constraints.interval(0.0, 1.0 - alpha1), (), ()))

    def step(sigma_prev, y_prev):
        sigma_t = jnp.sqrt(alpha0 + alpha1 * jnp.square(y_prev - mu) + beta1 * jnp.square(sigma_prev))
        return sigma_t, sigma_t

    _, sigma_rest = jax.lax.scan(step, jnp.asarray(sigma1, dtype=jnp.result_type(float)), jnp.asarray(y[:-1]))
    sigma = jnp.concatenate([jnp.array([sigma1]), sigma_rest])
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def gp_pois_regr(N, x, k=None):
    """posteriordb gp_pois_regr-gp_pois_regr: latent GP (non-centred), Poisson counts on the log scale."""
    rho = numpyro.sample("rho", dist.Gamma(25, 4))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2))
    f_tilde = numpyro.sample("f_tilde", dist.Normal(0, 1).expand([N]).to_event(1))
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    cov = alpha**2 * jnp.exp(-0.5 * jnp.square(x[:, None] - x[None, :]) / rho**2) + 1e-10 * jnp.eye(N)
    L_cov = jnp.linalg.cholesky(cov)
    f = numpyro.deterministic("f", L_cov @ f_tilde)
    numpyro.sample("k", dist.Poisson(jnp.exp(f)), obs=k)


def kidscore_interaction(N, kid_score, mom_iq, mom_hs):
    """posteriordb kidiq-kidscore_interaction: flat ``beta``."""
    inter = mom_hs * mom_iq
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (4,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mu = beta[0] + beta[1] * mom_hs + beta[2] * mom_iq + beta[3] * inter
    with numpyro.plate("N", N):
        numpyro.sample("kid_score", dist.Normal(mu, sigma), obs=kid_score)


def low_dim_gauss_mix(N, y):
    """posteriordb low_dim_gauss_mix-low_dim_gauss_mix: ordered means, a two-component mixture by logsumexp."""
    sigma = numpyro.sample("sigma", dist.HalfNormal(2).expand([2]).to_event(1))
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.ordered_vector, (), (2,)))
    numpyro.factor("mu_prior", dist.Normal(0, 2).log_prob(mu).sum())
    theta = numpyro.sample("theta", dist.Beta(5, 5))
    mixture = dist.MixtureSameFamily(dist.Categorical(probs=jnp.stack([theta, 1 - theta])), dist.Normal(mu, sigma))
    with numpyro.plate("N", N):
        numpyro.sample("y", mixture, obs=y)


def logmesquite_logvas(N, weight, diam1, diam2, canopy_height, total_height, density, group):
    """posteriordb mesquite-logmesquite_logvas: flat ``beta`` and ``sigma``."""
    log_weight = jnp.log(weight)
    log_canopy_volume = jnp.log(diam1 * diam2 * canopy_height)
    log_canopy_area = jnp.log(diam1 * diam2)
    log_canopy_shape = jnp.log(diam1 / diam2)
    log_total_height = jnp.log(total_height)
    log_density = jnp.log(density)
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (7,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    mu = (
        beta[0]
        + beta[1] * log_canopy_volume
        + beta[2] * log_canopy_area
        + beta[3] * log_canopy_shape
        + beta[4] * log_total_height
        + beta[5] * log_density
        + beta[6] * group
    )
    with numpyro.plate("N", N):
        numpyro.sample("log_weight", dist.Normal(mu, sigma), obs=log_weight)


def nes(N, partyid7, real_ideo, race_adj, educ1, gender, income, age_discrete):
    """posteriordb nes2000-nes: flat ``beta`` and ``sigma``, age dummies from an integer code."""
    age30_44 = (age_discrete == 2).astype(float)
    age45_64 = (age_discrete == 3).astype(float)
    age65up = (age_discrete == 4).astype(float)
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (9,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    mu = (
        beta[0]
        + beta[1] * real_ideo
        + beta[2] * race_adj
        + beta[3] * age30_44
        + beta[4] * age45_64
        + beta[5] * age65up
        + beta[6] * educ1
        + beta[7] * gender
        + beta[8] * income
    )
    with numpyro.plate("N", N):
        numpyro.sample("partyid7", dist.Normal(mu, sigma), obs=partyid7)


def blr(N, D, X, y=None):
    """posteriordb sblrc-blr: Bayesian linear regression, ``sigma ~ normal(0, 10)`` on ``(0, inf)``."""
    beta = numpyro.sample("beta", dist.Normal(0, 10).expand([D]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10))
    with numpyro.plate("N", N):
        numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)


# --------------------------------------------------------------------------------------------------------------------
# Further posteriordb posteriors (data copied from posterior_database/data/data/*.json.zip).
# --------------------------------------------------------------------------------------------------------------------


def arma11(T, y):
    """posteriordb arma-arma11: ARMA(1, 1), the error recursion in ``lax.scan``."""
    mu = numpyro.sample("mu", dist.Normal(0, 10))
    phi = numpyro.sample("phi", dist.Normal(0, 2))
    theta = numpyro.sample("theta", dist.Normal(0, 2))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    y = jnp.asarray(y, dtype=jnp.result_type(float))
    err1 = y[0] - (mu + phi * mu)

    def step(err_prev, t):
        err_t = y[t] - (mu + phi * y[t - 1] + theta * err_prev)
        return err_t, err_t

    _, err_rest = jax.lax.scan(step, err1, jnp.arange(1, T))
    err = jnp.concatenate([err1[None], err_rest])
    numpyro.factor("err", dist.Normal(0, sigma).log_prob(err).sum())


def dugongs(N, x, Y):
    """posteriordb dugongs_data-dugongs_model: ``lambda`` uniform on (0.5, 1), transformed parameters recorded."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1000))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1000))
    lam = numpyro.sample("lambda", dist.Uniform(0.5, 1))
    tau = numpyro.sample("tau", dist.Gamma(0.0001, 0.0001))
    sigma = numpyro.deterministic("sigma", 1 / jnp.sqrt(tau))
    numpyro.deterministic("U3", jnp.log(lam / (1 - lam)))
    m = alpha - beta * jnp.power(lam, x)
    with numpyro.plate("N", N):
        numpyro.sample("Y", dist.Normal(m, sigma), obs=Y)


def surgical(N, r, n):
    """posteriordb surgical_data-surgical_model: random-effects logistic model with an inverse-gamma variance."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1000.0))
    sigmasq = numpyro.sample("sigmasq", dist.InverseGamma(0.001, 0.001))
    sigma = numpyro.deterministic("sigma", jnp.sqrt(sigmasq))
    with numpyro.plate("hospitals", N):
        b = numpyro.sample("b", dist.Normal(mu, sigma))
        numpyro.deterministic("p", jax.nn.sigmoid(b))
        numpyro.sample("r", dist.Binomial(n, logits=b), obs=r)
    numpyro.deterministic("pop_mean", jax.nn.sigmoid(mu))


def seeds(I, n, N, x1, x2):
    """posteriordb seeds_data-seeds_model: random-effects logistic regression with a gamma precision."""
    x1x2 = x1 * x2
    alpha0 = numpyro.sample("alpha0", dist.Normal(0.0, 1.0e3))
    alpha1 = numpyro.sample("alpha1", dist.Normal(0.0, 1.0e3))
    alpha12 = numpyro.sample("alpha12", dist.Normal(0.0, 1.0e3))
    alpha2 = numpyro.sample("alpha2", dist.Normal(0.0, 1.0e3))
    tau = numpyro.sample("tau", dist.Gamma(1.0e-3, 1.0e-3))
    sigma = numpyro.deterministic("sigma", 1.0 / jnp.sqrt(tau))
    with numpyro.plate("I", I):
        b = numpyro.sample("b", dist.Normal(0.0, sigma))
        logits = alpha0 + alpha1 * x1 + alpha2 * x2 + alpha12 * x1x2 + b
        numpyro.sample("n", dist.Binomial(N, logits=logits), obs=n)


def rate_1(n, k):
    """posteriordb Rate_1_data-Rate_1_model: a binomial rate with a Beta(1, 1) prior."""
    theta = numpyro.sample("theta", dist.Beta(1, 1))
    numpyro.sample("k", dist.Binomial(n, probs=theta), obs=k)


def kidscore_momiq(N, kid_score, mom_iq):
    """posteriordb kidiq-kidscore_momiq: flat ``beta``, half-Cauchy ``sigma``."""
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    with numpyro.plate("N", N):
        numpyro.sample("kid_score", dist.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)


def wells_dist(N, switched, dist_):
    """posteriordb wells_data-wells_dist: logistic regression with flat coefficients.

    Stan's data name ``dist`` would shadow ``numpyro.distributions``, so the argument is ``dist_`` (the loader
    renames it, as a user porting the model would).
    """
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
    with numpyro.plate("N", N):
        numpyro.sample("switched", dist.Bernoulli(logits=beta[0] + beta[1] * dist_), obs=switched)


def wells_dist_data() -> dict:
    """Data of posteriordb wells_data-wells_dist, with ``dist`` renamed ``dist_``."""
    data = load_json("wells_data-wells_dist.data.json")
    data["dist_"] = data.pop("dist")
    return data


def radon_hierarchical_intercept_noncentered(J, N, county_idx, log_uppm, floor_measure, log_radon):
    """posteriordb radon_mn-radon_hierarchical_intercept_noncentered: Stan's 1-based county index shifted by one."""
    with numpyro.plate("J", J):
        alpha_raw = numpyro.sample("alpha_raw", dist.Normal(0, 1))
    beta = numpyro.sample("beta", dist.Normal(0, 10).expand([2]).to_event(1))
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0, 10))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(1))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1))
    alpha = numpyro.deterministic("alpha", mu_alpha + sigma_alpha * alpha_raw)
    mu = alpha[county_idx - 1] + log_uppm * beta[0] + floor_measure * beta[1]
    with numpyro.plate("N", N):
        numpyro.sample("log_radon", dist.Normal(mu, sigma_y), obs=log_radon)


def logearn_height(N, earn, height):
    """posteriordb earnings-logearn_height: flat ``beta`` and ``sigma``."""
    log_earn = jnp.log(earn)
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    with numpyro.plate("N", N):
        numpyro.sample("log_earn", dist.Normal(beta[0] + beta[1] * height, sigma), obs=log_earn)


def glm_poisson(n, C, year):
    """posteriordb GLM_Poisson_Data-GLM_Poisson_model: bounded coefficients with Stan's implicit uniform priors."""
    year_squared = jnp.square(year)
    year_cubed = year_squared * year
    alpha = numpyro.sample("alpha", dist.Uniform(-20, 20))
    beta1 = numpyro.sample("beta1", dist.Uniform(-10, 10))
    beta2 = numpyro.sample("beta2", dist.Uniform(-10, 10))
    beta3 = numpyro.sample("beta3", dist.Uniform(-10, 10))
    log_lambda = numpyro.deterministic("log_lambda", alpha + beta1 * year + beta2 * year_squared + beta3 * year_cubed)
    with numpyro.plate("years", n):
        numpyro.sample("C", dist.Poisson(jnp.exp(log_lambda)), obs=C)


def dogs(n_dogs, n_trials, y):
    """posteriordb dogs-dogs: avoidance learning; the running counts of earlier avoidances and shocks from ``y``."""
    beta = numpyro.sample("beta", dist.Normal(0, 100).expand([3]).to_event(1))
    y = np.asarray(y)
    n_avoid = np.concatenate([np.zeros((n_dogs, 1)), np.cumsum(1 - y[:, :-1], axis=1)], axis=1)
    n_shock = np.concatenate([np.zeros((n_dogs, 1)), np.cumsum(y[:, :-1], axis=1)], axis=1)
    p = beta[0] + beta[1] * n_avoid + beta[2] * n_shock
    with numpyro.plate("dogs", n_dogs, dim=-2), numpyro.plate("trials", n_trials, dim=-1):
        numpyro.sample("y", dist.Bernoulli(logits=p), obs=y)


# --------------------------------------------------------------------------------------------------------------------
# Inference Gym targets (tensorflow/probability spinoffs/inference_gym, commit c847a416).
# --------------------------------------------------------------------------------------------------------------------


def gym_eight_schools(num_schools, treatment_effects, treatment_stddevs):
    """Inference Gym ``EightSchools``: non-centred, ``log_stddev ~ Normal(5, 1)``."""
    avg_effect = numpyro.sample("avg_effect", dist.Normal(0.0, 10.0))
    log_stddev = numpyro.sample("log_stddev", dist.Normal(5.0, 1.0))
    with numpyro.plate("schools", num_schools):
        school_effects_standard = numpyro.sample("school_effects_standard", dist.Normal(0.0, 1.0))
        effects = avg_effect + jnp.exp(log_stddev) * school_effects_standard
        numpyro.sample("treatment_effects", dist.Normal(effects, treatment_stddevs), obs=treatment_effects)


def gym_german_credit(features, labels=None):
    """Inference Gym ``GermanCreditNumericLogisticRegression``: standardised features plus a constant, N(0, 1) prior."""
    n, d = features.shape
    x = np.concatenate([features, np.ones((n, 1))], axis=1)
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([d + 1]).to_event(1))
    with numpyro.plate("data", n):
        numpyro.sample("labels", dist.Bernoulli(logits=x @ weights), obs=labels)


def gym_german_credit_data() -> dict:
    """The 1000 UCI rows: 24 features standardised per column, label = class - 1."""
    raw = json.loads((DATA_DIR / "gym-german_credit_numeric_logistic_regression.data.json").read_text())
    rows = np.array(raw["data_raw"], dtype=float)
    features = rows[:, :-1]
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    labels = (rows[:, -1] - 1).astype(int)
    return {"features": features, "labels": labels}


def gym_brownian_motion(observed_locs, innovation_noise_scale, observation_noise_scale):
    """Inference Gym ``BrownianMotionMissingMiddleObservations``: a random walk; NaN marks the missing ten points.

    The missing observations are masked out with ``numpyro.handlers.mask``.
    """
    num_timesteps = len(observed_locs)
    locs = numpyro.sample("locs", dist.GaussianRandomWalk(innovation_noise_scale, num_steps=num_timesteps))
    observed = ~np.isnan(observed_locs)
    with numpyro.plate("time", num_timesteps), numpyro.handlers.mask(mask=observed):
        numpyro.sample("observed_locs", dist.Normal(locs, observation_noise_scale), obs=np.nan_to_num(observed_locs))


def gym_brownian_motion_unknown_scales(observed_locs):
    """Inference Gym ``BrownianMotionUnknownScalesMissingMiddleObservations``: log-normal scales.

    Only the observed time points enter the likelihood, picked out with a numpy index array.
    """
    num_timesteps = len(observed_locs)
    innovation_noise_scale = numpyro.sample("innovation_noise_scale", dist.LogNormal(0.0, 2.0))
    observation_noise_scale = numpyro.sample("observation_noise_scale", dist.LogNormal(0.0, 2.0))
    locs = numpyro.sample("locs", dist.GaussianRandomWalk(innovation_noise_scale, num_steps=num_timesteps))
    observed_idx = np.flatnonzero(~np.isnan(observed_locs))
    with numpyro.plate("observed", len(observed_idx)):
        numpyro.sample(
            "observed_locs", dist.Normal(locs[observed_idx], observation_noise_scale), obs=observed_locs[observed_idx]
        )


def gym_loader(filename: str, drop=("dtype_note",)):
    """A data loader for an Inference Gym data file in ``data/``."""

    def load() -> dict:
        data = load_json(filename)
        return {k: v for k, v in data.items() if k not in drop}

    load.__doc__ = f"Data of Inference Gym {filename}."
    return load
