"""The InferenceData of a fit: groups, dims named from plates, attrs that let a loaded fit be used again.

`assemble` turns a method's result (posterior, sample statistics, log-likelihood, evidence) into the ArviZ container
the installed ArviZ expects (through `samplax.infer.arviz_compat`); dims are named from the model's plates exactly as
``az.from_numpyro`` names them, and the attrs record the method, its options, the seed, the timing, the library
versions and which sites are latent, deterministic and observed.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import numpy as np

from samplax.infer import arviz_compat
from samplax.infer.arviz_compat import IData
from samplax.infer.options import schema
from samplax.models.bridge import Target

__all__ = ["Estimate", "recorded_estimate", "assemble", "inference_data", "site_attrs", "versions", "check_coords_dims"]


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error (over independent repeats)."""

    value: float
    se: float

    def __repr__(self):
        return f"Estimate(value={self.value:.6g}, se={self.se:.3g})"


def _estimate(values) -> Estimate | None:
    if values is None:
        return None
    values = np.asarray(values, dtype=float).reshape(-1)
    se = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return Estimate(float(np.mean(values)), se)


def recorded_estimate(attrs: dict, name: str) -> Estimate | None:
    """The estimate ``name`` (``log_evidence`` or ``elbo``) as stored in a fit's root attrs (JSON [value, se])."""
    return Estimate(*map(float, json.loads(attrs[name]))) if name in attrs else None


def versions() -> dict:
    """The versions of samplax, JAX, NumPyro, BlackJAX and ArviZ, recorded in every fit's attrs."""
    import blackjax
    import numpyro

    import samplax

    return {
        "samplax": samplax.__version__,
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "blackjax": getattr(blackjax, "__version__", "unknown"),
        "arviz": arviz_compat.ARVIZ_VERSION,
    }


def assemble(target: Target, settings: dict, result: dict) -> IData:
    """Build a fit's InferenceData from the driver's result.

    Args:
        target: the model's Target (sites, dims from plates, the data).
        settings: the fit's settings (method, options, seed, precision, ...), recorded in attrs.
        result: the driver's output: posterior draws, sample statistics, log-likelihoods, timing, the method's
            estimates and extras.

    Returns:
        The InferenceData (a DataTree under ArviZ 1.x) with its groups and the attrs a loaded fit needs.
    """
    spec = schema(settings["method"])
    attrs = {
        "method": settings["method"],
        "options": json.dumps(settings["options"], sort_keys=True, default=str),
        "seed": settings["seed"],
        "precision": settings["precision"],
        "draws_kind": {"mcmc": "mcmc", "weighted": "weighted", "iid": "iid"}[spec.family],
        "timing": json.dumps(result["timing"]),
        "versions": json.dumps(versions()),
        "inference_library": "samplax",
    }
    for name in ("log_evidence", "elbo"):
        estimate = _estimate(result.get(name))
        if estimate is not None:
            attrs[name] = json.dumps([estimate.value, estimate.se])
    for name, value in result.get("extra", {}).items():
        attrs[f"extra_{name}"] = json.dumps(np.asarray(value).tolist())
    attrs.update(site_attrs(target))
    stats = {name: np.asarray(value) for name, value in result["sample_stats"].items()}
    groups = dict(posterior=result["posterior"], sample_stats=stats)
    if result["log_likelihood"]:
        groups["log_likelihood"] = result["log_likelihood"]
    return inference_data(target, groups, attrs, settings.get("coords"), settings.get("dims"))


def site_attrs(target: Target) -> dict:
    """What a loaded fit needs to tell latent from deterministic sites and to rebuild the model's data."""
    return {
        "latent_sites": json.dumps(list(target.site_names) + list(target.discrete_sites)),
        "deterministic_sites": json.dumps(list(target.deterministic_shapes)),
        "observed_data_keys": json.dumps(target.observed_data_keys),
        "data_mode": target.data_mode,
    }


def inference_data(target: Target, groups: dict, attrs: dict, coords=None, dims=None) -> IData:
    """InferenceData with the model's observed and constant data, dims named from plates as az.from_numpyro does.

    ``dims`` given by the user override the plate names of the sites they name; ``coords`` label dims.
    """
    if target.observed:
        groups["observed_data"] = {k: np.asarray(v) for k, v in target.observed.items()}
    constant = target.constant_data()
    if constant:
        groups["constant_data"] = constant
    merged = {**target.dims, **(dims or {})}
    ndim = {}
    for group, variables in groups.items():
        offset = 0 if group in ("observed_data", "constant_data") else 2
        for name, value in variables.items():
            # dims apply to a name in every group: a sample statistic named like a site (a model observing
            # "log_weight" fitted by a weighted method) must not get the site's dims
            ndim[name] = min(ndim.get(name, np.inf), np.ndim(value) - offset)
    # a plate name list longer than the value's axes (a site broadcast inside its plates) is dropped, not guessed
    merged = {name: list(names) for name, names in merged.items() if name in ndim and len(names) <= ndim[name]}
    return arviz_compat.from_dict(groups, attrs=attrs, dims=merged, coords=coords)


def _jsonable(mapping):
    """coords/dims as JSON-able lists (they go into the checkpoint manifest)."""
    return None if mapping is None else {k: np.asarray(v).tolist() for k, v in mapping.items()}


def _site_list(idata, attr: str) -> list[str] | None:
    attrs = arviz_compat.root_attrs(idata)
    return json.loads(attrs[attr]) if attr in attrs else None


def _stored_dims(idata) -> dict:
    """The dims of the observed sites as stored (what posterior_predictive variables are named with)."""
    observed = arviz_compat.group(idata, "observed_data")
    if observed is None:
        return {}
    return {name: list(da.dims) for name, da in observed.data_vars.items()}


def _stored_coords(idata) -> dict:
    """The labels of the observed sites' dims as stored (so posterior_predictive is labelled like observed_data)."""
    observed = arviz_compat.group(idata, "observed_data")
    if observed is None:
        return {}
    return {str(dim): observed.coords[dim].values for dim in observed.dims if dim in observed.coords}


def check_coords_dims(coords, dims):
    """coords: {dim: labels}; dims: {variable: [dim names]} (ArviZ's meaning), checked before any tracing."""
    if coords is not None:
        if not isinstance(coords, dict):
            raise ValueError(f"coords must be a dict {{dim name: list of labels}}, got {type(coords).__name__}")
        for name, labels in coords.items():
            if not isinstance(name, str) or np.ndim(labels) != 1:
                raise ValueError(f"coords[{name!r}] must be a 1-d list of labels, got {labels!r}")
    if dims is not None:
        if not isinstance(dims, dict):
            raise ValueError(f"dims must be a dict {{variable: list of dim names}}, got {type(dims).__name__}")
        for name, names in dims.items():
            if isinstance(names, str) or not all(isinstance(n, str) for n in np.atleast_1d(names)):
                raise ValueError(f"dims[{name!r}] must be a list of dim names, got {names!r}")
