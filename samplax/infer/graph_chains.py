"""How `samplax.graphs` runs the Glauber and pivot chains through samplax's chain driver.

The kernels' array inputs, the starting states, and the chunked, checkpointed run.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network data analysis",
JMLR 24(9), 2023 (arXiv:1910.09483).

The chains (`samplax.kernels.graph_hom.glauber` / `pivot`, BlackJAX `SamplingAlgorithm`s) run through
`samplax.infer.run.ChainRunner`, as every MCMC method of `samplax.fit` does: a lax.scan over a chunk of draws of the
vectorised chains, compiled once ahead of time into `COMPILED` (the network's, motif's and observables' arrays are
arguments, so similar networks share one executable), and transition t of a chain uses the key
fold_in(chain_key, t), burn-in counted. Burn-in and kept draws are one sequence of draws cut into equal chunks (the
burn-in draws are dropped on the host), so neither the chunking nor a resume changes the draws. A checkpoint
(`samplax.infer.checkpoint`) holds the network's arrays, the starting states and one file per chunk; its manifest
stands the motif in for the model, the network's arrays for the data, and the chain's options for the method's.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer.checkpoint import Checkpoint, model_fingerprint
from samplax.infer.run import (
    COMPILED,
    ChainRunner,
    chain_sharding,
    chunk_plan,
    data_fingerprint,
    device_layout,
    num_chunks_for,
)
from samplax.kernels import graph_hom
from samplax.models import graphs as model
from samplax.models.graphs import Motif, Network

__all__ = [
    "check_run_options",
    "initial_states",
    "motif_constraints",
    "rooted_tree",
    "pair_indices",
    "target_arrays",
    "padded_arrays",
    "chain_builder",
    "run_chains",
    "open_checkpoint",
]


def check_run_options(seed, progress, checkpoint, checkpoint_every):
    """Check the run options shared with `samplax.fit` before any work, naming the argument."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in 0..2**32-1, got {seed!r}")
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ValueError(f"checkpoint must be a directory path (a string or os.PathLike) or None, got {checkpoint!r}")
    if checkpoint_every is not None and (
        not isinstance(checkpoint_every, (int, np.integer))
        or isinstance(checkpoint_every, bool)
        or checkpoint_every < 1
    ):
        raise ValueError(
            f"checkpoint_every must be a positive integer (kept draws per chunk), got {checkpoint_every!r}"
        )


def initial_states(motif: Motif, network: Network, chains: int, rng, init, root_side) -> np.ndarray:
    """Return (chains, k) starting homomorphisms as network node indices.

    `init` checked and mapped from labels, else exact draws of pi for a tree motif, else a randomised backtracking
    search.
    """
    if init is not None:
        array = np.asarray(init, dtype=object)
        if array.ndim == 1:
            array = np.broadcast_to(array, (chains, array.shape[0]))
        if array.shape != (chains, motif.num_nodes):
            raise ValueError(
                f"init: expected shape ({chains}, {motif.num_nodes}) of network node labels, got {array.shape}"
            )
        states = np.array([[network.index(label) for label in row] for row in array], dtype=np.int64)
        weights = _map_weights(motif, network, states)
        bad = np.flatnonzero(weights <= 0)
        if bad.size:
            raise ValueError(
                f"init: row {bad[0]} is not a homomorphism (some motif edge maps onto a non-edge, or a node of "
                "weight 0); every starting map must have positive probability"
            )
        if root_side is not None and np.any(root_side[states[:, 0]] == 0):
            raise ValueError("init: motif node 0 must map into the side chosen by bipartite_side")
        return states
    if motif.is_tree:
        return model.exact_tree_sample(motif, network, chains, rng, root_mask=root_side)
    return model.search_homomorphisms(motif, network, chains, rng, root_side=root_side)


def _map_weights(motif: Motif, network: Network, states: np.ndarray) -> np.ndarray:
    weights = np.prod(network.node_weights[states], axis=1)
    for i, j in motif.edges:
        weights = weights * _lookup(network, states[:, i], states[:, j])
    return weights


def _lookup(network: Network, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    result = np.zeros(rows.shape)
    for index, (u, v) in enumerate(zip(rows, cols)):
        start, end = network.out_indptr[u], network.out_indptr[u + 1]
        position = start + np.searchsorted(network.out_indices[start:end], v)
        if position < end and network.out_indices[position] == v:
            result[index] = network.out_weights[position]
    return result


def motif_constraints(motif: Motif, network: Network) -> graph_hom.MotifConstraints:
    """The Glauber kernel's view of the motif: each node's motif-neighbours and the CSR rows they read."""
    k, n = motif.num_nodes, network.num_nodes
    slots: list[list[tuple[int, int]]] = [[] for _ in range(k)]
    for i, j in motif.edges:
        slots[j].append((i, 0))  # A(x_i, z): out-row of x_i
        slots[i].append((j, n if network.directed else 0))  # A(z, x_j): in-row of x_j
    width = max(1, max(len(s) for s in slots))
    neighbours = np.zeros((k, width), dtype=np.int32)
    offsets = np.zeros((k, width), dtype=np.int32)
    mask = np.zeros((k, width), dtype=bool)
    for j, entries in enumerate(slots):
        for m, (other, offset) in enumerate(entries):
            neighbours[j, m], offsets[j, m], mask[j, m] = other, offset, True
    return graph_hom.MotifConstraints(jnp.asarray(neighbours), jnp.asarray(offsets), jnp.asarray(mask))


def rooted_tree(motif: Motif, network: Network) -> graph_hom.RootedTree:
    """The pivot kernel's view of a tree motif: parents in depth-first order and the CSR rows their edges read."""
    parents = np.array([max(p, 0) for p in motif.parents], dtype=np.int32)
    down = motif.tree_edge_points_down()
    offsets = np.array(
        [0 if (down[j] or not network.directed) else network.num_nodes for j in range(motif.num_nodes)], dtype=np.int32
    )
    return graph_hom.RootedTree(jnp.asarray(parents), jnp.asarray(offsets))


def pair_indices(k: int, directed: bool) -> np.ndarray:
    """The (i, j) pairs of the pairwise observable: all ordered pairs on a directed network, else i <= j."""
    if directed:
        return np.array([(i, j) for i in range(k) for j in range(k)], dtype=np.int32)
    return np.array([(i, j) for i in range(k) for j in range(i, k)], dtype=np.int32)


def target_arrays(edge_lists: list[list[tuple[int, int]]]):
    """Each target's added edges as padded (rows, cols, mask) arrays (targets x the most added edges)."""
    width = max([1] + [len(edges) for edges in edge_lists])
    rows = np.zeros((len(edge_lists), width), dtype=np.int32)
    cols = np.zeros((len(edge_lists), width), dtype=np.int32)
    mask = np.zeros((len(edge_lists), width), dtype=bool)
    for t, edges in enumerate(edge_lists):
        for m, (i, j) in enumerate(edges):
            rows[t, m], cols[t, m], mask[t, m] = i, j, True
    return rows, cols, mask


def padded_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pad the CSR arrays to power-of-two lengths, so that networks of similar size reuse one compiled runner.

    The padding is empty rows, unreachable entries and nodes of weight 0.
    """

    def bucket(size: int) -> int:
        return max(16, 1 << math.ceil(math.log2(size)))

    def pad(values: np.ndarray, size: int, fill) -> np.ndarray:
        return np.concatenate([values, np.full(size - values.size, fill, dtype=values.dtype)])

    padded = dict(arrays)
    for prefix in ("", "walk_"):
        indptr = arrays[prefix + "indptr"]
        rows = bucket(indptr.size - 1)
        padded[prefix + "indptr"] = pad(indptr, rows + 1, indptr[-1])
        entries = bucket(arrays[prefix + "indices"].size)
        for name in ("indices", "weights", "cumulative"):
            if prefix + name in arrays:
                padded[prefix + name] = pad(arrays[prefix + name], entries, 0)
        padded[prefix + "strength"] = pad(arrays[prefix + "strength"], rows, 0)
    nodes = bucket(arrays["node_weights"].size)
    padded["node_weights"] = pad(arrays["node_weights"], nodes, 0)
    padded["node_cumulative"] = pad(arrays["node_cumulative"], nodes, 1)
    return padded


def chain_builder(chain, kernel_options, max_degree, unweighted, free_nodes, keep_states):
    """Make `build(data) -> (step, record, finish)` for ChainRunner.

    It holds the chain's `SamplingAlgorithm` closed over the data
    (network, motif arrays, observation indices: arguments of the compiled chunk, so similar networks share one
    executable), the acceptance rate kept per draw, and the observations computed from each chunk of states.
    """
    options = dict(kernel_options)
    depth = graph_hom.search_steps_for(max_degree)

    def build(data):
        network, motif_arrays, (pair_rows, pair_cols, target_rows, target_cols, target_mask) = data
        if chain == "glauber":
            algorithm = graph_hom.glauber(
                network, motif_arrays, max_degree=max_degree, unweighted=unweighted, free_nodes=free_nodes, **options
            )
        else:
            algorithm = graph_hom.pivot(network, motif_arrays, max_degree=max_degree, unweighted=unweighted, **options)

        def step(rng_key, state, params):
            del params  # no adapted parameters
            return algorithm.step(rng_key, state)

        def record(state, info):
            return {"z": state.homomorphism, "acceptance_rate": info.acceptance_rate}

        def finish(x):  # (chain, draw, k) states -> the observables of each draw
            pair_values = graph_hom.edge_weight(network, x[..., pair_rows], x[..., pair_cols], depth)
            target_weights = graph_hom.edge_weight(network, x[..., target_rows], x[..., target_cols], depth)
            target_values = jnp.prod(jnp.where(target_mask, target_weights, 1.0), axis=-1)
            posterior = {"pairs": pair_values, "targets": target_values}
            if keep_states:
                posterior["states"] = x
            return {"posterior": posterior}

        return step, record, finish

    return build


def run_chains(
    build, program_key, data, states, seed, *, thin, burn_draws, num_draws, chunk, progress, store, manifest
):
    """Run every chain from `states` for burn_draws + num_draws draws of `thin` steps through ChainRunner.

    The run goes in chunks of `chunk` draws (the chunks a checkpoint holds are read back, the others run and, with a
    checkpoint, saved); return the kept draws' host arrays {"stats": ..., "posterior": ...} (chain, draw, ...) and the
    timing.
    """
    chains = states.shape[0]
    chain_keys = jax.random.split(jax.random.key(seed), chains)
    chain_states = graph_hom.init(states)
    params = jnp.zeros((chains, 0), jnp.float32)  # the chains have no adapted parameters
    sharding = chain_sharding(chains)
    if sharding is not None:
        chain_states, chain_keys, params = jax.device_put((chain_states, chain_keys, params), sharding)
    runner = ChainRunner(build, chunk, thin)
    timing = {"compile_s": 0.0, "burn_in_s": 0.0, "sampling_s": 0.0}
    plan = chunk_plan(burn_draws + num_draws, chunk)
    pieces = []
    with progress as bar:
        if store is not None and not manifest["warmup_done"]:
            store.save_warmup(manifest, chain_states, params, {})  # the starting states
        first = manifest["completed_chunks"] if store is not None else 0
        for index, (begin, length) in enumerate(plan):
            kept = slice(min(max(burn_draws - begin, 0), length), length)  # burn-in draws are dropped
            if index < first:
                loaded, host = store.load_chunk(
                    manifest, index, kept.stop - kept.start, chain_states if index == first - 1 else None
                )
                if index == first - 1:
                    chain_states = loaded if sharding is None else jax.device_put(loaded, sharding)
                pieces.append(host)
                bar.sampled(kept.stop - kept.start, host["stats"])
                continue
            if runner.executable is None:  # compiled only when a chunk is left to run
                with bar.stage("compiling"):
                    runner.executable, timing["compile_s"] = COMPILED.compile(
                        program_key, runner.function, data, chain_states, params, chain_keys, jnp.asarray(0, jnp.int32)
                    )
            stage = "burn-in" if kept.start == kept.stop else "sampling"
            start = time.perf_counter()
            with bar.stage(stage):
                # the last chunk also runs `chunk` draws (one executable) and keeps `length` of them
                chain_states, host = runner.run(data, chain_states, params, chain_keys, begin)
            timing["burn_in_s" if stage == "burn-in" else "sampling_s"] += time.perf_counter() - start
            host = jax.tree.map(lambda values, kept=kept: values[:, kept], host)
            if store is not None:
                store.save_chunk(manifest, index, chain_states, host)
            pieces.append(host)
            bar.sampled(kept.stop - kept.start, host["stats"])
    return jax.tree.map(lambda *values: np.concatenate(values, axis=1), *pieces), timing


def open_checkpoint(
    store: Checkpoint,
    motif: Motif,
    stored: dict,
    states: np.ndarray,
    settings: dict,
    chunk: int,
    checkpoint_every: int | None,
):
    """Start a checkpoint in an empty folder, or check that the one there was written by this same run.

    Resuming without checkpoint_every keeps its chunks. Returns its manifest and the chunk length.
    """
    manifest = _checkpoint_manifest(motif, stored, settings, chunk)
    if not store.exists():
        return store.start(manifest, {**stored, "initial_states": states}), chunk
    saved = store.read_manifest()
    if checkpoint_every is None:
        chunk = saved["chunk_size"]
        manifest = _checkpoint_manifest(motif, stored, settings, chunk)
    _check_resume(saved, manifest, store.path)
    return saved, chunk


def _checkpoint_manifest(motif: Motif, stored: dict, settings: dict, chunk: int) -> dict:
    """The manifest of a graph run in the checkpoint module's schema.

    The motif stands for the model (one discrete site, the homomorphism, described by the motif's edges and labels), the
    network's arrays and the starting states for the data, and the chain's options for the method's.
    """
    description = json.dumps(
        {
            "edges": [list(map(int, e)) for e in motif.edges],
            "directed": bool(motif.directed),
            "labels": [str(label) for label in motif.labels],
        }
    )
    record = {
        "sites": [["homomorphism", [motif.num_nodes], f"motif {description}"]],
        "discrete_sites": ["homomorphism"],
        "observed": {},
        "deterministic": {},
        "code_sha256": None,
        "python": "{}.{}".format(*sys.version_info[:2]),
    }
    total = settings["total_draws"]
    return {
        "method": f"graph_hom:{settings['chain']}",
        "options": settings["options"],
        "chains": settings["chains"],
        "warmup": settings["burn_draws"] * settings["thin"],
        "draws": total,
        "seed": settings["seed"],
        "precision": "float32",
        "init": settings["init"],
        "model_ref": None,
        "thin": settings["thin"],
        "log_likelihood": False,
        "coords": None,
        "dims": None,
        "chunk_size": int(chunk),
        "num_chunks": num_chunks_for(total, chunk),
        "device_layout": device_layout(),
        "key_data": np.asarray(jax.random.key_data(jax.random.key(settings["seed"]))).tolist(),
        "data_fingerprint": data_fingerprint(stored),
        "model_fingerprint": model_fingerprint(record),
        "model": record,
        "sites": {"homomorphism": [motif.num_nodes]},
    }


# compared in this order, each with the argument that sets it
_RESUME_FIELDS = (
    ("method", "chain"),
    ("model_fingerprint", "motif"),
    ("data_fingerprint", "network"),
    ("options", "options"),
    ("chains", "chains"),
    ("thin", "thin"),
    ("warmup", "burn_in"),
    ("draws", "steps"),
    ("seed", "seed"),
    ("key_data", "seed"),
    ("init", "init"),
    ("chunk_size", "checkpoint_every"),
    ("num_chunks", "checkpoint_every"),
    ("device_layout", "device layout"),
)


def _check_resume(saved: dict, current: dict, path: str):
    """Refuse a checkpoint that another run wrote, naming the argument that differs."""
    advice = "Call with the arguments that wrote it to resume, or pass checkpoint= a new or empty directory"
    if not saved["method"].startswith("graph_hom:"):
        raise ValueError(
            f"checkpoint {path!r} was written by samplax.fit (method {saved['method']!r}), not by "
            f"sample_homomorphisms. {advice}"
        )
    for entry, argument in _RESUME_FIELDS:
        was, now = saved.get(entry), current.get(entry)
        if json.dumps(was, sort_keys=True) == json.dumps(now, sort_keys=True):
            continue
        if entry == "data_fingerprint":
            raise ValueError(
                f"checkpoint {path!r} was written for another network (its edge or node weights differ). {advice}"
            )
        if entry == "init":
            raise ValueError(
                f"checkpoint {path!r} was written by another run: the starting states ('init') differ. {advice}"
            )
        if entry == "method":
            was, now = was.split(":", 1)[1], now.split(":", 1)[1]
        elif entry == "model_fingerprint":
            was, now = (record["sites"][0][2].removeprefix("motif ") for record in (saved["model"], current["model"]))
        elif entry == "options":
            names = sorted(set(was) | set(now))
            argument = next(
                name
                for name in names
                if json.dumps(was.get(name), sort_keys=True) != json.dumps(now.get(name), sort_keys=True)
            )
            was, now = was.get(argument), now.get(argument)
        raise ValueError(
            f"checkpoint {path!r} was written by another run: {argument!r} was {_short(was)} and is now "
            f"{_short(now)}. {advice}"
        )


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
