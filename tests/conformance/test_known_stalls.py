"""A NumPyro example that stalled samplax: cmcd trained on sparse_regression waited forever at 0 % CPU.

XLA's CPU runtime (jaxlib 0.10.2) stalled on cmcd's training program when 64+ trajectories of this Cholesky-based
model were vmapped together (docs/reliability.md, "Known problem"); the loss now evaluates its batch in groups of
`samplax.kernels.cmcd.LOSS_GROUP`. pytest-timeout turns a return of the stall into a failure.
"""

from __future__ import annotations

import numpy as np
import pytest

import samplax

from .corpus import CORPUS


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cmcd_trains_on_numpyros_sparse_regression():
    entry = CORPUS["sparse_regression"]
    fit = samplax.fit(entry.model, entry.data(), method="cmcd", chains=2, warmup=2, draws=10, seed=0, progress=False)
    for name in ("sigma", "lambda", "msq"):
        values = fit.idata.posterior[name].values
        assert values.shape[:2] == (2, 10) and np.all(np.isfinite(values)) and np.all(values > 0), name
