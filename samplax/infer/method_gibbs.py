"""`gibbs`, `block_gibbs` and `meta_gibbs`: Markov chains for models with discrete (and continuous) sites.

All three run on the factor-graph view of `samplax.models.motifs.compile_model`: factors over scalar discrete sites
become tables, so an update evaluates only the factors that touch what it changes; sites whose factors are not
tables (continuous sites, discrete sites with a continuous child) are updated through the whole log joint.

* ``gibbs``: single-site Gibbs (enumeration of each discrete variable's states), colour classes of conditionally
  independent variables updated in parallel; continuous coordinates by random-walk Metropolis with scales adapted
  during warm-up.
* ``block_gibbs``: exact block Gibbs (enumeration of all states of small discrete blocks): the blocks of the motif
  instances found in the model (the 3 x 3 grid block), else greedy connected blocks of ``block_size`` variables;
  single-site Gibbs elsewhere.
* ``meta_gibbs``: the learned block proposals of Wang, Wu, Moore and Russell (NeurIPS 2018) as independence MH
  steps on every matched motif instance, single-site updates elsewhere. The proposals come from ``proposals=``
  (a file, a library folder, or the name of a shipped proposal), else from the shipped library
  (``samplax/proposals``, trained by ``python -m samplax.infer.method_gibbs train-library``), else they are trained
  on the spot with ``training_steps`` (default: ``warmup``) optimiser steps.

A sweep is one draw. Blocks are packed into a few schedules (greedy non-overlapping packings, cycled sweep by
sweep) and each schedule's blocks are coloured so that blocks in one class share no factor. Warm-up sweeps soften
the tables (log factors floored at a level that falls from -5 to -50) so chains can leave impossible starting
states; sampling uses the exact tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from samplax.infer.methods import DirectMethod, DirectResult
from samplax.infer.schema import MethodSchema, Option
from samplax.infer.run import chunk_size_for
from samplax.kernels import meta_proposal as mp
from samplax.models import motifs as motif_lib
from samplax.models.bridge import UnsupportedModelError

__all__ = ["sample_model", "GibbsRun", "build_problem", "make_sweep", "resolve_proposals", "train_motif_proposal",
           "library_dir", "library_key", "library_entries", "train_library", "main"]

LIBRARY_DIR = pathlib.Path(__file__).resolve().parent.parent / "proposals"
NUM_SCHEDULES = 9
RW_TARGET = 0.44
WARMUP_FLOOR_START, WARMUP_FLOOR_END = -5.0, -50.0
DEFAULT_TRAINING = {
    "grid_block_3x3": {"num_steps": 20000, "batch_size": 256, "learning_rate": 1e-3, "hidden_sizes": [256, 256],
                       "num_components": 12, "probability_floor": 1e-4, "seed": 0},
    "two_means": {"num_steps": 8000, "batch_size": 256, "learning_rate": 1e-3, "hidden_sizes": [128, 128],
                  "num_components": 8, "probability_floor": 1e-4, "seed": 0},
}
TRAIN_COMMAND = "python -m samplax.infer.method_gibbs train-library"


def library_dir() -> pathlib.Path:
    """The folder of the shipped proposal library."""
    return LIBRARY_DIR


def library_key(signature: dict) -> str:
    """The file stem of a motif's proposal in a library: the motif name (plus the dimension for continuous motifs)."""
    return signature["name"] + (f"_{signature['dim']}d" if signature.get("kind") == "continuous" else "")


def library_entries(folder=None) -> dict:
    """{file stem: path} of the proposal files in a library folder (default: the shipped one)."""
    folder = pathlib.Path(folder) if folder is not None else LIBRARY_DIR
    return {path.stem: path for path in sorted(folder.glob("*.npz"))} if folder.is_dir() else {}


# =====================================================================================================================
# proposals: load, match, train
class Proposal(NamedTuple):
    params: dict
    config: mp.ProposalConfig
    header: dict
    source: str


def _motif_from_signature(signature: dict):
    if signature.get("kind") == "discrete":
        return motif_lib.DiscreteMotif(signature["name"], tuple(signature["block"]), tuple(signature["blanket"]),
                                       tuple((node, tuple(ps)) for node, ps in signature["parents"]))
    if signature.get("kind") == "continuous" and signature.get("name") == "two_means":
        return motif_lib.TwoMeansMotif(dim=int(signature["dim"]))
    raise ValueError(f"unknown motif kind in a proposal signature: {signature!r}")


def _same_signature(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def train_motif_proposal(motif, key, *, num_steps: int, batch_size: int = 256, learning_rate: float = 1e-3,
                         hidden_sizes=(128, 128), num_components: int = 8, probability_floor: float = 1e-4,
                         eval_every: int | None = None, num_heldout: int = 64, progress=None):
    """Meta-train a proposal for ``motif`` from forward samples of its sub-network with random local parameters.

    Returns (params, config, history). Held-out data are drawn with a key the training never uses (other Theta);
    for discrete motifs the history also records the exact held-out KL(p(B | c) || q) and the stationary
    acceptance rate of independence MH (enumerating all block states)."""
    key_init, key_train, key_heldout = jax.random.split(key, 3)
    if motif.kind == "discrete":
        config = mp.ProposalConfig(motif.num_inputs, num_discrete=motif.block_size, num_categories=2,
                                   hidden_sizes=tuple(hidden_sizes), num_components=num_components,
                                   probability_floor=probability_floor)

        def sample_batch(k, n):
            x, block = motif.sample_training_batch(k, n)
            return x, mp.BlockValue(block, jnp.zeros((n, 0)))

        params = mp.init_params(key_init, config)
        if num_steps == 0:  # an untrained proposal: nothing to evaluate
            return params, config, mp.TrainingHistory([0], [float("nan")], [float("nan")], {})
        states = mp.discrete_block_states(motif.block_size)
        heldout_x, heldout_block = jax.jit(motif.sample_training_batch, static_argnums=1)(key_heldout,
                                                                                         max(num_heldout, 256))
        exact = jax.jit(motif.exact_log_conditional)(heldout_x[:num_heldout], states)

        def evaluate(params):
            kl, acceptance = mp.exact_kl_and_acceptance(params, config, heldout_x[:num_heldout], exact, states)
            return {"heldout_kl": kl, "heldout_acceptance": acceptance}

        validation = (heldout_x, mp.BlockValue(heldout_block, jnp.zeros((heldout_block.shape[0], 0))))
    else:
        config = mp.ProposalConfig(motif.num_inputs, num_discrete=0, num_real=motif.block_size,
                                   hidden_sizes=tuple(hidden_sizes), num_components=num_components,
                                   probability_floor=probability_floor)

        def sample_batch(k, n):
            x, block = motif.sample_training_batch(k, n)
            return x, mp.BlockValue(jnp.zeros((n, 0), jnp.int32), block)

        # one batch of independent draws: 1536 set the input standardisation, 512 are held out
        pool_x, pool_block = jax.jit(motif.sample_training_batch, static_argnums=1)(key_heldout, 2048)
        params = mp.init_params(key_init, config, inputs=pool_x[:1536])
        if num_steps == 0:
            return params, config, mp.TrainingHistory([0], [float("nan")], [float("nan")], {})
        heldout_x, heldout_block = pool_x[1536:], pool_block[1536:]
        validation = (heldout_x, mp.BlockValue(jnp.zeros((512, 0), jnp.int32), heldout_block))
        evaluate = None
    params, history = mp.train(key_train, params, config, sample_batch, num_steps=num_steps, batch_size=batch_size,
                               learning_rate=learning_rate, validation=validation, eval_every=eval_every,
                               evaluate=evaluate, progress=progress)
    return params, config, history


def _load_file(path) -> Proposal:
    params, config, header = mp.load_proposal(path)
    if "motif" not in header:
        raise ValueError(f"{path}: the header has no motif signature")
    return Proposal(params, config, header, f"file:{path}")


def resolve_proposals(found: dict, option, *, key, training_steps: int, training_batch: int) -> tuple[dict, dict]:
    """{motif name: Proposal} for the motifs found in a model (``found``: name -> motif), and training records.

    option None: the shipped library, else train; "train": train every motif now; a .npz path: that proposal (its
    motif must be in the model); a folder: its proposals (at least one must match); a name: a shipped proposal."""
    chosen: dict[str, Proposal] = {}
    explicit: list[Proposal] = []
    if option is not None and option != "train":
        path = pathlib.Path(option)
        if path.is_file():
            explicit = [_load_file(path)]
        elif path.is_dir():
            explicit = [_load_file(p) for p in library_entries(path).values()]
            if not explicit:
                raise ValueError(f"proposals={option!r}: the folder holds no .npz proposal files")
        else:
            shipped = library_entries()
            if option not in shipped:
                raise ValueError(f"proposals={option!r} is neither a file, a folder nor a shipped proposal; shipped: "
                                 f"{sorted(shipped)} (or pass proposals='train' to train one now)")
            explicit = [_load_file(shipped[option])]
        for proposal in explicit:
            matches = [name for name, motif in found.items() if _same_signature(motif.signature(),
                                                                               proposal.header["motif"])]
            if matches:
                chosen[matches[0]] = proposal
        if not chosen:
            names = [library_key(p.header["motif"]) for p in explicit]
            raise ValueError(
                f"proposals={option!r}: its motif(s) {names} do not occur in this model; the model's motifs are "
                f"{[library_key(m.signature()) for m in found.values()] or 'none'}. Pass a proposal trained for one "
                "of them, or omit proposals= to use the shipped library (or train one)")
    records = {}
    shipped = library_entries() if option != "train" else {}
    for name, motif in found.items():
        if name in chosen:
            continue
        entry = shipped.get(library_key(motif.signature()))
        if entry is not None:
            proposal = _load_file(entry)
            if _same_signature(proposal.header["motif"], motif.signature()):
                chosen[name] = Proposal(proposal.params, proposal.config, proposal.header,
                                        f"library:{library_key(motif.signature())}")
                continue
        settings = DEFAULT_TRAINING.get(motif.name if motif.kind == "continuous" else name,
                                        DEFAULT_TRAINING["grid_block_3x3"])
        start = time.perf_counter()
        params, config, history = train_motif_proposal(
            motif, jax.random.fold_in(key, len(records)), num_steps=training_steps, batch_size=training_batch,
            learning_rate=settings["learning_rate"], hidden_sizes=settings["hidden_sizes"],
            num_components=settings["num_components"], probability_floor=settings["probability_floor"])
        records[name] = {"seconds": time.perf_counter() - start, "history": history}
        chosen[name] = Proposal(params, config, {"motif": motif.signature()}, f"trained:{training_steps} steps")
    return chosen, records


# =====================================================================================================================
# the problem: everything static about one (model, method, options)
@dataclasses.dataclass
class Problem:
    view: Any
    tables: mp.FactorTables
    has_local: bool
    plan: mp.SweepPlan
    instances: mp.BlockInstances | None
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
    """Everything static about one run: tables, motif instances, proposals (loaded or trained: ``warmup`` is the
    default number of training steps), schedules and colour classes."""
    view = motif_lib.compile_model(target)
    tables = mp.FactorTables(**{k: jnp.asarray(v) for k, v in view.factor_tables().items()})
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
        raise UnsupportedModelError("meta_gibbs", "no_known_motif", (
            "it proposes blocks from learned proposals of known motifs, and this model has no known motif (known: the "
            "3 x 3 binary grid block 'grid_block_3x3' and the open-universe mixture's 'two_means'); use "
            "method='gibbs' or 'block_gibbs'"))
    proposals, training = {}, {}
    if method == "meta_gibbs":
        training_steps = options.get("training_steps")
        proposals, training = resolve_proposals(
            {name: found[name] for name in discrete_found[:1] + pair_found[:1]}, options.get("proposals"),
            key=key, training_steps=int(training_steps if training_steps is not None else warmup),
            training_batch=options.get("training_batch", 256))

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
            variables[i, :len(b)] = b
            factors[i, :len(fs)] = fs
        if block_theta:
            theta = np.concatenate([np.stack(block_theta), np.zeros((1, len(block_theta[0])))]).astype(np.float32)
            context = np.full((len(blocks) + 1, len(block_context[0])), v_count, dtype=np.int32)
            context[:-1] = np.asarray(block_context)
        else:
            theta = np.zeros((len(blocks) + 1, 1), np.float32)
            context = np.full((len(blocks) + 1, 1), v_count, dtype=np.int32)
        instances = mp.BlockInstances(jnp.asarray(variables), jnp.asarray(factors), jnp.asarray(theta),
                                      jnp.asarray(context))
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
        classes = mp.colour_classes(block_members, block_blankets, parallel=parallel)
        schedules_blocks.append([[packing[i] for i in c] for c in classes])
        singles = [v for v in local if v not in covered]
        single_classes = mp.colour_classes([[v] for v in singles], [view.blanket([v]) for v in singles],
                                           parallel=parallel)
        schedules_singles.append([[singles[i] for i in c] for c in single_classes])
    plan = mp.SweepPlan(jnp.asarray(mp.pad_classes(schedules_blocks, len(blocks))),
                        jnp.asarray(mp.pad_classes(schedules_singles, v_count)))

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
            pair = {"instance": inst, "motif": found[name], "proposal": proposals[name], "start": site.start,
                    "stop": site.stop, "count_variable": view.variable_index[inst.count_site],
                    "num_pairs": m * (m - 1) // 2}
            labels = labels + [f"{name}@({a},{b})" for a in range(m) for b in range(a + 1, m)]
    needs_joint = bool(nonlocal_variables or view.other_discrete or target.dim)
    return Problem(view, tables, bool(local), plan, instances, block_update, states, proposal, nonlocal_variables,
                   view.other_discrete, int(target.dim), pair, labels, view.joint_logdensity(), needs_joint,
                   list(found),
                   {name: p.source for name, p in proposals.items()}, training)


# =====================================================================================================================
# one sweep
class SamplerState(NamedTuple):
    idx: jnp.ndarray     # (V+1,) state indices of the scalar discrete variables (+ dummy)
    other: dict          # values of the other latent discrete sites
    z: jnp.ndarray       # (dim,) unconstrained continuous sites
    log_joint: jnp.ndarray


class SweepInfo(NamedTuple):
    block_acceptance: jnp.ndarray   # (I,) NaN where the instance was not updated this sweep
    coordinate_acceptance: jnp.ndarray  # (dim,)
    log_joint: jnp.ndarray


def _pair_id(a, b, m):
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    return lo * (2 * m - lo - 1) // 2 + (hi - lo - 1)


class SweepArrays(NamedTuple):
    """The arrays a sweep reads, passed as arguments of the compiled program (not baked into it as constants), so
    runs that differ only in their numbers (another proposal, other tables of the same shape) share one program."""

    tables: mp.FactorTables
    plan: mp.SweepPlan
    instances: Any
    states: Any
    proposal_params: Any
    pair_params: Any


def sweep_arrays(problem: Problem) -> SweepArrays:
    return SweepArrays(problem.tables, problem.plan, problem.instances, problem.states,
                       None if problem.proposal is None else problem.proposal.params,
                       None if problem.pair is None else problem.pair["proposal"].params)


def make_sweep(problem: Problem):
    """``sweep(key, state, t, floor, log_scales, arrays) -> (state, SweepInfo)``: one pass over every latent site."""
    view = problem.view
    num_schedules = int(problem.plan.single_classes.shape[0])
    log_joint = problem.log_joint
    config = None if problem.proposal is None else problem.proposal.config
    pair = problem.pair
    num_tab_instances = 0 if problem.instances is None else int(problem.instances.variables.shape[0]) - 1

    def joint(idx, other, z):
        return log_joint(idx, other, z)

    def sweep(key, state: SamplerState, t, floor, log_scales, arrays: SweepArrays):
        tables = arrays.tables
        keys = jax.random.split(key, 5)
        idx, other, z = state.idx, state.other, state.z
        if problem.has_local:
            idx, tab_acc = mp.tabular_sweep(
                keys[0], tables, idx, arrays.plan, t % num_schedules, instances=arrays.instances,
                block_update=problem.block_update, params=arrays.proposal_params, config=config,
                states=arrays.states, floor=floor)
        else:
            tab_acc = jnp.full((num_tab_instances,), jnp.nan)
        coordinate_acc = jnp.ones((problem.dim,))
        pair_acc = jnp.zeros((0,))
        if problem.needs_joint:
            lp = joint(idx, other, z)
            for n, v in enumerate(problem.nonlocal_variables):
                def set_value(s, k, v=v):
                    return (s[0].at[v].set(k), s[1], s[2])
                (idx, other, z), lp = mp.enumerate_gibbs(jax.random.fold_in(keys[1], n), lambda s: joint(*s),
                                                         (idx, other, z), set_value, int(view.num_states[v]))
            for n, (name, shape, values) in enumerate(problem.other_sites):
                size = int(np.prod(shape)) if shape else 1
                support_values = jnp.asarray(values)

                def element(e, carry, name=name, shape=shape, support_values=support_values, n=n):
                    idx, other, z, lp = carry

                    def set_value(s, k):
                        flat = s[1][name].reshape(-1).at[e].set(support_values[k].astype(s[1][name].dtype))
                        return (s[0], {**s[1], name: flat.reshape(shape)}, s[2])
                    (idx, other, z), lp = mp.enumerate_gibbs(jax.random.fold_in(jax.random.fold_in(keys[2], n), e),
                                                             lambda s: joint(*s), (idx, other, z), set_value,
                                                             int(support_values.shape[0]))
                    return idx, other, z, lp
                idx, other, z, lp = jax.lax.fori_loop(0, size, element, (idx, other, z, lp))
            if problem.dim:
                def coordinate(carry, inputs):
                    z, lp = carry
                    j, k = inputs
                    z, lp, accept = mp.random_walk_metropolis(k, lambda zz: joint(idx, other, zz), z, lp, j,
                                                              jnp.exp(log_scales[j]))
                    return (z, lp), accept
                (z, lp), coordinate_acc = jax.lax.scan(
                    coordinate, (z, lp), (jnp.arange(problem.dim), jax.random.split(keys[3], problem.dim)))
            if pair is not None:
                z, lp, pair_acc = _pair_moves(keys[4], pair, arrays.pair_params, idx, other, z, lp, joint,
                                              tables.support_values)
        else:
            lp = mp.local_log_prob(tables, idx, jnp.arange(tables.log_table.shape[0] - 1))
        acceptance = jnp.concatenate([tab_acc, pair_acc])
        return SamplerState(idx, other, z, lp), SweepInfo(acceptance, coordinate_acc, lp)

    return sweep


def _pair_moves(key, pair, params, idx, other, z, lp, joint, support):
    """Learned two-means moves on random disjoint pairs of active components, one after the other (every pair's
    factors are all the data, so no two can move in parallel)."""
    inst = pair["instance"]
    config = pair["proposal"].config
    m, d, start, stop = inst.max_components, inst.dim, pair["start"], pair["stop"]
    y = jnp.asarray(inst.data, dtype=z.dtype)
    y_mask = jnp.ones(y.shape[0], dtype=bool)
    count = support[pair["count_variable"], idx[pair["count_variable"]]]
    active = jnp.arange(m) < count
    key_perm, key_moves = jax.random.split(key)
    perm = jax.random.permutation(key_perm, m)
    order = perm[jnp.argsort(jnp.where(active[perm], 0, 1), stable=True)]
    pairs = order[:2 * (m // 2)].reshape(m // 2, 2)
    empty = jnp.zeros((0,), jnp.int32)
    noise = inst.noise_scale

    def move(carry, inputs):
        z, lp = carry
        (a, b), k = inputs
        valid = active[a] & active[b]
        means = z[start:stop].reshape(m, d)
        x, center = motif_lib.two_means_features(y, y_mask, means, active, a, b, noise, inst.mean_scale)

        def propose(k):
            block = mp.sample(params, config, k, x).real
            new = means.at[a].set(center + noise * block[:d]).at[b].set(center + noise * block[d:])
            return z.at[start:stop].set(new.reshape(-1))

        def log_q(zz):
            mm = zz[start:stop].reshape(m, d)
            block = jnp.concatenate([(mm[a] - center) / noise, (mm[b] - center) / noise])
            return mp.log_prob(params, config, x, mp.BlockValue(empty, block))

        new_z, new_lp, probability = mp.independence_metropolis(k, lambda zz: joint(idx, other, zz), z, lp,
                                                                propose, log_q)
        z = jnp.where(valid, new_z, z)
        lp = jnp.where(valid, new_lp, lp)
        return (z, lp), (_pair_id(a, b, m), jnp.where(valid, probability, jnp.nan))

    (z, lp), (ids, probabilities) = jax.lax.scan(move, (z, lp), (pairs, jax.random.split(key_moves, m // 2)))
    acceptance = jnp.full((pair["num_pairs"],), jnp.nan).at[ids].set(probabilities)
    return z, lp, acceptance


# =====================================================================================================================
# initial states and the chain driver
def _initial_states(problem: Problem, target, key, chains: int) -> SamplerState:
    """Prior draws with the observed sites clamped: ancestral sampling through the tables when every latent site is
    a variable with a table of its own, else one seeded trace of the model per chain (batched with vmap)."""
    view = problem.view
    own = view.own_factor()
    tabular_only = (not target.dim and not view.other_discrete and
                    all(own[v] < len(view.factor_names) for v in range(view.num_variables) if view.latent[v]))
    if tabular_only:
        start = jnp.asarray(view.initial_indices())
        order = jnp.asarray(view.topological_latent_order())
        draw = jax.jit(jax.vmap(lambda k: mp.ancestral_sample(k, problem.tables, start, order, jnp.asarray(own))))
        idx = draw(jax.random.split(key, chains))
        return SamplerState(idx, {}, jnp.zeros((chains, 0)), jnp.zeros((chains,)))
    latent_vars = [(v, name) for v, name in enumerate(view.variable_names) if view.latent[v]]
    transforms = {site.name: dist.biject_to(site.support) for site in target.sites}
    values = view.prior_draws(key, chains)
    idx = np.tile(view.initial_indices(), (chains, 1))
    for v, name in latent_vars:
        drawn = np.asarray(values[name], dtype=float).reshape(chains, 1)
        idx[:, v] = np.argmin(np.abs(drawn - view.support_values[v][None, :view.num_states[v]]), axis=1)
    other = {name: jnp.asarray(values[name]) for name, _, _ in view.other_discrete}
    if target.dim:
        z = jax.vmap(lambda vals: target.ravel_unconstrained(
            {name: transforms[name].inv(vals[name]) for name in transforms}))({n: values[n] for n in transforms})
    else:
        z = jnp.zeros((chains, 0))
    return SamplerState(jnp.asarray(idx, dtype=jnp.int32), other, jnp.asarray(z), jnp.zeros((chains,)))


class GibbsRun(NamedTuple):
    """What `sample_model` returns: discrete draws by site name (chains, draws, *shape), continuous unconstrained
    draws z (chains, draws, dim), sample statistics (chains, draws[, instances]) and JSON-able extras."""

    discrete: dict
    z: np.ndarray
    sample_stats: dict
    extra: dict
    problem: Problem


def sample_model(target, method: str, options: dict, key, chains: int, warmup: int, draws: int) -> GibbsRun:
    """Build the sampler for ``method`` on ``target`` and run ``chains`` chains (vmapped) for warm-up and draws."""
    key_problem, key_init, key_warmup, key_sample = jax.random.split(key, 4)
    problem = build_problem(target, method, options, key_problem, warmup)
    sweep = make_sweep(problem)
    state = _initial_states(problem, target, key_init, chains)
    dim = problem.dim
    log_scales = jnp.full((chains, dim), jnp.log(0.5))
    chunk = chunk_size_for(draws)
    latent_vars = [v for v in range(problem.view.num_variables) if problem.view.latent[v]]
    latent_index = jnp.asarray(latent_vars, dtype=jnp.int32)

    arrays = sweep_arrays(problem)

    def run_chunk(k, state, log_scales, first, warming, arrays):
        """``chunk`` sweeps from sweep index ``first``. Warm-up chunks (``warming``) soften the tables, adapt the
        random-walk scales and stop at sweep ``warmup``; sampling chunks use the exact tables. One compiled program
        serves both."""
        def body(carry, t):
            state, log_scales = carry
            fraction = t / jnp.maximum(warmup - 1, 1)
            floor = jnp.where(warming, WARMUP_FLOOR_START + (WARMUP_FLOOR_END - WARMUP_FLOOR_START) * fraction,
                              -jnp.inf)
            new_state, info = sweep(jax.random.fold_in(k, t), state, t, floor, log_scales, arrays)
            live = jnp.logical_not(warming) | (t < warmup)
            state = jax.tree.map(lambda new, old: jnp.where(live, new, old), new_state, state)
            step = jnp.where(warming & live, 1.0 / (t + 1.0) ** 0.6, 0.0)
            log_scales = log_scales + step * (info.coordinate_acceptance - RW_TARGET)
            record = {"idx": state.idx[latent_index], "other": state.other, "z": state.z, "lp": info.log_joint,
                      "block_acceptance": info.block_acceptance,
                      "coordinate_acceptance": info.coordinate_acceptance}
            return (state, log_scales), record

        return jax.lax.scan(body, (state, log_scales), first + jnp.arange(chunk))

    compiled_fn = jax.jit(jax.vmap(run_chunk, in_axes=(0, 0, 0, None, None, None)))
    start = time.perf_counter()
    compiled = compiled_fn.lower(jax.random.split(key_warmup, chains), state, log_scales, 0, True, arrays).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    warmup_keys = jax.random.split(key_warmup, chains)
    for index in range(-(-warmup // chunk)):
        (state, log_scales), _ = compiled(warmup_keys, state, log_scales, index * chunk, True, arrays)
    jax.block_until_ready(state)
    warmup_seconds = time.perf_counter() - start

    chain_keys = jax.random.split(key_sample, chains)
    pieces, chunk_seconds = [], []
    for index in range(draws // chunk):
        begin = time.perf_counter()
        (state, log_scales), record = compiled(chain_keys, state, log_scales, index * chunk, False, arrays)
        record = jax.tree.map(np.asarray, record)
        chunk_seconds.append(time.perf_counter() - begin)
        pieces.append(record)
    merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *pieces)

    view = problem.view
    idx_full = np.zeros(merged["idx"].shape[:2] + (view.num_variables,), dtype=np.int64)
    idx_full[..., latent_vars] = merged["idx"]
    discrete = view.constrained_draws(idx_full, merged["other"])
    block_acceptance = merged["block_acceptance"].astype(np.float32)
    moves = [block_acceptance] if block_acceptance.shape[-1] else []
    if dim:
        moves.append(merged["coordinate_acceptance"].astype(np.float32))
    if moves:
        stacked = np.concatenate(moves, axis=-1)
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(stacked)
            acceptance = np.where(finite.any(-1), np.nansum(np.where(finite, stacked, 0), -1) /
                                  np.maximum(finite.sum(-1), 1), 1.0)
    else:
        acceptance = np.ones(merged["lp"].shape)
    stats = {"lp": merged["lp"], "acceptance_rate": acceptance, "diverging": ~np.isfinite(merged["lp"])}
    if block_acceptance.shape[-1]:
        stats["block_acceptance"] = block_acceptance
    extra = {"warmup_s": warmup_seconds, "compile_s": compile_seconds, "chunk_seconds": chunk_seconds,
             "block_labels": problem.instance_labels, "motifs": problem.motif_names,
             "proposal_sources": json.dumps(problem.proposal_sources),
             "chains_in_impossible_state_after_warmup": int(np.sum(~np.isfinite(merged["lp"][:, 0]))),
             "training_s": float(sum(r["seconds"] for r in problem.training.values()))}
    for name, record in problem.training.items():
        history = record["history"]
        extra[f"training_{name}_step"] = history.step
        extra[f"training_{name}_heldout_nll"] = history.heldout_nll
        for metric, values in history.metrics.items():
            extra[f"training_{name}_{metric}"] = values
    if dim:
        extra["random_walk_scales"] = np.exp(np.asarray(log_scales)).tolist()
    return GibbsRun(discrete, merged["z"], stats, extra, problem)


# =====================================================================================================================
# registration
def _make_run(method: str):
    def run(target, options, key, chains, warmup, draws):
        result = sample_model(target, method, options, key, chains, warmup, draws)
        fields = dict(z=result.z, sample_stats=result.sample_stats, log_evidence=None, elbo=None, extra=result.extra,
                      approximation=None)
        if "discrete" in DirectResult._fields:
            fields["discrete"] = result.discrete
        return DirectResult(**fields)

    return run


_COMMON = (
    Option("parallel", bool, True, "update conditionally independent sites and blocks in parallel (colour classes); "
           "False updates them one at a time"),
)

# the chains start from prior draws (measured: NotImplementedError from ImproperUniform.sample on posteriordb's
# mesquite model)
_UNSUPPORTED = ("improper_prior",)

GIBBS = DirectMethod(
    MethodSchema("gibbs", "mcmc", "single-site Gibbs on discrete sites (enumeration through the factor tables), "
                 "random-walk Metropolis on continuous coordinates; one draw = one sweep", _COMMON,
                 unsupported=_UNSUPPORTED),
    _make_run("gibbs"), gradient_based=False)

BLOCK_GIBBS = DirectMethod(
    MethodSchema("block_gibbs", "mcmc", "exact block Gibbs (enumeration of small discrete blocks: matched motif "
                 "instances, else greedy blocks), single-site Gibbs elsewhere", _COMMON + (
                     Option("block_size", int, 4, "variables per greedy block when no motif matches", minimum=2,
                            maximum=12),
                 ), unsupported=_UNSUPPORTED),
    _make_run("block_gibbs"), gradient_based=False)

META_GIBBS = DirectMethod(
    MethodSchema("meta_gibbs", "mcmc", "meta-learned block proposals (Wang et al. 2018) as independence MH on every "
                 "motif instance, single-site updates elsewhere", _COMMON + (
                     Option("proposals", str, None, "a proposal file, a library folder, a shipped proposal name, or "
                            "'train'; default: the shipped library, else train within warmup", allow_none=True),
                     Option("training_steps", int, None, "optimiser steps when a proposal must be trained "
                            "(default: warmup)", minimum=0, allow_none=True),
                     Option("training_batch", int, 256, "forward samples per training step", minimum=1),
                 ), unsupported=_UNSUPPORTED),
    _make_run("meta_gibbs"), gradient_based=False)


# =====================================================================================================================
# the shipped library
def train_library(out_dir=None, *, steps: int | None = None, seed: int = 0, only=None, log=print) -> list[pathlib.Path]:
    """Train the shipped proposals (3 x 3 grid block, two means in 2-D) and write them to ``out_dir``."""
    out_dir = pathlib.Path(out_dir) if out_dir is not None else LIBRARY_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, motif in (("grid_block_3x3", motif_lib.grid_block_motif(3, 3)),
                        ("two_means_2d", motif_lib.TwoMeansMotif(dim=2))):
        if only and name not in only:
            continue
        settings = dict(DEFAULT_TRAINING[motif.name if motif.kind == "continuous" else name])
        if steps is not None:
            settings["num_steps"] = int(steps)
        settings["seed"] = int(seed)
        start = time.perf_counter()

        def progress(history, name=name):
            metrics = {k: round(v[-1], 4) for k, v in history.metrics.items()}
            log(f"[{name}] step {history.step[-1]}: train nll {history.train_nll[-1]:.4f}, held-out nll "
                f"{history.heldout_nll[-1]:.4f} {metrics}")

        params, config, history = train_motif_proposal(
            motif, jax.random.key(seed), num_steps=settings["num_steps"], batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"], hidden_sizes=settings["hidden_sizes"],
            num_components=settings["num_components"], probability_floor=settings["probability_floor"],
            eval_every=500, progress=progress)
        header = {"motif": motif.signature(),
                  "training": {**settings, "command": TRAIN_COMMAND, "seconds": round(time.perf_counter() - start, 1),
                               "jax": jax.__version__,
                               "history": {"step": history.step, "heldout_nll": history.heldout_nll,
                                           **history.metrics}}}
        path = out_dir / f"{name}.npz"
        mp.save_proposal(path, params, config, header)
        written.append(path)
        log(f"wrote {path}")
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m samplax.infer.method_gibbs")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train-library", help="train the shipped proposal library")
    train_parser.add_argument("--out", default=None, help=f"output folder (default {LIBRARY_DIR})")
    train_parser.add_argument("--steps", type=int, default=None, help="optimiser steps per proposal")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--only", nargs="*", default=None, help="grid_block_3x3 and/or two_means_2d")
    args = parser.parse_args(argv)
    if args.command == "train-library":
        train_library(args.out, steps=args.steps, seed=args.seed, only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())

METHODS = (GIBBS, BLOCK_GIBBS, META_GIBBS)
