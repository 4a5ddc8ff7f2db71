"""The one place samplax calls ArviZ: the same calls on ArviZ 0.x (``InferenceData``) and 1.x (``xarray.DataTree``).

Why this module exists: ArviZ 1.0 split into arviz-base, arviz-stats and arviz-plots and replaced ``InferenceData``
with ``xarray.DataTree``. Names stayed (``az.from_dict``, ``az.summary``, ``az.ess``, ``az.loo``) while their
signatures and results changed: ``from_dict`` takes one dict of groups instead of one keyword per group,
``summary`` takes ``ci_prob``/``ci_kind`` instead of ``hdi_prob`` and names its interval columns ``hdi94_lb``,
``psislw`` left the top-level namespace, a DataTree node cannot be indexed by a list of variable names, and
``h5py``/``h5netcdf`` are no longer ArviZ's dependencies. ArviZ 1.x needs Python >= 3.12, so samplax meets both:
0.23 on Python 3.11, 1.x on newer Pythons. Every ArviZ call in samplax goes through the functions below, so each
difference is handled once and the rest of samplax reads plain ``xarray.Dataset`` groups.

The branch is chosen by the installed ArviZ version (`ARVIZ_MAJOR`), never by the Python version.

What a caller gets, on either major:

- `from_dict` builds what the installed ArviZ's users expect (``InferenceData`` on 0.x, ``DataTree`` on 1.x) with
  the same groups, dims, coords and root attributes; `from_numpyro` does the same from a ``numpyro.infer.MCMC``.
- `group` returns one group as an ``xarray.Dataset`` (or None), `group_names` and `has_group` list them,
  `set_group` adds or replaces a group, `root_attrs` is the object's own attributes. These read both kinds of
  object whatever ArviZ is installed (a DataTree passed to samplax under ArviZ 0.x works too).
- `summary` has ArviZ 0.x's columns on both majors (``mean, sd, hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk,
  ess_tail, r_hat`` for ``hdi_prob=0.94``), so samplax's tables and reports read the same.
- `ess`, `rhat`, `mcse` take a Dataset (or a dict of ``(chain, draw, ...)`` arrays) and return a Dataset;
  `bfmi` returns one value per chain; `psislw` returns ``(smoothed log-weights, k-hat)`` over the last axis;
  `loo` returns ArviZ's own result and `loo_values` its main numbers under one set of names.
- `to_netcdf` and `from_netcdf` write and read NetCDF-4 files through h5netcdf: one NetCDF group per ArviZ group
  and the root attributes on the root group, the layout both majors use, so a file written under one major loads
  under the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeAlias

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "IData",
    "ARVIZ_VERSION",
    "ARVIZ_MAJOR",
    "NETCDF_ENGINE",
    "is_idata",
    "as_idata",
    "from_dict",
    "from_numpyro",
    "group",
    "group_names",
    "has_group",
    "set_group",
    "root_attrs",
    "draws_dataset",
    "summary",
    "ess",
    "rhat",
    "mcse",
    "bfmi",
    "psislw",
    "loo",
    "loo_values",
    "to_netcdf",
    "from_netcdf",
]

IData: TypeAlias = Any
"""What samplax returns as ``Fit.idata``: ``arviz.InferenceData`` under ArviZ 0.x, ``xarray.DataTree`` under 1.x."""

ARVIZ_VERSION: str = az.__version__
"""The installed ArviZ version, as ArviZ reports it."""

ARVIZ_MAJOR: int = int(ARVIZ_VERSION.split(".", 1)[0])
"""0 for the ``InferenceData`` releases (0.23 and later 0.x), 1 or more for the ``DataTree`` releases."""

NETCDF_ENGINE = "h5netcdf"
"""The xarray engine for fit files (NetCDF-4 groups); samplax depends on h5netcdf and h5py itself."""

_SAMPLE_DIMS = ("chain", "draw")
_DATA_GROUPS = ("observed_data", "constant_data", "predictions_constant_data")  # no chain/draw dims


def _is_v1() -> bool:
    return ARVIZ_MAJOR >= 1


# ---------------------------------------------------------------------------------------------------------------------
# building and recognising the container


def is_idata(obj: Any) -> bool:
    """Whether ``obj`` is an ArviZ container samplax can read: an ``InferenceData`` (ArviZ 0.x) or a ``DataTree``.

    Args:
        obj: anything.

    Returns:
        True for an ``xarray.DataTree`` (either major) or, under ArviZ 0.x, an ``arviz.InferenceData``.
    """
    if isinstance(obj, xr.DataTree):
        return True
    return not _is_v1() and isinstance(obj, az.InferenceData)


def as_idata(obj: Any) -> Any:
    """``obj`` as the installed ArviZ's own container (a DataTree becomes an InferenceData under ArviZ 0.x).

    Args:
        obj: an ``InferenceData`` or a ``DataTree``.

    Returns:
        The same data as what the installed ArviZ's users expect; ``obj`` itself when it already is.

    Raises:
        TypeError: ``obj`` is neither.
    """
    if not is_idata(obj):
        raise TypeError(f"expected an ArviZ InferenceData or an xarray.DataTree, got {type(obj).__name__}")
    if not _is_v1() and isinstance(obj, xr.DataTree):
        return az.InferenceData.from_datatree(obj)
    return obj


def from_dict(
    groups: Mapping[str, Mapping[str, Any]],
    *,
    attrs: Mapping[str, Any] | None = None,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
) -> Any:
    """Build the installed ArviZ's container from arrays.

    Args:
        groups: group name (``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data``, ...) -> variable
            name -> array. Arrays of sampled groups lead with ``(chain, draw)``; ``*_data`` groups have no sample
            dims.
        attrs: the container's own (root) attributes.
        coords: dim name -> labels, as in ArviZ.
        dims: variable name -> dim names of its non-sample axes, as in ArviZ (applied in every group).

    Returns:
        An ``InferenceData`` (ArviZ 0.x) or a ``DataTree`` (ArviZ 1.x) with those groups, dims and root attributes.

    Raises:
        ValueError: under ArviZ 1.x, a variable name contains ``/`` (a DataTree cannot hold it).
    """
    groups = {name: dict(variables) for name, variables in groups.items()}
    coords = dict(coords or {})
    dims = {name: list(value) for name, value in (dims or {}).items()}
    attrs = dict(attrs or {})
    if _is_v1():
        slashed = sorted({str(var) for variables in groups.values() for var in variables if "/" in str(var)})
        if slashed:
            raise ValueError(
                f"variable names {slashed} contain '/', which ArviZ {ARVIZ_VERSION} cannot hold (an "
                "xarray.DataTree reads '/' as a path); rename those sites in the model (ArviZ 0.x "
                "holds them in memory, though no NetCDF file can store them)"
            )
        return az.from_dict(groups, attrs={"/": attrs} if attrs else None, coords=coords, dims=dims)
    idata = az.from_dict(**groups, attrs=attrs, coords=coords, dims=dims)
    # ArviZ 0.x stores a 0-d data value (a plate size n) with an added axis ``n_dim_0`` of length 1; 1.x keeps it
    # 0-d, and so do we, so that both majors give the same dims and a loaded fit passes n back as a scalar
    for name in _DATA_GROUPS:
        dataset = getattr(idata, name, None) if name in groups else None
        scalars = [
            var
            for var, value in groups.get(name, {}).items()
            if np.ndim(value) == 0
            and dims.get(var) is None
            and dataset is not None
            and dataset[var].dims == (f"{var}_dim_0",)
        ]
        if scalars:
            squeezed = dataset.assign({var: dataset[var].squeeze(drop=True) for var in scalars})
            setattr(idata, name, squeezed.drop_dims([f"{var}_dim_0" for var in scalars]))
    return idata


def from_numpyro(mcmc: Any, *, log_likelihood: bool = True, **kwargs: Any) -> Any:
    """ArviZ's converter of a finished ``numpyro.infer.MCMC`` (the reference runs of benchmarks and tests).

    Args:
        mcmc: a ``numpyro.infer.MCMC`` that has run.
        log_likelihood: add the pointwise log-likelihood group (0.x's default; 1.x leaves it out unless asked).
        **kwargs: passed to ``az.from_numpyro`` (``coords``, ``dims``, ...).

    Returns:
        The installed ArviZ's container.
    """
    return az.from_numpyro(mcmc, log_likelihood=log_likelihood, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# groups


def group_names(idata: Any) -> list[str]:
    """The names of ``idata``'s groups (``["posterior", "sample_stats", ...]``), in stored order.

    Args:
        idata: an ``InferenceData`` or a ``DataTree``.

    Returns:
        The group names, without the DataTree's leading ``/``.
    """
    if isinstance(idata, xr.DataTree):
        return [str(name) for name in idata.children]
    names = getattr(idata, "groups", None)
    return list(names()) if callable(names) else []


def has_group(idata: Any, name: str) -> bool:
    """Whether ``idata`` has the group ``name``.

    Args:
        idata: an ``InferenceData`` or a ``DataTree``.
        name: a group name such as ``"posterior"``.

    Returns:
        True when the group exists.
    """
    return name in group_names(idata)


def group(idata: Any, name: str) -> xr.Dataset | None:
    """One group of ``idata`` as an ``xarray.Dataset`` (index it by a list of names, subset it, compute on it).

    Args:
        idata: an ``InferenceData``, a ``DataTree``, or any object with the group as an attribute.
        name: a group name such as ``"posterior"``.

    Returns:
        The group's Dataset (a shallow view of the same arrays), or None when ``idata`` has no such group.
    """
    if isinstance(idata, xr.DataTree):
        return idata[name].to_dataset() if name in idata.children else None
    value = getattr(idata, name, None)
    if isinstance(value, xr.DataTree):
        return value.to_dataset()
    return value if isinstance(value, xr.Dataset) else None


def set_group(
    idata: Any,
    name: str,
    variables: Mapping[str, Any],
    *,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> Any:
    """Add the group ``name`` to ``idata`` in place, replacing a group of that name.

    Args:
        idata: an ``InferenceData`` (ArviZ 0.x) or a ``DataTree``.
        name: the group name, for example ``"posterior_predictive"``.
        variables: variable name -> array (leading ``(chain, draw)`` unless ``name`` ends in ``_data``).
        dims: variable name -> dim names of its non-sample axes.
        coords: dim name -> labels.

    Returns:
        ``idata`` itself, now with the group.
    """
    built = from_dict({name: variables}, dims=dims, coords=coords)
    if isinstance(idata, xr.DataTree):
        idata[name] = group(built, name)
    else:
        idata.extend(built, join="right")  # "right": the new group wins
    return idata


def root_attrs(idata: Any) -> dict:
    """The container's own attributes (samplax's ``method``, ``options``, ``timing``, ...), or an empty dict.

    Args:
        idata: an ``InferenceData`` or a ``DataTree``.

    Returns:
        The live mapping (writes go to ``idata``) or ``{}`` when the object has none.
    """
    attrs = getattr(idata, "attrs", None)
    return attrs if attrs is not None else {}


def draws_dataset(draws: Mapping[str, Any]) -> xr.Dataset:
    """A posterior-like Dataset from ``(chain, draw, ...)`` arrays, dims named as ArviZ names them (``x_dim_0``).

    Args:
        draws: variable name -> array with ``(chain, draw)`` leading.

    Returns:
        The Dataset, with integer ``chain`` and ``draw`` coordinates.
    """
    variables = {}
    for name, values in draws.items():
        values = np.asarray(values)
        if values.ndim < 2:
            raise ValueError(f"draws of {name!r} must have (chain, draw) leading, got shape {values.shape}")
        extra = [f"{name}_dim_{i}" for i in range(values.ndim - 2)]
        variables[name] = (list(_SAMPLE_DIMS) + extra, values)
    first = next(iter(draws.values()), np.zeros((0, 0)))
    chains, per_chain = np.shape(first)[:2]
    return xr.Dataset(variables, coords={"chain": np.arange(chains), "draw": np.arange(per_chain)})


def _dataset(data: Any) -> xr.Dataset:
    if isinstance(data, xr.Dataset):
        return data
    if isinstance(data, Mapping) and not is_idata(data):  # an InferenceData is a Mapping of groups
        return draws_dataset(data)
    posterior = group(data, "posterior")
    if posterior is None:
        raise ValueError(
            f"expected a Dataset, a dict of (chain, draw, ...) arrays or an object with a posterior "
            f"group, got {type(data).__name__}"
        )
    return posterior


# ---------------------------------------------------------------------------------------------------------------------
# diagnostics


def summary(data: Any, *, hdi_prob: float = 0.94, round_to: int | str | None = None) -> pd.DataFrame:
    """ArviZ's summary (``kind="all"``) with ArviZ 0.x's columns on either major.

    Args:
        data: a Dataset of draws (``chain, draw, ...``), a dict of such arrays, or a container with a posterior.
        hdi_prob: the probability of the highest-density interval.
        round_to: decimals for every column; None rounds as ArviZ 0.x does by default (three decimals, ESS to
            integers, R-hat to two; 1.x's ``"auto"`` would give strings); ``"none"`` leaves the numbers as computed.

    Returns:
        One row per scalar coordinate (``theta[0]``), columns ``mean, sd, hdi_<lower>%, hdi_<upper>%, mcse_mean,
        mcse_sd, ess_bulk, ess_tail, r_hat``.
    """
    dataset = _dataset(data)
    if not _is_v1():
        return az.summary(dataset, hdi_prob=hdi_prob, kind="all", round_to=round_to)
    table = az.summary(
        dataset, kind="all", ci_kind="hdi", ci_prob=hdi_prob, round_to="none" if round_to is None else round_to
    )
    lower, upper = _hdi_columns(hdi_prob)
    renamed = {}
    for column in table.columns:
        text = str(column)
        if text.startswith("hdi") and text.endswith("_lb"):
            renamed[column] = lower
        elif text.startswith("hdi") and text.endswith("_ub"):
            renamed[column] = upper
    table = table.rename(columns=renamed)
    order = ["mean", "sd", lower, upper, "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    table = table[[c for c in order if c in table.columns] + [c for c in table.columns if c not in order]]
    if round_to is None:
        table = table.round(
            {
                column: 0 if column in ("ess_bulk", "ess_tail") else 2 if column == "r_hat" else 3
                for column in table.columns
            }
        )
    return table


def _hdi_columns(hdi_prob: float) -> tuple[str, str]:
    """ArviZ 0.x's names of the interval's bounds: ``hdi_3%`` and ``hdi_97%`` for 0.94."""
    alpha = 1.0 - hdi_prob
    return f"hdi_{100 * alpha / 2:g}%", f"hdi_{100 * (1 - alpha / 2):g}%"


def ess(data: Any, *, method: str = "bulk") -> xr.Dataset:
    """Effective sample size of every scalar coordinate.

    Args:
        data: a Dataset of draws, a dict of ``(chain, draw, ...)`` arrays, or a container with a posterior.
        method: ``"bulk"``, ``"tail"``, ``"mean"``, ``"sd"``, ... as in ArviZ.

    Returns:
        A Dataset with the sample dims reduced.
    """
    return az.ess(_dataset(data), method=method)


def rhat(data: Any) -> xr.Dataset:
    """Rank-normalised split R-hat of every scalar coordinate.

    Args:
        data: a Dataset of draws, a dict of ``(chain, draw, ...)`` arrays, or a container with a posterior.

    Returns:
        A Dataset with the sample dims reduced.
    """
    return az.rhat(_dataset(data))


def mcse(data: Any, *, method: str = "mean") -> xr.Dataset:
    """Monte Carlo standard error of every scalar coordinate.

    Args:
        data: a Dataset of draws, a dict of ``(chain, draw, ...)`` arrays, or a container with a posterior.
        method: ``"mean"``, ``"sd"``, ... as in ArviZ.

    Returns:
        A Dataset with the sample dims reduced.
    """
    return az.mcse(_dataset(data), method=method)


def bfmi(idata: Any) -> np.ndarray:
    """E-BFMI of each chain, from ``sample_stats.energy``.

    Args:
        idata: a container with ``sample_stats.energy``, a Dataset with ``energy``, or a ``(chain, draw)`` array.

    Returns:
        One float per chain.
    """
    if isinstance(idata, np.ndarray):
        energy = idata
    else:
        stats = idata if isinstance(idata, xr.Dataset) else group(idata, "sample_stats")
        if stats is None or "energy" not in stats:
            raise ValueError("E-BFMI needs sample_stats.energy, which this fit does not have")
        energy = np.asarray(stats["energy"].transpose(*_SAMPLE_DIMS).values)
    energy = np.asarray(energy, dtype=np.float64)
    if _is_v1():
        result = az.bfmi(xr.Dataset({"energy": (list(_SAMPLE_DIMS), energy)}))
        return np.atleast_1d(np.asarray(result["energy"].values, dtype=np.float64))
    return np.atleast_1d(np.asarray(az.bfmi(energy), dtype=np.float64))


def psislw(log_weights: Any, reff: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed importance sampling over the last axis (Vehtari et al. 2024).

    Args:
        log_weights: finite log-weights, shape ``(..., draws)``.
        reff: relative efficiency of the draws (1 for independent draws).

    Returns:
        ``(smoothed_log_weights, pareto_k)``: the first of the input's shape (normalised over the last axis), the
        second of the input's shape without the last axis. Where the tail cannot be fitted (its largest weights
        tie) k-hat is ``inf`` and the weights are only normalised, as ArviZ 0.x returns them (1.x raises instead).
    """
    values = np.asarray(log_weights, dtype=np.float64)
    if not _is_v1():
        smoothed, k = az.psislw(values, reff)
        return np.asarray(smoothed), np.asarray(k)
    rows = values.reshape(-1, values.shape[-1])
    smoothed, k = np.empty_like(rows), np.empty(rows.shape[0])
    for index, row in enumerate(rows):
        try:
            # ArviZ 1.x's psislw takes log-likelihoods (the LOO convention) and smooths their negatives
            row_smoothed, row_k = xr.DataArray(-row, dims=["draw"]).azstats.psislw(dim="draw", r_eff=reff)
            smoothed[index], k[index] = row_smoothed.values, float(row_k)
        except ValueError:  # "All tail values are the same"
            smoothed[index], k[index] = row - np.logaddexp.reduce(row), np.inf
    return smoothed.reshape(values.shape), k.reshape(values.shape[:-1])


def loo(idata: Any, *, pointwise: bool = False, **kwargs: Any) -> Any:
    """PSIS-LOO-CV from the ``log_likelihood`` group (ArviZ's ``loo``, its result unchanged).

    Args:
        idata: an ``InferenceData`` or a ``DataTree`` with ``log_likelihood``.
        pointwise: also return the per-observation values and Pareto k.
        **kwargs: passed to ``az.loo`` (``var_name``, ``reff``, ...).

    Returns:
        ArviZ's ``ELPDData`` (0.x: a pandas Series with ``elpd_loo``, ``p_loo``; 1.x: an object with ``elpd``, ``p``).
    """
    return az.loo(as_idata(idata), pointwise=pointwise, **kwargs)


def loo_values(result: Any) -> dict[str, Any]:
    """The main numbers of a `loo` result under one set of names on either major.

    Args:
        result: what `loo` returned (with ``pointwise=True`` for ``pareto_k``).

    Returns:
        ``{"elpd_loo", "se", "p_loo", "pareto_k"}`` (``pareto_k`` is None without pointwise values).
    """
    if _is_v1():
        elpd, p = result.elpd, result.p
    else:
        elpd, p = result["elpd_loo"], result["p_loo"]
    k = getattr(result, "pareto_k", None)
    return {
        "elpd_loo": float(elpd),
        "se": float(result.se if _is_v1() else result["se"]),
        "p_loo": float(p),
        "pareto_k": None if k is None else np.asarray(getattr(k, "values", k), dtype=np.float64),
    }


# ---------------------------------------------------------------------------------------------------------------------
# NetCDF


def to_netcdf(idata: Any, path: str | os.PathLike) -> str:
    """Write ``idata`` to a NetCDF-4 file (h5netcdf): one group per ArviZ group, root attributes on the root.

    Numeric variables are compressed (zlib), as ArviZ 0.x does by default.

    Args:
        idata: an ``InferenceData`` or a ``DataTree``.
        path: the file to write (overwritten).

    Returns:
        ``path`` as a string.
    """
    path = os.fspath(path)
    if not isinstance(idata, xr.DataTree):
        idata.to_netcdf(path, engine=NETCDF_ENGINE)
        return path
    encoding = {}
    for name in group_names(idata):
        variables = idata[name].to_dataset().variables
        encoding[f"/{name}"] = {
            var: {"zlib": True}
            for var, values in variables.items()
            if np.issubdtype(values.dtype, np.number) or values.dtype == bool
        }
    idata.to_netcdf(path, engine=NETCDF_ENGINE, encoding=encoding)
    return path


def from_netcdf(path: str | os.PathLike) -> Any:
    """Read a NetCDF file written by `to_netcdf` (or by ArviZ of either major) into memory.

    Args:
        path: the file.

    Returns:
        The installed ArviZ's container, every group loaded (the file is closed).

    Raises:
        OSError, ValueError, TypeError, KeyError: the file is not NetCDF-4 (h5py and xarray word it differently).
    """
    path = os.fspath(path)
    if not _is_v1():
        return az.from_netcdf(path, engine=NETCDF_ENGINE)
    with xr.open_datatree(path, engine=NETCDF_ENGINE) as tree:
        return tree.load()
