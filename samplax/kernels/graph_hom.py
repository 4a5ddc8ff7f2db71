"""Glauber and pivot chains over random graph homomorphisms.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network data analysis",
JMLR 24(9), 2023 (arXiv:1910.09483).

A network has edge weights A in [0, 1] and node weights alpha (a probability vector); a motif F has nodes [k] and
edges E_F. The state is a map x: [k] -> [n] (an int32 vector) and the target is

    pi(x) ∝ prod_{(i, j) in E_F} A(x_i, x_j) prod_i alpha(x_i).

Glauber chain (any motif). Pick a motif node j uniformly and resample x_j from its conditional

    P(x_j = z | x_{-j}) ∝ alpha(z) prod_{(i, j) in E_F} A(x_i, z) prod_{(j, l) in E_F} A(z, x_l),

which, for 0/1 weights and uniform alpha, is uniform over the common neighbours of the images of j's
motif-neighbours. Two exact ways to draw it are offered:
- `conditional="enumerate"`: list the candidates (the neighbours of the motif-neighbour image of smallest degree),
  weight each by the formula above and draw one. O(max degree) work per step: the literal Glauber chain.
- `conditional="rejection"`: draw `proposals` candidates z ∝ A(x_i0, z) alpha(z) from that same shortest neighbour
  list and accept each with probability prod_{other constraints} A(., z); move to the first accepted one, or stay
  when none is. Given x_{-j}, the move is "with probability q(x_{-j}) draw x_j from the exact conditional, else keep
  it", with q = 1 - (1 - p)^proposals and p the acceptance probability, which depends on x_{-j} only: a lazy Glauber
  chain with the same stationary law pi, and O(proposals log(max degree)) work per step.

Pivot chain (rooted tree motifs, nodes in depth-first order, parent(j) < j). From x with root image a:
1. propose a root y ~ P(a, .), the random walk on max(A, A^T): P(a, b) = A(a, b) / sum_c A(a, c);
   `lazy=True` keeps y = a with probability 1/2 (needed for aperiodicity on a bipartite network);
2. draw the tree top-down from y: x'_j ~ K(x'_parent(j), .), K(u, z) = A(u, z) alpha(z) / d(u),
   d(u) = sum_z A(u, z) alpha(z) (A^T for an edge that points to the parent);
3. accept x' with probability min(1, r), the Metropolis-Hastings ratio for pi:
   r = alpha(y) P(y, a) prod_{j >= 1} d(x'_parent(j)) / [alpha(a) P(a, y) prod_{j >= 1} d(x_parent(j))].
`measure="random_walk"` instead reproduces the authors' code: the root takes the Metropolis walk with stationary law
alpha (accepted with min(1, alpha(y) P(y, a) / (alpha(a) P(a, y)))) and the tree is redrawn from the resulting root
without a correction. Its stationary law is the random-walk measure alpha(x_0) prod_{j >= 1} K(x_parent(j), x_j),
which is NOT pi on a non-regular network: use it only to reproduce published numbers.

Networks are compressed sparse rows (`CSRNetwork`): rows 0..n-1 hold A(u, .); a directed network adds rows n..2n-1
holding A(., u). Edge weights are looked up by a binary search with a fixed number of halvings, so every kernel is
jit-able and vmap-able with no data-dependent loops.

The module follows BlackJAX's shape, once per chain: `init` (shared), `build_glauber_kernel` / `build_pivot_kernel`
(pure kernels taking the arrays as arguments), and `glauber` / `pivot`, the top-level `SamplingAlgorithm`s closed over
the arrays. Usage::

    network, constraints = samplax.graphs.kernel_inputs(motif, graph, chain="glauber")
    algorithm = graph_hom.glauber(network, constraints, conditional="rejection", proposals=4)
    state = algorithm.init(x0)
    state, info = jax.jit(algorithm.step)(rng_key, state)

`samplax.graphs.sample_homomorphisms` drives these algorithms through samplax's chain runner (vectorised chains,
compiled chunks, checkpoints); the kernels themselves know nothing of it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

_UNROLL_SEARCH = False  # unrolled searches run a little faster but compile about twice as slowly

__all__ = [
    "CSRNetwork",
    "MotifConstraints",
    "RootedTree",
    "HomomorphismState",
    "GlauberInfo",
    "PivotInfo",
    "init",
    "build_glauber_kernel",
    "build_pivot_kernel",
    "glauber",
    "pivot",
    "edge_weight",
    "search_steps_for",
    "has_free_nodes",
]


class CSRNetwork(NamedTuple):
    """A network as compressed sparse rows (a pytree of arrays).

    `samplax.models.graphs.Network.kernel_arrays()` builds one as a dict.

    indptr, indices, weights: the rows (A(u, .) for u < n; on a directed network A(., u - n) for u >= n); indices
        sorted within a row; weights in [0, 1].
    cumulative, strength: within-row running sums of weights * node_weights[indices], and their row totals (d(u) of
        the pivot chain): drawing z ∝ A(u, z) alpha(z) is one binary search.
    node_weights, node_cumulative: alpha and its running sum (for motif nodes without motif-neighbours).
    walk_*: the rows of max(A, A^T) (no node weights), on which the pivot chain's root walks.
    """

    indptr: jax.Array
    indices: jax.Array
    weights: jax.Array
    cumulative: jax.Array
    strength: jax.Array
    node_weights: jax.Array
    node_cumulative: jax.Array
    walk_indptr: jax.Array
    walk_indices: jax.Array
    walk_cumulative: jax.Array
    walk_strength: jax.Array


class MotifConstraints(NamedTuple):
    """What the Glauber chain needs of a motif: for node j, its motif-neighbours and how each constrains x_j.

    neighbours[j, m] is a motif-neighbour i of j (padded), mask[j, m] says whether the slot is used, and
    row_offsets[j, m] is 0 for an edge i -> j (weight A(x_i, z): row x_i) or n for an edge j -> i on a directed
    network (weight A(z, x_i): in-row x_i + n). A motif edge listed in both directions fills two slots.
    """

    neighbours: jax.Array  # (k, M) int32
    row_offsets: jax.Array  # (k, M) int32
    mask: jax.Array  # (k, M) bool


class RootedTree(NamedTuple):
    """What the pivot chain needs of a tree motif in depth-first order.

    parents[j] < j (parents[0] = 0, unused) and row_offsets[j], 0 when the edge reads A(x_parent, x_j) and n when it
    reads A(x_j, x_parent) (directed network).
    """

    parents: jax.Array  # (k,) int32
    row_offsets: jax.Array  # (k,) int32


class HomomorphismState(NamedTuple):
    """The state of both chains: a homomorphism x (k,) int32 of network node indices.

    x_0 is the pivot chain's root. Nothing else is cached: each step recomputes the few edge weights it needs.
    """

    homomorphism: jax.Array


class GlauberInfo(NamedTuple):
    """What a Glauber step reports.

    updated_node: the motif node j resampled. is_moved: x_j changed. acceptance_rate: 1 when a draw from the
    conditional was made (always for "enumerate"), 0 when the rejection sampler kept x_j.
    """

    updated_node: jax.Array
    is_moved: jax.Array
    acceptance_rate: jax.Array


class PivotInfo(NamedTuple):
    """What a pivot step reports.

    acceptance_rate: min(1, r) of the Metropolis-Hastings step (for measure="random_walk", of the root move).
    is_accepted: whether the proposal was taken.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array


def init(homomorphism) -> HomomorphismState:
    """The state at a homomorphism x (k,) of network node indices (both chains)."""
    return HomomorphismState(jnp.asarray(homomorphism, dtype=jnp.int32))


# --------------------------------------------------------------------------------------------------------------------
# Glauber chain
# --------------------------------------------------------------------------------------------------------------------


def build_glauber_kernel(
    *,
    max_degree: int,
    conditional: str = "enumerate",
    proposals: int = 8,
    unweighted: bool = False,
    free_nodes: bool = True,
):
    """Build the Glauber kernel `kernel(rng_key, state, network, constraints) -> (state, info)`.

    max_degree: the longest row of the network (static: fixes the binary-search depth and the enumeration width).
    conditional: "enumerate" (the exact conditional, O(max_degree) per step) or "rejection" (a lazy Glauber chain
        with `proposals` rejection-sampling tries per step; same target pi; see the module docstring).
    unweighted: True when every weight is 1 and alpha is uniform: neighbours are then drawn by index.
    free_nodes: False when every motif node has a motif-neighbour (static), which skips drawing a free node from
        alpha on every step (a binary search over all n nodes).
    """
    if conditional not in ("enumerate", "rejection"):
        raise ValueError(f"conditional must be 'enumerate' or 'rejection', got {conditional!r}")
    if not isinstance(proposals, (int, np.integer)) or proposals < 1:
        raise ValueError(f"proposals must be a positive integer, got {proposals!r}")
    if max_degree < 1:
        raise ValueError(f"max_degree must be >= 1, got {max_degree}")
    depth = search_steps_for(max_degree)

    def kernel(rng_key, state: HomomorphismState, network: CSRNetwork, constraints: MotifConstraints):
        x = state.homomorphism
        k, num_slots = constraints.neighbours.shape
        # 0: the node j; 1: a free node; 2..: the proposals, then (weighted only) their acceptance tests
        uniforms = jax.random.uniform(rng_key, (2 + proposals * (1 if unweighted else 2),))
        j = jnp.minimum((uniforms[0] * k).astype(jnp.int32), k - 1)
        mask = constraints.mask[j]
        rows = x[constraints.neighbours[j]] + constraints.row_offsets[j]
        degrees = network.indptr[rows + 1] - network.indptr[rows]
        pivot_slot = jnp.argmin(jnp.where(mask, degrees, jnp.iinfo(jnp.int32).max))
        has_constraint = jnp.any(mask)
        pivot_row = rows[pivot_slot]
        start, end = network.indptr[pivot_row], network.indptr[pivot_row + 1]
        # The other constraints: every slot but the pivot's, in order (slot i, or i + 1 from the pivot's on).
        others = jnp.arange(num_slots - 1) + (jnp.arange(num_slots - 1) >= pivot_slot)
        other_rows, other_mask = rows[others], mask[others]

        def others_product(candidates):
            """Product over the other constraints of their weight at each candidate z: shape candidates.shape."""
            if num_slots == 1:
                return jnp.ones(candidates.shape, jnp.float32)
            weights = edge_weight(network, other_rows[:, None], candidates[None, :], depth)
            return jnp.prod(jnp.where(other_mask[:, None], weights, 1.0), axis=0)

        if conditional == "enumerate":
            offsets = jnp.arange(max_degree)
            valid = offsets < end - start
            positions = jnp.where(valid, start + offsets, 0)
            candidates = network.indices[positions]
            weights = network.weights[positions] * network.node_weights[candidates] * others_product(candidates)
            weights = jnp.where(valid, weights, 0.0)
            running = jnp.cumsum(weights)
            chosen = jnp.sum(running <= uniforms[2] * running[-1])
            new_value = candidates[jnp.minimum(chosen, max_degree - 1)]
            drawn = jnp.asarray(True)
        else:
            proposal_uniforms = uniforms[2 : 2 + proposals]
            if unweighted:
                positions = start + (proposal_uniforms * (end - start)).astype(jnp.int32)
            else:
                targets = network.cumulative[end - 1] * proposal_uniforms
                positions = _upper_bound(network.cumulative, start, end, targets, depth)
            positions = jnp.minimum(positions, end - 1)
            candidates = network.indices[positions]
            accept_probability = others_product(candidates)
            if unweighted:  # 0/1 weights: accept exactly the common neighbours
                accepted = accept_probability > 0
            else:
                accepted = uniforms[2 + proposals :] < accept_probability
            drawn = jnp.any(accepted)
            new_value = jnp.where(drawn, candidates[jnp.argmax(accepted)], x[j])
        if free_nodes:
            free_value = _sample_cumulative(network.node_cumulative, uniforms[1])
            new_value = jnp.where(has_constraint, new_value, free_value)
            drawn = jnp.where(has_constraint, drawn, True)
        new_x = x.at[j].set(new_value.astype(x.dtype))
        info = GlauberInfo(updated_node=j, is_moved=new_value != x[j], acceptance_rate=drawn.astype(jnp.float32))
        return HomomorphismState(new_x), info

    return kernel


def glauber(
    network: CSRNetwork,
    constraints: MotifConstraints,
    *,
    max_degree: int | None = None,
    conditional: str = "enumerate",
    proposals: int = 8,
    unweighted: bool | None = None,
    free_nodes: bool | None = None,
) -> SamplingAlgorithm:
    """The Glauber chain as a BlackJAX `SamplingAlgorithm` closed over a network and a motif.

        algorithm = graph_hom.glauber(network, constraints)
        state = algorithm.init(x0)
        state, info = jax.jit(algorithm.step)(key, state)

    `max_degree`, `unweighted` and `free_nodes` (see `build_glauber_kernel`) are read from the arrays when not given;
    pass them when the arrays are traced (inside a jit), where they cannot be read.
    """
    max_degree, unweighted = _static_facts(network, max_degree, unweighted)
    kernel = build_glauber_kernel(
        max_degree=max_degree,
        conditional=conditional,
        proposals=proposals,
        unweighted=unweighted,
        free_nodes=has_free_nodes(constraints) if free_nodes is None else bool(free_nodes),
    )

    def step(rng_key, state):
        return kernel(rng_key, state, network, constraints)

    return SamplingAlgorithm(lambda position, rng_key=None: init(position), step)


# --------------------------------------------------------------------------------------------------------------------
# Pivot chain
# --------------------------------------------------------------------------------------------------------------------


def build_pivot_kernel(
    *,
    max_degree: int,
    measure: str = "exact",
    lazy: bool = False,
    unweighted: bool = False,
):
    """Build the pivot kernel `kernel(rng_key, state, network, tree) -> (state, info)`.

    measure: "exact" (Metropolis-Hastings for pi) or "random_walk" (the authors' chain, whose stationary law is the
        random-walk measure, not pi; see the module docstring).
    lazy: propose the current root with probability 1/2 (aperiodic on bipartite networks).
    """
    if measure not in ("exact", "random_walk"):
        raise ValueError(f"measure must be 'exact' or 'random_walk', got {measure!r}")
    if max_degree < 1:
        raise ValueError(f"max_degree must be >= 1, got {max_degree}")
    depth = search_steps_for(max_degree)

    def kernel(rng_key, state: HomomorphismState, network: CSRNetwork, tree: RootedTree):
        x = state.homomorphism
        k = x.shape[0]
        uniforms = jax.random.uniform(rng_key, (3 + k,))
        root = x[0]
        walk_start, walk_end = network.walk_indptr[root], network.walk_indptr[root + 1]
        if unweighted:
            position = walk_start + (uniforms[0] * (walk_end - walk_start)).astype(jnp.int32)
        else:
            target = network.walk_cumulative[walk_end - 1] * uniforms[0]
            position = _upper_bound(network.walk_cumulative, walk_start, walk_end, target, depth)
        proposed_root = network.walk_indices[jnp.minimum(position, walk_end - 1)]
        if lazy:
            proposed_root = jnp.where(uniforms[1] < 0.5, root, proposed_root)
        log_root_ratio = (
            jnp.log(network.node_weights[proposed_root])
            - jnp.log(network.node_weights[root])
            + jnp.log(network.walk_strength[root])
            - jnp.log(network.walk_strength[proposed_root])
        )
        log_u = jnp.log(uniforms[2])

        if measure == "random_walk":
            root_accepted = log_u < log_root_ratio
            new_root = jnp.where(root_accepted, proposed_root, root)
            new_x, _ = _draw_tree(network, tree, new_root, uniforms[3:], depth, unweighted)
            info = PivotInfo(jnp.exp(jnp.minimum(log_root_ratio, 0.0)), root_accepted)
            return HomomorphismState(new_x), info

        new_x, log_parent_strength = _draw_tree(network, tree, proposed_root, uniforms[3:], depth, unweighted)
        old_rows = x[tree.parents[1:]] + tree.row_offsets[1:]
        log_old_strength = jnp.sum(jnp.log(network.strength[old_rows]))
        log_ratio = log_root_ratio + log_parent_strength - log_old_strength
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accepted = log_u < log_ratio
        new_x = jnp.where(accepted, new_x, x)
        return HomomorphismState(new_x), PivotInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), accepted)

    return kernel


def pivot(
    network: CSRNetwork,
    tree: RootedTree,
    *,
    max_degree: int | None = None,
    measure: str = "exact",
    lazy: bool = False,
    unweighted: bool | None = None,
) -> SamplingAlgorithm:
    """The pivot chain as a BlackJAX `SamplingAlgorithm` closed over a network and a rooted tree motif.

        algorithm = graph_hom.pivot(network, tree)
        state = algorithm.init(x0)
        state, info = jax.jit(algorithm.step)(key, state)

    `max_degree` and `unweighted` are read from the arrays when not given; pass them when the arrays are traced.
    """
    max_degree, unweighted = _static_facts(network, max_degree, unweighted)
    kernel = build_pivot_kernel(max_degree=max_degree, measure=measure, lazy=lazy, unweighted=unweighted)

    def step(rng_key, state):
        return kernel(rng_key, state, network, tree)

    return SamplingAlgorithm(lambda position, rng_key=None: init(position), step)


def _draw_tree(network, tree, root, uniforms, depth, unweighted):
    """Draw x_j ~ K(x_parent(j), .) for j = 1..k-1 from the given root; return x and sum_j log d(x_parent(j)).

    A parent row of zero strength (no way to continue) gives log d = -inf, which the caller's ratio rejects.
    """
    k = uniforms.shape[0]
    x = jnp.zeros((k,), dtype=jnp.int32).at[0].set(root.astype(jnp.int32))

    def body(j, carry):
        x, log_strength = carry
        row = x[tree.parents[j]] + tree.row_offsets[j]
        start, end = network.indptr[row], network.indptr[row + 1]
        if unweighted:
            position = start + (uniforms[j] * (end - start)).astype(jnp.int32)
        else:
            target = network.cumulative[jnp.maximum(end - 1, 0)] * uniforms[j]
            position = _upper_bound(network.cumulative, start, end, target, depth)
        position = jnp.clip(position, 0, jnp.maximum(end - 1, 0))
        x = x.at[j].set(network.indices[position])
        return x, log_strength + jnp.log(network.strength[row])

    return jax.lax.fori_loop(1, k, body, (x, jnp.zeros((), jnp.float32)))


# --------------------------------------------------------------------------------------------------------------------
# Sparse look-ups
# --------------------------------------------------------------------------------------------------------------------


def search_steps_for(max_degree: int) -> int:
    """Halvings a binary search needs over a row of at most max_degree entries: ceil(log2(max_degree + 1))."""
    return max(1, math.ceil(math.log2(max_degree + 1)))


def edge_weight(network: CSRNetwork, rows, columns, depth: int):
    """The weight of entry (row, column) of the CSR rows (0 when absent), elementwise over broadcast rows/columns.

    `depth` = search_steps_for(max row length).
    """
    rows, columns = jnp.broadcast_arrays(jnp.asarray(rows), jnp.asarray(columns))
    start, end = network.indptr[rows], network.indptr[rows + 1]
    position = _lower_bound(network.indices, start, end, columns, depth)
    safe = jnp.minimum(position, network.indices.shape[0] - 1)
    hit = (position < end) & (network.indices[safe] == columns)
    return jnp.where(hit, network.weights[safe], 0.0)


def _lower_bound(values, start, end, target, depth):
    """First position p in [start, end) with values[p] >= target (end if none), in `depth` fixed halvings."""
    last = values.shape[0] - 1
    start, end, target = jnp.broadcast_arrays(start, end, target)

    def body(_, bounds):
        low, high = bounds
        middle = (low + high) // 2
        go_right = values[jnp.minimum(middle, last)] < target
        active = low < high
        return jnp.where(active & go_right, middle + 1, low), jnp.where(active & ~go_right, middle, high)

    low, _ = jax.lax.fori_loop(0, depth, body, (start, end), unroll=_UNROLL_SEARCH)
    return low


def _upper_bound(values, start, end, target, depth):
    """First position p in [start, end) with values[p] > target (end if none), in `depth` fixed halvings."""
    last = values.shape[0] - 1
    start, end, target = jnp.broadcast_arrays(start, end, target)

    def body(_, bounds):
        low, high = bounds
        middle = (low + high) // 2
        go_right = values[jnp.minimum(middle, last)] <= target
        active = low < high
        return jnp.where(active & go_right, middle + 1, low), jnp.where(active & ~go_right, middle, high)

    low, _ = jax.lax.fori_loop(0, depth, body, (start, end), unroll=_UNROLL_SEARCH)
    return low


def _sample_cumulative(cumulative, uniform):
    """An index drawn with probabilities given by a normalised running sum.

    The last entry is 1; entries past the last node (padding) repeat 1 and are never drawn.
    """
    index = jnp.searchsorted(cumulative, uniform * cumulative[-1], side="right")
    return jnp.minimum(index, cumulative.shape[0] - 1).astype(jnp.int32)


def has_free_nodes(constraints: MotifConstraints) -> bool:
    """Whether some motif node has no motif-neighbour (its Glauber update draws from alpha).

    True when unknown (constraints traced inside a jit).
    """
    try:
        return bool(not np.asarray(constraints.mask).any(axis=1).all())
    except jax.errors.TracerArrayConversionError:
        return True


def _static_facts(network: CSRNetwork, max_degree: int | None, unweighted: bool | None):
    if max_degree is None:
        max_degree = int(np.max(np.diff(np.asarray(network.indptr))))
        max_degree = max(max_degree, int(np.max(np.diff(np.asarray(network.walk_indptr)))))
    if unweighted is None:
        weights = np.asarray(network.weights)
        node_weights = np.asarray(network.node_weights)
        unweighted = bool(np.all(weights == 1.0) and np.all(node_weights == node_weights[0]))
    return int(max_degree), bool(unweighted)
