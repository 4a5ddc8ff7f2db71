"""Random graph homomorphisms: motif observables of networkx networks with Monte Carlo standard errors.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network data analysis",
JMLR 24(9), 2023 (arXiv:1910.09483).

    result = samplax.graphs.sample_homomorphisms(samplax.graphs.path_motif(3), nx.karate_club_graph(),
                                                 targets={"triangle": [(0, 1), (1, 2), (0, 2)]})
    result.estimates["triangle"]     # t(H, G | F) with its MCSE, ESS and R-hat
    result.idata                     # the observables' traces: an ArviZ InferenceData (a DataTree on ArviZ 1.x)

The chains (`samplax.kernels.graph_hom`) sample x ~ pi(x) ∝ prod_{E_F} A(x_i, x_j) prod_i alpha(x_i); observables are
time averages over the kept draws, scored by ArviZ (mcse, ess, rhat, through samplax.infer.arviz_compat):
- `pairwise`: the k x k matrix E_pi[A(x_i, x_j)] (for a path motif this is the MACC),
- each named target H (F plus edges): t(H, G | F) = E_pi[prod_{E_H minus E_F} A(x_i, x_j)],
- with `thresholds`, its CHD profile f(s) = P_pi(prod_{E_H minus E_F} A(x_i, x_j) >= s) (inclusive, so f(0) = 1).
Edge weights are divided by their maximum first, so these are conditional densities of A in [0, 1].

The chains run through samplax's chain driver, `samplax.infer.run.ChainRunner`, as every MCMC method of
`samplax.fit` does: vectorised chains, a lax.scan over fixed-length chunks of draws compiled once ahead of time (the
network's arrays are arguments, so similar networks share one executable), and step t of a chain uses the key
fold_in(chain_key, t) (burn-in included), so neither the chunking nor a resume changes the draws. With
`checkpoint=DIR` each chunk is saved there (`samplax.infer.checkpoint`: atomic, data-only files, a validated
manifest) and calling again with the same arguments continues the run; `progress=True` shows a bar on stderr.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax.numpy as jnp
import networkx as nx
import numpy as np

from samplax.infer import arviz_compat, graph_chains
from samplax.infer import cache as compilation_cache
from samplax.infer.arviz_compat import IData
from samplax.infer.checkpoint import Checkpoint
from samplax.infer.progress import Progress
from samplax.infer.run import chunk_size_for, data_fingerprint
from samplax.kernels import graph_hom
from samplax.models import graphs as model
from samplax.models.graphs import (
    Motif,
    Network,
    ReducibleChainWarning,
    as_motif,
    as_network,
    brute_force_expectation,
    brute_force_homomorphism_density,
    chd_motifs,
    complete_motif,
    cycle_motif,
    exact_chd_profile,
    exact_conditional_density,
    exact_homomorphism_count,
    exact_homomorphism_density,
    exact_macc,
    exact_pair_expectation,
    exact_tree_sample,
    path_motif,
    star_motif,
)

compilation_cache.configure()  # a second process compiles nothing the first one did

__all__ = [
    "sample_homomorphisms",
    "macc",
    "chd_profile",
    "homomorphism_density",
    "macc_distance",
    "kernel_inputs",
    "exact_tree_sample",
    "HomomorphismSample",
    "ObservableEstimate",
    "MACCEstimate",
    "ProfileEstimate",
    "ReducibleChainWarning",
    "Motif",
    "Network",
    "as_motif",
    "as_network",
    "path_motif",
    "star_motif",
    "cycle_motif",
    "complete_motif",
    "chd_motifs",
    "exact_homomorphism_density",
    "exact_homomorphism_count",
    "exact_conditional_density",
    "exact_pair_expectation",
    "exact_macc",
    "exact_chd_profile",
    "brute_force_homomorphism_density",
    "brute_force_expectation",
]

CHAINS = ("glauber", "pivot")
AUTO_ENUMERATE_DEGREE = 64
_MAX_CHUNK_DRAWS = 1000
_MAX_CHUNK_VALUES = 1 << 24  # floats of observations held on the device per chunk


class ObservableEstimate(NamedTuple):
    """A time average over all chains with its Monte Carlo standard error, bulk ESS and R-hat.

    ESS and rank-normalised R-hat come from ArviZ. Arrays for matrix or profile observables; a trace that never varies
    gets se = 0 and nan ESS/R-hat.
    """

    value: Any
    se: Any
    ess: Any
    rhat: Any

    def __repr__(self):
        if np.ndim(self.value) == 0:
            return (
                f"ObservableEstimate(value={float(self.value):.6g}, se={float(self.se):.3g}, "
                f"ess={float(self.ess):.0f}, rhat={float(self.rhat):.3f})"
            )
        return f"ObservableEstimate(value=<array {np.shape(self.value)}>, ...)"


class MACCEstimate(NamedTuple):
    """The k x k MACC estimate with its standard errors, ESS, R-hat, and the InferenceData of its trace.

    MACC_ij = E_pi[A(x_i, x_j)] for the k-node path.
    """

    matrix: np.ndarray
    se: np.ndarray
    ess: np.ndarray
    rhat: np.ndarray
    idata: IData


class ProfileEstimate(NamedTuple):
    """A CHD profile f(s) = P_pi(prod_{E_H minus E_F} A >= s) on the threshold grid, with its uncertainty.

    It holds standard errors, ESS, R-hat, the conditional density t(H, G | F) (the area under the profile), and the
    InferenceData of the traces.
    """

    thresholds: np.ndarray
    profile: np.ndarray
    se: np.ndarray
    ess: np.ndarray
    rhat: np.ndarray
    conditional_density: ObservableEstimate
    idata: IData


@dataclass
class HomomorphismSample:
    """What sample_homomorphisms returns.

    estimates: observable name -> ObservableEstimate ("pairwise", each target's name, "<name>_chd" for profiles).
    idata: InferenceData; posterior holds the traces (chain, draw, ...), sample_stats the per-draw acceptance rate;
        attrs record the chain, its options, the seed and the effective burn-in and thinning.
    states: (chains, draws, k) network node indices of the kept draws when keep_states=True, else None
        (`network.labels[i]` names node i).
    motif, network: the parsed motif (internal node order, labels in motif.labels) and network.
    timing: seconds spent compiling ("compile_s", 0 when the compiled chunk was cached), in burn-in ("burn_in_s") and
        sampling ("sampling_s") in this call (chunks read back from a checkpoint cost none).
    """

    estimates: dict[str, ObservableEstimate]
    idata: IData
    states: np.ndarray | None
    motif: Motif
    network: Network
    chain: str
    timing: dict = field(default_factory=dict)

    def summary(self):
        """ArviZ's summary table of the observables (mean, sd, MCSE, ESS, R-hat)."""
        return arviz_compat.summary(self.idata)


def sample_homomorphisms(
    motif: Any,
    network: Any,
    *,
    chain: str = "glauber",
    steps: int = 10_000,
    chains: int = 4,
    seed: int = 0,
    weight: str | None = "weight",
    node_weight: Any = None,
    targets: Mapping[str, Any] | None = None,
    thresholds: Sequence[float] | None = None,
    pairwise: bool = True,
    burn_in: int | None = None,
    thin: int | None = None,
    conditional: str = "auto",
    proposals: int = 8,
    measure: str = "exact",
    lazy: bool | None = None,
    component: Hashable | None = None,
    bipartite_side: int | None = None,
    root: Hashable | None = None,
    init: Any = None,
    keep_states: bool = False,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> HomomorphismSample:
    """Sample homomorphisms of `motif` into `network` with the Glauber or pivot chain and average observables.

    motif: a networkx graph or edge list (any simple graph for "glauber"; a tree for "pivot", rooted at `root`,
        default its first node). network: a networkx Graph or DiGraph (or a Network from samplax.graphs.as_network).
    chain: "glauber" (any motif) or "pivot" (tree motifs; Metropolis-Hastings for pi, see measure).
    steps: kernel steps per chain after burn-in; every `thin`-th state is kept (default thin: k for glauber, one
        sweep of single-site updates; for pivot 1, or k // 2 when pairwise=True). burn_in: steps discarded first
        (default steps // 10; tree motifs start from exact draws of pi, other motifs from a randomised
        backtracking search).
    chains: independent chains, vectorised; many short chains started at exact draws often beat a few long ones
        (single-site moves crawl along long paths on sparse networks). seed: fixes everything (initial states and
        the kernel keys).
    weight, node_weight, component: how to read the network (see as_network): edge attribute or None for 0/1
        weights, node weights, and restriction to one connected component.
    targets: name -> H (a graph or edge list on the motif's node labels that contains every motif edge): estimates
        t(H, G | F); with `thresholds` also its CHD profile. pairwise: estimate E_pi[A(x_i, x_j)] for all pairs.
    conditional, proposals: how the Glauber chain draws from its conditional: "enumerate" (exact Glauber, work
        proportional to the largest degree), "rejection" (a lazy Glauber chain with `proposals` rejection tries per
        step, same target; for networks with hubs), or "auto": "enumerate" when the largest degree is at most
        AUTO_ENUMERATE_DEGREE (64), else "rejection". idata.attrs["conditional"] records the choice.
    measure: "exact" (pi) or "random_walk" (the authors' pivot chain, which samples a different law; reproduction only).
    lazy: pivot proposes the current root with probability 1/2; default True on a bipartite network, else False.
    bipartite_side: on a bipartite network the Glauber chain never moves motif node 0 between the two sides, so it
        needs this (0 or 1, networkx's two-colouring of the network, side 0 holding the lowest-index node of the
        component): estimates are then conditional on x_0 lying in that side.
    init: (chains, k) starting homomorphisms as network node labels, in the motif's internal order.
    keep_states: also return the kept states (chains, draws, k).
    progress: show a progress bar on stderr (stages "compiling", "burn-in", "sampling"; the bar advances between
        compiled chunks) and a summary line when the run ends.
    checkpoint: a directory (new, empty, or a checkpoint of this same run): the run is written there chunk by chunk,
        atomically, and calling again with the same arguments continues after the last complete chunk, giving the
        draws of an uninterrupted run. A checkpoint of another motif, network, seed or option is refused, naming it.
    checkpoint_every: kept draws (burn-in draws counted) per chunk; default at most 20 chunks with a checkpoint.
        Chunking never changes the draws.
    """
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {CHAINS}, got {chain!r}")
    for name, value, minimum in (("steps", steps, 1), ("chains", chains, 1)):
        if not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    graph_chains.check_run_options(seed, progress, checkpoint, checkpoint_every)
    parsed_motif = as_motif(motif, root=root, require_tree=chain == "pivot")
    if not parsed_motif.edges:
        raise ValueError(
            "motif: it has no edges, so homomorphisms are independent node draws and no chain is needed; "
            "estimate densities with samplax.graphs.homomorphism_density"
        )
    parsed_network = as_network(network, weight=weight, node_weight=node_weight, component=component)
    structure = model.check_irreducible(parsed_network, parsed_motif, chain)
    root_side = None
    if structure == "bipartite":
        if chain == "glauber":
            if bipartite_side not in (0, 1):
                raise ValueError(
                    "network: it is bipartite, and on a bipartite network the Glauber chain is reducible: the side "
                    "that each motif node lands on never changes, which splits the homomorphisms into two classes "
                    "it never crosses. Use chain='pivot' (tree motifs; it runs as a lazy chain there), or pass "
                    "bipartite_side=0 or 1 to sample the homomorphisms whose node 0 lies on that side"
                )
            root_side = (parsed_network.bipartition() == bipartite_side).astype(np.float64)
        else:
            if lazy is None:
                lazy = True
            elif not lazy:
                warnings.warn(
                    "network: it is bipartite, so the pivot chain's root walk has period 2; lazy=False keeps it "
                    "periodic (time averages still converge, but use lazy=True for ESS and R-hat you can trust)",
                    ReducibleChainWarning,
                    stacklevel=2,
                )
    elif bipartite_side is not None:
        raise ValueError("bipartite_side: the network is not bipartite; leave bipartite_side=None")
    if chain == "glauber" and lazy:
        raise ValueError("lazy: only the pivot chain has a lazy option; leave lazy=None for the Glauber chain")
    lazy = bool(lazy)
    if conditional not in ("auto", "enumerate", "rejection"):
        raise ValueError(f"conditional must be 'auto', 'enumerate' or 'rejection', got {conditional!r}")
    if measure not in ("exact", "random_walk"):
        raise ValueError(f"measure must be 'exact' or 'random_walk', got {measure!r}")
    if measure != "exact" and chain != "pivot":
        raise ValueError("measure: only the pivot chain has a 'random_walk' option; leave measure='exact'")
    if measure == "random_walk" and parsed_network.directed:
        raise ValueError("measure='random_walk' is defined for undirected networks only; use measure='exact'")

    k = parsed_motif.num_nodes
    if thin is None:  # Glauber: one sweep; pivot: every step, unless k(k+1)/2 pair look-ups would dominate the step
        thin = k if chain == "glauber" else (max(1, k // 2) if pairwise else 1)
    burn_in = steps // 10 if burn_in is None else burn_in
    if not isinstance(thin, (int, np.integer)) or thin < 1:
        raise ValueError(f"thin must be a positive integer, got {thin!r}")
    if not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(f"burn_in must be a nonnegative integer, got {burn_in!r}")
    target_edges = {name: model.added_edges(parsed_motif, target) for name, target in (targets or {}).items()}
    if thresholds is not None:
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.ndim != 1 or thresholds.size == 0:
            raise ValueError("thresholds: expected a nonempty 1-D sequence of values in [0, 1]")
        if not target_edges:
            raise ValueError("thresholds: a CHD profile needs targets={name: H}; pass at least one target")
    if not pairwise and not target_edges:
        raise ValueError("nothing to estimate: pass targets=... or keep pairwise=True")

    store = Checkpoint(checkpoint) if checkpoint is not None else None
    if store is not None:
        store.check_folder()  # a folder that is neither ours nor empty is refused before any work

    rng = np.random.default_rng([seed, 7])
    states = graph_chains.initial_states(parsed_motif, parsed_network, chains, rng, init, root_side)

    arrays = parsed_network.kernel_arrays()
    max_degree = int(max(np.diff(arrays["indptr"]).max(), np.diff(arrays["walk_indptr"]).max()))
    if conditional == "auto":
        conditional = "enumerate" if max_degree <= AUTO_ENUMERATE_DEGREE else "rejection"
    padded = graph_chains.padded_arrays(arrays)
    network_arrays = graph_hom.CSRNetwork(**{name: jnp.asarray(value) for name, value in padded.items()})
    # Only the search depth matters to the pivot chain and the rejection conditional; the enumeration width is
    # rounded up to a multiple of 8. With the padding above, similar networks share one compilation.
    search_depth = graph_hom.search_steps_for(max_degree)
    degree_key = -(-max_degree // 8) * 8 if chain == "glauber" and conditional == "enumerate" else 2**search_depth - 1
    motif_arrays = (
        graph_chains.motif_constraints(parsed_motif, parsed_network)
        if chain == "glauber"
        else graph_chains.rooted_tree(parsed_motif, parsed_network)
    )
    pairs = graph_chains.pair_indices(k, parsed_network.directed) if pairwise else np.zeros((0, 2), dtype=np.int32)
    target_rows, target_cols, target_mask = graph_chains.target_arrays(list(target_edges.values()))
    observation_arrays = (
        jnp.asarray(pairs[:, 0]),
        jnp.asarray(pairs[:, 1]),
        jnp.asarray(target_rows),
        jnp.asarray(target_cols),
        jnp.asarray(target_mask),
    )
    kernel_options = (
        (("conditional", conditional), ("proposals", int(proposals)))
        if chain == "glauber"
        else (("measure", measure), ("lazy", lazy))
    )

    # Burn-in and kept draws are one sequence of draws (`thin` steps each) cut into equal chunks; draw t of a chain
    # uses the keys fold_in(chain_key, t * thin + i) (ChainRunner), so neither the chunking nor a resume changes it.
    burn_draws = -(-burn_in // thin)
    num_draws = -(-steps // thin)
    total_draws = burn_draws + num_draws
    # device memory per draw and chain: its observations and the two words of its key
    values_per_draw = max(1, len(pairs) + len(target_edges) + (k if keep_states else 0)) + 2
    limit = max(1, min(_MAX_CHUNK_DRAWS, _MAX_CHUNK_VALUES // (values_per_draw * chains)))
    if checkpoint_every is not None:
        chunk = chunk_size_for(total_draws, checkpoint_every)
    elif store is not None:
        chunk = min(chunk_size_for(total_draws), limit)  # at most 20 checkpointed chunks
    else:
        # powers of two (or the limit), so that runs of different lengths share one compilation; the draws past the
        # end of the last chunk are computed and dropped. A progress bar gets about 20 chunks to advance on.
        chunk = min(limit, _power_of_two(-(-total_draws // 20) if progress else total_draws))

    manifest = None
    if store is not None:
        # what the checkpoint keeps (data.npz) and fingerprints: the network's arrays, the motif's and the observables'
        stored = {
            **{f"network_{name}": value for name, value in padded.items()},
            **{f"motif_{name}": np.asarray(value) for name, value in motif_arrays._asdict().items()},
            "pairs": pairs,
            "target_rows": target_rows,
            "target_cols": target_cols,
            "target_mask": target_mask,
        }
        settings = {
            "options": {
                **dict(kernel_options),
                "steps": int(steps),
                "burn_in": int(burn_in),
                "pairwise": bool(pairwise),
                "bipartite_side": bipartite_side,
                "keep_states": bool(keep_states),
                "targets": {name: [list(map(int, e)) for e in edges] for name, edges in target_edges.items()},
            },
            "chain": chain,
            "chains": int(chains),
            "thin": int(thin),
            "seed": int(seed),
            "burn_draws": burn_draws,
            "total_draws": total_draws,
            # how the chains start, and a fingerprint of the starting states (they follow from the seed unless given)
            "init": {
                "kind": "given" if init is not None else "exact" if parsed_motif.is_tree else "search",
                "states_sha256": data_fingerprint({"states": states}),
            },
        }
        manifest, chunk = graph_chains.open_checkpoint(
            store, parsed_motif, stored, states, settings, chunk, checkpoint_every
        )

    free_nodes = chain == "glauber" and graph_hom.has_free_nodes(motif_arrays)
    build = graph_chains.chain_builder(
        chain, kernel_options, degree_key, parsed_network.unweighted, free_nodes, keep_states
    )
    program_key = (
        "graph_hom",
        chain,
        kernel_options,
        degree_key,
        parsed_network.unweighted,
        free_nodes,
        keep_states,
        thin,
        chunk,
    )
    merged, timing = graph_chains.run_chains(
        build,
        program_key,
        (network_arrays, motif_arrays, observation_arrays),
        states,
        seed,
        thin=thin,
        burn_draws=burn_draws,
        num_draws=num_draws,
        chunk=chunk,
        store=store,
        manifest=manifest,
        progress=Progress(progress, f"{chain} chain", num_draws, chains),
    )
    pair_trace = merged["posterior"]["pairs"]
    target_trace = merged["posterior"]["targets"]
    acceptance = merged["stats"]["acceptance_rate"]
    kept_states = merged["posterior"]["states"] if keep_states else None
    burn_in_done = burn_draws * thin

    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {}
    node_coords = _coordinate_labels(parsed_motif.labels)
    if pairwise:
        matrix = np.zeros((chains, num_draws, k, k), dtype=np.float64)
        matrix[:, :, pairs[:, 0], pairs[:, 1]] = pair_trace
        if not parsed_network.directed:
            matrix[:, :, pairs[:, 1], pairs[:, 0]] = pair_trace
        posterior["pairwise"] = matrix
        dims["pairwise"] = ["motif_node", "motif_node_2"]
        coords["motif_node"] = node_coords
        coords["motif_node_2"] = node_coords
    for index, name in enumerate(target_edges):
        posterior[name] = target_trace[:, :, index].astype(np.float64)
        if thresholds is not None:
            profile_name = f"{name}_chd"
            posterior[profile_name] = (target_trace[:, :, index, None] >= thresholds[None, None, :]).astype(np.float64)
            dims[profile_name] = ["threshold"]
            coords["threshold"] = thresholds
    attrs = {
        "chain": chain,
        "seed": int(seed),
        "steps": int(steps),
        "thin": int(thin),
        "burn_in": int(burn_in_done),
        "motif_labels": json.dumps([str(label) for label in parsed_motif.labels]),
        "motif_edges": json.dumps([list(map(int, e)) for e in parsed_motif.edges]),
        "bipartite_side": -1 if bipartite_side is None else int(bipartite_side),
        **{key: (value if not isinstance(value, bool) else int(value)) for key, value in kernel_options},
    }
    idata = arviz_compat.from_dict(
        {"posterior": posterior, "sample_stats": {"acceptance_rate": acceptance.astype(np.float64)}},
        coords=coords,
        dims=dims,
        attrs=attrs,
    )
    estimates = _score(idata, list(posterior))
    return HomomorphismSample(estimates, idata, kept_states, parsed_motif, parsed_network, chain, timing)


def macc(network: Any, k: int, *, chain: str = "glauber", weight: str | None = "weight", **options) -> MACCEstimate:
    """Estimate the k x k matrix of average clustering coefficients of the k-node path.

    MACC_ij = E_pi[A(x_i, x_j)] (first off-diagonals 1 for 0/1 weights; odd distances inflated by backtracking, as pi
    says they should be).

    `options` go to sample_homomorphisms (steps, chains, seed, thin, ...). Exact value: exact_macc(network, k).
    """
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2 (nodes of the path), got {k!r}")
    if "targets" in options or "pairwise" in options:
        raise ValueError("macc: targets/pairwise are fixed here; call sample_homomorphisms for other observables")
    result = sample_homomorphisms(path_motif(k), network, chain=chain, weight=weight, **options)
    estimate = result.estimates["pairwise"]
    return MACCEstimate(estimate.value, estimate.se, estimate.ess, estimate.rhat, result.idata)


def chd_profile(
    network: Any,
    motif: Any = None,
    target: Any = None,
    *,
    arms: tuple[int, int] = (1, 1),
    thresholds: Sequence[float] | None = None,
    weight: str | None = "weight",
    chain: str = "glauber",
    **options,
) -> ProfileEstimate:
    """Estimate the CHD profile f(H, G | F)(s) = P_pi(prod_{E_H minus E_F} A(x_i, x_j) >= s) on a threshold grid.

    Default pair: (F, H) = chd_motifs(*arms), the path with arms of k1 and k2 nodes around root 0 and the edge closing
    it into a cycle; arms=(1, 1) gives a weighted clustering profile. thresholds: default 21 points in [0, 1].
    `options` go to sample_homomorphisms. Exact value: exact_chd_profile(network, motif, target, thresholds).
    """
    if (motif is None) != (target is None):
        raise ValueError("chd_profile: pass both motif and target, or neither (then arms=(k1, k2) picks them)")
    if motif is None:
        motif, target = chd_motifs(*arms)
    thresholds = np.linspace(0.0, 1.0, 21) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    result = sample_homomorphisms(
        motif,
        network,
        chain=chain,
        weight=weight,
        targets={"target": target},
        thresholds=thresholds,
        pairwise=False,
        **options,
    )
    profile = result.estimates["target_chd"]
    return ProfileEstimate(
        thresholds, profile.value, profile.se, profile.ess, profile.rhat, result.estimates["target"], result.idata
    )


def homomorphism_density(
    motif: Any, network: Any, *, weight: str | None = "weight", node_weight: Any = None, **options
) -> ObservableEstimate:
    """Estimate the homomorphism density t(F, G) of motif F in network G.

    Exact for forests (dynamic programming, se = 0); otherwise t(T, G) t(F, G | T) for a breadth-first spanning tree T
    of F, with t(T, G) exact and t(F, G | T) estimated by sample_homomorphisms(T, ..., targets={F}) (`options` go
    there). Motifs with several components multiply their components' densities; with checkpoint=DIR and several
    components that need sampling, component i is checkpointed in DIR/component_i.
    """
    parsed = as_motif(motif)
    parsed_network = as_network(network, weight=weight, node_weight=node_weight)
    graph = parsed.undirected_graph()
    if nx.is_forest(graph):
        return ObservableEstimate(exact_homomorphism_density(parsed, parsed_network), 0.0, math.nan, math.nan)
    value, relative_variance, ess, rhat = 1.0, 0.0, math.inf, 1.0
    components = [_component_graph(parsed, sorted(nodes)) for nodes in sorted(nx.connected_components(graph), key=min)]
    sampled = [sub_graph for sub_graph in components if not nx.is_tree(sub_graph.to_undirected())]
    checkpoint = options.pop("checkpoint", None)
    for sub_graph in components:
        if not nx.is_tree(sub_graph.to_undirected()):
            continue
        value *= exact_homomorphism_density(sub_graph, parsed_network)
    for index, sub_graph in enumerate(sampled):
        tree = nx.bfs_tree(sub_graph.to_undirected(), 0).to_undirected()
        if sub_graph.is_directed():
            tree = sub_graph.edge_subgraph([e for e in sub_graph.edges if tree.has_edge(*e)]).copy()
        tree_density = exact_homomorphism_density(tree, parsed_network)
        # one checkpoint folder per sampled component when there are several
        folder = (
            checkpoint
            if checkpoint is None or len(sampled) == 1
            else os.path.join(os.fspath(checkpoint), f"component_{index}")
        )
        result = sample_homomorphisms(
            tree, parsed_network, targets={"motif": sub_graph}, pairwise=False, checkpoint=folder, **options
        )
        conditional = result.estimates["motif"]
        value *= tree_density * float(conditional.value)
        if conditional.value > 0:
            relative_variance += (float(conditional.se) / float(conditional.value)) ** 2
        ess = min(ess, float(conditional.ess))
        rhat = max(rhat, float(conditional.rhat))
    return ObservableEstimate(value, abs(value) * math.sqrt(relative_variance), ess, rhat)


def macc_distance(first: Any, second: Any) -> float:
    """Spectral-norm distance between two k x k MACCs, minimised over reversing the path.

    min(||M1 - M2||_2, ||M1 - J M2 J||_2) with J the reversal permutation (MACCEstimate or arrays).
    """
    a = np.asarray(first.matrix if isinstance(first, MACCEstimate) else first, dtype=np.float64)
    b = np.asarray(second.matrix if isinstance(second, MACCEstimate) else second, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape != b.shape:
        raise ValueError(f"macc_distance: expected two square matrices of the same size, got {a.shape} and {b.shape}")
    reversed_b = b[::-1, ::-1]
    return float(min(np.linalg.norm(a - b, ord=2), np.linalg.norm(a - reversed_b, ord=2)))


def kernel_inputs(
    motif: Any, network: Any, chain: str = "glauber", *, weight: str | None = "weight", root: Hashable | None = None
):
    """The arrays the kernels of samplax.kernels.graph_hom take, for using them directly (BlackJAX style).

    (CSRNetwork, MotifConstraints) for chain="glauber", (CSRNetwork, RootedTree) for chain="pivot". Node i of the
    state is motif node as_motif(motif).labels[i]; states hold network node indices (labels in network.labels).

        network_arrays, constraints = samplax.graphs.kernel_inputs(motif, graph)
        algorithm = graph_hom.glauber(network_arrays, constraints)
    """
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {CHAINS}, got {chain!r}")
    parsed_motif = as_motif(motif, root=root, require_tree=chain == "pivot")
    parsed_network = as_network(network, weight=weight)
    arrays = {name: jnp.asarray(value) for name, value in parsed_network.kernel_arrays().items()}
    arrays = graph_hom.CSRNetwork(**arrays)
    if chain == "glauber":
        return arrays, graph_chains.motif_constraints(parsed_motif, parsed_network)
    return arrays, graph_chains.rooted_tree(parsed_motif, parsed_network)


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _component_graph(motif: Motif, nodes: list[int]) -> nx.Graph:
    """The motif's subgraph on `nodes`, relabelled 0..len(nodes)-1 in that order (a DiGraph for a directed motif)."""
    position = {node: i for i, node in enumerate(nodes)}
    graph = nx.DiGraph() if motif.directed else nx.Graph()
    graph.add_nodes_from(range(len(nodes)))
    graph.add_edges_from((position[i], position[j]) for i, j in motif.edges if i in position and j in position)
    return graph


def _coordinate_labels(labels: tuple) -> list:
    if all(isinstance(label, (int, np.integer)) for label in labels) or all(isinstance(label, str) for label in labels):
        return list(labels)
    return [str(label) for label in labels]


def _power_of_two(size: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(size, 1))))


def _score(idata: IData, names: list[str]) -> dict[str, ObservableEstimate]:
    posterior = arviz_compat.group(idata, "posterior")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ess = arviz_compat.ess(posterior[names], method="bulk")
        rhat = arviz_compat.rhat(posterior[names])
        mcse = arviz_compat.mcse(posterior[names], method="mean")
    estimates = {}
    for name in names:
        values = posterior[name].values
        mean = values.mean(axis=(0, 1))
        constant = np.all(values == values[:1, :1], axis=(0, 1))
        se = np.where(constant, 0.0, np.asarray(mcse[name].values, dtype=np.float64))
        ess_value = np.where(constant, np.nan, np.asarray(ess[name].values, dtype=np.float64))
        rhat_value = np.where(constant, np.nan, np.asarray(rhat[name].values, dtype=np.float64))
        if mean.ndim == 0:
            mean, se, ess_value, rhat_value = float(mean), float(se), float(ess_value), float(rhat_value)
        estimates[name] = ObservableEstimate(mean, se, ess_value, rhat_value)
    return estimates
