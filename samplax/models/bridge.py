"""The one place where a NumPyro model becomes something a kernel can sample.

`build_target(model, data)` traces the model once (NumPyro's `initialize_model`) and returns a `Target`:

* ``logdensity(z)``: the log joint on a flat unconstrained vector ``z`` (log-Jacobians of NumPyro's
  biject_to transforms included), jit-able and differentiable;
* ``init(key, strategy)``: starting points; ``constrain(z)``: constrained site values, deterministic sites
  included; ``log_likelihood(z)``: per-observation log-likelihoods for ``az.loo``;
* ``composite()``: the split U(x) = f(x) + g(x) in constrained coordinates for Bregman proximal kernels;
* ``shards(num_agents)``: prior and per-shard log-likelihoods for distributed (ADMM) kernels;
* ``factor_graph()``: the Markov blankets of discrete latent sites for Gibbs-type kernels.

Nothing else in samplax traces a model (compare ``numpyro.infer.util.initialize_model``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer import util as npu

__all__ = [
    "Site",
    "Target",
    "Composite",
    "LegendreSpec",
    "Shards",
    "FactorGraph",
    "build_target",
    "INIT_STRATEGIES",
]

INIT_STRATEGIES = ("uniform", "median", "prior")
_BATCH_LOGDENSITY: dict = {}


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


class LegendreSpec(NamedTuple):
    """The Legendre function of one block of the flat constrained vector (see kernels.bregman)."""

    name: str
    start: int
    stop: int
    params: dict


class Composite(NamedTuple):
    """U(x) = f(x) + g(x) on the flat constrained vector x (a K-simplex keeps its first K - 1 coordinates).

    g(x) = sum_i l1_weight_i |x_i - l1_center_i| collects the fixed-scale Laplace priors; f is the rest of the
    negative log joint. ``blocks`` gives each block's Legendre function.
    """

    dim: int
    smooth_potential: Callable
    l1_weight: jnp.ndarray
    l1_center: jnp.ndarray
    blocks: tuple
    to_constrained: Callable
    from_unconstrained: Callable
    from_constrained: Callable


class Shards(NamedTuple):
    """The data split along the observation plate into ``num_agents`` padded, masked shards.

    ``prior_logdensity(z)`` and ``shard_loglik(z, shard)`` act on the flat unconstrained vector; ``shard`` is one
    element of ``data`` (a pytree whose leaves have a leading agent axis) and carries its own ``mask``.
    """

    num_agents: int
    num_observations: int
    prior_logdensity: Callable
    shard_loglik: Callable
    data: dict
    sizes: np.ndarray


class FactorGraph(NamedTuple):
    """Discrete latent sites, their factors (sites whose log-probability mentions them) and Markov blankets."""

    discrete_sites: tuple[str, ...]
    factors: dict[str, tuple[str, ...]]
    markov_blanket: dict[str, tuple[str, ...]]
    support_size: dict[str, int]


def _site_discrete(site) -> bool:
    fn = site["fn"]
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return bool(getattr(fn, "is_discrete", False)) or site.get("infer", {}).get("enumerate") is not None


def _base_dist(fn):
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _support_name(support) -> str:
    return type(support).__name__.lstrip("_").lower()


class Target:
    """What a kernel needs from a (model, data) pair. Build it with `build_target`."""

    def __init__(self, model, data: dict, *, args: tuple = (), seed: int = 0):
        self.model = model
        self.args = tuple(args)
        self.data = dict(data)
        key = jax.random.key(seed)
        prototype = self._prototype_trace(key)
        self._trace = prototype
        latent = [
            (name, s)
            for name, s in prototype.items()
            if s["type"] == "sample" and not s["is_observed"] and not s.get("infer", {}).get("is_auxiliary")
        ]
        self.discrete_sites = tuple(name for name, s in latent if _site_discrete(s))
        self.observed = {name: np.asarray(s["value"]) for name, s in prototype.items() if s["type"] == "sample" and s["is_observed"]}
        self.deterministic_shapes = {name: tuple(jnp.shape(s["value"])) for name, s in prototype.items() if s["type"] == "deterministic"}
        continuous = [(name, s) for name, s in latent if name not in self.discrete_sites]
        self.sites: tuple[Site, ...] = ()
        self.dim = 0
        if not continuous:
            self._unravel = None
            return
        self._transforms = {name: dist.biject_to(s["fn"].support) for name, s in continuous}
        unconstrained = {name: self._transforms[name].inv(s["value"]) for name, s in continuous}
        flat, self._unravel = ravel_pytree(unconstrained)
        self.dim = int(flat.shape[0])
        sites, start = [], 0
        for name, s in continuous:
            size = int(np.size(unconstrained[name]))
            sites.append(
                Site(name, tuple(jnp.shape(s["value"])), s["fn"].support, start, start + size,
                     type(_base_dist(s["fn"])).__name__, False)
            )
            start += size
        # ravel_pytree orders dict leaves by key; re-derive offsets in that order so slices are right.
        order = sorted(sites, key=lambda site: site.name)
        offset, fixed = 0, {}
        for site in order:
            size = site.stop - site.start
            fixed[site.name] = dataclasses.replace(site, start=offset, stop=offset + size)
            offset += size
        self.sites = tuple(fixed[name] for name, _ in continuous)
        self.dtype = flat.dtype

    # ----------------------------------------------------------------------------------------------
    # tracing helpers
    def _prototype_trace(self, key):
        model = handlers.seed(self.model, key)
        try:
            with handlers.block():
                tr = handlers.trace(model).get_trace(*self.args, **self.data)
        except TypeError as err:
            raise ValueError(
                f"calling the model with the data failed: {err}. The model is called as model(**data): the data "
                "keys must be the model's argument names."
            ) from err
        return tr

    def data_arrays(self) -> dict:
        """The array-valued data: what compiled functions take as arguments (Python scalars stay static)."""
        return {k: v for k, v in self.data.items() if isinstance(v, jax.Array)}

    def static_data_key(self) -> tuple:
        """A hashable summary of everything in the data that is baked into a compiled program."""
        return tuple(sorted((k, repr(v)) for k, v in self.data.items() if not isinstance(v, jax.Array)))

    def with_data(self, arrays: dict) -> "Target":
        """The same target conditioned on other arrays of the same shapes (traced arrays inside jit are fine)."""
        clone = copy.copy(self)
        clone.data = {**self.data, **arrays}
        return clone

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
            raise ValueError(f"init values are missing the sites {missing}; give a value for every latent site "
                             f"{list(self.site_names)}")
        unconstrained = {}
        for site in self.sites:
            value = jnp.asarray(values[site.name], dtype=self.dtype)
            if value.shape != site.shape:
                raise ValueError(f"site '{site.name}': init value has shape {value.shape}, the model expects {site.shape}")
            unconstrained[site.name] = self._transforms[site.name].inv(value)
        return self.ravel_unconstrained(unconstrained)

    def _trace_at(self, z):
        params = self.constrain(z)
        return handlers.trace(handlers.substitute(handlers.seed(self.model, 0), data=params)).get_trace(
            *self.args, **self.data)

    def log_likelihood(self, z) -> dict:
        """Pointwise log-likelihood of each observed site at ``z`` (shape of the observed value)."""
        tr = self._trace_at(z)
        return {name: s["fn"].log_prob(s["value"]) for name, s in tr.items()
                if s["type"] == "sample" and s["is_observed"]}

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
        """``num_chains`` flat unconstrained starting points, checked to have a finite log density.

        ``strategy``: None or "uniform" (NumPyro's default: uniform on (-2, 2) in unconstrained space), "median",
        "prior" (a draw from the prior), or a dict of constrained values for every latent site (all chains start there).
        """
        if self.dim == 0:
            raise ValueError("the model has no continuous latent sites to sample")
        if isinstance(strategy, dict):
            z0 = self.unconstrain(strategy)
            self.check_initial_point(z0)
            return jnp.broadcast_to(z0, (num_chains, self.dim))
        strategy = strategy or "uniform"
        if strategy not in INIT_STRATEGIES:
            raise ValueError(f"init={strategy!r} is not a valid strategy; use one of {list(INIT_STRATEGIES)} or a "
                             "dict of constrained values per site")
        batch_logdensity = self._batch_logdensity()
        logdensity = lambda positions: batch_logdensity(self.data_arrays(), positions)  # noqa: E731
        if strategy == "median":
            init_fn = numpyro.infer.init_to_median(num_samples=15)
        elif strategy == "prior":
            init_fn = numpyro.infer.init_to_sample()
        else:
            init_fn = None
        keys = jax.random.split(key, num_chains)
        positions = np.stack([np.asarray(self._draw_init(k, init_fn)) for k in keys]) if init_fn else \
            np.asarray(jax.random.uniform(key, (num_chains, self.dim), minval=-2.0, maxval=2.0))
        for attempt in range(100):
            bad = ~np.isfinite(np.asarray(logdensity(jnp.asarray(positions))))
            if not bad.any():
                return jnp.asarray(positions, dtype=self.dtype)
            key, sub = jax.random.split(key)
            redraw = jax.random.uniform(sub, (int(bad.sum()), self.dim), minval=-2.0, maxval=2.0)
            positions[bad] = np.asarray(redraw)
        self.check_initial_point(jnp.asarray(positions[bad][0]))
        raise AssertionError("unreachable")  # check_initial_point raises

    def _batch_logdensity(self):
        """A jitted log density over many points, shared by every target of the same model and data shapes."""
        key = (self.model, self.static_data_key(), tuple((site.name, site.shape) for site in self.sites))
        if key not in _BATCH_LOGDENSITY:
            _BATCH_LOGDENSITY[key] = jax.jit(lambda data, z: jax.vmap(self.with_data(data).logdensity)(z))
        return _BATCH_LOGDENSITY[key]

    def _draw_init(self, key, init_fn):
        with handlers.block():
            seeded = handlers.seed(self.model, key)
            values = {}
            tr = handlers.trace(handlers.substitute(seeded, substitute_fn=init_fn)).get_trace(*self.args, **self.data)
            for site in self.sites:
                values[site.name] = tr[site.name]["value"]
        return self.unconstrain(values)

    def check_initial_point(self, z):
        """Raise a ValueError naming the site whose log-probability is not finite at ``z``."""
        value = float(self.logdensity(z))
        if np.isfinite(value):
            return
        params = self.constrain(z)
        culprits = []
        for name, lp in self.site_log_probs(z).items():
            if not np.isfinite(float(lp)):
                site_value = params.get(name, self.observed.get(name))
                culprits.append(f"site '{name}': log-probability is {float(lp)} at value {np.asarray(site_value)!r}")
        detail = "; ".join(culprits) or "the log density is not finite (a factor or a Jacobian)"
        raise ValueError(
            f"initial log-density is {value}: {detail}. Pass init values inside each site's support "
            "(fit(..., init={...})) or use init='median'."
        )

    # ----------------------------------------------------------------------------------------------
    # checks
    def require_continuous(self, method: str):
        if self.discrete_sites:
            raise ValueError(
                f"method '{method}' needs gradients but the model has discrete latent sites "
                f"{list(self.discrete_sites)}; marginalise them (e.g. MixtureSameFamily or "
                "numpyro.contrib.funsor enumeration) or use method='gibbs'/'meta_gibbs'"
            )

    # ----------------------------------------------------------------------------------------------
    # composite view for Bregman proximal kernels
    def composite(self, *, legendre: dict | None = None, nonsmooth: dict | None = None,
                  beta: float | dict | None = None, barrier: bool = False) -> Composite:
        """Split the negative log joint in constrained coordinates into smooth f and weighted-L1 g.

        Fixed-scale Laplace priors become L1 terms (weight 1/scale, centre loc). ``legendre`` maps site names to
        Legendre names (override), ``nonsmooth`` maps site names to False to keep a Laplace prior inside f.
        ``barrier=True`` picks the log-barrier (Burg) maps on positive and simplex sites instead of the entropies:
        their multiplicative steps reach mass piled at a face, where the entropic maps mix badly (measured in
        docs/methods/bplmc.md).
        """
        legendre = dict(legendre or {})
        nonsmooth = dict(nonsmooth or {})
        for name, value in legendre.items():
            if value not in LEGENDRE_NAMES:
                raise ValueError(f"site '{name}': unknown Legendre function {value!r}; use one of "
                                 f"{list(LEGENDRE_NAMES)}")
        for name in list(legendre) + list(nonsmooth):
            if name not in self.site_names:
                raise ValueError(f"composite override names site '{name}', not a continuous latent site of the "
                                 f"model; sites are {list(self.site_names)}")
        dependencies = _latent_dependencies(self.model, self.args, self.data)
        blocks, weights, centers, layout = [], [], [], []
        offset = 0
        l1_sites = set()
        for site in self.sites:
            fn = _base_dist(self._trace[site.name]["fn"])
            support = site.support
            if isinstance(support, constraints.independent):
                support = support.base_constraint
            size = int(np.prod(site.shape)) if site.shape else 1
            is_simplex = support is constraints.simplex
            width = size - 1 if is_simplex else size
            weight = np.zeros(width)
            center = np.zeros(width)
            if isinstance(fn, dist.Laplace) and nonsmooth.get(site.name, True):
                parents = dependencies.get(site.name, ())
                if parents:
                    raise ValueError(
                        f"site '{site.name}': its Laplace scale or location depends on the latent sites "
                        f"{list(parents)}, so it is not a fixed convex L1 term; use method='nuts' or 'mala', or "
                        f"pass nonsmooth={{'{site.name}': False}} to treat it as smooth"
                    )
                loc = np.broadcast_to(np.asarray(fn.loc, dtype=float), site.shape).reshape(-1)
                scale = np.broadcast_to(np.asarray(fn.scale, dtype=float), site.shape).reshape(-1)
                weight, center = 1.0 / scale, loc
                l1_sites.add(site.name)
            name = legendre.get(site.name) or _default_legendre(site.name, support, site.name in l1_sites, barrier)
            params = {}
            if name == "hyperbolic_entropy":
                site_beta = beta.get(site.name, 1.0) if isinstance(beta, dict) else (beta if beta is not None else 1.0)
                params = {"beta": float(site_beta), "center": center}
            elif name == "fermi_dirac":
                params = {"lower": float(np.min(support.lower_bound)), "upper": float(np.max(support.upper_bound))}
            blocks.append(LegendreSpec(name, offset, offset + width, params))
            weights.append(weight)
            centers.append(center)
            layout.append((site, offset, width, is_simplex))
            offset += width
        dim = offset
        l1_weight = jnp.asarray(np.concatenate(weights), dtype=self.dtype)
        l1_center = jnp.asarray(np.concatenate(centers), dtype=self.dtype)

        def to_constrained(x):
            values = {}
            for site, start, width, is_simplex in layout:
                block = x[start:start + width]
                if is_simplex:
                    block = jnp.concatenate([block, 1.0 - jnp.sum(block, keepdims=True)])
                values[site.name] = block.reshape(site.shape)
            return values

        def from_constrained(values):
            parts = []
            for site, _, width, is_simplex in layout:
                block = jnp.reshape(values[site.name], (-1,))
                parts.append(block[:width] if is_simplex else block)
            return jnp.concatenate(parts)

        def from_unconstrained(z):
            return from_constrained(self.constrain(z))

        model, args, data = self.model, self.args, self.data

        def smooth_potential(x):
            log_joint, _ = npu.log_density(model, args, data, to_constrained(x))
            return -log_joint - jnp.sum(l1_weight * jnp.abs(x - l1_center))

        return Composite(dim, smooth_potential, l1_weight, l1_center, tuple(blocks), to_constrained,
                         from_unconstrained, from_constrained)

    # ----------------------------------------------------------------------------------------------
    # shards for distributed kernels
    def shards(self, num_agents: int, *, num_observations: int | None = None) -> Shards:
        """Split the data along the observation plate into ``num_agents`` padded, masked shards.

        Every data array whose leading axis has the plate's size is split along that axis; other data are
        shared. The prior is ``logdensity`` minus the log-likelihood; each agent evaluates only its own shard.
        A process holding only its own shard passes ``num_observations`` (the global count).
        """
        if not isinstance(num_agents, (int, np.integer)) or num_agents < 1:
            raise ValueError(f"num_agents must be a positive integer, got {num_agents!r}")
        plate_size = _observation_plate_size(self._trace)
        split_keys = [k for k, v in self.data.items()
                      if v is not None and np.ndim(v) >= 1 and np.shape(v)[0] == plate_size]
        if not split_keys:
            raise ValueError("no data array has a leading axis the size of the observation plate "
                             f"({plate_size}); shards need the observations along axis 0")
        if num_agents > plate_size:
            raise ValueError(f"num_agents={num_agents} exceeds the number of observations {plate_size}")
        sizes = np.array([len(part) for part in np.array_split(np.arange(plate_size), num_agents)])
        width = int(sizes.max())
        stacked = {}
        for key in split_keys:
            value = np.asarray(self.data[key])
            parts = np.array_split(value, num_agents)
            padded = [np.concatenate([p, np.repeat(p[-1:], width - len(p), axis=0)]) for p in parts]
            stacked[key] = jnp.asarray(np.stack(padded))
        mask = jnp.asarray(np.arange(width)[None, :] < sizes[:, None])
        shared = {k: v for k, v in self.data.items() if k not in split_keys}
        model, args, unravel = self.model, self.args, self._unravel
        target = self

        def shard_loglik(z, shard):
            data = dict(shared)
            data.update({k: shard[k] for k in split_keys})
            params = npu.constrain_fn(model, args, data, unravel(z))
            tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **data)
            total = 0.0
            for s in tr.values():
                if s["type"] == "sample" and s["is_observed"]:
                    lp = s["fn"].log_prob(s["value"])
                    # observations run along axis 0 of each split array, hence along the first axis of lp
                    mask = shard["mask"].reshape((-1,) + (1,) * (lp.ndim - 1))
                    total = total + jnp.sum(jnp.where(mask, lp, 0.0))
            return total

        data = dict(stacked)
        data["mask"] = mask
        return Shards(num_agents, int(num_observations or plate_size), target.log_prior, shard_loglik, data, sizes)

    # ----------------------------------------------------------------------------------------------
    # discrete sites
    def factor_graph(self) -> FactorGraph:
        """Each discrete latent site's factors (sample sites whose distribution depends on it) and blanket."""
        relations = numpyro.infer.inspect.get_model_relations(self.model, self.args, self.data)
        parents = relations["sample_sample"]
        factors = {name: tuple(sorted({name} | {child for child, ps in parents.items() if name in ps}))
                   for name in self.discrete_sites}
        blanket = {}
        for name in self.discrete_sites:
            members = set(parents.get(name, ()))
            for child in factors[name]:
                if child != name:
                    members.add(child)
                    members.update(parents.get(child, ()))
            members.discard(name)
            blanket[name] = tuple(sorted(members))
        support = {}
        for name in self.discrete_sites:
            fn = _base_dist(self._trace[name]["fn"])
            enum = fn.enumerate_support(expand=False) if getattr(fn, "has_enumerate_support", False) else None
            support[name] = int(enum.shape[0]) if enum is not None else -1
        return FactorGraph(self.discrete_sites, factors, blanket, support)


LEGENDRE_NAMES = ("euclidean", "hyperbolic_entropy", "boltzmann_shannon", "burg", "fermi_dirac", "entropic_simplex",
                  "burg_simplex")


def _default_legendre(name, support, has_l1, barrier=False) -> str:
    if support is constraints.real:
        return "hyperbolic_entropy" if has_l1 else "euclidean"
    if support is constraints.positive:
        return "burg" if barrier else "boltzmann_shannon"
    if support is constraints.simplex:
        return "burg_simplex" if barrier else "entropic_simplex"
    if isinstance(support, constraints.interval) or support is constraints.unit_interval:
        return "fermi_dirac"
    raise ValueError(
        f"site '{name}': no Legendre function is known for support {support}; pass legendre={{'{name}': ...}} "
        f"with one of {list(LEGENDRE_NAMES)}, or use method='myula'"
    )


def _latent_dependencies(model, args, data) -> dict[str, tuple[str, ...]]:
    relations = numpyro.infer.inspect.get_model_relations(model, args, data)
    observed = set(relations["observed"])
    return {name: tuple(p for p in parents if p not in observed) for name, parents in relations["sample_sample"].items()}


def _observation_plate_size(trace) -> int:
    for s in trace.values():
        if s["type"] == "sample" and s["is_observed"]:
            frames = s.get("cond_indep_stack", [])
            if frames:
                return int(max(frames, key=lambda f: f.size).size)
            shape = np.shape(s["value"])
            if shape:
                return int(shape[0])
    raise ValueError("the model has no observed site inside a plate: there is nothing to shard")


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
        if value is None or isinstance(value, (bool, int, float, str)):
            converted[key] = value
            continue
        try:
            array = np.asarray(value)
        except ValueError:
            raise ValueError(f"data '{key}' is ragged (rows of different lengths); pass a rectangular array") from None
        if array.ndim == 0 and array.dtype != object:
            converted[key] = array.item()  # a scalar stays a Python scalar (it may size a plate)
            continue
        if array.dtype == object:
            raise ValueError(f"data '{key}' is not a numeric array (ragged or mixed types); pass a rectangular array")
        converted[key] = jnp.asarray(array)
    return converted


def build_target(model, data=None, *, args: tuple = (), seed: int = 0) -> Target:
    """Trace ``model(*args, **data)`` once and return its `Target`; shape errors name the problem."""
    data = check_data(model, data) if not args else dict(data or {})
    try:
        return Target(model, data, args=args, seed=seed)
    except ValueError:
        raise
    except (TypeError, AssertionError) as err:
        raise ValueError(f"the model could not be run with this data: {err}. Check the data's shapes against the "
                         "model's plates and distributions.") from err
