"""`gibbs`, `block_gibbs` and `meta_gibbs`: Markov chains for models with discrete (and continuous) sites.

All three run on the factor-graph view of `samplax.models.motifs.compile_model`: factors over scalar discrete sites
become tables, so an update evaluates only the factors that touch what it changes; sites whose factors are not
tables (continuous sites, discrete sites with a continuous child) are updated through the whole log joint. The maths
(sweeps, block MH, scale adaptation) is in `samplax.kernels.gibbs`; the proposal library in
`samplax.infer.proposal_library`. This module builds the static problem of a (model, method, options) and wires the
kernel into `fit`'s one chain driver (`samplax.infer.run.ChainRunner`), so these methods have checkpoints, ``thin``
and progress bars like every Markov method.

* ``gibbs``: single-site Gibbs (enumeration of each discrete variable's states), colour classes of conditionally
  independent variables updated in parallel; continuous coordinates by random-walk Metropolis with scales adapted
  during warm-up.
* ``block_gibbs``: exact block Gibbs (enumeration of all states of small discrete blocks): the blocks of the motif
  instances found in the model (the 3 x 3 grid block), else greedy connected blocks of ``block_size`` variables;
  single-site Gibbs elsewhere.
* ``meta_gibbs``: the learned block proposals of Wang, Wu, Moore and Russell (NeurIPS 2018) as independence MH
  steps on every matched motif instance, single-site updates elsewhere. The proposals come from ``proposals=``
  (a file, a library folder, or the name of a shipped proposal), else from the shipped library
  (``samplax/proposals``, trained by ``samplax proposals train``), else they are trained on the spot with
  ``training_steps`` (default: ``warmup``) optimiser steps.

A sweep is one draw. Blocks are packed into a few schedules (greedy non-overlapping packings, cycled sweep by
sweep) and each schedule's blocks are coloured so that blocks in one class share no factor. Chains start from prior
draws (observed sites clamped), so ``init=`` is not used. The discrete draws are recorded as constrained values and
substituted when the model is traced for the posterior and the log-likelihood.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from samplax.infer.methods import MCMCMethod
from samplax.infer.proposal_library import (
    DEFAULT_TRAINING,
    LIBRARY_DIR,
    TRAIN_COMMAND,
    Proposal,
    library_dir,
    library_entries,
    library_key,
    resolve_proposals,
    train_library,
    train_main,
    train_motif_proposal,
)
from samplax.infer.run import ChainRunner, chunk_size_for, data_fingerprint
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels import gibbs as gb
from samplax.kernels import meta_proposal as mp
from samplax.models import motifs as motif_lib
from samplax.models.bridge import UnsupportedModelError

__all__ = [
    "sample_model",
    "GibbsRun",
    "GibbsTarget",
    "build_problem",
    "prepare",
    "sweep_spec",
    "sweep_arrays",
    "resolve_proposals",
    "train_motif_proposal",
    "library_dir",
    "library_key",
    "library_entries",
    "train_library",
    "main",
    "METHODS",
    "TRAIN_COMMAND",
    "LIBRARY_DIR",
    "DEFAULT_TRAINING",
]

NUM_SCHEDULES = 9


# =====================================================================================================================
# the problem: everything static about one (model, method, options)
@dataclasses.dataclass
class Problem:
    view: Any
    tables: gb.FactorTables
    has_local: bool
    plan: gb.SweepPlan
    instances: gb.BlockInstances | None
    block_update: str | None
    states: Any
    proposal: Proposal | None
    nonlocal_variables: list
    other_sites: tuple
    dim: int
    pair: Any
    instance_labels: list
    log_joint: Any
    needs_joint: bool
    motif_names: list
    proposal_sources: dict
    training: dict


def _greedy_blocks(view, candidates: list[int], block_size: int) -> list[list[int]]:
    """Connected blocks of up to ``block_size`` local variables, grown breadth-first in variable order."""
    remaining = set(candidates)
    neighbours = {v: view.blanket([v]) & remaining for v in candidates}
    blocks = []
    for seed in candidates:
        if seed not in remaining:
            continue
        block, frontier = [seed], [seed]
        remaining.discard(seed)
        while frontier and len(block) < block_size:
            v = frontier.pop(0)
            for w in sorted(neighbours[v]):
                if w in remaining and len(block) < block_size:
                    block.append(w)
                    frontier.append(w)
                    remaining.discard(w)
        blocks.append(block)
    return blocks


def _packings(blocks: list[list[int]], limit: int) -> list[list[int]]:
    """Up to ``limit`` distinct greedy packings of non-overlapping blocks (start rotated through the list)."""
    count = len(blocks)
    packings, seen = [], set()
    for start in range(count):
        used, chosen = set(), []
        for i in list(range(start, count)) + list(range(start)):
            if not used & set(blocks[i]):
                chosen.append(i)
                used.update(blocks[i])
        key = frozenset(chosen)
        if key not in seen:
            seen.add(key)
            packings.append(sorted(chosen))
        if len(packings) >= limit:
            break
    return packings


def build_problem(target, method: str, options: dict, key, warmup: int = 0) -> Problem:
    """Everything static about one run: tables, motif instances, proposals, schedules and colour classes.

    Proposals are loaded or trained (``warmup`` is the default number of training steps).
    """
    view = motif_lib.compile_model(target)
    tables = gb.FactorTables(**{k: jnp.asarray(v) for k, v in view.factor_tables().items()})
    v_count = view.num_variables
    local = [v for v in range(v_count) if view.local[v]]
    nonlocal_variables = [v for v in range(v_count) if view.latent[v] and not view.local[v]]
    parallel = options.get("parallel", True)

    # motifs
    found, instances_by_motif = {}, {}
    if method in ("block_gibbs", "meta_gibbs"):
        for motif in motif_lib.known_motifs():
            if method == "block_gibbs" and motif.kind != "discrete":
                continue
            matched = motif.match(view)
            if matched:
                name = library_key(motif.signature())
                found[name] = motif
                instances_by_motif[name] = matched
    discrete_found = [name for name, motif in found.items() if motif.kind == "discrete"]
    pair_found = [name for name, motif in found.items() if motif.kind == "continuous"]
    if method == "meta_gibbs" and not found:
        raise UnsupportedModelError(
            "meta_gibbs",
            "no_known_motif",
            (
                "it proposes blocks from learned proposals of known motifs, and this model has no known motif (known: the "
                "3 x 3 binary grid block 'grid_block_3x3' and the open-universe mixture's 'two_means'); use "
                "method='gibbs' or 'block_gibbs'"
            ),
        )
    proposals, training = {}, {}
    if method == "meta_gibbs":
        training_steps = options.get("training_steps")
        proposals, training = resolve_proposals(
            {name: found[name] for name in discrete_found[:1] + pair_found[:1]},
            options.get("proposals"),
            key=key,
            training_steps=int(training_steps if training_steps is not None else warmup),
            training_batch=options.get("training_batch", 256),
        )

    # blocks on the tables
    blocks, block_theta, block_context, labels = [], [], [], []
    motif_used = None
    if method == "block_gibbs" and not discrete_found:
        blocks = [b for b in _greedy_blocks(view, local, options.get("block_size", 4)) if len(b) > 1]
        labels = ["block@" + ",".join(view.variable_names[v] for v in b) for b in blocks]
    elif discrete_found:
        motif_used = found[discrete_found[0]]
        index = view.variable_index
        for inst in instances_by_motif[discrete_found[0]]:
            blocks.append([index[s] for s in inst.block])
            block_context.append([index[s] for s in inst.context])
            block_theta.append(motif_used.theta(view, inst))
            labels.append(f"{motif_used.name}@{inst.block[0]}")
    block_update = None
    instances = None
    states = None
    proposal = None
    if blocks:
        f_count = len(view.factor_names)
        factor_lists = [sorted({f for v in b for f in view.factors_of(v)}) for b in blocks]
        width_b = max(len(b) for b in blocks)
        width_f = max(len(f) for f in factor_lists)
        variables = np.full((len(blocks) + 1, width_b), v_count, dtype=np.int32)
        factors = np.full((len(blocks) + 1, width_f), f_count, dtype=np.int32)
        for i, (b, fs) in enumerate(zip(blocks, factor_lists)):
            variables[i, : len(b)] = b
            factors[i, : len(fs)] = fs
        if block_theta:
            theta = np.concatenate([np.stack(block_theta), np.zeros((1, len(block_theta[0])))]).astype(np.float32)
            context = np.full((len(blocks) + 1, len(block_context[0])), v_count, dtype=np.int32)
            context[:-1] = np.asarray(block_context)
        else:
            theta = np.zeros((len(blocks) + 1, 1), np.float32)
            context = np.full((len(blocks) + 1, 1), v_count, dtype=np.int32)
        instances = gb.BlockInstances(
            jnp.asarray(variables), jnp.asarray(factors), jnp.asarray(theta), jnp.asarray(context)
        )
        if method == "meta_gibbs":
            block_update = "mh"
            proposal = proposals[discrete_found[0]]
        else:
            block_update = "exact"  # shorter blocks are padded with the dummy variable (one state)
            max_states = int(np.max(view.num_states[np.asarray([v for b in blocks for v in b])]))
            states = jnp.asarray(mp.discrete_block_states(width_b, max_states))
        if discrete_found:  # overlapping motif instances: cycle through packings of disjoint ones
            packings = _packings(blocks, NUM_SCHEDULES)
        else:  # greedy blocks are disjoint already
            packings = [list(range(len(blocks)))]
    else:
        packings = [[]]
    schedules_blocks, schedules_singles = [], []
    for packing in packings:
        covered = {v for i in packing for v in blocks[i]}
        block_members = [blocks[i] for i in packing]
        block_blankets = [view.blanket(b) for b in block_members]
        classes = gb.colour_classes(block_members, block_blankets, parallel=parallel)
        schedules_blocks.append([[packing[i] for i in c] for c in classes])
        singles = [v for v in local if v not in covered]
        single_classes = gb.colour_classes(
            [[v] for v in singles], [view.blanket([v]) for v in singles], parallel=parallel
        )
        schedules_singles.append([[singles[i] for i in c] for c in single_classes])
    plan = gb.SweepPlan(
        jnp.asarray(gb.pad_classes(schedules_blocks, len(blocks))),
        jnp.asarray(gb.pad_classes(schedules_singles, v_count)),
    )

    # the open-universe pair motif
    pair = None
    if method == "meta_gibbs" and pair_found:
        name = pair_found[0]
        inst = instances_by_motif[name][0]
        site = {s.name: s for s in target.sites}[inst.means_site]
        transform = dist.biject_to(site.support)
        while isinstance(transform, dist.transforms.IndependentTransform):
            transform = transform.base_transform
        if isinstance(transform, dist.transforms.IdentityTransform):  # real means: z holds them as they are
            m = inst.max_components
            pair = {
                "instance": inst,
                "motif": found[name],
                "proposal": proposals[name],
                "start": site.start,
                "stop": site.stop,
                "count_variable": view.variable_index[inst.count_site],
                "num_pairs": m * (m - 1) // 2,
            }
            labels = labels + [f"{name}@({a},{b})" for a in range(m) for b in range(a + 1, m)]
    needs_joint = bool(nonlocal_variables or view.other_discrete or target.dim)
    return Problem(
        view,
        tables,
        bool(local),
        plan,
        instances,
        block_update,
        states,
        proposal,
        nonlocal_variables,
        view.other_discrete,
        int(target.dim),
        pair,
        labels,
        view.joint_logdensity(),
        needs_joint,
        list(found),
        {name: p.source for name, p in proposals.items()},
        training,
    )


def sweep_spec(problem: Problem) -> gb.SweepSpec:
    """The kernel's static description of one sweep over ``problem``."""
    pair = None
    if problem.pair is not None:
        inst = problem.pair["instance"]
        pair = gb.PairSpec(
            problem.pair["start"],
            problem.pair["stop"],
            problem.pair["count_variable"],
            problem.pair["num_pairs"],
            inst.max_components,
            inst.dim,
            np.asarray(inst.data),
            inst.noise_scale,
            inst.mean_scale,
            motif_lib.two_means_features,
            problem.pair["proposal"].config,
        )
    view = problem.view
    return gb.SweepSpec(
        log_joint=problem.log_joint if problem.needs_joint else None,
        has_local=problem.has_local,
        num_schedules=int(problem.plan.single_classes.shape[0]),
        num_instances=0 if problem.instances is None else int(problem.instances.variables.shape[0]) - 1,
        block_update=problem.block_update,
        config=None if problem.proposal is None else problem.proposal.config,
        nonlocal_variables=tuple((v, int(view.num_states[v])) for v in problem.nonlocal_variables),
        other_sites=tuple(problem.other_sites),
        dim=problem.dim,
        pair=pair,
    )


def sweep_arrays(problem: Problem) -> gb.SweepArrays:
    """The arrays of ``problem`` that a sweep reads: tables, plan, instances, states and proposal parameters."""
    return gb.SweepArrays(
        problem.tables,
        problem.plan,
        problem.instances,
        problem.states,
        None if problem.proposal is None else problem.proposal.params,
        None if problem.pair is None else problem.pair["proposal"].params,
    )


# =====================================================================================================================
# what the chain driver runs on
class GibbsTarget:
    """The object `fit`'s driver runs a gibbs-family method on, in place of the `Target`.

    It has the Target's ``data_arrays`` / ``with_data`` / ``static_data_key`` / ``init`` so the driver treats both
    alike.

    The compiled programs take the sweep's arrays (tables, plan, proposals) as their data argument; the log joint
    closes over the model's data, so ``static_data_key`` includes the data's SHA-256.
    """

    def __init__(self, target, problem: Problem, spec: gb.SweepSpec, arrays: gb.SweepArrays):
        self.target, self.problem, self.spec, self.arrays = target, problem, spec, arrays
        view = problem.view
        self._latent = [
            (v, name, view.site_dtypes[name]) for v, name in enumerate(view.variable_names) if view.latent[v]
        ]

    def data_arrays(self):
        return self.arrays

    def with_data(self, arrays) -> GibbsTarget:
        return GibbsTarget(self.target, self.problem, self.spec, arrays)

    def static_data_key(self):
        configs = (self.spec.config, None if self.spec.pair is None else self.spec.pair.config)
        return (
            data_fingerprint(self.target.data),
            self.target.static_data_key(),
            repr(configs),
            tuple(self.problem.instance_labels),
        )

    def init(self, key, chains: int, strategy=None) -> gb.GibbsState:
        del strategy  # refused before this point: chains start from prior draws
        return _initial_states(self.problem, self.target, key, chains)

    def discrete_values(self, state: gb.GibbsState) -> dict:
        """The constrained values of every latent discrete site in one chain's state."""
        support = self.arrays.tables.support_values
        values = {name: support[v, state.idx[v]].astype(dtype) for v, name, dtype in self._latent}
        values.update(state.other)
        return values

    def extra(self, log_scales, stats: dict) -> dict:
        """JSON-able records kept in the fit's attrs (``extra_*``)."""
        problem = self.problem
        extra = {
            "block_labels": problem.instance_labels,
            "motifs": problem.motif_names,
            "proposal_sources": json.dumps(problem.proposal_sources),
            "chains_in_impossible_state_after_warmup": int(np.sum(~np.isfinite(np.asarray(stats["lp"])[:, 0]))),
            "training_s": float(sum(r["seconds"] for r in problem.training.values())),
        }
        for name, record in problem.training.items():
            history = record["history"]
            extra[f"training_{name}_step"] = history.step
            extra[f"training_{name}_heldout_nll"] = history.heldout_nll
            for metric, values in history.metrics.items():
                extra[f"training_{name}_{metric}"] = values
        if problem.dim:
            extra["random_walk_scales"] = np.exp(np.asarray(log_scales)).tolist()
        return extra


def _initial_states(problem: Problem, target, key, chains: int) -> gb.GibbsState:
    """Prior draws with the observed sites clamped.

    Ancestral sampling through the tables when every latent site is a variable with a table of its own, else one seeded
    trace of the model per chain (batched with vmap).
    """
    view = problem.view
    own = view.own_factor()
    tabular_only = (
        not target.dim
        and not view.other_discrete
        and all(own[v] < len(view.factor_names) for v in range(view.num_variables) if view.latent[v])
    )
    if tabular_only:
        start = jnp.asarray(view.initial_indices())
        order = jnp.asarray(view.topological_latent_order())
        draw = jax.jit(jax.vmap(lambda k: gb.ancestral_sample(k, problem.tables, start, order, jnp.asarray(own))))
        return jax.vmap(gb.init)(draw(jax.random.split(key, chains)))
    latent_vars = [(v, name) for v, name in enumerate(view.variable_names) if view.latent[v]]
    transforms = {site.name: dist.biject_to(site.support) for site in target.sites}
    values = view.prior_draws(key, chains)
    idx = np.tile(view.initial_indices(), (chains, 1))
    for v, name in latent_vars:
        drawn = np.asarray(values[name], dtype=float).reshape(chains, 1)
        idx[:, v] = np.argmin(np.abs(drawn - view.support_values[v][None, : view.num_states[v]]), axis=1)
    other = {name: jnp.asarray(values[name]) for name, _, _ in view.other_discrete}
    if target.dim:
        z = jax.vmap(
            lambda vals: target.ravel_unconstrained({name: transforms[name].inv(vals[name]) for name in transforms})
        )({n: values[n] for n in transforms})
    else:
        z = jnp.zeros((chains, 0))
    return jax.vmap(gb.init)(jnp.asarray(idx, dtype=jnp.int32), other, jnp.asarray(z))


def prepare(method: str):
    """Make ``prepare(target, options, key, warmup) -> GibbsTarget`` for `MCMCMethod.prepare`.

    It builds the static problem (tables, motif instances, proposals loaded or trained with ``key``, schedules) once on
    the host.
    """

    def build(target, options, key, warmup):
        problem = build_problem(target, method, options, key, warmup)
        return GibbsTarget(target, problem, sweep_spec(problem), sweep_arrays(problem))

    return build


# =====================================================================================================================
# the MCMCMethod protocol
class GibbsDraw(NamedTuple):
    """What a gibbs-family step reports: the kernel's info and the draw's discrete site values."""

    info: gb.GibbsInfo
    discrete: dict


def _warmup(chain_target: GibbsTarget, options, num_steps):
    run = gb.warmup(chain_target.spec, num_steps)
    return lambda key, state: run(key, state, chain_target.arrays)


def _step(chain_target: GibbsTarget, options):
    kernel = gb.build_kernel(chain_target.spec)

    def step(key, state, log_scales):
        state, info = kernel(key, state, chain_target.arrays, log_scales)
        return state, GibbsDraw(info, chain_target.discrete_values(state))

    return step


def _record(state: gb.GibbsState, draw: GibbsDraw):
    info = draw.info
    record = {
        "z": state.z,
        "discrete": draw.discrete,
        "lp": info.log_joint,
        "acceptance_rate": info.acceptance_rate,
        "diverging": ~jnp.isfinite(info.log_joint),
    }
    if info.block_acceptance.shape[-1]:
        record["block_acceptance"] = info.block_acceptance.astype(jnp.float32)
    return record


def _start(chain_target: GibbsTarget, options):
    """No warm-up: the prior draw as it is, random-walk scales at their initial value."""
    return lambda state: (state, jnp.full((chain_target.spec.dim,), jnp.log(gb.INITIAL_SCALE), state.z.dtype))


# =====================================================================================================================
# running the kernel without fit (benchmarks, tests): the same driver, no posterior assembly
class GibbsRun(NamedTuple):
    """What `sample_model` returns.

    Discrete draws by site name (chains, draws, *shape), continuous unconstrained draws z (chains, draws, dim), sample
    statistics (chains, draws[, instances]) and JSON-able extras.
    """

    discrete: dict
    z: np.ndarray
    sample_stats: dict
    extra: dict
    problem: Problem


def sample_model(
    target, method: str, options: dict, key, chains: int, warmup: int, draws: int, *, chunks: int = 20
) -> GibbsRun:
    """Build the sampler for ``method`` on ``target`` and run its chains, without assembling a posterior.

    It runs ``chains`` chains for warm-up and draws on `ChainRunner` (for benchmarks and tests).

    ``chunks``: at most this many chunks of draws, each timed in ``extra["chunk_seconds"]`` (a curve against
    time); ``chunks=1`` runs warm-up and sampling as one compiled program (`ChainRunner.fuse`, one compilation),
    whose single time includes the warm-up.
    """
    key_problem, key_init, key_warmup, key_sample = jax.random.split(key, 4)
    chain_target = prepare(method)(target, options, key_problem, warmup)
    states = chain_target.init(key_init, chains)
    arrays = chain_target.arrays
    warmup_keys, chain_keys = jax.random.split(key_warmup, chains), jax.random.split(key_sample, chains)
    chunk = draws if chunks == 1 else chunk_size_for(draws, max_chunks=chunks)
    runner = ChainRunner(lambda data: (_step(chain_target.with_data(data), options), _record, None), chunk)

    def warm(arrays, keys, states):
        return jax.vmap(_warmup(chain_target.with_data(arrays), options, warmup))(keys, states)

    warmup_seconds, chunk_seconds, pieces = 0.0, [], []
    start = time.perf_counter()
    if warmup and chunk == draws:  # one program: warm-up and every draw
        fused = runner.fuse(warm).lower(arrays, warmup_keys, states, chain_keys).compile()
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        states, log_scales, host = ChainRunner.run_fused(fused, arrays, warmup_keys, states, chain_keys)
        chunk_seconds.append(time.perf_counter() - start)
        pieces.append(host)
    else:
        if warmup:
            compiled = jax.jit(warm).lower(arrays, warmup_keys, states).compile()
            compile_seconds = time.perf_counter() - start
            start = time.perf_counter()
            states, log_scales, _ = jax.block_until_ready(compiled(arrays, warmup_keys, states))
            warmup_seconds = time.perf_counter() - start
        else:
            compile_seconds = 0.0
            states, log_scales = jax.vmap(_start(chain_target, options))(states)
        start = time.perf_counter()
        runner.executable = runner.function.lower(
            arrays, states, log_scales, chain_keys, jnp.asarray(0, jnp.int32)
        ).compile()
        compile_seconds += time.perf_counter() - start
        for first in range(0, draws, chunk):
            start = time.perf_counter()
            states, host = runner.run(arrays, states, log_scales, chain_keys, first)
            chunk_seconds.append(time.perf_counter() - start)
            pieces.append(host)
    merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *pieces)
    stats = merged["stats"]
    extra = {
        "warmup_s": warmup_seconds,
        "compile_s": compile_seconds,
        "chunk_seconds": chunk_seconds,
        **chain_target.extra(log_scales, stats),
    }
    return GibbsRun(merged["discrete"], merged["position"]["z"], stats, extra, chain_target.problem)


# =====================================================================================================================
# the methods
_COMMON = (
    Option(
        "parallel",
        bool,
        True,
        "update conditionally independent sites and blocks in parallel (colour classes); "
        "False updates them one at a time",
    ),
)

# the chains start from prior draws (measured: NotImplementedError from ImproperUniform.sample on posteriordb's
# mesquite model)
_UNSUPPORTED = ("improper_prior",)


def _method(schema: MethodSchema) -> MCMCMethod:
    return MCMCMethod(
        schema, _warmup, _step, _record, _start, gradient_based=False, prepare=prepare(schema.name), uses_init=False
    )


GIBBS = _method(
    MethodSchema(
        "gibbs",
        "mcmc",
        "single-site Gibbs on discrete sites (enumeration through the factor tables), "
        "random-walk Metropolis on continuous coordinates; one draw = one sweep",
        _COMMON,
        unsupported=_UNSUPPORTED,
    )
)

BLOCK_GIBBS = _method(
    MethodSchema(
        "block_gibbs",
        "mcmc",
        "exact block Gibbs (enumeration of small discrete blocks: matched motif "
        "instances, else greedy blocks), single-site Gibbs elsewhere",
        _COMMON
        + (Option("block_size", int, 4, "variables per greedy block when no motif matches", minimum=2, maximum=12),),
        unsupported=_UNSUPPORTED,
    )
)

META_GIBBS = _method(
    MethodSchema(
        "meta_gibbs",
        "mcmc",
        "meta-learned block proposals (Wang et al. 2018) as independence MH on every "
        "motif instance, single-site updates elsewhere",
        _COMMON
        + (
            Option(
                "proposals",
                str,
                None,
                "a proposal file, a library folder, a shipped proposal name, or "
                "'train'; default: the shipped library, else train within warmup",
                allow_none=True,
            ),
            Option(
                "training_steps",
                int,
                None,
                "optimiser steps when a proposal must be trained (default: warmup)",
                minimum=0,
                allow_none=True,
            ),
            Option("training_batch", int, 256, "forward samples per training step", minimum=1),
        ),
        unsupported=_UNSUPPORTED,
    )
)

METHODS = (GIBBS, BLOCK_GIBBS, META_GIBBS)


def main(argv=None):
    """``python -m samplax.infer.method_gibbs train-library ...``: the old name of ``samplax proposals train``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["train-library"]:
        print(
            "usage: python -m samplax.infer.method_gibbs train-library [--out DIR] [--steps N] [--seed S] "
            "[--only NAME ...] (the same as: samplax proposals train ...)",
            file=sys.stderr,
        )
        return 2
    return train_main(argv[1:], prog="python -m samplax.infer.method_gibbs train-library")


if __name__ == "__main__":
    sys.exit(main())
