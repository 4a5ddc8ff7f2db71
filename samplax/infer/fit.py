"""`samplax.fit`: one call from a NumPyro model to draws, diagnostics and (where the method gives one) evidence.

    fit = samplax.fit(model, data, method="nuts", chains=4, warmup=1000, draws=1000, seed=0)
    fit.summary()            # ArviZ summary plus ESS per second
    fit.idata                # arviz.InferenceData: posterior, sample_stats, log_likelihood, observed_data

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
from typing import Any, Callable, NamedTuple

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer import methods as method_registry
from samplax.infer.options import schema, validate
from samplax.infer.run import (COMPILED, Checkpoint, ChainRunner, chain_sharding, chunk_size_for, data_fingerprint,
                               device_layout, progress_chunk_size)
from samplax.models.bridge import Target, build_target

__all__ = ["fit", "Fit", "Estimate", "resume", "load", "prior_predictive", "ConvergenceWarning"]

PRECISIONS = ("float32", "float64")


class ConvergenceWarning(UserWarning):
    """A fit finished but its diagnostics say the draws should not be trusted as they are."""


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


# ---------------------------------------------------------------------------------------------------------------------
# the Fit object
class Fit:
    """The result of `samplax.fit`: an InferenceData plus timing, estimates and helpers."""

    def __init__(self, idata: az.InferenceData, *, target: Target | None = None, timing: dict | None = None,
                 log_evidence: Estimate | None = None, elbo: Estimate | None = None):
        self.idata = idata
        self.target = target
        attrs = idata.attrs if hasattr(idata, "attrs") else {}
        self.method = attrs.get("method")
        self.options = json.loads(attrs.get("options", "{}"))
        self.precision = attrs.get("precision", "float32")
        self.timing = timing if timing is not None else json.loads(attrs.get("timing", "{}"))
        if log_evidence is None and "log_evidence" in attrs:
            log_evidence = Estimate(*map(float, json.loads(attrs["log_evidence"])))
        if elbo is None and "elbo" in attrs:
            elbo = Estimate(*map(float, json.loads(attrs["elbo"])))
        self.log_evidence = log_evidence
        self.elbo = elbo
        self.approximation = None  # variational methods: the fitted approximation (not saved to NetCDF)

    def log_density(self, *args, **kwargs):
        """The fitted approximation's log density (variational methods; see the method's docs for the space)."""
        if self.approximation is None or not hasattr(self.approximation, "log_density"):
            raise ValueError(f"method {self.method!r} has no fitted density to evaluate (or this Fit was loaded "
                             "from a file)")
        return self.approximation.log_density(*args, **kwargs)

    def __repr__(self):
        posterior = self.idata.posterior
        return (f"Fit(method={self.method!r}, chains={posterior.sizes.get('chain')}, draws={posterior.sizes.get('draw')}, "
                f"sites={list(posterior.data_vars)})")

    def summary(self, var_names=None, **kwargs):
        """ArviZ summary (mean, sd, HDI, MCSE, bulk/tail ESS, R-hat) plus ``ess_bulk_per_s``; latent sites first."""
        from samplax.infer import diagnostics

        return diagnostics.summary(self.idata, sampling_seconds=self.timing.get("sampling_s"), var_names=var_names,
                                   **kwargs)

    def warnings(self, var_names=None) -> list[str]:
        """Stan-style plain-English warnings about the latent sites (empty when nothing looks wrong)."""
        from samplax.infer import diagnostics

        return diagnostics.convergence_warnings(self.idata, var_names=var_names)

    def predict(self, model=None, data: dict | None = None, seed: int = 0) -> az.InferenceData:
        """Posterior predictive draws of every observed site, added to ``idata`` as ``posterior_predictive``.

        Runs ``numpyro.infer.Predictive`` on the posterior's latent sites. ``model`` is needed for a Fit loaded from
        a file; ``data`` (default: the data of the fit, or for a loaded fit its ``constant_data``) predicts at other
        inputs. The data keys passed as ``obs=`` are set to None, NumPyro's convention for predictive runs.
        """
        from samplax.models import predictive

        model = model if model is not None else (self.target.model if self.target is not None else None)
        if model is None:
            raise ValueError("predict() needs the model: this Fit was loaded from a file; pass it: "
                             "fit.predict(model=my_model) (and data= if the model needs inputs that are not in "
                             "fit.idata.constant_data)")
        if data is None:
            data = self.target.data if self.target is not None else predictive.data_from_idata(self.idata)
        observed_keys = (self.target.observed_data_keys if self.target is not None and data is self.target.data
                         else json.loads(self.idata.attrs.get("observed_data_keys", "{}")))
        groups = predictive.posterior_predictive(model, data, self.idata.posterior, seed=seed,
                                                 observed_keys=observed_keys,
                                                 latent=_site_list(self.idata, "latent_sites"))
        # join="right": a second predict() (or one on a saved fit that had one) replaces the group
        self.idata.extend(az.from_dict(posterior_predictive=groups, dims=_stored_dims(self.idata)), join="right")
        return self.idata

    def save(self, path: str):
        """Write the InferenceData to NetCDF (data only; `samplax.load` reads it back)."""
        bad = [name for group in self.idata.groups() for name in self.idata[group].data_vars if "/" in str(name)]
        if bad:
            raise ValueError(f"site names {sorted(set(bad))} contain '/', which NetCDF cannot store as a variable "
                             "name; rename those sites in the model to save the fit")
        self.idata.to_netcdf(os.fspath(path))
        return path

    def report(self, path: str, var_names=None):
        """Write the self-contained HTML diagnostics report (``var_names`` limits it to those sites)."""
        from samplax.infer import report

        return report.write_report(self, path, var_names=var_names)


def load(path: str) -> Fit:
    """A Fit from a NetCDF file written by `Fit.save` or `samplax fit --out` (no model attached)."""
    return Fit(az.from_netcdf(os.fspath(path)))


# ---------------------------------------------------------------------------------------------------------------------
# argument checks (before anything is traced or compiled)
def _check_common(method, chains, warmup, draws, seed, precision, checkpoint_every):
    schema(method)
    for name, value, minimum in (("chains", chains, 1), ("warmup", warmup, 0), ("draws", draws, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")


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
    try:
        from samplax.models import zoo

        for name in zoo.names():
            if zoo.get(name).model is model:
                return f"zoo:{name}"
    except ImportError:
        pass
    module, qualname = getattr(model, "__module__", None), getattr(model, "__qualname__", "")
    if module and module != "__main__" and "<" not in qualname:
        return f"{module}:{qualname}"
    return None


def _import_model(reference: str):
    if reference.startswith("zoo:"):
        from samplax.models import zoo

        return zoo.get(reference[4:]).model
    import importlib

    module, qualname = reference.split(":", 1)
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------------------------------
def fit(model: Callable | str, data: dict | None = None, *, method: str = "nuts", chains: int = 4,
        warmup: int = 1000, draws: int = 1000, seed: int = 0, init: str | dict | None = None, precision: str | None = None, progress: bool = True,
        checkpoint: str | None = None, checkpoint_every: int | None = None, thin: int = 1,
        log_likelihood: bool = True, coords: dict | None = None, dims: dict | None = None, **options: Any) -> Fit:
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
    if precision is None and isinstance(method, str) and method in method_registry.registered():
        precision = schema(method).precision
    _check_common(method, chains, warmup, draws, seed, precision, checkpoint_every)
    if not isinstance(thin, (int, np.integer)) or isinstance(thin, bool) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    options = validate(method, options)
    _check_coords_dims(coords, dims)
    model, data, model_ref = _resolve_model(model, data)
    settings = dict(method=method, chains=int(chains), warmup=int(warmup), draws=int(draws), seed=int(seed),
                    precision=precision, options=options, init=init if not isinstance(init, dict) else
                    {k: np.asarray(v).tolist() for k, v in init.items()}, model_ref=model_ref, thin=int(thin),
                    log_likelihood=bool(log_likelihood), coords=_jsonable(coords), dims=_jsonable(dims))
    with jax.enable_x64(precision == "float64"):
        target = build_target(model, data, seed=seed)
        return _fit_target(target, settings, progress=progress, checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every)


def resume(path: str, model=None, data: dict | None = None, *, progress: bool = True) -> Fit:
    """Finish a checkpointed run; the result equals the uninterrupted run's draws.

    The model is re-imported from the manifest when it was a zoo model or importable function; otherwise pass it.
    The data default to the copy stored in the checkpoint. A model, data, options or device layout that differ from
    the checkpoint's are refused.
    """
    store = Checkpoint(path)
    manifest = store.read_manifest()
    if model is None:
        if not manifest.get("model_ref"):
            raise ValueError("the checkpoint does not record an importable model (it was defined in __main__ or a "
                             "notebook); pass it: samplax.resume(path, model=my_model)")
        model = _import_model(manifest["model_ref"])
    if data is None:
        data = store.read_data()
    settings = {k: manifest[k] for k in ("method", "chains", "warmup", "draws", "seed", "precision", "options",
                                         "init", "model_ref", "thin")}
    settings["log_likelihood"] = manifest.get("log_likelihood", True)
    settings["coords"], settings["dims"] = manifest.get("coords"), manifest.get("dims")
    with jax.enable_x64(settings["precision"] == "float64"):
        target = build_target(model, data, seed=settings["seed"])
        return _fit_target(target, settings, progress=progress, checkpoint=path,
                           checkpoint_every=manifest["chunk_size"], resuming=True)


# ---------------------------------------------------------------------------------------------------------------------
def _fit_target(target: Target, settings: dict, *, progress, checkpoint, checkpoint_every, resuming=False) -> Fit:
    method = method_registry.get_method(settings["method"])
    target.require_supported(settings["method"], unsupported_features(method))
    keys = jax.random.split(jax.random.key(settings["seed"]), 3)
    if isinstance(method, method_registry.MCMCMethod):
        result = _run_mcmc(target, method, settings, keys, progress, checkpoint, checkpoint_every, resuming)
    else:
        if checkpoint is not None:
            raise ValueError(f"method '{settings['method']}' runs in one compiled call and cannot be checkpointed; "
                             "drop checkpoint=")
        result = _run_direct(target, method, settings, keys)
    idata = _assemble(target, settings, result)
    fit_ = Fit(idata, target=target, timing=result["timing"], log_evidence=_estimate(result.get("log_evidence")),
               elbo=_estimate(result.get("elbo")))
    fit_.approximation = result.get("approximation")
    for message in fit_.warnings():
        warnings.warn(message, ConvergenceWarning, stacklevel=3)
    return fit_


def unsupported_features(method) -> tuple[str, ...]:
    """The model features a registered method refuses (its schema's, plus discrete sites for gradient methods)."""
    return tuple(method.schema.unsupported) + (("discrete_latent",) if method.gradient_based else ())


def _finish_fn(target: Target, log_likelihood: bool = True):
    """Chunk of unconstrained positions (chain, draw, dim) -> constrained draws and log-likelihoods."""

    def finish(z):
        flat = z.reshape((-1, z.shape[-1]))
        posterior = jax.vmap(target.constrain)(flat)
        loglik = jax.vmap(target.log_likelihood)(flat) if (target.observed and log_likelihood) else {}
        reshape = lambda x: x.reshape(z.shape[:2] + x.shape[1:])  # noqa: E731
        return {"posterior": jax.tree.map(reshape, posterior), "log_likelihood": jax.tree.map(reshape, loglik)}

    return finish


def _run_mcmc(target, method, settings, keys, progress, checkpoint, checkpoint_every, resuming):
    options, chains, draws = settings["options"], settings["chains"], settings["draws"]
    timing = {"compile_s": 0.0, "warmup_s": 0.0, "sampling_s": 0.0}
    # chunks exist for checkpoints and for the progress bar; a bar alone gets them only when sampling is long enough
    # to watch (decided after warm-up, from its speed), since every chunk costs a dispatch and a copy to the host
    chunk = chunk_size_for(draws, checkpoint_every, max_chunks=20 if checkpoint is not None else 1)
    sharding = chain_sharding(chains)
    init_key, warmup_key, sample_key = keys
    positions = target.init(init_key, chains, settings["init"])
    warmup_keys = jax.random.split(warmup_key, chains)
    chain_keys = jax.random.split(sample_key, chains)
    if sharding is not None:
        positions, warmup_keys, chain_keys = jax.device_put((positions, warmup_keys, chain_keys), sharding)
    num_warmup = max(settings["warmup"], 1)
    data = target.data_arrays()
    warmup_fn = jax.jit(lambda data, keys, positions: jax.vmap(
        method.warmup(target.with_data(data), options, num_warmup))(keys, positions))
    program_key = (target.model, settings["method"], json.dumps(options, sort_keys=True, default=str), num_warmup,
                   settings["thin"], settings["log_likelihood"], target.static_data_key(),
                   tuple((site.name, site.shape) for site in target.sites))

    store = Checkpoint(checkpoint) if checkpoint is not None else None
    manifest = _checkpoint_manifest(target, settings, chunk)
    if store is not None:
        if store.exists():
            _check_resume(store.read_manifest(), manifest)
            manifest = store.read_manifest()
        else:
            if resuming:
                raise ValueError(f"no checkpoint at {checkpoint!r}")
            manifest = store.start(manifest, target.data)

    # shapes of the chain states, needed only to read them back from a checkpoint (tracing costs seconds)
    states_like, params_like = (jax.eval_shape(warmup_fn, data, warmup_keys, positions)[:2] if store is not None
                                else (None, None))
    with _progress_bar(progress, draws, settings["method"]) as bar:
        if store is not None and manifest.get("warmup_done"):
            states, params, _ = store.load_warmup(states_like, params_like)
        else:
            start = time.perf_counter()
            if settings["warmup"] == 0:
                states, params = jax.vmap(method.start(target, options))(positions)
            else:
                compiled, seconds = COMPILED.compile(("warmup",) + program_key, warmup_fn, data, warmup_keys,
                                                     positions)
                timing["compile_s"] += seconds
                start = time.perf_counter()
                states, params, _ = jax.block_until_ready(compiled(data, warmup_keys, positions))
            timing["warmup_s"] = time.perf_counter() - start
            if store is not None:
                store.save_warmup(manifest, states, params, {})
        bar.set_description(f"{settings['method']}: sampling")
        if progress and store is None and checkpoint_every is None:
            chunk = progress_chunk_size(draws, timing["warmup_s"] / settings["warmup"] * settings["thin"]
                                        if settings["warmup"] > 0 else None)

        def build(data):
            conditioned = target.with_data(data)
            return method.step(conditioned, options), method.record, _finish_fn(conditioned,
                                                                                 settings["log_likelihood"])

        runner = ChainRunner(build, chunk, settings["thin"])
        runner.executable, seconds = COMPILED.compile(("chunk", chunk) + program_key, runner.function, data, states,
                                                      params, chain_keys, jnp.asarray(0, jnp.int32))
        timing["compile_s"] += seconds
        pieces = []
        first = manifest.get("completed_chunks", 0) if store is not None else 0
        for index in range(first):
            states_loaded, host = store.load_chunk(index, states_like if index == first - 1 else None)
            pieces.append(host)
            if index == first - 1:
                states = states_loaded
            bar.update(chunk)
        for index in range(first, draws // chunk):
            start = time.perf_counter()
            states, host = runner.run(data, states, params, chain_keys, index * chunk)
            timing["sampling_s"] += time.perf_counter() - start
            pieces.append(host)
            if store is not None:
                store.save_chunk(manifest, index, states, host)
            bar.update(chunk)

    merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *pieces)
    step_size = np.asarray(params.step_size) if hasattr(params, "step_size") else None
    if step_size is not None:
        merged["stats"]["step_size"] = np.broadcast_to(step_size.reshape(chains, 1), (chains, draws)).copy()
    return {"posterior": merged["posterior"], "sample_stats": merged["stats"],
            "log_likelihood": merged["log_likelihood"], "timing": timing}


def _checkpoint_manifest(target: Target, settings: dict, chunk: int) -> dict:
    return dict(settings, chunk_size=chunk, device_layout=device_layout(),
                key_data=np.asarray(jax.random.key_data(jax.random.key(settings["seed"]))).tolist(),
                data_fingerprint=data_fingerprint(target.data),
                sites={site.name: list(site.shape) for site in target.sites})


def _check_resume(saved: dict, current: dict):
    for field in ("method", "options", "chains", "warmup", "draws", "thin", "seed", "precision", "chunk_size", "sites",
                  "data_fingerprint", "device_layout", "init"):
        if json.dumps(saved.get(field), sort_keys=True) != json.dumps(current.get(field), sort_keys=True):
            raise ValueError(
                f"the checkpoint does not match this run: '{field}' was {saved.get(field)!r} and is now "
                f"{current.get(field)!r}. Resume with the same model, data and settings, or start a new checkpoint "
                "directory"
            )


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass

    def set_description(self, text):
        pass


def _progress_bar(progress: bool, total: int, method: str):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{method}: warm-up", unit="draw", leave=False)


def _run_direct(target, method, settings, keys):
    start = time.perf_counter()
    result = method.run(target, settings["options"], keys[2], settings["chains"], settings["warmup"],
                        settings["draws"])
    elapsed = time.perf_counter() - start
    if result.discrete:  # samplers of discrete sites: substitute those values too when tracing the model
        from samplax.models.motifs import finish_with_discrete

        finished = finish_with_discrete(target, np.asarray(result.z), result.discrete,
                                        settings.get("log_likelihood", True))
    else:
        finished = jax.jit(_finish_fn(target, settings.get("log_likelihood", True)))(jnp.asarray(result.z))
        finished = jax.tree.map(np.asarray, finished)
    return {"posterior": finished["posterior"], "sample_stats": result.sample_stats,
            "log_likelihood": finished["log_likelihood"], "log_evidence": result.log_evidence, "elbo": result.elbo,
            "extra": result.extra, "approximation": result.approximation,
            "timing": {"compile_s": float("nan"), "warmup_s": 0.0, "sampling_s": elapsed}}


def _versions() -> dict:
    import blackjax
    import numpyro

    import samplax

    return {"samplax": samplax.__version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
            "blackjax": getattr(blackjax, "__version__", "unknown"), "arviz": az.__version__}


def _assemble(target: Target, settings: dict, result: dict) -> az.InferenceData:
    spec = schema(settings["method"])
    attrs = {
        "method": settings["method"],
        "options": json.dumps(settings["options"], sort_keys=True, default=str),
        "seed": settings["seed"],
        "precision": settings["precision"],
        "draws_kind": {"mcmc": "mcmc", "weighted": "weighted", "iid": "iid"}[spec.family],
        "timing": json.dumps(result["timing"]),
        "versions": json.dumps(_versions()),
        "inference_library": "samplax",
    }
    for name in ("log_evidence", "elbo"):
        estimate = _estimate(result.get(name))
        if estimate is not None:
            attrs[name] = json.dumps([estimate.value, estimate.se])
    for name, value in result.get("extra", {}).items():
        attrs[f"extra_{name}"] = json.dumps(np.asarray(value).tolist())
    attrs.update(_site_attrs(target))
    stats = {name: np.asarray(value) for name, value in result["sample_stats"].items()}
    groups = dict(posterior=result["posterior"], sample_stats=stats)
    if result["log_likelihood"]:
        groups["log_likelihood"] = result["log_likelihood"]
    return _inference_data(target, groups, attrs, settings.get("coords"), settings.get("dims"))


def _site_attrs(target: Target) -> dict:
    """What a loaded fit needs to tell latent from deterministic sites and to rebuild the model's data."""
    return {"latent_sites": json.dumps(list(target.site_names) + list(target.discrete_sites)),
            "deterministic_sites": json.dumps(list(target.deterministic_shapes)),
            "observed_data_keys": json.dumps(target.observed_data_keys),
            "data_mode": target.data_mode}


def _inference_data(target: Target, groups: dict, attrs: dict, coords=None, dims=None) -> az.InferenceData:
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
            ndim[name] = np.ndim(value) - offset
    # a plate name list longer than the value's axes (a site broadcast inside its plates) is dropped, not guessed
    merged = {name: list(names) for name, names in merged.items() if name in ndim and len(names) <= ndim[name]}
    return az.from_dict(**groups, attrs=attrs, dims=merged, coords=dict(coords or {}))


def _jsonable(mapping):
    """coords/dims as JSON-able lists (they go into the checkpoint manifest)."""
    return None if mapping is None else {k: np.asarray(v).tolist() for k, v in mapping.items()}


def _site_list(idata, attr: str) -> list[str] | None:
    return json.loads(idata.attrs[attr]) if attr in idata.attrs else None


def _stored_dims(idata) -> dict:
    """The dims of the observed sites as stored (what posterior_predictive variables are named with)."""
    if "observed_data" not in idata.groups():
        return {}
    return {name: list(da.dims) for name, da in idata["observed_data"].data_vars.items()}


def prior_predictive(model: Callable | str, data: dict | None = None, *, draws: int = 500, seed: int = 0,
                     coords: dict | None = None, dims: dict | None = None) -> az.InferenceData:
    """Draws from the prior and the prior predictive distribution (``numpyro.infer.Predictive``).

    Returns an InferenceData with ``prior`` (latent and deterministic sites), ``prior_predictive`` (observed
    sites), ``observed_data`` and ``constant_data``, dims named from plates. A model with a flat prior is refused.
    """
    from samplax.models import predictive

    for name, value, minimum in (("draws", draws, 1), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    _check_coords_dims(coords, dims)
    model, data, _ = _resolve_model(model, data)
    target = build_target(model, data, seed=seed)
    groups = predictive.prior_predictive(target, draws=int(draws), seed=int(seed))
    attrs = {"inference_library": "samplax", "versions": json.dumps(_versions()), "seed": int(seed),
             **_site_attrs(target)}
    return _inference_data(target, groups, attrs, coords, dims)


def _check_coords_dims(coords, dims):
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
