"""Starting states for the chains: exact draws for tree motifs and random homomorphisms for any motif.

`exact_tree_sample` draws x ~ pi exactly for a tree motif from the tree messages (a start in stationarity), and
`search_homomorphisms` finds random homomorphisms by randomised backtracking (a valid start for the Glauber chain on
any motif, not a draw from pi).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from samplax.models.graphs.exact import tree_messages
from samplax.models.graphs.motif import Motif
from samplax.models.graphs.network import Network

__all__ = ["exact_tree_sample", "search_homomorphisms"]


def exact_tree_sample(
    motif: Motif, network: Network, num_samples: int, rng: np.random.Generator, root_mask: np.ndarray | None = None
) -> np.ndarray:
    """Independent draws x ~ pi for a tree motif (num_samples, k), by the tree messages.

    The root is drawn from alpha(z) message[0](z), then each child j from A_j(x_parent, z) alpha(z) message[j](z)
    (A_j = A or A^T).
    """
    messages, log_scales = tree_messages(motif, network, root_mask)
    if not np.isfinite(log_scales).all():
        raise ValueError("motif/network: the motif has no homomorphism into the network (t(F, G) = 0)")
    n, k = network.num_nodes, motif.num_nodes
    down = motif.tree_edge_points_down()
    samples = np.zeros((num_samples, k), dtype=np.int64)
    root_weights = network.node_weights * messages[0]
    samples[:, 0] = rng.choice(n, size=num_samples, p=root_weights / root_weights.sum())
    for j in range(1, k):
        if down[j]:
            indptr, indices, weights = network.out_indptr, network.out_indices, network.out_weights
        else:
            indptr, indices, weights = network.in_indptr, network.in_indices, network.in_weights
        entry_weights = weights * network.node_weights[indices] * messages[j][indices]
        running = np.cumsum(entry_weights)
        parents = samples[:, motif.parents[j]]
        starts, ends = indptr[parents], indptr[parents + 1]
        offsets = np.concatenate([[0.0], running])[starts]
        totals = np.concatenate([[0.0], running])[ends] - offsets
        targets = offsets + rng.random(num_samples) * totals
        positions = np.searchsorted(running, targets, side="right")
        positions = np.clip(positions, starts, ends - 1)
        samples[:, j] = indices[positions]
    return samples


def search_homomorphisms(
    motif: Motif,
    network: Network,
    num_samples: int,
    rng: np.random.Generator,
    *,
    root_side: np.ndarray | None = None,
    max_expansions: int = 200_000,
) -> np.ndarray:
    """Random homomorphisms (num_samples, k) found by randomised backtracking.

    Any motif; a starting point for the Glauber chain, not a draw from pi. Motif nodes are placed in breadth-first
    order, each on a random candidate adjacent (with positive weight, in the right direction) to its already placed
    motif-neighbours.
    """
    k = motif.num_nodes
    graph = motif.undirected_graph()
    order: list[int] = []
    for component in sorted(nx.connected_components(graph), key=min):
        start = min(component)
        order.extend(nx.bfs_tree(graph, start).nodes)
    out_sets = [
        set(network.out_indices[network.out_indptr[u] : network.out_indptr[u + 1]].tolist())
        for u in range(network.num_nodes)
    ]
    in_sets = (
        out_sets
        if not network.directed
        else [
            set(network.in_indices[network.in_indptr[u] : network.in_indptr[u + 1]].tolist())
            for u in range(network.num_nodes)
        ]
    )
    positive = np.flatnonzero(network.node_weights > 0)
    edge_set = set(motif.edges)
    samples = np.zeros((num_samples, k), dtype=np.int64)
    for s in range(num_samples):
        assignment: dict[int, int] = {}
        expansions = [0]

        def candidates(position: int) -> list[int]:
            node = order[position]
            constraint_sets = []
            for other in graph[node]:
                if other in assignment:
                    image = assignment[other]
                    if (other, node) in edge_set:
                        constraint_sets.append(out_sets[image])
                    if (node, other) in edge_set:
                        constraint_sets.append(in_sets[image])
            if constraint_sets:
                constraint_sets.sort(key=len)
                pool = set(constraint_sets[0]).intersection(*constraint_sets[1:])
                pool = [z for z in pool if network.node_weights[z] > 0]
            else:
                pool = positive.tolist()
            if node == 0 and root_side is not None:
                pool = [z for z in pool if root_side[z]]
            pool = list(pool)
            rng.shuffle(pool)
            return pool

        def place(position: int) -> bool:
            if position == k:
                return True
            for z in candidates(position):
                expansions[0] += 1
                if expansions[0] > max_expansions:
                    return False
                assignment[order[position]] = z
                if place(position + 1):
                    return True
                del assignment[order[position]]
            return False

        if not place(0):
            raise ValueError(
                "motif/network: found no homomorphism of the motif into the network by backtracking "
                f"({max_expansions} placements tried); pass starting states with init=..., or check that one exists"
            )
        samples[s] = [assignment[i] for i in range(k)]
    return samples
