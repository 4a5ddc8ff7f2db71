"""Write ``fit_arviz<major>.nc``: a small samplax fit saved under the installed ArviZ major (0.x or 1.x).

The committed files let the suite check that a fit written under one ArviZ major loads under the other
(``tests/infer/test_arviz_compat.py``). Regenerate them after a change to what a fit stores, once per venv:

    .venv/bin/python tests/data/make_arviz_fixtures.py        # Python 3.11, ArviZ 0.23 -> fit_arviz0.nc
    .venv313/bin/python tests/data/make_arviz_fixtures.py     # Python 3.13, ArviZ 1.x  -> fit_arviz1.nc
"""

import os
import pathlib
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist

HERE = pathlib.Path(__file__).resolve().parent
X = np.linspace(-1.0, 1.0, 8)
Y = np.array([-1.9, -1.1, -0.6, 0.1, 0.4, 1.2, 1.6, 2.3])
DATA = {"x": X, "n": 8, "y": Y}
COORDS = {"obs": [f"o{i}" for i in range(8)]}
DIMS = {"mu": ["obs"], "y": ["obs"], "x": ["obs"]}
CHAINS, DRAWS = 2, 50


def model(x, n, y=None):
    """Linear regression with a deterministic mean and the plate size passed as a scalar."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", n):
        mu = numpyro.deterministic("mu", alpha + beta * x)
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def main() -> str:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import samplax
    from samplax.infer import arviz_compat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = samplax.fit(
            model,
            DATA,
            method="nuts",
            chains=CHAINS,
            warmup=100,
            draws=DRAWS,
            seed=0,
            progress=False,
            coords=COORDS,
            dims=DIMS,
        )
    path = HERE / f"fit_arviz{min(arviz_compat.ARVIZ_MAJOR, 1)}.nc"
    fit.save(path)
    return str(path)


if __name__ == "__main__":
    print(main())
