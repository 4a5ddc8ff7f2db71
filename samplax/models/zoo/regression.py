"""Regression models: logistic regression and a sparse linear regression with Laplace priors.

Logistic regression runs on synthetic data and on scikit-learn's breast cancer data.

- logistic_regression, breast_cancer:
      intercept ~ N(0, 1),  weights_j ~ N(0, 1),  y_i ~ Bernoulli(sigmoid(intercept + x_i . weights)).
  The intercept is its own site; X holds the features only (no column of ones).
- sparse_regression (Bayesian LASSO with a fixed scale):
      weights_j ~ Laplace(0, b),  y_i ~ N(x_i . weights, sigma),
  b fixed (`prior_scale`), so -log prior = sum_j |w_j| / b + const, a weighted L1 term (for bplmc, myula);
  sigma known (`noise_sd`), or sigma ~ HalfNormal(1) when noise_sd is None. No intercept.
No analytic answers; the synthetic models expose the truth the data came from through `true_parameters`.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

from samplax.models.zoo.base import ZooModel, as_array, check_positive, check_positive_int, rng

__all__ = ["LOGISTIC_REGRESSION", "BREAST_CANCER", "SPARSE_REGRESSION"]


def _design(X, y):
    X = as_array(X, "X")
    if X is None or X.ndim != 2:
        shape = None if X is None else X.shape
        raise ValueError(f"argument 'X': expected a 2-D array (observations x features), got shape {shape}")
    y = as_array(y, "y")
    if y is not None and y.shape != X.shape[:1]:
        raise ValueError(f"argument 'y': shape {y.shape} does not match X's {X.shape[0]} rows; pass one per row")
    return X, y


# --- logistic regression ------------------------------------------------------------------------------------------


def logistic_regression_model(X, y=None):
    """Logistic regression with an intercept site.

    intercept ~ N(0, 1), weights ~ N(0, I), y_i ~ Bernoulli(logits = intercept + X_i . weights).
    """
    X, y = _design(X, y)
    num_observations, num_features = X.shape
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([num_features]).to_event(1))
    logits = intercept + X @ weights
    with numpyro.plate("observations", num_observations):
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def _logistic_truth(generator: np.random.Generator, num_features: int) -> dict:
    # Drawn first from the generator, so make_data and true_parameters agree for the same seed.
    return {"intercept": float(generator.normal()), "weights": generator.normal(size=num_features)}


def logistic_regression_data(seed=0, num_observations=100, num_features=5) -> dict:
    """X ~ N(0, I); the truth (intercept, weights) is a prior draw, see `true_parameters`."""
    n = check_positive_int(num_observations, "num_observations")
    d = check_positive_int(num_features, "num_features")
    generator = rng(seed)
    truth = _logistic_truth(generator, d)
    X = generator.normal(size=(n, d))
    logits = truth["intercept"] + X @ truth["weights"]
    y = (generator.uniform(size=n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int64)
    return {"X": X, "y": y}


def logistic_regression_truth(seed=0, num_observations=100, num_features=5) -> dict:
    check_positive_int(num_observations, "num_observations")
    return _logistic_truth(rng(seed), check_positive_int(num_features, "num_features"))


LOGISTIC_REGRESSION = ZooModel(
    name="logistic_regression",
    description="Logistic regression on synthetic N(0, I) features (n=100, d=5), N(0, 1) priors; truth known.",
    model=logistic_regression_model,
    make_data=logistic_regression_data,
    reference=None,
    tags=("regression",),
    true_parameters=logistic_regression_truth,
)


def breast_cancer_data(seed=0) -> dict:
    """scikit-learn's Wisconsin breast cancer data (569 x 30), features standardised (mean 0, sd 1).

    The seed is accepted for a uniform signature and ignored. Needs scikit-learn (`pip install 'samplax[data]'`).
    """
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as error:
        raise ImportError(
            "zoo model 'breast_cancer' reads its data from scikit-learn, which is not installed: "
            "pip install 'samplax[data]' (or pip install scikit-learn)"
        ) from error
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return {"X": np.asarray(X, dtype=np.float64), "y": np.asarray(y, dtype=np.int64)}


BREAST_CANCER = ZooModel(
    name="breast_cancer",
    description="Logistic regression on scikit-learn's breast cancer data (569 x 30, standardised); needs [data].",
    model=logistic_regression_model,
    make_data=breast_cancer_data,
    reference=None,
    tags=("regression", "real-data"),
)


# --- sparse regression --------------------------------------------------------------------------------------------


def sparse_regression_model(X, y=None, prior_scale=1.0, noise_sd=1.0):
    """weights_j ~ Laplace(0, prior_scale) (fixed scale); y_i ~ N(X_i . weights, sigma).

    sigma = noise_sd when it is a number; with noise_sd=None, sigma ~ HalfNormal(1) is a latent site.
    """
    X, y = _design(X, y)
    num_observations, num_features = X.shape
    weights = numpyro.sample("weights", dist.Laplace(0.0, prior_scale).expand([num_features]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0)) if noise_sd is None else noise_sd
    with numpyro.plate("observations", num_observations):
        numpyro.sample("y", dist.Normal(X @ weights, sigma), obs=y)


def _sparse_truth(generator: np.random.Generator, num_features: int, num_nonzero: int) -> np.ndarray:
    weights = np.zeros(num_features)
    support = generator.choice(num_features, size=num_nonzero, replace=False)
    weights[support] = generator.choice([-1.0, 1.0], size=num_nonzero) * generator.uniform(1.0, 3.0, size=num_nonzero)
    return weights


def _check_sparse_sizes(num_observations, num_features, num_nonzero):
    n = check_positive_int(num_observations, "num_observations")
    p = check_positive_int(num_features, "num_features")
    k = check_positive_int(num_nonzero, "num_nonzero", minimum=0)
    if k > p:
        raise ValueError(f"argument 'num_nonzero' = {k} exceeds num_features = {p}; pass num_nonzero <= num_features")
    return n, p, k


def sparse_regression_data(
    seed=0, num_observations=100, num_features=10, num_nonzero=3, prior_scale=1.0, noise_sd=1.0, learn_noise=False
) -> dict:
    """X ~ N(0, I); `num_nonzero` weights of size 1-3 with random signs, the rest 0; noise sd `noise_sd`.

    learn_noise=True stores noise_sd=None in the data, so the model treats sigma as a latent site.
    """
    n, p, k = _check_sparse_sizes(num_observations, num_features, num_nonzero)
    check_positive(prior_scale, "prior_scale")
    check_positive(noise_sd, "noise_sd")
    generator = rng(seed)
    weights = _sparse_truth(generator, p, k)
    X = generator.normal(size=(n, p))
    y = X @ weights + float(noise_sd) * generator.normal(size=n)
    return {"X": X, "y": y, "prior_scale": float(prior_scale), "noise_sd": None if learn_noise else float(noise_sd)}


def sparse_regression_truth(seed=0, num_observations=100, num_features=10, num_nonzero=3, noise_sd=1.0, **_) -> dict:
    _, p, k = _check_sparse_sizes(num_observations, num_features, num_nonzero)
    return {"weights": _sparse_truth(rng(seed), p, k), "sigma": float(noise_sd)}


SPARSE_REGRESSION = ZooModel(
    name="sparse_regression",
    description="Linear regression with fixed-scale Laplace priors (weighted L1; n=100, p=10, 3 nonzero); truth known.",
    model=sparse_regression_model,
    make_data=sparse_regression_data,
    reference=None,
    tags=("regression", "nonsmooth"),
    true_parameters=sparse_regression_truth,
)
