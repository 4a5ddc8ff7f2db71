"""The factor-graph view of a NumPyro model that Gibbs-type samplers run on (`compile_model` -> `ModelView`).

`compile_model(target)` reads the model's dependency graph once (`numpyro.infer.inspect.get_model_relations`) and
turns every factor that depends only on scalar discrete sites into a table, by evaluating the model's own
log-probabilities at a few "probe" assignments (factors whose scopes do not overlap are probed together, so a 20 x 20
grid needs about 70 evaluations). The `ModelView` gives the tables as arrays, the Markov blanket of every variable,
and the whole log joint (for the sites whose factors are not tables: continuous sites, and discrete sites with a
continuous child). Like `samplax.models.bridge`, it traces the model; nothing outside `models` does.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import util as npu

from samplax.models.composite import model_relations
from samplax.models.motifs.sites import base_dist, enumerable_support, is_discrete

__all__ = ["MAX_TABLE_SIZE", "ModelView", "compile_model"]

MAX_TABLE_SIZE = 4096


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
    latent: np.ndarray  # (V,) bool
    num_states: np.ndarray  # (V,) int
    support_values: np.ndarray  # (V, K) float, padded by repetition
    observed_index: np.ndarray  # (V,) int: the state of an observed variable (0 for latent ones)
    factor_names: tuple  # (F,) site names
    factor_scopes: list  # F tuples of variable indices
    log_tables: list  # F arrays, axes in scope order
    local: np.ndarray  # (V,) bool: latent and every factor touching it is a table
    parents: dict  # site -> tuple of parent sites (sample sites)
    children: dict  # site -> tuple of child sites
    graph: nx.DiGraph  # sample sites, parent -> child
    other_discrete: tuple  # (name, shape, support values) of latent discrete sites that are not variables
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
            scope[f, : len(members)] = members
            strides[f, : len(members)] = step
            log_table[f, : table.size] = table.reshape(-1)
        touching = [self.factors_of(v) for v in range(v_count)]
        degree = max([len(t) for t in touching] + [1])
        variable_factors = np.full((v_count + 1, degree), f_count, dtype=np.int32)
        for v, fs in enumerate(touching):
            variable_factors[v, : len(fs)] = fs
        num_states = np.concatenate([self.num_states, [1]]).astype(np.int32)
        support = np.concatenate([self.support_values, np.zeros((1, self.support_values.shape[1]))], axis=0)
        return {
            "scope": scope,
            "strides": strides,
            "log_table": log_table.astype(dtype),
            "variable_factors": variable_factors,
            "num_states": num_states,
            "support_values": support.astype(dtype),
        }

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
        """The whole model's log joint, ``(idx (V+1,), other: dict name -> values, z (dim,)) -> log p``.

        It includes the log-Jacobians of the continuous sites' transforms (the same density as ``Target.logdensity`` on
        the continuous part).
        """
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
    """Read the dependency graph and tabulate every factor over scalar discrete sites (see the module docstring).

    Args:
        target: the model's `samplax.models.bridge.Target`.

    Returns:
        The `ModelView`.

    Raises:
        ValueError: a discrete latent site has no finite support or more than `MAX_TABLE_SIZE` states, an observed
            value is outside its support, or the model branches in Python on a discrete value.
    """
    model, args, data = target.model, target.args, target.data
    trace = getattr(target, "_trace", None)
    if trace is None:
        with handlers.block():
            trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **data)
    relations = model_relations(model, args, data)
    sites = {
        name: s for name, s in trace.items() if s["type"] == "sample" and not s.get("infer", {}).get("is_auxiliary")
    }
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
        if not is_discrete(s):
            continue
        support = enumerable_support(s) if np.shape(s["value"]) == () else None
        if support is None:
            if not s["is_observed"]:
                fn = base_dist(s["fn"])
                if not getattr(fn, "has_enumerate_support", False):
                    raise ValueError(
                        f"site '{name}': a discrete latent site without a finite support "
                        f"({type(fn).__name__}) cannot be sampled by Gibbs updates; marginalise it or "
                        "give it a finite support"
                    )
                values = np.asarray(fn.enumerate_support(expand=False)).reshape(-1)
                other.append((name, tuple(np.shape(s["value"])), values))
            continue
        if support.size > MAX_TABLE_SIZE:
            raise ValueError(
                f"site '{name}' has {support.size} states; Gibbs enumeration is limited to {MAX_TABLE_SIZE}"
            )
        variables.append(name)
        supports.append(support)
        latent_flags.append(not s["is_observed"])
        if s["is_observed"]:
            matches = np.flatnonzero(np.isclose(support, float(np.asarray(s["value"]))))
            if matches.size == 0:
                raise ValueError(
                    f"site '{name}': observed value {np.asarray(s['value'])!r} is outside its support "
                    f"{support.tolist()}"
                )
            observed_index.append(int(matches[0]))
        else:
            observed_index.append(0)
    index = {name: i for i, name in enumerate(variables)}
    width = max([s.size for s in supports] + [1])
    support_values = (
        np.stack([np.pad(s.astype(float), (0, width - s.size), mode="edge") for s in supports])
        if supports
        else np.zeros((0, 1))
    )
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
    log_tables = _probe_tables(
        target, trace, sites, variables, support_values, num_states, latent, observed_index, factor_names, factor_scopes
    )

    tabular = set(factor_names)
    local = np.zeros(len(variables), dtype=bool)
    for name, v in index.items():
        if latent[v]:
            touching = [name] + list(children[name])
            local[v] = all(f in tabular for f in touching)
    dtypes = {name: jnp.asarray(sites[name]["value"]).dtype for name in sites}
    return ModelView(
        target,
        tuple(variables),
        latent,
        num_states,
        support_values,
        np.asarray(observed_index),
        tuple(factor_names),
        factor_scopes,
        log_tables,
        local,
        parents,
        {k: tuple(v) for k, v in children.items()},
        graph,
        tuple(other),
        dtypes,
    )


def _probe_tables(
    target, trace, sites, variables, support_values, num_states, latent, observed_index, factor_names, factor_scopes
):
    """Tables of the factors by evaluating the model's log-probabilities at probe assignments.

    Factors are coloured so that a colour class has pairwise disjoint scopes; one probe per (class, flat table
    index) sets every factor's scope in the class to that entry's configuration at once.
    """
    if not factor_names:
        return []
    conflict = nx.Graph()
    conflict.add_nodes_from(range(len(factor_names)))
    by_var: dict[int, list[int]] = {}
    for f, scope in enumerate(factor_scopes):
        for v in scope:
            by_var.setdefault(v, []).append(f)
    for fs in by_var.values():
        for a, b in itertools.combinations(fs, 2):
            conflict.add_edge(a, b)
    colours = nx.greedy_color(conflict, strategy="largest_first")
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
        raise ValueError(
            "the model branches in Python on the value of a discrete site, so its factors cannot be "
            "tabulated; write the dependence with jnp operations (jnp.where, indexing)"
        ) from error
    tables = []
    for f, scope in enumerate(factor_scopes):
        shape = tuple(int(num_states[v]) for v in scope)
        size = int(np.prod(shape)) if shape else 1
        rows = [where[(f, entry)] for entry in range(size)]
        table = values[rows, f].reshape(shape)
        tables.append(np.where(np.isnan(table), -np.inf, table))
    return tables
