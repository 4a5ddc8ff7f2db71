"""Gibbs-type sweeps on discrete factor graphs, learned-block Metropolis-Hastings, and random-walk scale adaptation.

Papers: S. Geman and D. Geman, "Stochastic Relaxation, Gibbs Distributions, and the Bayesian Restoration of
Images", IEEE PAMI 1984 (single-site and block Gibbs); T. Wang, Y. Wu, D. A. Moore and S. J. Russell,
"Meta-Learning MCMC Proposals", NeurIPS 2018 (block independence MH with a learned proposal,
`samplax.kernels.meta_proposal`); C. Andrieu and J. Thoms, "A tutorial on adaptive MCMC", Statistics and Computing
2008 (Robbins-Monro scale adaptation).

**Tables.** A discrete factor graph is `FactorTables`: each factor a table over its scope, the state a vector of
support indices. Members of one colour class share no factor (B_i does not meet the Markov blanket of B_j), so
their updates from the same state are conditionally independent and run in parallel (vmap). Every update evaluates
only the factors that touch what it changes:

    single site:  x_v ~ p(x_v | x_-v)  proportional to  prod_{f touching v} f(x_v, x_-v)   (enumerate x_v's states)
    exact block:  x_B ~ p(x_B | x_-B)  (enumerate every joint state of a small block B)
    learned block: x_B' ~ q(. | Theta, c), accepted with
                  log alpha = sum_{f touching B} [log f(x_B', rest) - log f(x_B, rest)] + log q(x_B) - log q(x_B')

**A sweep** (one draw) runs schedule s = t mod S (S greedy packings of non-overlapping blocks, cycled): its block
classes, then its single-site classes; then the sites whose factors are not tables, through the whole log joint
log p(idx, other, z): discrete ones by enumeration, each continuous coordinate j by random-walk Metropolis
z_j' = z_j + s_j eps, and the learned two-means moves of the open-universe mixture.

**Warm-up** (`warmup`): sweeps on softened tables, log f floored at a level that falls linearly from -5 to -50 so
that chains can leave impossible starting states, and Robbins-Monro adaptation of the random-walk scales towards
acceptance 0.44 (the one-dimensional optimum):

    log s_j  <-  log s_j + (t + 1)^(-0.6) (alpha_j - 0.44).

Sampling sweeps use the exact tables and fixed scales, so they leave the posterior invariant.

Usage:

    spec = SweepSpec(log_joint=None, has_local=True, num_schedules=1)
    state, log_scales, _ = warmup(spec, num_steps=100)(key, init(idx), arrays)
    sampler = as_top_level_api(spec, arrays, log_scales)
    state, info = sampler.step(key, state)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

from samplax.kernels import meta_proposal as mp

__all__ = [
    "FactorTables",
    "BlockInstances",
    "SweepPlan",
    "local_log_prob",
    "single_site_gibbs",
    "exact_block_gibbs",
    "block_inputs",
    "block_metropolis",
    "tabular_sweep",
    "ancestral_sample",
    "enumerate_gibbs",
    "random_walk_metropolis",
    "independence_metropolis",
    "colour_classes",
    "pad_classes",
    "GibbsState",
    "GibbsInfo",
    "SweepArrays",
    "SweepSpec",
    "PairSpec",
    "init",
    "build_sweep",
    "build_kernel",
    "warmup",
    "as_top_level_api",
    "RW_TARGET",
    "WARMUP_FLOOR_START",
    "WARMUP_FLOOR_END",
]

RW_TARGET = 0.44
WARMUP_FLOOR_START, WARMUP_FLOOR_END = -5.0, -50.0
INITIAL_SCALE = 0.5


# =====================================================================================================================
# tabular factor graphs and sweeps
class FactorTables(NamedTuple):
    """A discrete factor graph as padded arrays.

    The state is a vector of support indices, one per variable plus a trailing dummy variable (index V) that always
    stays 0.

    scope (F+1, A): the variables of each factor (dummy-padded); strides (F+1, A): their strides in the flattened
    table (0 for padding); log_table (F+1, T): log factor values (row F is the all-zero dummy factor);
    variable_factors (V+1, D): the factors touching each variable (padded with F); num_states (V+1,): states per
    variable (1 for the dummy); support_values (V+1, K): the value of each state (padded by repetition).
    """

    scope: jnp.ndarray
    strides: jnp.ndarray
    log_table: jnp.ndarray
    variable_factors: jnp.ndarray
    num_states: jnp.ndarray
    support_values: jnp.ndarray

    @property
    def num_variables(self) -> int:
        return int(self.num_states.shape[0]) - 1

    @property
    def dummy_factor(self) -> int:
        return int(self.log_table.shape[0]) - 1


class BlockInstances(NamedTuple):
    """Motif instances on a tabular graph (row I is a dummy).

    Block variables (I+1, b), the factors touching the block (I+1, Fb), local parameters Theta (I+1, n_theta) and the
    conditioning variables (I+1, n_c).
    """

    variables: jnp.ndarray
    factors: jnp.ndarray
    theta: jnp.ndarray
    context: jnp.ndarray


class SweepPlan(NamedTuple):
    """Colour classes per schedule; schedule s = sweep index mod S.

    block_classes (S, Cb, Pb): instance ids (padded with the dummy instance I); single_classes (S, Cs, Ps): variable
    ids (padded with the dummy variable V).
    """

    block_classes: jnp.ndarray
    single_classes: jnp.ndarray


def _factor_entries(tables: FactorTables, idx, factor_ids):
    scope = tables.scope[factor_ids]
    flat = jnp.sum(idx[scope] * tables.strides[factor_ids], axis=-1)
    return tables.log_table[factor_ids, flat]


def local_log_prob(tables: FactorTables, idx, factor_ids, floor=-jnp.inf):
    """Sum over ``factor_ids`` of log f(idx), each term floored at ``floor``.

    ``floor`` = -inf is exact; a finite floor softens the tables, as warm-up does to leave impossible starting states.
    """
    return jnp.sum(jnp.maximum(_factor_entries(tables, idx, factor_ids), floor))


def _substitution(tables: FactorTables, idx, factor_ids, variables):
    """Build ``values -> sum of log f`` over ``factor_ids``, with ``idx[variables]`` replaced by ``values``.

    The scope positions that hold a replaced variable are found once, so each evaluation is a gather over the
    factors' scopes, never a copy of the whole state.
    """
    scope = tables.scope[factor_ids]  # (F, A)
    match = scope[..., None] == variables[None, None, :]  # (F, A, b)
    inside = jnp.any(match, axis=-1)
    position = jnp.argmax(match, axis=-1)
    current = idx[scope]
    strides = tables.strides[factor_ids]
    rows = tables.log_table[factor_ids]  # (F, T)

    def log_prob(values, floor):
        flat = jnp.sum(jnp.where(inside, values[position], current) * strides, axis=-1)
        return jnp.sum(jnp.maximum(jnp.take_along_axis(rows, flat[:, None], axis=1)[:, 0], floor))

    return log_prob


def _categorical(key, logits):
    """Like jax.random.categorical, but a row of all -inf picks state 0 instead of an arbitrary one."""
    safe = jnp.where(jnp.isfinite(jnp.max(logits)), logits, jnp.where(jnp.arange(logits.shape[-1]) == 0, 0.0, -jnp.inf))
    return jax.random.categorical(key, safe)


def single_site_gibbs(key, tables: FactorTables, idx, variables, floor=-jnp.inf):
    """Exact Gibbs update of ``variables`` (P,) from the same state, in parallel: they must share no factor."""
    num_k = tables.support_values.shape[1]

    def conditional(v, k):
        log_prob_with = _substitution(tables, idx, tables.variable_factors[v], v[None])
        logits = jax.vmap(lambda s: log_prob_with(s[None], floor))(jnp.arange(num_k, dtype=idx.dtype))
        logits = jnp.where(jnp.arange(num_k) < tables.num_states[v], logits, -jnp.inf)
        return _categorical(k, logits).astype(idx.dtype)

    new = jax.vmap(conditional)(variables, jax.random.split(key, variables.shape[0]))
    return idx.at[variables].set(new)


def exact_block_gibbs(key, tables: FactorTables, idx, instances: BlockInstances, ids, states, floor=-jnp.inf):
    """Exact block Gibbs for the instances ``ids`` (P,) in parallel: enumerate ``states`` (S, b) of each block."""
    dummy = instances.variables.shape[0] - 1

    def one(i, k):
        block = instances.variables[i]
        log_prob_with = _substitution(tables, idx, instances.factors[i], block)
        logits = jax.vmap(lambda s: log_prob_with(s.astype(idx.dtype), floor))(states)
        legal = jnp.all(states < tables.num_states[block][None, :], axis=1)
        choice = _categorical(k, jnp.where(legal, logits, -jnp.inf))
        return jnp.where(i == dummy, idx[block], states[choice].astype(idx.dtype))

    new = jax.vmap(one)(ids, jax.random.split(key, ids.shape[0]))
    return idx.at[instances.variables[ids]].set(new)


def block_inputs(tables: FactorTables, idx, instances: BlockInstances, i):
    """The proposal input of instance i: x = concat(Theta_i, values of the conditioning variables)."""
    context = instances.context[i]
    values = tables.support_values[context, idx[context]]
    return jnp.concatenate([instances.theta[i], values.astype(instances.theta.dtype)])


def block_metropolis(
    key, tables: FactorTables, idx, instances: BlockInstances, ids, params, config: mp.ProposalConfig, floor=-jnp.inf
):
    """Independence MH with the learned proposal for the instances ``ids`` (P,) in parallel.

    Block variables are binary with support {0, 1} (states = values). Returns (idx, acceptance probability (P,)).
    """
    dummy = instances.variables.shape[0] - 1
    empty = jnp.zeros((0,), instances.theta.dtype)

    def one(i, k):
        block = instances.variables[i]
        factors = instances.factors[i]
        x = block_inputs(tables, idx, instances, i)
        key_propose, key_accept = jax.random.split(k)
        proposal = mp.sample(params, config, key_propose, x)
        current = idx[block].astype(jnp.int32)
        log_prob_with = _substitution(tables, idx, factors, block)
        log_target_new = log_prob_with(proposal.discrete.astype(idx.dtype), floor)
        log_target_old = log_prob_with(idx[block], floor)
        log_q_new = mp.log_prob(params, config, x, proposal)
        log_q_old = mp.log_prob(params, config, x, mp.BlockValue(current, empty))
        log_alpha = (log_target_new - log_target_old) + (log_q_old - log_q_new)
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
        accept = (jnp.log(jax.random.uniform(key_accept)) < log_alpha) & (i != dummy)
        new = jnp.where(accept, proposal.discrete.astype(idx.dtype), idx[block])
        return new, jnp.exp(jnp.minimum(log_alpha, 0.0))

    new, probability = jax.vmap(one)(ids, jax.random.split(key, ids.shape[0]))
    return idx.at[instances.variables[ids]].set(new), probability


def tabular_sweep(
    key,
    tables: FactorTables,
    idx,
    plan: SweepPlan,
    schedule,
    *,
    instances: BlockInstances | None = None,
    block_update: str | None = None,
    params=None,
    config: mp.ProposalConfig | None = None,
    states=None,
    floor=-jnp.inf,
):
    """One sweep of schedule ``schedule``: the block colour classes, then the single-site classes.

    Block classes move by exact block Gibbs or learned block MH. Returns (idx, acceptance (I,): the acceptance
    probability of every instance updated in this sweep, NaN for the others; 1 for exact block Gibbs).
    """
    num_instances = 0 if instances is None else instances.variables.shape[0] - 1
    acceptance = jnp.full((num_instances + 1,), jnp.nan)
    key_blocks, key_singles = jax.random.split(key)
    if block_update is not None and num_instances:

        def block_class(carry, inputs):
            idx, acceptance = carry
            ids, k = inputs
            if block_update == "exact":
                idx = exact_block_gibbs(k, tables, idx, instances, ids, states, floor)
                probability = jnp.ones(ids.shape[0])
            else:
                idx, probability = block_metropolis(k, tables, idx, instances, ids, params, config, floor)
            return (idx, acceptance.at[ids].set(probability)), None

        classes = plan.block_classes[schedule]
        (idx, acceptance), _ = jax.lax.scan(
            block_class, (idx, acceptance), (classes, jax.random.split(key_blocks, classes.shape[0]))
        )
    singles = plan.single_classes[schedule]
    if singles.shape[0] and singles.shape[1]:

        def single_class(idx, inputs):
            variables, k = inputs
            return single_site_gibbs(k, tables, idx, variables, floor), None

        idx, _ = jax.lax.scan(single_class, idx, (singles, jax.random.split(key_singles, singles.shape[0])))
    return idx, acceptance[:num_instances]


def ancestral_sample(key, tables: FactorTables, idx, order, own_factor):
    """Forward-sample the variables in ``order`` from their own factors (conditional tables).

    ``order`` is a topological order of the latent variables; other entries of ``idx`` (observed variables) stay as
    they are.
    """
    num_k = tables.support_values.shape[1]

    def body(t, carry):
        idx, key = carry
        key, sub = jax.random.split(key)
        v = order[t]
        f = own_factor[v]
        logits = jax.vmap(lambda s: _factor_entries(tables, idx.at[v].set(s), f[None])[0])(jnp.arange(num_k))
        logits = jnp.where(jnp.arange(num_k) < tables.num_states[v], logits, -jnp.inf)
        return idx.at[v].set(_categorical(sub, logits).astype(idx.dtype)), key

    idx, _ = jax.lax.fori_loop(0, order.shape[0], body, (idx, key))
    return idx


# =====================================================================================================================
# updates through a whole log density (for sites whose factors are not tables)
def enumerate_gibbs(key, log_density: Callable, state, set_value: Callable, num_values: int):
    """Exact Gibbs on one discrete coordinate.

    Evaluates ``log_density(set_value(state, k))`` for k < num_values, then samples. Returns (new state, its log
    density).
    """
    candidates = [set_value(state, k) for k in range(num_values)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *candidates)
    logits = jax.vmap(log_density)(stacked)
    logits = jnp.where(jnp.isnan(logits), -jnp.inf, logits)
    choice = _categorical(key, logits)
    return jax.tree.map(lambda xs: xs[choice], stacked), logits[choice]


def random_walk_metropolis(key, log_density: Callable, z, current_log_density, index, scale):
    """Gaussian random-walk Metropolis on coordinate ``index`` of the flat vector z.

    Returns (z, log density, acceptance probability).
    """
    key_step, key_accept = jax.random.split(key)
    proposal = z.at[index].add(scale * jax.random.normal(key_step, dtype=z.dtype))
    proposed = log_density(proposal)
    log_alpha = jnp.where(jnp.isnan(proposed), -jnp.inf, proposed - current_log_density)
    log_alpha = jnp.where(jnp.isneginf(current_log_density) & jnp.isfinite(proposed), 0.0, log_alpha)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_alpha
    return (
        jnp.where(accept, proposal, z),
        jnp.where(accept, proposed, current_log_density),
        jnp.exp(jnp.minimum(log_alpha, 0.0)),
    )


def independence_metropolis(key, log_density: Callable, state, current_log_density, propose: Callable, log_q: Callable):
    """MH with a proposal that ignores the current block: ``propose(key) -> new state``, ``log_q(state)``.

    Returns (state, log density, acceptance probability).
    """
    key_propose, key_accept = jax.random.split(key)
    proposal = propose(key_propose)
    proposed = log_density(proposal)
    log_alpha = proposed - current_log_density + log_q(state) - log_q(proposal)
    log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_alpha
    chosen = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, state)
    return chosen, jnp.where(accept, proposed, current_log_density), jnp.exp(jnp.minimum(log_alpha, 0.0))


# =====================================================================================================================
# host-side planning helpers
def colour_classes(members: list, blankets: list, *, parallel: bool = True) -> list[list[int]]:
    """Colour items so that no two in a class interact.

    i and j conflict when members[i] meets members[j] | blankets[j] (or the other way round). ``parallel=False``
    gives one item per class, in order.
    """
    import networkx as nx

    count = len(members)
    if not parallel:
        return [[i] for i in range(count)]
    reach = [set(members[i]) | set(blankets[i]) for i in range(count)]
    owner: dict = {}
    for i, group in enumerate(members):
        for v in group:
            owner.setdefault(v, []).append(i)
    graph = nx.Graph()
    graph.add_nodes_from(range(count))
    for j in range(count):
        for v in reach[j]:
            for i in owner.get(v, ()):
                if i != j:
                    graph.add_edge(i, j)
    colouring = nx.greedy_color(graph, strategy="largest_first")
    classes: dict[int, list[int]] = {}
    for i in range(count):
        classes.setdefault(colouring[i], []).append(i)
    return [sorted(classes[c]) for c in sorted(classes)]


def pad_classes(schedules: list[list[list[int]]], fill: int) -> np.ndarray:
    """Schedules of colour classes -> an (S, C, P) int32 array padded with ``fill`` (empty classes included)."""
    num_schedules = max(1, len(schedules))
    num_classes = max([len(s) for s in schedules] + [0])
    width = max([len(c) for s in schedules for c in s] + [0])
    out = np.full((num_schedules, num_classes, width), fill, dtype=np.int32)
    for s, classes in enumerate(schedules):
        for c, members in enumerate(classes):
            out[s, c, : len(members)] = members
    return out


# =====================================================================================================================
# the sweep as a sampling algorithm
class GibbsState(NamedTuple):
    """The state of one chain.

    ``idx`` (V+1,) state indices of the scalar discrete variables (+ dummy), ``other`` the values of the other
    latent discrete sites, ``z`` (dim,) the unconstrained continuous sites, ``log_joint`` after the last
    sweep, and ``sweep`` the number of sweeps done (it picks the schedule, so a resumed chain continues the cycle).
    """

    idx: jnp.ndarray
    other: dict
    z: jnp.ndarray
    log_joint: jnp.ndarray
    sweep: jnp.ndarray


class GibbsInfo(NamedTuple):
    """What one sweep reports.

    block_acceptance (I,): acceptance probability of every block updated this sweep (NaN for the others, 1 for
    exact block Gibbs); coordinate_acceptance (dim,); acceptance_rate: the mean over the moves that ran (1 when
    every update is an exact Gibbs draw).
    """

    block_acceptance: jnp.ndarray
    coordinate_acceptance: jnp.ndarray
    log_joint: jnp.ndarray
    acceptance_rate: jnp.ndarray


class SweepArrays(NamedTuple):
    """The arrays a sweep reads.

    They are arguments of the compiled program (not constants baked into it), so runs that differ only in their numbers
    (another proposal, other tables of the same shape) share one program.
    """

    tables: FactorTables
    plan: SweepPlan
    instances: Any = None
    states: Any = None
    proposal_params: Any = None
    pair_params: Any = None


class PairSpec(NamedTuple):
    """The open-universe mixture's two-means motif.

    Means in z[start:stop] as (max_components, dim); the number of active components is discrete variable
    ``count_variable``; ``features(y, mask, means, active, a, b, noise, mean_scale) -> (x, centre)`` makes the
    proposal's input.
    """

    start: int
    stop: int
    count_variable: int
    num_pairs: int
    max_components: int
    dim: int
    data: Any
    noise_scale: float
    mean_scale: float
    features: Callable
    config: mp.ProposalConfig


class SweepSpec(NamedTuple):
    """The static structure of a sweep: which updates exist, and their sizes.

    Also ``log_joint(idx, other, z)`` for the sites whose factors are not tables (None when every latent site is
    local).
    """

    log_joint: Callable | None
    has_local: bool
    num_schedules: int
    num_instances: int = 0
    block_update: str | None = None  # None, "exact" (block Gibbs) or "mh" (learned proposal)
    config: mp.ProposalConfig | None = None
    nonlocal_variables: tuple = ()  # (variable, number of states) updated through the log joint
    other_sites: tuple = ()  # (name, shape, support values) of discrete sites that are not variables
    dim: int = 0
    pair: PairSpec | None = None


def init(idx, other: dict | None = None, z=None) -> GibbsState:
    """A chain at state indices ``idx``, other discrete values ``other`` and continuous position ``z``."""
    idx = jnp.asarray(idx, jnp.int32)
    z = jnp.zeros((0,)) if z is None else jnp.asarray(z)
    return GibbsState(idx, dict(other or {}), z, jnp.zeros((), z.dtype), jnp.zeros((), jnp.int32))


def _mean_acceptance(block_acceptance, coordinate_acceptance, dim: int):
    moves = [block_acceptance] + ([coordinate_acceptance] if dim else [])
    stacked = jnp.concatenate([m.astype(jnp.float32) for m in moves])
    if not stacked.shape[0]:
        return jnp.ones((), jnp.float32)
    finite = jnp.isfinite(stacked)
    mean = jnp.sum(jnp.where(finite, stacked, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
    return jnp.where(jnp.any(finite), mean, 1.0)


def build_sweep(spec: SweepSpec) -> Callable:
    """Build ``sweep(key, state, arrays, log_scales, floor) -> (state, GibbsInfo)``.

    One sweep is one pass over every latent site, with the log tables floored at ``floor`` (-inf: exact).
    """

    def sweep(key, state: GibbsState, arrays: SweepArrays, log_scales, floor):
        tables = arrays.tables
        keys = jax.random.split(key, 5)
        idx, other, z = state.idx, state.other, state.z
        if spec.has_local:
            idx, tab_acc = tabular_sweep(
                keys[0],
                tables,
                idx,
                arrays.plan,
                state.sweep % spec.num_schedules,
                instances=arrays.instances,
                block_update=spec.block_update,
                params=arrays.proposal_params,
                config=spec.config,
                states=arrays.states,
                floor=floor,
            )
        else:
            tab_acc = jnp.full((spec.num_instances,), jnp.nan)
        coordinate_acc = jnp.ones((spec.dim,))
        pair_acc = jnp.zeros((0,))
        if spec.log_joint is not None:
            joint = spec.log_joint
            lp = joint(idx, other, z)
            for n, (v, num_states) in enumerate(spec.nonlocal_variables):

                def set_value(s, k, v=v):
                    return (s[0].at[v].set(k), s[1], s[2])

                (idx, other, z), lp = enumerate_gibbs(
                    jax.random.fold_in(keys[1], n), lambda s: joint(*s), (idx, other, z), set_value, num_states
                )
            for n, (name, shape, values) in enumerate(spec.other_sites):
                size = int(np.prod(shape)) if shape else 1
                support_values = jnp.asarray(values)

                def element(e, carry, name=name, shape=shape, support_values=support_values, n=n):
                    idx, other, z, lp = carry

                    def set_value(s, k):
                        flat = s[1][name].reshape(-1).at[e].set(support_values[k].astype(s[1][name].dtype))
                        return (s[0], {**s[1], name: flat.reshape(shape)}, s[2])

                    (idx, other, z), lp = enumerate_gibbs(
                        jax.random.fold_in(jax.random.fold_in(keys[2], n), e),
                        lambda s: joint(*s),
                        (idx, other, z),
                        set_value,
                        int(support_values.shape[0]),
                    )
                    return idx, other, z, lp

                idx, other, z, lp = jax.lax.fori_loop(0, size, element, (idx, other, z, lp))
            if spec.dim:

                def coordinate(carry, inputs):
                    z, lp = carry
                    j, k = inputs
                    z, lp, accept = random_walk_metropolis(
                        k, lambda zz: joint(idx, other, zz), z, lp, j, jnp.exp(log_scales[j])
                    )
                    return (z, lp), accept

                (z, lp), coordinate_acc = jax.lax.scan(
                    coordinate, (z, lp), (jnp.arange(spec.dim), jax.random.split(keys[3], spec.dim))
                )
            if spec.pair is not None:
                z, lp, pair_acc = _pair_moves(
                    keys[4], spec.pair, arrays.pair_params, idx, other, z, lp, joint, tables.support_values
                )
        else:
            lp = local_log_prob(tables, idx, jnp.arange(tables.log_table.shape[0] - 1))
        acceptance = jnp.concatenate([tab_acc, pair_acc])
        info = GibbsInfo(acceptance, coordinate_acc, lp, _mean_acceptance(acceptance, coordinate_acc, spec.dim))
        return GibbsState(idx, other, z, lp, state.sweep + 1), info

    return sweep


def build_kernel(spec: SweepSpec) -> Callable:
    """``kernel(rng_key, state, arrays, log_scales) -> (state, info)``: one sweep on the exact tables."""
    sweep = build_sweep(spec)

    def kernel(rng_key, state: GibbsState, arrays: SweepArrays, log_scales):
        return sweep(rng_key, state, arrays, log_scales, -jnp.inf)

    return kernel


def warmup(spec: SweepSpec, num_steps: int) -> Callable:
    """Build the warm-up ``run(rng_key, state, arrays) -> (state, log_scales, mean acceptance)``.

    It runs ``num_steps`` sweeps on softened tables with Robbins-Monro adaptation of the random-walk scales (see the
    module docstring). Sweep t uses ``fold_in(rng_key, t)``.
    """
    sweep = build_sweep(spec)

    def run(rng_key, state: GibbsState, arrays: SweepArrays):
        def body(carry, t):
            state, log_scales = carry
            fraction = t / jnp.maximum(num_steps - 1, 1)
            floor = WARMUP_FLOOR_START + (WARMUP_FLOOR_END - WARMUP_FLOOR_START) * fraction
            state, info = sweep(jax.random.fold_in(rng_key, t), state, arrays, log_scales, floor)
            log_scales = log_scales + (t + 1.0) ** -0.6 * (info.coordinate_acceptance - RW_TARGET)
            return (state, log_scales), info.acceptance_rate

        log_scales = jnp.full((spec.dim,), jnp.log(INITIAL_SCALE), state.z.dtype)
        (state, log_scales), acceptance = jax.lax.scan(body, (state, log_scales), jnp.arange(num_steps))
        return state, log_scales, jnp.mean(acceptance)

    return run


def as_top_level_api(spec: SweepSpec, arrays: SweepArrays, log_scales=None) -> SamplingAlgorithm:
    """The sweep as a BlackJAX `SamplingAlgorithm` closed over the arrays and (adapted) random-walk scales.

    sampler = as_top_level_api(spec, arrays, log_scales)
    state = sampler.init(idx)
    state, info = sampler.step(key, state)
    """
    kernel = build_kernel(spec)
    scales = jnp.full((spec.dim,), jnp.log(INITIAL_SCALE)) if log_scales is None else log_scales

    def init_fn(position, rng_key=None):
        del rng_key
        if isinstance(position, GibbsState):
            return position
        return init(position)

    def step_fn(rng_key, state):
        return kernel(rng_key, state, arrays, scales)

    return SamplingAlgorithm(init_fn, step_fn)


def _pair_id(a, b, m):
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    return lo * (2 * m - lo - 1) // 2 + (hi - lo - 1)


def _pair_moves(key, pair: PairSpec, params, idx, other, z, lp, joint, support):
    """Learned two-means moves on random disjoint pairs of active components, one after the other.

    Every pair's factors are all the data, so no two can move in parallel.
    """
    config = pair.config
    m, d, start, stop = pair.max_components, pair.dim, pair.start, pair.stop
    y = jnp.asarray(pair.data, dtype=z.dtype)
    y_mask = jnp.ones(y.shape[0], dtype=bool)
    count = support[pair.count_variable, idx[pair.count_variable]]
    active = jnp.arange(m) < count
    key_perm, key_moves = jax.random.split(key)
    perm = jax.random.permutation(key_perm, m)
    order = perm[jnp.argsort(jnp.where(active[perm], 0, 1), stable=True)]
    pairs = order[: 2 * (m // 2)].reshape(m // 2, 2)
    empty = jnp.zeros((0,), jnp.int32)
    noise = pair.noise_scale

    def move(carry, inputs):
        z, lp = carry
        (a, b), k = inputs
        valid = active[a] & active[b]
        means = z[start:stop].reshape(m, d)
        x, center = pair.features(y, y_mask, means, active, a, b, noise, pair.mean_scale)

        def propose(k):
            block = mp.sample(params, config, k, x).real
            new = means.at[a].set(center + noise * block[:d]).at[b].set(center + noise * block[d:])
            return z.at[start:stop].set(new.reshape(-1))

        def log_q(zz):
            mm = zz[start:stop].reshape(m, d)
            block = jnp.concatenate([(mm[a] - center) / noise, (mm[b] - center) / noise])
            return mp.log_prob(params, config, x, mp.BlockValue(empty, block))

        new_z, new_lp, probability = independence_metropolis(k, lambda zz: joint(idx, other, zz), z, lp, propose, log_q)
        z = jnp.where(valid, new_z, z)
        lp = jnp.where(valid, new_lp, lp)
        return (z, lp), (_pair_id(a, b, m), jnp.where(valid, probability, jnp.nan))

    (z, lp), (ids, probabilities) = jax.lax.scan(move, (z, lp), (pairs, jax.random.split(key_moves, m // 2)))
    acceptance = jnp.full((pair.num_pairs,), jnp.nan).at[ids].set(probabilities)
    return z, lp, acceptance
