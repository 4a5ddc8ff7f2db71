"""`samplax.fit`: one call from a NumPyro model to draws, diagnostics and (where the method gives one) evidence.

    fit = samplax.fit(model, data, method="nuts", chains=4, warmup=1000, draws=1000, seed=0)
    fit.summary()            # ArviZ summary plus ESS per second
    fit.idata                # arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ 1.x): posterior,
                             # sample_stats, log_likelihood, observed_data

Order of work: arguments and method options are checked first (no tracing, no compilation), then the model is traced
once into a `Target`, then the method runs: MCMC methods as vectorised chains in compiled chunks (`infer.run`),
other methods in one compiled call. Keys: ``key(seed)`` splits into init, warm-up and sampling keys; chain c's
sampling key is ``split(sampling_key, chains)[c]`` and its draw t uses ``fold_in(chain_key, t)``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from samplax.infer import arviz_compat, registry
from samplax.infer import cache as compilation_cache
from samplax.infer.arviz_compat import IData
from samplax.infer.assemble import (
    Estimate,
    _estimate,
    _jsonable,
    _site_list,
    _stored_coords,
    _stored_dims,
    recorded_estimate,
)
from samplax.infer.assemble import assemble as _assemble
from samplax.infer.assemble import check_coords_dims as _check_coords_dims
from samplax.infer.assemble import inference_data as _inference_data
from samplax.infer.assemble import site_attrs as _site_attrs
from samplax.infer.assemble import versions as _versions
from samplax.infer.checkpoint import Checkpoint
from samplax.infer.driver import run_direct as _run_direct
from samplax.infer.driver import run_mcmc as _run_mcmc
from samplax.infer.driver import unsupported_features
from samplax.infer.methods import MCMCMethod
from samplax.infer.options import schema, validate
from samplax.infer.progress import Progress
from samplax.models.bridge import Target, build_target

compilation_cache.configure()  # a second process compiles nothing the first one did

__all__ = ["fit", "Fit", "Estimate", "resume", "load", "prior_predictive", "ConvergenceWarning"]

PRECISIONS = ("float32", "float64")


class ConvergenceWarning(UserWarning):
    """A fit finished but its diagnostics say the draws should not be trusted as they are."""


# ---------------------------------------------------------------------------------------------------------------------
# the Fit object
class Fit:
    """The result of `samplax.fit`.

    An InferenceData (a DataTree under ArviZ 1.x) plus timing, estimates and helpers.
    """

    def __init__(
        self,
        idata: IData,
        *,
        target: Target | None = None,
        timing: dict | None = None,
        log_evidence: Estimate | None = None,
        elbo: Estimate | None = None,
    ):
        self.idata = idata
        self.target = target
        attrs = arviz_compat.root_attrs(idata)
        self.method = attrs.get("method")
        self.options = json.loads(attrs.get("options", "{}"))
        self.precision = attrs.get("precision", "float32")
        self.timing = timing if timing is not None else json.loads(attrs.get("timing", "{}"))
        self.log_evidence = log_evidence if log_evidence is not None else recorded_estimate(attrs, "log_evidence")
        self.elbo = elbo if elbo is not None else recorded_estimate(attrs, "elbo")
        self.approximation = None  # variational methods: the fitted approximation (not saved to NetCDF)

    def log_density(self, *args, **kwargs):
        """The fitted approximation's log density (variational methods; see the method's docs for the space)."""
        if self.approximation is None or not hasattr(self.approximation, "log_density"):
            raise ValueError(
                f"method {self.method!r} has no fitted density to evaluate (or this Fit was loaded from a file)"
            )
        return self.approximation.log_density(*args, **kwargs)

    def __repr__(self):
        posterior = self.idata.posterior
        return (
            f"Fit(method={self.method!r}, chains={posterior.sizes.get('chain')}, draws={posterior.sizes.get('draw')}, "
            f"sites={list(posterior.data_vars)})"
        )

    def summary(self, var_names=None, **kwargs):
        """ArviZ summary (mean, sd, HDI, MCSE, bulk/tail ESS, R-hat) plus ESS per second; latent sites first.

        ``ess_bulk_per_s`` is per second of the whole fit (what to compare across methods); ``ess_bulk_per_sampling_s``
        per second of sampling.
        """
        from samplax.infer import diagnostics

        return diagnostics.summary(
            self.idata,
            sampling_seconds=self.timing.get("sampling_s"),
            wall_seconds=self.timing.get("total_s"),
            var_names=var_names,
            **kwargs,
        )

    def warnings(self, var_names=None) -> list[str]:
        """Stan-style plain-English warnings about the latent sites (empty when nothing looks wrong)."""
        from samplax.infer import diagnostics

        return diagnostics.convergence_warnings(self.idata, var_names=var_names)

    def predict(self, model=None, data: dict | None = None, seed: int = 0) -> IData:
        """Posterior predictive draws of every observed site, added to ``idata`` as ``posterior_predictive``.

        Runs ``numpyro.infer.Predictive`` on the posterior's latent sites. ``model`` is needed for a Fit loaded from
        a file; ``data`` (default: the data of the fit, or for a loaded fit its ``constant_data``) predicts at other
        inputs. The data keys passed as ``obs=`` are set to None, NumPyro's convention for predictive runs.
        """
        from samplax.models import predictive

        model = model if model is not None else (self.target.model if self.target is not None else None)
        if model is None:
            raise ValueError(
                "predict() needs the model: this Fit was loaded from a file; pass it: "
                "fit.predict(model=my_model) (and data= if the model needs inputs that are not in "
                "fit.idata.constant_data)"
            )
        if data is None:
            data = (
                self.target.data
                if self.target is not None
                else predictive.data_from_dataset(arviz_compat.group(self.idata, "constant_data"))
            )
        observed_keys = (
            self.target.observed_data_keys
            if self.target is not None and data is self.target.data
            else json.loads(arviz_compat.root_attrs(self.idata).get("observed_data_keys", "{}"))
        )
        posterior = arviz_compat.group(self.idata, "posterior")
        groups = predictive.posterior_predictive(
            model,
            data,
            posterior,
            seed=seed,
            observed_keys=observed_keys,
            latent=_site_list(self.idata, "latent_sites"),
        )
        # a second predict() (or one on a saved fit that had one) replaces the group
        arviz_compat.set_group(
            self.idata, "posterior_predictive", groups, dims=_stored_dims(self.idata), coords=_stored_coords(self.idata)
        )
        return self.idata

    def save(self, path: str):
        """Write the InferenceData to NetCDF (data only; `samplax.load` reads it back).

        Raises:
            ValueError: ``path`` is a directory or its folder is missing or not writable (checked before writing),
                or a site name cannot be stored in NetCDF.
        """
        check_output_path(path, "the fit")
        bad = [
            name
            for group in arviz_compat.group_names(self.idata)
            for name in arviz_compat.group(self.idata, group).data_vars
            if "/" in str(name)
        ]
        if bad:
            raise ValueError(
                f"site names {sorted(set(bad))} contain '/', which NetCDF cannot store as a variable "
                "name; rename those sites in the model to save the fit"
            )
        arviz_compat.to_netcdf(self.idata, path)
        return path

    def report(self, path: str, var_names=None):
        """Write the self-contained HTML diagnostics report (``var_names`` limits it to those sites)."""
        from samplax.infer import report

        return report.write_report(self, path, var_names=var_names)


def load(path: str) -> Fit:
    """A Fit from a NetCDF file written by `Fit.save` or `samplax fit --out` (no model attached).

    Files written under ArviZ 0.x and 1.x load under either (``Fit.idata`` is the installed ArviZ's container).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not NetCDF (the message names the path).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no fit file at {path!r}")
    try:
        idata = arviz_compat.from_netcdf(path)
    except (OSError, ValueError, TypeError, KeyError) as err:  # h5py / netCDF4 / xarray each word it differently
        raise ValueError(
            f"{path!r} is not a NetCDF fit written by samplax (Fit.save or samplax fit --out): "
            f"{type(err).__name__}: {err}"
        ) from None
    return Fit(idata)


def check_output_path(path, what: str = "the output") -> None:
    """Refuse an output path that cannot be written, before any work. The error names the path.

    Refused: empty, a directory, or in a folder that is missing or not writable.
    """
    target = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not target:
        raise ValueError(f"{what} needs a file path to be written to, got {path!r}")
    if os.path.isdir(target):
        raise ValueError(f"cannot write {what} to {target!r}: it is a directory; name a file in it")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ValueError(
            f"cannot write {what} to {target!r}: the folder {folder!r} does not exist; create it "
            "first or pick another path"
        )
    if not os.access(folder, os.W_OK) or (os.path.exists(target) and not os.access(target, os.W_OK)):
        raise ValueError(f"cannot write {what} to {target!r}: permission denied")


# ---------------------------------------------------------------------------------------------------------------------
# argument checks (before anything is traced or compiled)
SEED_LIMIT = 2**32  # JAX's default keys hold 32 bits of seed: seed 2**32 would repeat seed 0's draws


def _check_integer(name: str, value, minimum: int):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")


def _check_common(method, chains, warmup, draws, seed, precision, checkpoint_every):
    schema(method)
    for name, value, minimum in (("chains", chains, 1), ("warmup", warmup, 0), ("draws", draws, 1)):
        _check_integer(name, value, minimum)
    _check_seed(seed)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if checkpoint_every is not None and (
        not isinstance(checkpoint_every, (int, np.integer))
        or isinstance(checkpoint_every, bool)
        or checkpoint_every < 1
    ):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")


def _check_run_arguments(method: str, *, thin, init, progress, log_likelihood, checkpoint_every):
    """The arguments of fit() that not every method uses: an error, never silently ignored."""
    _check_integer("thin", thin, 1)
    for name, value in (("progress", progress), ("log_likelihood", log_likelihood)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if init is not None and not isinstance(init, (str, dict)):
        raise ValueError(f"init must be a strategy name or a dict {{site: value}}, got {type(init).__name__}")
    entry = registry.get(method)
    if isinstance(entry, MCMCMethod):
        if init is not None and not entry.uses_init:
            raise ValueError(
                f"method '{method}' does not use ['init'] (its chains start from states it chooses: prior draws of "
                "the model for the gibbs family, the warm-up's Laplace approximation for admm and dsgld); drop it"
            )
        return
    unused = [
        name
        for name, value, default in (
            ("thin", thin, 1),
            ("init", init, None),
            ("checkpoint_every", checkpoint_every, None),
        )
        if value != default
    ]
    if unused:
        raise ValueError(
            f"method '{method}' does not use {unused} (it runs in one compiled call and starts from "
            "its own reference); drop them"
        )


def _check_memory(target: Target, chains: int, draws: int, thin: int, log_likelihood: bool, precision: str):
    """Refuse a run whose kept draws cannot fit in this machine's memory, before anything is compiled.

    Only kept draws count: a chunk makes its transition keys inside the scan when ``thin > 1``, so memory does not
    grow with ``thin``. A run whose transitions per chain (``draws * thin``) overflow the 31-bit counter t of
    ``fold_in(chain_key, t)`` is refused too: its keys would repeat.
    """
    values_per_draw = (
        sum(int(np.prod(site.shape)) for site in target.sites)
        + sum(int(np.prod(np.shape(value))) for value in target.discrete_start.values())
        + sum(int(np.prod(shape)) for shape in target.deterministic_shapes.values())
        + (sum(int(np.size(value)) for value in target.observed.values()) if log_likelihood else 0)
        + target.dim
        + 8
    )  # the unconstrained position and the sample statistics
    item = 8 if precision == "float64" else 4
    kept = chains * draws * values_per_draw * item * 3  # device chunk, host pieces and the InferenceData copy
    keys = chains * draws * 8  # with thin == 1 a chunk makes its kept draws' keys before its scan
    needed = kept + keys
    if draws * thin >= 2**31:
        raise ValueError(
            f"this run needs about {needed / 2**30:.1f} GiB of memory, but {draws} draws x thin={thin} = "
            f"{draws * thin:.3g} transitions per chain overflow the 31-bit transition counter t of "
            "fold_in(chain_key, t), so keys would repeat; keep fewer draws or thin less"
        )
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no estimate
        return
    if needed > available:
        raise ValueError(
            f"this run needs about {needed / 2**30:.1f} GiB ({chains} chains x {draws} draws x {values_per_draw} values "
            f"per draw, thin={thin}) and the machine has {available / 2**30:.1f} GiB; keep fewer draws, thin less, "
            "or pass log_likelihood=False"
        )


def _resolve_model(model, data):
    """A zoo name stands for the zoo model (and its default data when none is given)."""
    if isinstance(model, str):
        from samplax.models import zoo

        entry = zoo.get(model)
        return entry.model, (entry.make_data() if data is None else data), f"zoo:{model}"
    if not callable(model):
        raise ValueError(f"model must be a NumPyro model function or a zoo name, got {type(model).__name__}")
    return model, data, _model_reference(model)


def _model_reference(model) -> str | None:
    """``"zoo:NAME"`` for a zoo model, else None.

    Only registered zoo names are recorded: a checkpoint never names a module to import, so resuming a checkpoint
    someone sent cannot run code (the caller passes any other model to `resume`).
    """
    from samplax.models import zoo

    for name in zoo.names():
        if zoo.get(name).model is model:
            return f"zoo:{name}"
    return None


def _import_model(reference: str | None):
    """The zoo model a checkpoint's ``model_ref`` names; anything else is refused (nothing is ever imported)."""
    if not isinstance(reference, str) or not reference.startswith("zoo:"):
        raise ValueError(
            "the checkpoint's model is not a zoo model, and samplax never imports code named in a "
            "checkpoint file; pass the model: samplax.resume(path, model=my_model) (command line: "
            "samplax resume DIR --model file.py:function)"
        )
    from samplax.models import zoo

    return zoo.get(reference[len("zoo:") :]).model


# ---------------------------------------------------------------------------------------------------------------------
def fit(
    model: Callable | str,
    data: dict | None = None,
    *,
    method: str = "nuts",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    init: str | dict | None = None,
    precision: str | None = None,
    progress: bool = True,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
    thin: int = 1,
    log_likelihood: bool = True,
    coords: dict | None = None,
    dims: dict | None = None,
    **options: Any,
) -> Fit:
    """Fit a NumPyro model with ``method`` and return a `Fit`.

    Args:
        model: a NumPyro model, called as ``model(**data)``, or the name of a zoo model.
        data: the model's keyword arguments (observed values included).
        method: one of `samplax.infer.options.methods()`; ``**options`` are that method's own options.
        chains: independent chains (for weighted and variational methods: independent repeats).
        warmup: adaptation steps, discarded (for variational methods: optimisation or tuning steps).
        draws: kept draws per chain (per repeat).
        seed: the same seed gives the same draws.
        init: NumPyro's init strategies: None/"uniform" (uniform on (-2, 2) in unconstrained space), "median",
            "sample" (a prior draw), "feasible", or a dict of constrained values for some latent sites (the others
            start uniform). Starts with a non-finite log density or gradient are redrawn up to 100 times.
        precision: "float32" or "float64" (scoped x64 mode; the global JAX flag is never flipped); None takes the
            method's default (float64 for mixflow, float32 otherwise).
        progress: show a progress bar (advanced between compiled chunks).
        checkpoint: a directory; checkpoints are written after warm-up and after every chunk of
            ``checkpoint_every`` draws, and `samplax.resume` finishes an interrupted run.
        checkpoint_every: kept draws per chunk (default: at most 20 equal chunks).
        thin: keep every ``thin``-th transition (MCMC methods); ``draws`` counts the kept draws.
        log_likelihood: record the pointwise log-likelihood of every draw (for ``az.loo``); False saves its cost
            on large data sets.
        coords: ArviZ coordinates, ``{dim name: labels}``.
        dims: ArviZ dims, ``{variable: [dim names]}``; by default each site's dims are named from its plates, as
            ``az.from_numpyro`` names them.
        **options: the method's own options (`samplax methods METHOD` lists them).

    Returns:
        The `Fit`: ``idata``, ``summary()``, ``log_evidence``, ``elbo``, ``timing``, ``predict()``, ``report()``.
    """
    started = time.perf_counter()
    if precision is None and isinstance(method, str) and method in registry.REGISTRY:
        precision = schema(method).precision
    _check_common(method, chains, warmup, draws, seed, precision, checkpoint_every)
    _check_run_arguments(
        method,
        thin=thin,
        init=init,
        progress=progress,
        log_likelihood=log_likelihood,
        checkpoint_every=checkpoint_every,
    )
    options = validate(method, options)
    _check_coords_dims(coords, dims)
    model, data, model_ref = _resolve_model(model, data)
    settings = dict(
        method=method,
        chains=int(chains),
        warmup=int(warmup),
        draws=int(draws),
        seed=int(seed),
        precision=precision,
        options=options,
        init=init if not isinstance(init, dict) else {k: np.asarray(v).tolist() for k, v in init.items()},
        model_ref=model_ref,
        thin=int(thin),
        log_likelihood=bool(log_likelihood),
        coords=_jsonable(coords),
        dims=_jsonable(dims),
    )
    with jax.enable_x64(precision == "float64"):
        target = build_target(model, data, seed=seed)
        _check_memory(target, int(chains), int(draws), int(thin), bool(log_likelihood), precision)
        return _fit_target(
            target,
            settings,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            started=started,
        )


def resume(path: str, model: Callable | str | None = None, data: dict | None = None, *, progress: bool = True) -> Fit:
    """Finish a checkpointed run; the result equals the uninterrupted run's draws.

    Nothing read from the checkpoint is imported or called: the manifest names a model only by its zoo name.

    Args:
        path: the checkpoint directory given to ``fit(checkpoint=...)``.
        model: the model that wrote the checkpoint (a function or a zoo name). Needed unless it was a zoo model.
        data: the data of the run; default the copy stored in the checkpoint (checked against its SHA-256).
        progress: show a progress bar.

    Returns:
        The `Fit` of the whole run.

    Raises:
        ValueError: the folder is not a samplax checkpoint of this format version, the manifest or a file fails its
            checks, or the model (its fingerprint), data, settings or device layout differ from the checkpoint's.
    """
    store = Checkpoint(path)
    manifest = store.read_manifest()  # validated: schema, settings digest, model_ref only "zoo:NAME"
    if model is None:
        model = _import_model(manifest["model_ref"])
    elif isinstance(model, str):
        model = _import_model(f"zoo:{model}")
    elif not callable(model):
        raise ValueError(f"model must be a NumPyro model function or a zoo name, got {type(model).__name__}")
    if data is None:
        data = store.read_data(manifest)
    validate(manifest["method"], manifest["options"])  # an unknown method or option is an error, not a surprise
    settings = {
        k: manifest[k]
        for k in (
            "method",
            "chains",
            "warmup",
            "draws",
            "seed",
            "precision",
            "options",
            "init",
            "model_ref",
            "thin",
            "log_likelihood",
            "coords",
            "dims",
        )
    }
    with jax.enable_x64(settings["precision"] == "float64"):
        target = build_target(model, data, seed=settings["seed"])
        return _fit_target(
            target, settings, progress=progress, checkpoint=path, checkpoint_every=manifest["chunk_size"], resuming=True
        )


# ---------------------------------------------------------------------------------------------------------------------
def _fit_target(
    target: Target,
    settings: dict,
    *,
    progress,
    checkpoint,
    checkpoint_every,
    resuming=False,
    started: float | None = None,
) -> Fit:
    started = time.perf_counter() if started is None else started
    method = registry.get(settings["method"])
    target.require_supported(settings["method"], unsupported_features(method))
    keys = jax.random.split(jax.random.key(settings["seed"]), 3)
    if isinstance(method, MCMCMethod):
        if checkpoint is not None and jax.process_count() > 1:
            raise ValueError(
                f"checkpoint= is not supported in a multi-process job ({jax.process_count()} processes): a checkpoint "
                "is written by one process, which cannot read the other processes' chains or agents; drop "
                "checkpoint=, or run the fit in one process (several local devices are fine)"
            )
        result = _run_mcmc(target, method, settings, keys, progress, checkpoint, checkpoint_every, resuming)
    else:
        if checkpoint is not None:
            raise ValueError(
                f"method '{settings['method']}' runs in one compiled call and cannot be checkpointed; drop checkpoint="
            )
        # one compiled call: its stages are not separable from here, but its clock ticks from the first second
        with Progress(progress, settings["method"]) as bar, bar.stage("running"):
            result = _run_direct(target, method, settings, keys)
    assembling = time.perf_counter()
    idata = _assemble(target, settings, result)
    timing = result["timing"]
    timing["postprocess_s"] = timing.get("postprocess_s", 0.0) + time.perf_counter() - assembling
    timing["total_s"] = time.perf_counter() - started  # what the user waited for, tracing the model included
    idata.attrs["timing"] = json.dumps(timing)
    fit_ = Fit(
        idata,
        target=target,
        timing=timing,
        log_evidence=_estimate(result.get("log_evidence")),
        elbo=_estimate(result.get("elbo")),
    )
    fit_.approximation = result.get("approximation")
    for message in fit_.warnings():
        warnings.warn(message, ConvergenceWarning, stacklevel=3)
    return fit_


def prior_predictive(
    model: Callable | str,
    data: dict | None = None,
    *,
    draws: int = 500,
    seed: int = 0,
    coords: dict | None = None,
    dims: dict | None = None,
) -> IData:
    """Draws from the prior and the prior predictive distribution (``numpyro.infer.Predictive``).

    Returns an InferenceData with ``prior`` (latent and deterministic sites), ``prior_predictive`` (observed
    sites), ``observed_data`` and ``constant_data``, dims named from plates. A model with a flat prior is refused.
    """
    from samplax.models import predictive

    _check_integer("draws", draws, 1)
    _check_seed(seed)
    _check_coords_dims(coords, dims)
    model, data, _ = _resolve_model(model, data)
    target = build_target(model, data, seed=seed)
    groups = predictive.prior_predictive(target, draws=int(draws), seed=int(seed))
    attrs = {
        "inference_library": "samplax",
        "versions": json.dumps(_versions()),
        "seed": int(seed),
        **_site_attrs(target),
    }
    return _inference_data(target, groups, attrs, coords, dims)
