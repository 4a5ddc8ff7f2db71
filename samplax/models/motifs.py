"""Motifs on NumPyro models, and the factor-graph view that Gibbs-type samplers run on.

A bridge extension (like `samplax.models.bridge`, it traces the model; nothing outside `models` does):

* `compile_model(target)` reads the model's dependency graph once (`numpyro.infer.inspect.get_model_relations`) and
  turns every factor that depends only on scalar discrete sites into a table, by evaluating the model's own
  log-probabilities at a few "probe" assignments (factors whose scopes do not overlap are probed together, so a
  20 x 20 grid needs about 70 evaluations). The result, a `ModelView`, gives the tables as arrays, the Markov
  blanket of every variable, and the whole log joint (for the sites whose factors are not tables: continuous
  sites, and discrete sites with a continuous child).
* A motif is a small pattern with a block B (proposed jointly) and its conditioning set C (B's Markov blanket),
  declared once with the way its local parameters Theta are read from the model. `DiscreteMotif` is a pattern of
  binary nodes matched against the dependency graph (`networkx` subgraph matching, then the exact-blanket check:
  every block and child node has exactly the pattern's parents, and the blanket of the block's image is the image of
  the pattern's blanket); Theta is every conditional table inside the motif, read P(x = 1 | parents) in pattern
  order. `grid_block_motif(3, 3)` is the paper's "diamond": a 3 x 3 block of a binary grid network with its
  14-node blanket. `TwoMeansMotif` is the open-universe mixture's motif: two component means given the data and
  the other means.
* Every motif can forward-sample its own sub-network with random local parameters (the meta-training data) and,
  when it is discrete, enumerate the exact block conditional (for held-out KL checks).

Signatures (`Motif.signature()`) are JSON records that identify a motif in a saved proposal library.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import util as npu

__all__ = [
    "ModelView",
    "compile_model",
    "DiscreteMotif",
    "DiscreteInstance",
    "grid_block_motif",
    "TwoMeansMotif",
    "TwoMeansInstance",
    "two_means_features",
    "MOTIF_VERSION",
    "known_motifs",
    "finish_with_discrete",
]

MOTIF_VERSION = 1
MAX_TABLE_SIZE = 4096


def _base_dist(fn):
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _is_discrete(site) -> bool:
    return bool(getattr(_base_dist(site["fn"]), "is_discrete", False))


def _enumerable_support(site):
    fn = site["fn"]
    if not getattr(fn, "has_enumerate_support", False):
        return None
    try:
        support = np.asarray(fn.enumerate_support(expand=False)).reshape(-1)
    except (NotImplementedError, ValueError, TypeError):
        return None
    return support


# =====================================================================================================================
# the model view
@dataclasses.dataclass
class ModelView:
    """What Gibbs-type samplers need from a (model, data) pair; build it with `compile_model`.

    Variables are the scalar discrete sample sites with a finite support, latent or observed (an observed one keeps
    its value). Factors are sample sites whose parents are all variables; each has a table over its scope (itself
    when it is a variable, then its parents). A latent variable is *local* when every factor touching it is a
    table; other latent discrete sites are updated through the whole log joint.
    """

    target: Any
    variable_names: tuple
    latent: np.ndarray            # (V,) bool
    num_states: np.ndarray        # (V,) int
    support_values: np.ndarray    # (V, K) float, padded by repetition
    observed_index: np.ndarray    # (V,) int: the state of an observed variable (0 for latent ones)
    factor_names: tuple           # (F,) site names
    factor_scopes: list           # F tuples of variable indices
    log_tables: list              # F arrays, axes in scope order
    local: np.ndarray             # (V,) bool: latent and every factor touching it is a table
    parents: dict                 # site -> tuple of parent sites (sample sites)
    children: dict                # site -> tuple of child sites
    graph: nx.DiGraph             # sample sites, parent -> child
    other_discrete: tuple         # (name, shape, support values) of latent discrete sites that are not variables
    site_dtypes: dict

    # --------------------------------------------------------------------------------------------------------------
    @property
    def num_variables(self) -> int:
        return len(self.variable_names)

    @property
    def variable_index(self) -> dict:
        return {name: i for i, name in enumerate(self.variable_names)}

    def factors_of(self, v: int) -> list[int]:
        return [f for f, scope in enumerate(self.factor_scopes) if v in scope]

    def blanket(self, variables) -> set:
        """Variables sharing a factor with ``variables`` (excluding them): the Markov blanket inside the tables."""
        variables = set(variables)
        out = set()
        for scope in self.factor_scopes:
            if variables & set(scope):
                out.update(scope)
        return out - variables

    def factor_tables(self, dtype=jnp.float32):
        """The tables as the kernel's padded `FactorTables` arrays (returned as a dict of numpy arrays)."""
        v_count, f_count = self.num_variables, len(self.factor_names)
        arity = max([len(s) for s in self.factor_scopes] + [1])
        size = max([t.size for t in self.log_tables] + [1])
        scope = np.full((f_count + 1, arity), v_count, dtype=np.int32)
        strides = np.zeros((f_count + 1, arity), dtype=np.int32)
        log_table = np.zeros((f_count + 1, size), dtype=np.float64)
        for f, (members, table) in enumerate(zip(self.factor_scopes, self.log_tables)):
            shape = table.shape
            step = np.cumprod((1,) + shape[::-1][:-1])[::-1]  # C order strides in elements
            scope[f, :len(members)] = members
            strides[f, :len(members)] = step
            log_table[f, :table.size] = table.reshape(-1)
        touching = [self.factors_of(v) for v in range(v_count)]
        degree = max([len(t) for t in touching] + [1])
        variable_factors = np.full((v_count + 1, degree), f_count, dtype=np.int32)
        for v, fs in enumerate(touching):
            variable_factors[v, :len(fs)] = fs
        num_states = np.concatenate([self.num_states, [1]]).astype(np.int32)
        support = np.concatenate([self.support_values, np.zeros((1, self.support_values.shape[1]))], axis=0)
        return {"scope": scope, "strides": strides, "log_table": log_table.astype(dtype),
                "variable_factors": variable_factors, "num_states": num_states,
                "support_values": support.astype(dtype)}

    def own_factor(self) -> np.ndarray:
        """(V+1,) the factor whose site is each variable (the dummy factor F for the dummy variable)."""
        position = {name: f for f, name in enumerate(self.factor_names)}
        out = np.full(self.num_variables + 1, len(self.factor_names), dtype=np.int32)
        for v, name in enumerate(self.variable_names):
            out[v] = position.get(name, len(self.factor_names))
        return out

    def topological_latent_order(self) -> np.ndarray:
        index = self.variable_index
        order = [index[name] for name in nx.topological_sort(self.graph) if name in index and self.latent[index[name]]]
        return np.asarray(order, dtype=np.int32)

    def initial_indices(self) -> np.ndarray:
        """(V+1,) state indices: observed variables at their value, latent ones at 0, the dummy at 0."""
        return np.concatenate([np.where(self.latent, 0, self.observed_index), [0]]).astype(np.int32)

    # --------------------------------------------------------------------------------------------------------------
    # the whole log joint, for updates that cannot use the tables
    def joint_logdensity(self) -> Callable:
        """``(idx (V+1,), other: dict name -> values, z (dim,)) -> log p`` of the whole model, with the log-Jacobians
        of the continuous sites' transforms (the same density as ``Target.logdensity`` on the continuous part)."""
        target = self.target
        latent_vars = [(v, name) for v, name in enumerate(self.variable_names) if self.latent[v]]
        support = jnp.asarray(self.support_values)
        dtypes = self.site_dtypes
        transforms = {site.name: dist.biject_to(site.support) for site in target.sites}
        model, args, data = target.model, target.args, target.data

        def log_joint(idx, other, z):
            params = {name: support[v, idx[v]].astype(dtypes[name]) for v, name in latent_vars}
            params.update(other)
            log_jacobian = 0.0
            if target.dim:
                unconstrained = target.unravel(z)
                for name, transform in transforms.items():
                    value = transform(unconstrained[name])
                    params[name] = value
                    log_jacobian = log_jacobian + jnp.sum(transform.log_abs_det_jacobian(unconstrained[name], value))
            value, _ = npu.log_density(model, args, data, params)
            return value + log_jacobian

        return log_joint

    def prior_draws(self, key, num: int) -> dict:
        """``num`` prior draws of every latent site (observed sites clamped), one seeded trace per draw (vmap)."""
        target = self.target
        names = [name for v, name in enumerate(self.variable_names) if self.latent[v]]
        names += [name for name, _, _ in self.other_discrete] + [site.name for site in target.sites]
        model, args, data = target.model, target.args, target.data

        def draw(k):
            with handlers.block():
                tr = handlers.trace(handlers.seed(model, k)).get_trace(*args, **data)
            return {name: tr[name]["value"] for name in names}

        return jax.vmap(draw)(jax.random.split(key, num))

    def constrained_draws(self, idx, other: dict) -> dict:
        """Site values of the latent discrete sites from state indices (..., V+1) and the other discrete values."""
        idx = np.asarray(idx)
        out = {}
        for v, name in enumerate(self.variable_names):
            if self.latent[v]:
                out[name] = self.support_values[v][idx[..., v]].astype(self.site_dtypes[name])
        out.update({name: np.asarray(value) for name, value in other.items()})
        return out


def compile_model(target) -> ModelView:
    """Read the dependency graph and tabulate every factor over scalar discrete sites (see the module docstring)."""
    model, args, data = target.model, target.args, target.data
    trace = getattr(target, "_trace", None)
    if trace is None:
        with handlers.block():
            trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **data)
    relations = numpyro.infer.inspect.get_model_relations(model, args, data)
    sites = {name: s for name, s in trace.items() if s["type"] == "sample"
             and not s.get("infer", {}).get("is_auxiliary")}
    parents = {name: tuple(p for p in relations["sample_sample"].get(name, ()) if p in sites) for name in sites}
    children: dict[str, list] = {name: [] for name in sites}
    for name, ps in parents.items():
        for p in ps:
            children[p].append(name)
    graph = nx.DiGraph()
    graph.add_nodes_from(sites)
    graph.add_edges_from((p, name) for name, ps in parents.items() for p in ps)

    variables, supports, observed_index, latent_flags, other = [], [], [], [], []
    for name, s in sites.items():
        if not _is_discrete(s):
            continue
        support = _enumerable_support(s) if np.shape(s["value"]) == () else None
        if support is None:
            if not s["is_observed"]:
                fn = _base_dist(s["fn"])
                if not getattr(fn, "has_enumerate_support", False):
                    raise ValueError(f"site '{name}': a discrete latent site without a finite support "
                                     f"({type(fn).__name__}) cannot be sampled by Gibbs updates; marginalise it or "
                                     "give it a finite support")
                values = np.asarray(fn.enumerate_support(expand=False)).reshape(-1)
                other.append((name, tuple(np.shape(s["value"])), values))
            continue
        if support.size > MAX_TABLE_SIZE:
            raise ValueError(f"site '{name}' has {support.size} states; Gibbs enumeration is limited to "
                             f"{MAX_TABLE_SIZE}")
        variables.append(name)
        supports.append(support)
        latent_flags.append(not s["is_observed"])
        if s["is_observed"]:
            matches = np.flatnonzero(np.isclose(support, float(np.asarray(s["value"]))))
            if matches.size == 0:
                raise ValueError(f"site '{name}': observed value {np.asarray(s['value'])!r} is outside its support "
                                 f"{support.tolist()}")
            observed_index.append(int(matches[0]))
        else:
            observed_index.append(0)
    index = {name: i for i, name in enumerate(variables)}
    width = max([s.size for s in supports] + [1])
    support_values = np.stack([np.pad(s.astype(float), (0, width - s.size), mode="edge") for s in supports]) \
        if supports else np.zeros((0, 1))
    num_states = np.asarray([s.size for s in supports], dtype=np.int64)
    latent = np.asarray(latent_flags, dtype=bool)

    factor_names, factor_scopes = [], []
    for name, s in sites.items():
        if not all(p in index for p in parents[name]):
            continue
        if name in index:
            scope = (index[name],) + tuple(index[p] for p in parents[name])
        elif s["is_observed"]:
            scope = tuple(index[p] for p in parents[name])
        else:
            continue  # a latent non-variable site: not a table
        if int(np.prod([num_states[v] for v in scope])) > MAX_TABLE_SIZE:
            continue
        factor_names.append(name)
        factor_scopes.append(scope)
    log_tables = _probe_tables(target, trace, sites, variables, support_values, num_states, latent, observed_index,
                               factor_names, factor_scopes)

    tabular = set(factor_names)
    local = np.zeros(len(variables), dtype=bool)
    for name, v in index.items():
        if latent[v]:
            touching = [name] + list(children[name])
            local[v] = all(f in tabular for f in touching)
    dtypes = {name: jnp.asarray(sites[name]["value"]).dtype for name in sites}
    return ModelView(target, tuple(variables), latent, num_states, support_values, np.asarray(observed_index),
                     tuple(factor_names), factor_scopes, log_tables, local, parents,
                     {k: tuple(v) for k, v in children.items()}, graph, tuple(other), dtypes)


def _probe_tables(target, trace, sites, variables, support_values, num_states, latent, observed_index,
                  factor_names, factor_scopes):
    """Tables of the factors by evaluating the model's log-probabilities at probe assignments.

    Factors are coloured so that a colour class has pairwise disjoint scopes; one probe per (class, flat table
    index) sets every factor's scope in the class to that entry's configuration at once.
    """
    if not factor_names:
        return []
    import networkx as nx_

    conflict = nx_.Graph()
    conflict.add_nodes_from(range(len(factor_names)))
    by_var: dict[int, list[int]] = {}
    for f, scope in enumerate(factor_scopes):
        for v in scope:
            by_var.setdefault(v, []).append(f)
    for fs in by_var.values():
        for a, b in itertools.combinations(fs, 2):
            conflict.add_edge(a, b)
    colours = nx_.greedy_color(conflict, strategy="largest_first")
    classes: dict[int, list[int]] = {}
    for f, c in colours.items():
        classes.setdefault(c, []).append(f)
    base = np.where(latent, 0, observed_index).astype(np.int64)
    probes, where = [], {}
    for members in classes.values():
        sizes = [int(np.prod([num_states[v] for v in factor_scopes[f]])) for f in members]
        for entry in range(max(sizes)):
            assignment = base.copy()
            for f, size in zip(members, sizes):
                scope = factor_scopes[f]
                shape = [int(num_states[v]) for v in scope]
                configuration = np.unravel_index(entry % size, shape) if scope else ()
                for v, state in zip(scope, configuration):
                    assignment[v] = state
                if entry < size:
                    where[(f, entry)] = len(probes)
            probes.append(assignment)
    probes = np.asarray(probes)
    fixed = {name: s["value"] for name, s in sites.items() if not s["is_observed"] and name not in variables}
    dtypes = {name: jnp.asarray(sites[name]["value"]).dtype for name in variables}
    model, args, data = target.model, target.args, target.data

    def evaluate(assignment):
        params = dict(fixed)
        for v, name in enumerate(variables):
            params[name] = jnp.asarray(support_values[v])[assignment[v]].astype(dtypes[name])
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **data)
        out = []
        for name in factor_names:
            s = tr[name]
            lp = jnp.sum(s["fn"].log_prob(s["value"]))
            if s.get("scale") is not None:
                lp = lp * s["scale"]
            out.append(lp)
        return jnp.stack(out)

    try:
        with handlers.block():
            values = np.asarray(jax.vmap(evaluate)(jnp.asarray(probes)), dtype=np.float64)
    except jax.errors.ConcretizationTypeError as error:
        raise ValueError("the model branches in Python on the value of a discrete site, so its factors cannot be "
                         "tabulated; write the dependence with jnp operations (jnp.where, indexing)") from error
    tables = []
    for f, scope in enumerate(factor_scopes):
        shape = tuple(int(num_states[v]) for v in scope)
        size = int(np.prod(shape)) if shape else 1
        rows = [where[(f, entry)] for entry in range(size)]
        table = values[rows, f].reshape(shape)
        tables.append(np.where(np.isnan(table), -np.inf, table))
    return tables


def finish_with_discrete(target, z, discrete: dict, log_likelihood: bool = True, chunk: int = 1024) -> dict:
    """Posterior site values (latent and deterministic) and pointwise log-likelihoods of draws that carry discrete
    sites: ``z`` (chains, draws, dim) unconstrained continuous draws, ``discrete`` name -> (chains, draws, *shape).

    The counterpart of `samplax.infer.fit`'s finishing step for samplers of discrete sites: the model is traced with
    every latent value substituted (jit + vmap over chunks of draws of one length, so it compiles once).
    """
    z = np.asarray(z)
    chains, draws = z.shape[:2]
    total = chains * draws
    flat_z = z.reshape(total, z.shape[-1])
    flat_discrete = {name: np.asarray(value).reshape((total,) + np.shape(value)[2:])
                     for name, value in discrete.items()}
    transforms = {site.name: dist.biject_to(site.support) for site in target.sites}
    model, args, data = target.model, target.args, target.data

    def one(zi, values):
        params = dict(values)
        if target.dim:
            unconstrained = target.unravel(zi)
            params.update({name: transforms[name](unconstrained[name]) for name in transforms})
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **data)
        posterior = {name: s["value"] for name, s in tr.items()
                     if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"}
        loglik = {name: s["fn"].log_prob(s["value"]) for name, s in tr.items()
                  if s["type"] == "sample" and s["is_observed"]} if log_likelihood else {}
        return {"posterior": posterior, "log_likelihood": loglik}

    size = min(chunk, total)
    run = jax.jit(jax.vmap(one))
    pieces = []
    for start in range(0, total, size):
        stop = min(start + size, total)
        pad = size - (stop - start)
        zi = np.concatenate([flat_z[start:stop], np.repeat(flat_z[stop - 1:stop], pad, axis=0)])
        vi = {k: np.concatenate([v[start:stop], np.repeat(v[stop - 1:stop], pad, axis=0)]) for k, v in
              flat_discrete.items()}
        out = jax.tree.map(np.asarray, run(jnp.asarray(zi), {k: jnp.asarray(v) for k, v in vi.items()}))
        pieces.append(jax.tree.map(lambda x: x[:stop - start], out))
    merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)
    return jax.tree.map(lambda x: x.reshape((chains, draws) + x.shape[1:]), merged)


# =====================================================================================================================
# discrete motifs
@dataclasses.dataclass(frozen=True)
class DiscreteInstance:
    """One instantiation of a discrete motif: block, conditioning set and conditional-table nodes as sites."""

    block: tuple
    context: tuple
    mapping: dict


@dataclasses.dataclass(frozen=True)
class DiscreteMotif:
    """A pattern of binary nodes: ``block`` nodes (proposed jointly), ``blanket`` nodes (the conditioning set) and
    the ordered ``parents`` of every node whose conditional table lies inside the motif (the block nodes and the
    children of the block). Theta = P(x = 1 | parent configuration) of those nodes, first parent most significant;
    c = the blanket values in ``blanket`` order."""

    name: str
    block: tuple
    blanket: tuple
    parents: tuple  # ((node, (parent, ...)), ...) in Theta order

    kind = "discrete"

    @property
    def parent_map(self) -> dict:
        return dict(self.parents)

    @property
    def table_nodes(self) -> tuple:
        return tuple(node for node, _ in self.parents)

    @property
    def theta_size(self) -> int:
        return sum(2 ** len(ps) for _, ps in self.parents)

    @property
    def num_inputs(self) -> int:
        return self.theta_size + len(self.blanket)

    @property
    def block_size(self) -> int:
        return len(self.block)

    def signature(self) -> dict:
        return {"kind": "discrete", "name": self.name, "version": MOTIF_VERSION, "num_categories": 2,
                "block": list(self.block), "blanket": list(self.blanket),
                "parents": [[node, list(ps)] for node, ps in self.parents]}

    def pattern(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(self.block + self.blanket)
        graph.add_edges_from((p, node) for node, ps in self.parents for p in ps)
        return graph

    # ------------------------------------------------------------------------------------------------------------
    def match(self, view: ModelView) -> list[DiscreteInstance]:
        """Every instantiation in the model (one per distinct block; overlapping instances included)."""
        index = view.variable_index
        binary = {name for name, v in index.items() if view.num_states[v] == 2
                  and np.allclose(view.support_values[v, :2], (0.0, 1.0))}
        local = {name for name, v in index.items() if view.local[v]}
        candidates = view.graph.subgraph([n for n in view.graph if n in binary]).copy()
        pattern = self.pattern()
        parent_map = self.parent_map
        block_set = set(self.block)
        matcher = nx.algorithms.isomorphism.DiGraphMatcher(candidates, pattern)
        best: dict = {}
        order = tuple(self.block + self.blanket)
        for forward in matcher.subgraph_monomorphisms_iter():
            image = {p: g for g, p in forward.items()}
            blocks = frozenset(image[b] for b in self.block)
            if not blocks <= local:
                continue
            if any(set(view.parents[image[node]]) != {image[p] for p in parent_map[node]} for node in parent_map):
                continue
            model_blanket = set()
            for b in blocks:
                model_blanket.update(view.parents[b])
                for child in view.children[b]:
                    model_blanket.add(child)
                    model_blanket.update(view.parents[child])
            model_blanket -= blocks
            if model_blanket != {image[b] for b in self.blanket}:
                continue
            if any(image[node] not in index for node in self.table_nodes if node not in block_set):
                continue
            # automorphisms of the pattern (a grid block's transpose) give the same block several times: keep the
            # mapping with the smallest variable indices, so the choice does not depend on the search order
            rank = tuple(index[image[n]] for n in order)
            if blocks not in best or rank < best[blocks][0]:
                best[blocks] = (rank, image)
        found = [DiscreteInstance(tuple(image[b] for b in self.block), tuple(image[b] for b in self.blanket), image)
                 for _, image in best.values()]
        found.sort(key=lambda inst: [index[b] for b in inst.block])
        return found

    def theta(self, view: ModelView, instance: DiscreteInstance) -> np.ndarray:
        """P(x = 1 | parents) of every table node, in pattern order (first parent most significant)."""
        index = view.variable_index
        position = {name: f for f, name in enumerate(view.factor_names)}
        out = []
        for node, ps in self.parents:
            site = instance.mapping[node]
            f = position[site]
            scope = view.factor_scopes[f]
            order = [scope.index(index[site])] + [scope.index(index[instance.mapping[p]]) for p in ps]
            table = np.transpose(view.log_tables[f], order)  # [x, p1, p2, ...]
            with np.errstate(over="ignore"):
                probs = np.exp(table[1] - np.logaddexp(table[0], table[1]))
            out.append(np.nan_to_num(probs, nan=0.5).reshape(-1))
        return np.concatenate(out)

    # ------------------------------------------------------------------------------------------------------------
    # meta-training data: forward samples of the motif's own sub-network with random tables
    def sample_training_batch(self, key, batch_size: int, *, deterministic_probability: float = 1.0 / 20):
        """(x (N, num_inputs), block (N, block_size) int32) from the motif sub-network.

        Each table row is [0, 1] or [1, 0] with probability deterministic_probability / 2 each and
        Dirichlet(0.5, 0.5) otherwise (the paper's prior); root (blanket-only) nodes are Bernoulli(u), u ~ Beta(.5, .5).
        """
        nodes = self.block + self.blanket
        position = {n: i for i, n in enumerate(nodes)}
        parent_map = self.parent_map
        order = list(nx.topological_sort(self.pattern()))
        roots = [n for n in order if n not in parent_map]
        theta_size = self.theta_size

        def one(k):
            k_theta, k_kind, k_coin, k_root, k_sample = jax.random.split(k, 5)
            rows = jax.random.beta(k_theta, 0.5, 0.5, (theta_size,))
            kind = jax.random.uniform(k_kind, (theta_size,))
            coin = jax.random.bernoulli(k_coin, 0.5, (theta_size,)).astype(rows.dtype)
            rows = jnp.where(kind < deterministic_probability, coin, rows)
            root_p = jax.random.beta(k_root, 0.5, 0.5, (len(roots),))
            uniforms = jax.random.uniform(k_sample, (len(nodes),))
            values = [None] * len(nodes)
            for r, node in enumerate(roots):
                values[position[node]] = (uniforms[position[node]] < root_p[r]).astype(jnp.int32)
            offsets, offset = {}, 0
            for node, ps in self.parents:
                offsets[node] = offset
                offset += 2 ** len(ps)
            for node in order:
                if node in parent_map:
                    ps = parent_map[node]
                    row = 0
                    for p in ps:
                        row = 2 * row + values[position[p]]
                    prob = rows[offsets[node] + row]
                    values[position[node]] = (uniforms[position[node]] < prob).astype(jnp.int32)
            stacked = jnp.stack(values)
            block = stacked[:len(self.block)]
            context = stacked[len(self.block):]
            return jnp.concatenate([rows, context.astype(rows.dtype)]), block

        return jax.vmap(one)(jax.random.split(key, batch_size))

    def exact_log_conditional(self, inputs, states):
        """log p(b | c, Theta) over ``states`` (S, block_size) for each row of ``inputs`` (N, num_inputs)."""
        nodes = self.block + self.blanket
        position = {n: i for i, n in enumerate(nodes)}
        theta_size = self.theta_size
        states = jnp.asarray(states)

        def one(x):
            rows, context = x[:theta_size], x[theta_size:]

            def log_joint(b):
                values = jnp.concatenate([b.astype(x.dtype), context])
                total, offset = 0.0, 0
                for node, ps in self.parents:
                    row = 0
                    for p in ps:
                        row = 2 * row + values[position[p]].astype(jnp.int32)
                    prob = rows[offset + row]
                    value = values[position[node]]
                    total = total + jnp.log(jnp.where(value > 0.5, prob, 1.0 - prob))
                    offset += 2 ** len(ps)
                return total

            lp = jax.vmap(log_joint)(states)
            return lp - jax.scipy.special.logsumexp(lp)

        return jax.vmap(one)(jnp.asarray(inputs))


def grid_block_motif(height: int = 3, width: int = 3) -> DiscreteMotif:
    """A height x width block of a binary grid network (parents: up, left) with its Markov blanket.

    For 3 x 3 this is the paper's "diamond": 9 block nodes, a 14-node blanket (3 parents above, 3 to the left, 3
    children below, 3 to the right and the two co-parents at the corners), 15 tables inside the motif (60 numbers).
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid_block_motif needs height, width >= 1, got {height} x {width}")

    def name(i, j):
        return f"n{i}_{j}"

    block = tuple(name(i, j) for i in range(height) for j in range(width))
    inside = {(i, j) for i in range(height) for j in range(width)}
    tables = [(i, j) for i in range(height) for j in range(width)]
    tables += [(height, j) for j in range(width)] + [(i, width) for i in range(height)]
    parents = []
    for i, j in tables:
        parents.append((name(i, j), (name(i - 1, j), name(i, j - 1))))
    members = set(inside) | {(i, j) for i, j in tables}
    for node, ps in parents:
        for p in ps:
            i, j = (int(t) for t in p[1:].split("_"))
            members.add((i, j))
    blanket = tuple(name(i, j) for i, j in sorted(members - inside))
    return DiscreteMotif(f"grid_block_{height}x{width}", block, blanket, tuple(parents))


# =====================================================================================================================
# the open-universe mixture's "two means" motif
@dataclasses.dataclass(frozen=True)
class TwoMeansInstance:
    """Where the motif sits in a model: the count, means and data sites and the read local parameters."""

    count_site: str
    means_site: str
    data_site: str
    max_components: int
    dim: int
    mean_scale: float
    noise_scale: float
    data: np.ndarray


FEATURE_KMEANS_ITERATIONS = 6
FEATURE_EXPLAINED_SCALE = 8.0  # w_i = 1 - exp(-d_i^2 / 8): a point within ~2 noise sd of another mean is explained
TRAINING_MAX_POINTS = 128
TRAINING_MAX_COMPONENTS = 8


@dataclasses.dataclass(frozen=True)
class TwoMeansMotif:
    """Block: the means of two active components of an open-universe Gaussian mixture; conditioning set: the data,
    the number of active components and the other means. Theta = (mean_scale, noise_scale).

    Matched on a model with a discrete count site M ~ DiscreteUniform(1, m), a continuous means site (m, d) with a
    centred Normal prior, and an observed site whose parents are exactly {M, means} with a MixtureSameFamily of
    Normal(means, noise).to_event(1) components weighted 1/M on the first M. The input x summarises the points that
    the other means do not explain (weights w_i), by a weighted two-means clustering in the frame centred at their
    weighted mean and scaled by the noise sd; the block is proposed in that frame (the frame depends only on the
    conditioning set, so its Jacobian cancels in the MH ratio)."""

    dim: int = 2
    name: str = "two_means"

    kind = "continuous"

    @property
    def num_inputs(self) -> int:
        return 2 * self.dim + 7

    @property
    def block_size(self) -> int:
        return 2 * self.dim

    def signature(self) -> dict:
        return {"kind": "continuous", "name": self.name, "version": MOTIF_VERSION, "dim": int(self.dim),
                "explained_scale": FEATURE_EXPLAINED_SCALE, "kmeans_iterations": FEATURE_KMEANS_ITERATIONS}

    def match(self, view: ModelView) -> list[TwoMeansInstance]:
        target = view.target
        trace = target._trace
        continuous = {site.name: site for site in target.sites}
        found = []
        for data_site, s in trace.items():
            if s["type"] != "sample" or not s["is_observed"]:
                continue
            fn = _base_dist(s["fn"])
            if not isinstance(fn, dist.MixtureSameFamily):
                continue
            ps = set(view.parents.get(data_site, ()))
            counts = [p for p in ps if p in view.variable_index and view.latent[view.variable_index[p]]]
            means = [p for p in ps if p in continuous]
            if len(ps) != 2 or len(counts) != 1 or len(means) != 1:
                continue
            count_site, means_site = counts[0], means[0]
            prior = _base_dist(trace[count_site]["fn"])
            if not isinstance(prior, dist.DiscreteUniform) or int(np.asarray(prior.low)) != 1:
                continue
            m = int(np.asarray(prior.high))
            shape = continuous[means_site].shape
            if shape != (m, self.dim):
                continue
            mean_prior = _base_dist(trace[means_site]["fn"])
            if not isinstance(mean_prior, dist.Normal) or not np.allclose(np.asarray(mean_prior.loc), 0.0):
                continue
            scale = np.asarray(mean_prior.scale)
            component = fn.component_distribution
            base = _base_dist(component)
            means_value = np.asarray(trace[means_site]["value"])
            if not isinstance(base, dist.Normal) or not np.allclose(np.asarray(base.loc), means_value):
                continue
            noise = np.asarray(base.scale)
            if not (np.allclose(scale, scale.reshape(-1)[0]) and np.allclose(noise, noise.reshape(-1)[0])):
                continue
            k = int(np.asarray(trace[count_site]["value"]))
            weights = np.asarray(fn.mixing_distribution.probs)
            expected = np.where(np.arange(m) < k, 1.0 / k, 0.0)
            if weights.shape != (m,) or not np.allclose(weights, expected, atol=1e-6):
                continue
            y = np.asarray(s["value"], dtype=float)
            if y.ndim != 2 or y.shape[1] != self.dim:
                continue
            found.append(TwoMeansInstance(count_site, means_site, data_site, m, self.dim,
                                          float(scale.reshape(-1)[0]), float(noise.reshape(-1)[0]), y))
        return found

    # ------------------------------------------------------------------------------------------------------------
    def sample_training_batch(self, key, batch_size: int):
        """(x (N, num_inputs), block (N, 2 dim)) from random small mixtures: 2..8 active components with means from
        N(0, s^2), s ~ U(2, 8) (noise sd 1), 10..128 points; a random pair of active components is the block and
        the other active means are the conditioning set (their true values: a joint draw)."""
        d = self.dim
        n_max, m_max = TRAINING_MAX_POINTS, TRAINING_MAX_COMPONENTS

        def one(k):
            keys = jax.random.split(k, 8)
            active_count = jax.random.randint(keys[0], (), 2, m_max + 1)
            n = jax.random.randint(keys[1], (), 10, n_max + 1)
            mean_scale = jax.random.uniform(keys[2], (), minval=2.0, maxval=8.0)
            means = mean_scale * jax.random.normal(keys[3], (m_max, d))
            active = jnp.arange(m_max) < active_count
            labels = jax.random.randint(keys[4], (n_max,), 0, active_count)
            y = means[labels] + jax.random.normal(keys[5], (n_max, d))
            y_mask = jnp.arange(n_max) < n
            a = jax.random.randint(keys[6], (), 0, active_count)
            b = (a + jax.random.randint(keys[7], (), 1, active_count)) % active_count
            x, center = two_means_features(y, y_mask, means, active, a, b, 1.0, mean_scale)
            block = jnp.concatenate([means[a] - center, means[b] - center])
            return x, block

        return jax.vmap(one)(jax.random.split(key, batch_size))


def two_means_features(y, y_mask, means, active, a, b, noise_scale, mean_scale):
    """(x, center): the proposal input for the pair (a, b) and the frame centre; x and the block are in units of
    the noise sd. Depends on the data, the active set and the means other than a and b, never on means a and b."""
    m = means.shape[0]
    others = active & (jnp.arange(m) != a) & (jnp.arange(m) != b)
    u_all = y / noise_scale
    sq = jnp.sum((u_all[:, None, :] - means[None, :, :] / noise_scale) ** 2, axis=-1)
    sq = jnp.where(others[None, :], sq, jnp.inf)
    nearest = jnp.min(sq, axis=1)
    w = (1.0 - jnp.exp(-nearest / FEATURE_EXPLAINED_SCALE)) * y_mask
    total = jnp.sum(w) + 1e-6
    center = jnp.sum(w[:, None] * u_all, axis=0) / total
    u = u_all - center
    first = u[jnp.argmax(w * jnp.sum(u ** 2, axis=1))]
    second = u[jnp.argmax(w * jnp.sum((u - first) ** 2, axis=1))]

    def lloyd(_, centres):
        c1, c2 = centres
        nearer = jnp.sum((u - c1) ** 2, axis=1) <= jnp.sum((u - c2) ** 2, axis=1)
        w1, w2 = w * nearer, w * (~nearer)
        c1 = jnp.where(jnp.sum(w1) > 1e-6, jnp.sum(w1[:, None] * u, axis=0) / (jnp.sum(w1) + 1e-12), c1)
        c2 = jnp.where(jnp.sum(w2) > 1e-6, jnp.sum(w2[:, None] * u, axis=0) / (jnp.sum(w2) + 1e-12), c2)
        return c1, c2

    c1, c2 = jax.lax.fori_loop(0, FEATURE_KMEANS_ITERATIONS, lloyd, (first, second))
    swap = c1[0] > c2[0]
    c1, c2 = jnp.where(swap, c2, c1), jnp.where(swap, c1, c2)
    nearer = jnp.sum((u - c1) ** 2, axis=1) <= jnp.sum((u - c2) ** 2, axis=1)
    w1, w2 = w * nearer, w * (~nearer)
    n1, n2 = jnp.sum(w1), jnp.sum(w2)
    spread1 = jnp.sum(w1 * jnp.sum((u - c1) ** 2, axis=1)) / (n1 + 1e-6)
    spread2 = jnp.sum(w2 * jnp.sum((u - c2) ** 2, axis=1)) / (n2 + 1e-6)
    x = jnp.concatenate([c1, c2, jnp.stack([jnp.log1p(n1), jnp.log1p(n2), jnp.log1p(spread1), jnp.log1p(spread2),
                                            jnp.log1p(total), jnp.log(mean_scale / noise_scale),
                                            jnp.log1p(jnp.sum(others))])])
    return x, center * noise_scale


def known_motifs(dims: tuple = (1, 2, 3)) -> list:
    """The motifs samplax looks for in a model, in order: the 3 x 3 grid block, then two-means for small dims."""
    return [grid_block_motif(3, 3)] + [TwoMeansMotif(dim=d) for d in dims]
