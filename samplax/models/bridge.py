"""The one place where a NumPyro model becomes something a kernel can sample.

`build_target(model, data)` traces the model once (NumPyro's `initialize_model`) and returns a `Target`:

* ``logdensity(z)``: the log joint on a flat unconstrained vector ``z`` (log-Jacobians of NumPyro's
  biject_to transforms included), jit-able and differentiable;
* ``init(key, strategy)``: starting points; ``constrain(z)``: constrained site values, deterministic sites
  included; ``log_likelihood(z)``: per-observation log-likelihoods for ``az.loo``;
* ``composite()``: the split U(x) = f(x) + g(x) in constrained coordinates for Bregman proximal kernels
  (`samplax.models.composite`);
* ``shards(num_agents)``: prior and per-shard log-likelihoods for distributed (ADMM) kernels
  (`samplax.models.shards`).

Discrete models' factor tables are read by `samplax.models.motifs`.

Nothing else in samplax traces a model (compare ``numpyro.infer.util.initialize_model``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import util as npu
from numpyro.infer.initialization import (
    init_to_feasible,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)

from samplax.models.composite import Composite, base_distribution
from samplax.models.composite import composite as composite_view
from samplax.models.shards import Shards, observation_plate_size
from samplax.models.shards import is_observation as _is_observation
from samplax.models.shards import shards as shard_view

__all__ = [
    "Site",
    "Target",
    "UnsupportedModelError",
    "Composite",
    "Shards",
    "build_target",
    "data_fingerprint",
    "INIT_STRATEGIES",
]

INIT_STRATEGIES = ("uniform", "median", "sample", "feasible")
_INIT_ALIASES = {"prior": "sample"}  # the name samplax used before NumPyro's
INIT_ATTEMPTS = 100  # redraws per chain before giving up, as numpyro.infer.util.find_valid_initial_params
# what JAX raises when a model reads traced data as a Python value (int(n), if y.max() > 0, np.asarray(y))
CONCRETIZATION_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerArrayConversionError,
)
DATA_MODES = ("arguments", "constants")
_BATCH_LOGDENSITY: dict = {}
BATCH_CACHE_SIZE = 32


def clear_compiled():
    """Forget the bridge's jitted start-up functions (`samplax.infer.run.COMPILED` holds the samplers' programs)."""
    _BATCH_LOGDENSITY.clear()


@dataclasses.dataclass(frozen=True)
class Site:
    """A latent sample site: its constrained shape, its support and its slice of the flat vector."""

    name: str
    shape: tuple[int, ...]
    support: Any
    start: int
    stop: int
    distribution: str
    discrete: bool


class UnsupportedModelError(ValueError):
    """A method refuses a model because of a feature it does not support (raised before any compilation).

    ``feature`` is one of `Target.features`'s names; ``method`` the method's name.
    """

    def __init__(self, method: str, feature: str, detail: str = ""):
        self.method = method
        self.feature = feature
        super().__init__(
            f"method '{method}' does not support models with the feature '{feature}'"
            + (f": {detail}" if detail else "")
        )


def _site_discrete(site) -> bool:
    fn = site["fn"]
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return bool(getattr(fn, "is_discrete", False)) or site.get("infer", {}).get("enumerate") is not None


def _plate_shape_error(err: ValueError, data: dict) -> ValueError:
    """NumPyro's "shapes disagree" with the data's shapes and what to do; other errors unchanged."""
    if "shapes disagree" not in str(err):
        return err
    shapes = {k: tuple(np.shape(v)) for k, v in data.items() if isinstance(v, (np.ndarray, jax.Array))}
    return ValueError(
        f"the data do not fit the model's plates ({err}: the site's shape in its plates, then the "
        f"value's). Data shapes: {shapes}. Give every observed array one entry per element of its "
        "plates."
    )


def _is_latent(site) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site.get("infer", {}).get("is_auxiliary")


def _observed_data_keys(data: dict, observed_sites) -> dict[str, str]:
    """Data key -> observed site name, for the keys the model passes as ``obs=`` (the same array, or equal)."""
    found = {}
    for key, value in data.items():
        if value is None or isinstance(value, (str, bool, int, float)):
            continue
        for name, site in observed_sites:
            obs = site["value"]
            if obs is value or (
                np.shape(obs) == np.shape(value) and np.array_equal(np.asarray(obs), np.asarray(value), equal_nan=True)
            ):
                found[key] = name
                break
    return found


def _plate_dims(trace) -> dict[str, list[str]]:
    """Dimension names of each sample and deterministic site, exactly as ``az.from_numpyro`` infers them.

    The names of the site's plates ordered by their dim, then ``infer={"event_dims": [...]}`` (other axes stay unnamed).
    """
    dims = {}
    for name, site in trace.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        batch = [frame.name for frame in sorted(site.get("cond_indep_stack", []), key=lambda frame: frame.dim)]
        event = list(site.get("infer", {}).get("event_dims", []))
        if batch or event:
            dims[name] = batch + event
    return dims


def data_fingerprint(data: dict) -> str:
    """SHA-256 of the data's keys, dtypes, shapes and bytes.

    Nested dicts, lists and tuples are walked; Python scalars and strings enter by their repr.
    """
    digest = hashlib.sha256()

    def update(value):
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(b"{" + str(key).encode())
                update(value[key])
        elif isinstance(value, (list, tuple)) and not all(isinstance(v, (int, float, bool)) for v in value):
            digest.update(f"{type(value).__name__}{len(value)}".encode())
            for item in value:
                update(item)
        elif value is None or isinstance(value, str):
            digest.update(repr(value).encode())
        else:
            array = np.asarray(value)
            digest.update(str(array.dtype).encode() + str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())

    update(dict(data))
    return digest.hexdigest()


def _support_name(support) -> str:
    return type(support).__name__.lstrip("_").lower()


class Target:
    """What a kernel needs from a (model, data) pair. Build it with `build_target`.

    Shapes and supports come from one trace of the model with NumPyro's ``init_to_uniform`` substituted at every
    continuous latent site, as ``numpyro.infer.util.initialize_model`` does: the prior is never sampled (flat priors
    have no sampler), and argument validation is off for that trace (a uniform draw may give a distribution invalid
    parameters; such points are redrawn by `init`).

    Data reach compiled programs in one of two ways (``data_mode``): as arguments (the default: one compiled program
    serves every data set of the same shapes) or, when the model reads its data as Python values (``int(n)``,
    ``K = int(y.max()) + 1``, ``if evidence[i] ...``) and tracing with array arguments fails, as NumPy constants
    closed over by the program, keyed by a fingerprint of the data.
    """

    def __init__(self, model, data: dict, *, args: tuple = (), seed: int = 0):
        self.model = model
        self.args = tuple(args)
        self.data = dict(data)
        self.source_data = dict(data)  # as checked, before any conversion: what a rebuild in another precision needs
        self.data_mode = "arguments"
        prototype = self._prototype_trace(jax.random.key(seed))
        self._trace = prototype
        self._check_finite_data(prototype)
        latent = [(name, s) for name, s in prototype.items() if _is_latent(s)]
        self.discrete_sites = tuple(name for name, s in latent if _site_discrete(s))
        self.discrete_start = {name: prototype[name]["value"] for name in self.discrete_sites}
        observed_sites = [(name, s) for name, s in prototype.items() if _is_observation(s)]
        self.observed = {name: np.asarray(s["value"]) for name, s in observed_sites}
        self.observed_data_keys = _observed_data_keys(self.data, observed_sites)
        self.deterministic_shapes = {
            name: tuple(jnp.shape(s["value"])) for name, s in prototype.items() if s["type"] == "deterministic"
        }
        self.improper_sites = tuple(
            name for name, s in latent if isinstance(base_distribution(s["fn"]), dist.ImproperUniform)
        )
        self.factor_sites = tuple(
            name
            for name, s in prototype.items()
            if s["type"] == "sample" and s["is_observed"] and not _is_observation(s)
        )
        self.dims = _plate_dims(prototype)
        continuous = [(name, s) for name, s in latent if name not in self.discrete_sites]
        self.sites: tuple[Site, ...] = ()
        self.dim = 0
        self.dtype = jnp.zeros(()).dtype
        self._unravel = None
        if continuous:
            self._transforms = {name: dist.biject_to(s["fn"].support) for name, s in continuous}
            unconstrained = {name: self._transforms[name].inv(s["value"]) for name, s in continuous}
            flat, self._unravel = ravel_pytree(unconstrained)
            self.dim = int(flat.shape[0])
            self.dtype = flat.dtype
            # ravel_pytree orders dict leaves by key: the slices follow that order, the sites the model's order
            offsets, offset = {}, 0
            for name in sorted(unconstrained):
                size = int(np.size(unconstrained[name]))
                offsets[name] = (offset, offset + size)
                offset += size
            self.sites = tuple(
                Site(
                    name,
                    tuple(jnp.shape(s["value"])),
                    s["fn"].support,
                    *offsets[name],
                    type(base_distribution(s["fn"])).__name__,
                    False,
                )
                for name, s in continuous
            )
        self.data_mode = self._choose_data_mode()
        if self.data_mode == "arguments":
            self.data = {
                k: jnp.asarray(v) if isinstance(v, (np.ndarray, jax.Array)) else v for k, v in self.data.items()
            }

    # ----------------------------------------------------------------------------------------------
    # tracing helpers
    def _prototype_trace(self, key, init_fn=None):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)  # NumPyro's seed handler (and its scan) expect raw uint32 keys
        model = handlers.substitute(handlers.seed(self.model, key), substitute_fn=init_fn or init_to_uniform(radius=2))
        try:
            with handlers.block(), numpyro.validation_enabled(False):
                return handlers.trace(model).get_trace(*self.args, **self.data)
        except TypeError as err:
            if isinstance(err, CONCRETIZATION_ERRORS):  # JAX's conversion errors are TypeErrors: not a signature
                raise
            raise ValueError(
                f"calling the model with the data failed: {err}. The model is called as model(**data): the data "
                "keys must be the model's argument names."
            ) from err
        except ValueError as err:
            raise _plate_shape_error(err, self.data) from None

    def _check_finite_data(self, trace):
        """NaN or inf data must not reach a log-likelihood: name the data keys (masked observations are fine)."""
        arrays = {k: np.asarray(v) for k, v in self.data.items() if isinstance(v, (np.ndarray, jax.Array))}
        bad = [k for k, v in arrays.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
        if not bad:
            return
        with numpyro.validation_enabled(False):
            for name, site in trace.items():
                if not _is_observation(site):
                    continue
                log_prob = site["fn"].log_prob(site["value"])
                if site.get("mask") is not None:
                    log_prob = jnp.where(site["mask"], log_prob, 0.0)
                if not np.isfinite(np.asarray(log_prob)).all():
                    counts = {k: int((~np.isfinite(arrays[k])).sum()) for k in bad}
                    raise ValueError(
                        f"data {bad} hold non-finite values ({counts} NaN or inf), and they make the log-likelihood "
                        f"of site '{name}' non-finite. Drop those rows, or mask the missing observations: "
                        "numpyro.sample(..., obs=y, obs_mask=~np.isnan(y)) or numpyro.handlers.mask(mask=...)"
                    )

    def _choose_data_mode(self) -> str:
        """Return "arguments" when the model traces with its array data as abstract arguments, else "constants"."""
        arrays = {k: jnp.asarray(v) for k, v in self.data.items() if isinstance(v, (np.ndarray, jax.Array))}
        if not arrays:
            return "arguments"
        z = jnp.zeros(self.dim, self.dtype)
        try:
            jax.eval_shape(lambda data, z: self.with_data(data)._log_joint(z), arrays, z)
        except CONCRETIZATION_ERRORS:
            return "constants"
        except ValueError as err:
            raise _plate_shape_error(err, self.data) from None
        return "arguments"

    def _log_joint(self, z):
        """The log joint at ``z`` (no Jacobian), discrete sites at their prototype values: one model trace."""
        values = {name: self._transforms[name](value) for name, value in self._unravel(z).items()} if self.dim else {}
        return self.log_joint(values)

    def log_joint(self, values: dict):
        """Log joint density at constrained site values (no Jacobian).

        Discrete sites not given keep the values of the first trace.
        """
        return npu.log_density(self.model, self.args, self.data, {**self.discrete_start, **values})[0]

    def data_arrays(self) -> dict:
        """The array data that compiled functions take as arguments: none when the data are constants."""
        if self.data_mode == "constants":
            return {}
        return {k: v for k, v in self.data.items() if isinstance(v, jax.Array)}

    def static_data_key(self) -> tuple:
        """A hashable summary of everything in the data that is baked into a compiled program."""
        if self.data_mode == "constants":
            return ("constants", data_fingerprint(self.data))
        static = {k: v for k, v in self.data.items() if not isinstance(v, jax.Array)}
        return ("arguments", data_fingerprint(static))  # a hash, not repr: repr elides the middle of long arrays

    def with_data(self, arrays: dict) -> Target:
        """The same target conditioned on other arrays of the same shapes (traced arrays inside jit are fine)."""
        clone = copy.copy(self)
        clone.data = {**self.data, **arrays}
        return clone

    def constant_data(self) -> dict:
        """The data that are neither observed values nor None (the ``constant_data`` group of InferenceData)."""
        return {
            k: np.asarray(v)
            for k, v in self.data.items()
            if k not in self.observed_data_keys
            and v is not None
            and not isinstance(v, str)
            and np.asarray(v).dtype.kind in "biuf"
        }

    def features(self) -> frozenset:
        """What the model has that a method may not support (see `samplax.infer.options.MethodSchema.unsupported`).

        ``continuous_latent``, ``discrete_latent``, ``improper_prior`` (a flat prior: no prior draws exist),
        ``factor`` (a ``numpyro.factor`` term), ``no_observation_plate`` (no observed site inside a plate: nothing
        to shard), ``no_observations``, ``data_read_as_values`` (the model reads its data as Python values, so the
        data cannot be arguments of a compiled program: ``data_mode == "constants"``), ``latent_in_observation_plate``
        (a latent site inside the observations' plate, e.g. one effect per school: splitting the observations
        across agents would split that site too), ``observations_not_along_data`` (no data array has a leading axis
        of the observations' plate's size, e.g. an AR model observing ``y[K:]``: there is no array to split).
        """
        found = set()
        if self.dim:
            found.add("continuous_latent")
        if self.discrete_sites:
            found.add("discrete_latent")
        if self.improper_sites:
            found.add("improper_prior")
        if self.factor_sites:
            found.add("factor")
        if not self.observed:
            found.add("no_observations")
        if self.data_mode == "constants":
            found.add("data_read_as_values")
        if not any(_is_observation(site) and site.get("cond_indep_stack") for site in self._trace.values()):
            found.add("no_observation_plate")  # e.g. a GP: one joint observation, nothing conditionally independent
        observation_plates = {
            frame.name
            for site in self._trace.values()
            if _is_observation(site)
            for frame in site.get("cond_indep_stack", ())
        }
        if any(
            _is_latent(site) and {frame.name for frame in site.get("cond_indep_stack", ())} & observation_plates
            for site in self._trace.values()
        ):
            found.add("latent_in_observation_plate")
        if "no_observation_plate" not in found and not self._data_along_observation_plate():
            found.add("observations_not_along_data")
        return frozenset(found)

    def _data_along_observation_plate(self) -> bool:
        size = observation_plate_size(self._trace)
        return any(v is not None and np.ndim(v) >= 1 and np.shape(v)[0] == size for v in self.data.values())

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(site.name for site in self.sites)

    def unravel(self, z) -> dict:
        """Flat unconstrained vector -> dict of unconstrained site values."""
        return self._unravel(z)

    def ravel_unconstrained(self, params: dict):
        return ravel_pytree({k: params[k] for k in sorted(params)})[0]

    # ----------------------------------------------------------------------------------------------
    # the log density and its friends
    def logdensity(self, z):
        """Log joint density at the flat unconstrained point ``z`` (Jacobians included)."""
        return -npu.potential_energy(self.model, self.args, self.data, self._unravel(z))

    def constrain(self, z) -> dict:
        """Constrained latent values and deterministic sites at ``z``."""
        return npu.constrain_fn(self.model, self.args, self.data, self._unravel(z), return_deterministic=True)

    def unconstrain(self, values: dict):
        """Constrained latent values -> the flat unconstrained vector."""
        missing = [site.name for site in self.sites if site.name not in values]
        if missing:
            raise ValueError(
                f"init values are missing the sites {missing}; give a value for every latent site "
                f"{list(self.site_names)}"
            )
        unconstrained = {}
        for site in self.sites:
            value = jnp.asarray(values[site.name], dtype=self.dtype)
            if value.shape != site.shape:
                raise ValueError(
                    f"site '{site.name}': init value has shape {value.shape}, the model expects {site.shape}"
                )
            unconstrained[site.name] = self._transforms[site.name].inv(value)
        return self.ravel_unconstrained(unconstrained)

    def _trace_at(self, z):
        params = self.constrain(z)
        return handlers.trace(handlers.substitute(handlers.seed(self.model, 0), data=params)).get_trace(
            *self.args, **self.data
        )

    def log_likelihood(self, z) -> dict:
        """Pointwise log-likelihood of each observed site at ``z`` (shape of the observed value)."""
        tr = self._trace_at(z)
        return {name: s["fn"].log_prob(s["value"]) for name, s in tr.items() if _is_observation(s)}

    def log_prior(self, z):
        """Log prior on the flat unconstrained vector (Jacobians included): log joint minus log-likelihood."""
        return self.logdensity(z) - sum(jnp.sum(v) for v in self.log_likelihood(z).values())

    def sample_prior(self, key):
        """One exact prior draw of the latent sites, as a flat unconstrained vector (vmap it for many)."""
        with handlers.block():
            tr = handlers.trace(handlers.seed(self.model, key)).get_trace(*self.args, **self.data)
        return self.unconstrain({site.name: tr[site.name]["value"] for site in self.sites})

    def site_log_probs(self, z) -> dict:
        """Summed log-probability of every sample site at ``z`` (used to name the culprit of a bad start)."""
        tr = self._trace_at(z)
        return {name: jnp.sum(s["fn"].log_prob(s["value"])) for name, s in tr.items() if s["type"] == "sample"}

    # ----------------------------------------------------------------------------------------------
    # starting points
    def init(self, key, num_chains: int, strategy: str | dict | None = None):
        """``num_chains`` flat unconstrained starting points whose log density and gradient are finite.

        ``strategy`` is one of NumPyro's init strategies: None or "uniform" (``init_to_uniform(radius=2)``: uniform
        on (-2, 2) in unconstrained space), "median" (``init_to_median``), "sample" (``init_to_sample``, a prior
        draw; flat priors fall back to uniform), "feasible" (``init_to_feasible``: unconstrained zero), or a dict of
        constrained values for some or all latent sites (``init_to_value``; the others start uniform). Like
        ``numpyro.infer.util.find_valid_initial_params``, a chain whose start has a non-finite log density or
        gradient is redrawn, up to `INIT_ATTEMPTS` times; then the error names the sites whose log-probability is
        not finite.
        """
        if self.dim == 0:
            raise ValueError("the model has no continuous latent sites to sample")
        init_fn, deterministic = self._init_strategy(strategy)
        value_and_grad = self._batch_value_and_grad()
        data = self.data_arrays()
        positions = self._draw_positions(jax.random.split(key, num_chains), init_fn)
        for attempt in range(1, INIT_ATTEMPTS + 1):
            values, grads = map(np.asarray, value_and_grad(data, jnp.asarray(positions, self.dtype)))
            bad = ~(np.isfinite(values) & np.isfinite(grads).all(axis=-1))
            if not bad.any():
                return jnp.asarray(positions, dtype=self.dtype)
            if deterministic:
                break
            keys = jax.random.split(jax.random.fold_in(key, attempt), num_chains)
            positions[bad] = self._draw_positions(keys[np.flatnonzero(bad)], init_fn)
        self.check_initial_point(
            jnp.asarray(positions[np.flatnonzero(bad)[0]], self.dtype), attempts=1 if deterministic else INIT_ATTEMPTS
        )
        raise AssertionError("unreachable")  # check_initial_point raises

    def _init_strategy(self, strategy):
        """(NumPyro init function or None for the vectorised uniform draw, whether every draw is the same)."""
        if isinstance(strategy, dict):
            values = self._check_init_values(strategy)
            return init_to_value(values=values), len(values) == len(self.sites)
        strategy = _INIT_ALIASES.get(strategy, strategy or "uniform")
        if strategy not in INIT_STRATEGIES:
            raise ValueError(
                f"init={strategy!r} is not a valid strategy; use one of {list(INIT_STRATEGIES)} or a "
                "dict of constrained values per site"
            )
        return {
            "uniform": (None, False),
            "median": (init_to_median(num_samples=15), False),
            "sample": (init_to_sample, False),
            "feasible": (init_to_feasible, True),
        }[strategy]

    def _check_init_values(self, values: dict) -> dict:
        """Init values as arrays of the sites' shapes, inside their supports; names every problem."""
        unknown = [name for name in values if name not in self.site_names]
        if unknown:
            raise ValueError(
                f"init names {unknown}, which are not continuous latent sites of the model; the sites "
                f"are {list(self.site_names)}"
            )
        checked = {}
        for site in self.sites:
            if site.name not in values:
                continue
            try:
                value = jnp.asarray(values[site.name], dtype=self.dtype)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"site '{site.name}': init value {values[site.name]!r} is not numeric ({err})"
                ) from None
            if value.shape != site.shape:
                try:
                    value = jnp.broadcast_to(value, site.shape)
                except ValueError:
                    raise ValueError(
                        f"site '{site.name}': init value has shape {value.shape}, the model expects {site.shape}"
                    ) from None
            if not bool(np.all(np.asarray(site.support.check(value)))):
                raise ValueError(
                    f"site '{site.name}': init value {np.asarray(value)!r} is outside its support "
                    f"{site.support}; pass a value inside it or drop the site from init"
                )
            checked[site.name] = value
        return checked

    def _draw_positions(self, keys, init_fn) -> np.ndarray:
        """One start per key, as a writable (len(keys), dim) array."""
        if init_fn is None:  # init_to_uniform(radius=2) on the flat unconstrained vector, vectorised
            draw = jax.vmap(lambda k: jax.random.uniform(k, (self.dim,), self.dtype, minval=-2.0, maxval=2.0))
            return np.array(draw(keys))
        return np.stack([np.asarray(self._draw_init(k, init_fn)) for k in keys])

    def _batch_value_and_grad(self):
        """Jitted log density and gradient over many points, shared by every target of the same model and data."""
        # keyed by dtype too: the program closes over this target, whose constants are float32 or float64 ones
        key = (
            self.model,
            self.static_data_key(),
            tuple((site.name, site.shape) for site in self.sites),
            str(self.dtype),
        )
        if key not in _BATCH_LOGDENSITY:
            if len(_BATCH_LOGDENSITY) >= BATCH_CACHE_SIZE:  # bounded: a long session fits many models
                _BATCH_LOGDENSITY.pop(next(iter(_BATCH_LOGDENSITY)))
            _BATCH_LOGDENSITY[key] = jax.jit(
                lambda data, z: jax.vmap(jax.value_and_grad(self.with_data(data).logdensity))(z)
            )
        return _BATCH_LOGDENSITY[key]

    def _draw_init(self, key, init_fn):
        tr = self._prototype_trace(key, init_fn)
        return self.ravel_unconstrained(
            {site.name: self._transforms[site.name].inv(tr[site.name]["value"]) for site in self.sites}
        )

    def check_initial_point(self, z, attempts: int = 1):
        """Raise a ValueError naming the sites whose log-probability (or gradient) is not finite at ``z``."""
        value, grad = jax.value_and_grad(self.logdensity)(z)
        value = float(value)
        tried = f" after {attempts} draws" if attempts > 1 else ""
        if np.isfinite(value) and np.isfinite(np.asarray(grad)).all():
            return
        if np.isfinite(value):
            raise ValueError(
                f"the gradient of the log density is not finite at every start{tried}; check the "
                "model for operations without a derivative there (sqrt(0), log(0)), or pass init values"
            )
        params = self.constrain(z)
        culprits = []
        for name, lp in self.site_log_probs(z).items():
            if not np.isfinite(float(lp)):
                site_value = params.get(name, self.observed.get(name))
                culprits.append(f"site '{name}': log-probability is {float(lp)} at value {np.asarray(site_value)!r}")
        detail = "; ".join(culprits) or "the log density is not finite (a Jacobian or a deterministic computation)"
        raise ValueError(
            f"initial log-density is {value}{tried}: {detail}. Pass init values inside each site's support "
            "(fit(..., init={...})) or use init='median'."
        )

    # ----------------------------------------------------------------------------------------------
    # checks
    def require_supported(self, method: str, unsupported) -> None:
        """Raise `UnsupportedModelError` if the model has a feature in ``unsupported`` (before any compilation)."""
        present = self.features()
        for feature in unsupported:
            if feature in present:
                raise UnsupportedModelError(method, feature, self._feature_detail(feature))

    def require_continuous(self, method: str):
        self.require_supported(method, ("discrete_latent",))

    def _feature_detail(self, feature: str) -> str:
        return {
            "discrete_latent": f"it needs gradients but the model has discrete latent sites "
            f"{list(self.discrete_sites)}; marginalise them (e.g. MixtureSameFamily or "
            "numpyro.contrib.funsor enumeration) or use method='gibbs'/'meta_gibbs'",
            "improper_prior": f"it starts from draws of the prior, and the sites {list(self.improper_sites)} have "
            "improper (flat) priors; give them proper priors or use method='nuts'",
            "continuous_latent": f"it samples discrete sites only, and the model has continuous latent sites "
            f"{list(self.site_names)}; use method='nuts' or 'gibbs'",
            "no_observation_plate": "it splits the observations across agents, and the model has no observed site "
            "inside a numpyro.plate; put the observations in a plate or use method='nuts'",
            "no_observations": "it needs observed data, and the model observes nothing",
            "data_read_as_values": "it splits the data into shards that are arguments of one compiled program, and "
            "the model reads its data as Python values (int(...), a Python if on data); "
            "compute those values outside the model and pass them as Python ints, or use "
            "method='nuts'",
            "latent_in_observation_plate": "it splits the observations across agents, and the model has latent sites "
            "inside the observations' plate (one per observation or group), which cannot be split with them; use "
            "method='nuts'",
            "observations_not_along_data": "it splits the data along the observations' plate across agents, and no "
            "data array has a leading axis of that plate's size (the model observes a slice or a transform of its "
            "data, such as y[K:]); pass the observed values as their own array, or use method='nuts'",
            "factor": f"it cannot evaluate numpyro.factor terms ({list(self.factor_sites)}) the way it needs; use "
            "method='nuts'",
        }.get(feature, "")

    # ----------------------------------------------------------------------------------------------
    # views for particular kernels (their own modules)
    def composite(self, *, nonsmooth: dict | None = None) -> Composite:
        """The smooth + L1 split of the negative log joint for the Bregman kernels: `samplax.models.composite`."""
        return composite_view(self, nonsmooth=nonsmooth)

    def shards(self, num_agents: int, *, num_observations: int | None = None) -> Shards:
        """The data split into agents' shards for the distributed kernels: `samplax.models.shards`."""
        return shard_view(self, num_agents, num_observations=num_observations)


def check_data(model, data) -> dict:
    """Convert data to arrays and check it matches the model's signature before any compilation."""
    import inspect

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"data must be a dict of the model's keyword arguments, got {type(data).__name__}")
    try:
        params = inspect.signature(model).parameters
    except (TypeError, ValueError):
        params = {}
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if params and not accepts_kwargs:
        unknown = [k for k in data if k not in params]
        if unknown:
            raise ValueError(f"data keys {unknown} are not arguments of the model; it takes {list(params)}")
    converted = {}
    for key, value in data.items():
        if value is None or isinstance(value, (bool, int, str)):
            converted[key] = value
            continue
        if isinstance(value, dict):  # a pytree of settings (NumPyro passes any pytree): checked leaf by leaf
            converted[key] = _check_nested(key, value)
            continue
        try:
            array = np.asarray(value)
        except ValueError:
            raise ValueError(f"data '{key}' is ragged (rows of different lengths); pass a rectangular array") from None
        if array.ndim == 0 and array.dtype.kind in "biu":
            converted[key] = array.item()  # an integer scalar stays a Python int (it may size a plate)
            continue
        if array.dtype == object:
            raise ValueError(f"data '{key}' is not a numeric array (ragged or mixed types); pass a rectangular array")
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"data '{key}' has dtype {array.dtype}: samplax takes arrays of numbers (bool, int, "
                "float); encode categories as integer codes and split complex values into real and "
                "imaginary parts"
            )
        # a JAX array stays one (a model may index it with a traced index, inside scan), a NumPy array stays NumPy
        # (a model may read it as Python values), as NumPyro passes them. Each target gets its own NumPy copy: JAX
        # (0.10) remembers a NumPy constant's device copy by the object, in the dtype of the first trace, so a float32
        # fit (int64 data -> int32) would leave the caller's array int32 inside a later float64 fit (int32/int64 clash)
        converted[key] = value if isinstance(value, jax.Array) else np.array(array, copy=True)
    return converted


def _check_nested(key: str, value: dict) -> dict:
    """A dict argument's entries checked like top-level data (numbers, numeric arrays, nested dicts)."""

    def fake_model(**kwargs):  # check_data wants a signature: any key is fine inside a nested dict
        pass

    checked = {}
    for name, entry in value.items():
        label = f"{key}[{name!r}]"  # errors name the entry as the user indexes it
        checked[name] = check_data(fake_model, {label: entry})[label]
    return checked


def build_target(model, data=None, *, args: tuple = (), seed: int = 0) -> Target:
    """Trace ``model(*args, **data)`` once and return its `Target`; shape errors name the problem."""
    data = check_data(model, data) if not args else dict(data or {})
    try:
        return Target(model, data, args=args, seed=seed)
    except ValueError:
        raise
    except (TypeError, AssertionError) as err:
        raise ValueError(
            f"the model could not be run with this data: {err}. Check the data's shapes against the "
            "model's plates and distributions."
        ) from err
