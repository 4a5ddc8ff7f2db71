"""Prior and posterior predictive draws through ``numpyro.infer.Predictive``.

NumPyro's convention: a predictive run calls the model with the observed values set to None, so each observed site
draws from its likelihood. The keys that hold observed values are known from the bridge's trace
(`samplax.models.bridge.Target.observed_data_keys`: data key -> site name) or, for a fit loaded from a file, from
``idata.attrs["observed_data_keys"]``.

    groups = prior_predictive(target, draws=500, seed=0)            # {"prior": ..., "prior_predictive": ...}
    draws = posterior_predictive(model, data, posterior, seed=0, observed_keys={"y": "obs"})
"""

from __future__ import annotations

import jax
import numpy as np
import xarray as xr
from numpyro.infer import Predictive

__all__ = ["prior_predictive", "posterior_predictive", "data_from_dataset", "data_from_idata", "predictive_data"]


def predictive_data(data: dict, observed_keys) -> dict:
    """The model's keyword arguments for a predictive run: observed values replaced by None."""
    return {key: (None if key in observed_keys else value) for key, value in data.items()}


def _call(predictive: Predictive, key, data: dict, what: str) -> dict:
    try:
        return predictive(key, **data)
    except NotImplementedError as err:
        detail = str(err) or "an improper prior such as ImproperUniform"
        raise ValueError(
            f"{what} needs draws from every prior, but a site has no sampler ({detail}); give flat "
            "priors a proper distribution to draw from the prior"
        ) from None
    except (TypeError, AttributeError, ValueError) as err:
        raise ValueError(
            f"{what} calls the model with the observed values set to None (NumPyro's predictive "
            f"convention) and the model failed: {type(err).__name__}: {err}. Write the model so that "
            "its sizes come from other arguments (for example N, or the covariates), or pass data= "
            "with those arguments"
        ) from err


def prior_predictive(target, draws: int = 500, seed: int = 0) -> dict:
    """Prior draws of the latent and deterministic sites and prior predictive draws of the observed sites.

    Returns ``{"prior": {site: (1, draws, ...)}, "prior_predictive": {site: (1, draws, ...)}}``: one chain, as
    ArviZ's ``from_numpyro(prior=...)`` lays them out.
    """
    if target.improper_sites:
        raise ValueError(
            f"sites {list(target.improper_sites)} have improper (flat) priors: there is no prior to "
            "draw from. Give them a proper prior to run prior predictive checks"
        )
    latent = list(target.site_names) + list(target.discrete_sites) + list(target.deterministic_shapes)
    observed = list(target.observed)
    predictive = Predictive(target.model, num_samples=draws, return_sites=latent + observed)
    out = _call(
        predictive,
        jax.random.key(seed),
        predictive_data(target.data, target.observed_data_keys),
        "the prior predictive",
    )
    as_chain = {name: np.asarray(value)[None] for name, value in out.items()}
    return {
        "prior": {name: as_chain[name] for name in latent if name in as_chain},
        "prior_predictive": {name: as_chain[name] for name in observed if name in as_chain},
    }


def posterior_predictive(
    model, data: dict, posterior: xr.Dataset, *, seed: int = 0, observed_keys=(), latent=None
) -> dict:
    """Posterior predictive draws (chain, draw, ...) of every site the model draws once the latent sites are fixed.

    ``latent`` names the posterior variables to condition on (default: all of them; deterministic sites are
    recomputed by the model either way).
    """
    names = [name for name in (latent if latent is not None else posterior.data_vars) if name in posterior]
    samples = {name: np.asarray(posterior[name].values) for name in names}
    predictive = Predictive(model, posterior_samples=samples, batch_ndims=2)
    out = _call(predictive, jax.random.key(seed), predictive_data(data, observed_keys), "predict()")
    drawn = set(observed_keys.values()) if isinstance(observed_keys, dict) else None
    return {
        name: np.asarray(value)
        for name, value in out.items()
        if name not in posterior and (drawn is None or name in drawn)
    }


def data_from_dataset(stored: xr.Dataset | None) -> dict:
    """The model's data as stored in a fit's ``constant_data`` group.

    0-d arrays go back to Python scalars; None (no such group) gives no data.
    """
    if stored is None:
        return {}
    return {
        name: (stored[name].values.item() if stored[name].ndim == 0 else stored[name].values)
        for name in stored.data_vars
    }


def data_from_idata(idata) -> dict:
    """`data_from_dataset` of an InferenceData's or a DataTree's ``constant_data`` group."""
    if isinstance(idata, xr.DataTree):
        stored = idata["constant_data"].to_dataset() if "constant_data" in idata.children else None
    else:
        stored = getattr(idata, "constant_data", None)
    return data_from_dataset(stored)
