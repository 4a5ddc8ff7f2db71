"""Exact evaluators: homomorphism densities, conditional densities, MACC and CHD profiles, without sampling.

Everything the samplers estimate has an exact value where that is cheap, which the tests and the benchmarks compare
with: tree motifs by leaf-to-root dynamic programming in O(k nnz(A)) (`tree_messages`), cycles by traces of matrix
products, expectations of a function of A(x_a, x_b) under pi for a tree motif by dense matrix products along the
tree path from a to b (MACC, CHD profiles), and brute force over all n^k maps for tiny graphs. NumPy in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np

from samplax.models.graphs.motif import Motif, _check_count, as_motif
from samplax.models.graphs.network import Network, as_network

__all__ = [
    "BRUTE_FORCE_LIMIT",
    "added_edges",
    "brute_force_expectation",
    "brute_force_homomorphism_density",
    "exact_chd_profile",
    "exact_conditional_density",
    "exact_homomorphism_count",
    "exact_homomorphism_density",
    "exact_macc",
    "exact_pair_expectation",
    "tree_messages",
]

BRUTE_FORCE_LIMIT = 20_000_000  # largest number of maps n^k that brute force enumerates


def exact_homomorphism_density(motif: Any, network: Any, *, weight: str | None = "weight", log: bool = False) -> float:
    """t(F, G) = sum_x prod_{E_F} A(x_i, x_j) prod_i alpha(x_i), exactly.

    Each connected component of the motif is evaluated on its own and the results multiplied: trees by leaf-to-root
    dynamic programming (sparse, any network size), cycles by the trace of a product of n x n matrices (dense, at most
    DENSE_LIMIT nodes), anything else by brute force when n^k <= BRUTE_FORCE_LIMIT. `log=True` returns log t.
    """
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    if motif.is_tree:
        log_total = _log_tree_density(motif, network)
        return log_total if log else math.exp(log_total)
    graph = motif.undirected_graph()
    log_total = 0.0
    for component in nx.connected_components(graph):
        nodes = sorted(component)
        if len(nodes) == 1:
            continue  # an isolated motif node contributes sum_z alpha(z) = 1
        sub = _sub_motif(motif, nodes)
        undirected_sub = sub.undirected_graph()
        if nx.is_tree(undirected_sub):
            log_total += _log_tree_density(as_motif(_to_nx(sub)), network)
        elif all(d == 2 for _, d in undirected_sub.degree()):
            log_total += _log_cycle_density(sub, network)
        else:
            value = brute_force_homomorphism_density(sub, network)
            log_total += math.log(value) if value > 0 else -math.inf
    return log_total if log else math.exp(log_total)


def exact_homomorphism_count(motif: Any, network: Any, *, weight: str | None = None) -> float:
    """The homomorphism count hom(F, G) = sum_x prod_{E_F} A(x_i, x_j) with uniform node weights.

    An integer for the 0/1 adjacency, the default here; equals t(F, G) n^k. Weighted: the sum of products of the scaled
    weights.
    """
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    if not np.allclose(network.node_weights, 1.0 / network.num_nodes):
        raise ValueError("exact_homomorphism_count: counts use uniform node weights; use exact_homomorphism_density")
    log_t = exact_homomorphism_density(motif, network, log=True)
    value = math.exp(log_t + motif.num_nodes * math.log(network.num_nodes))
    return float(round(value)) if network.unweighted and value < 2**53 else value


def _to_nx(motif: Motif) -> nx.Graph:
    graph = nx.DiGraph() if motif.directed else nx.Graph()
    graph.add_nodes_from(range(motif.num_nodes))
    graph.add_edges_from(motif.edges)
    return graph


def _sub_motif(motif: Motif, nodes: list[int]) -> Motif:
    position = {node: i for i, node in enumerate(nodes)}
    edges = tuple((position[i], position[j]) for i, j in motif.edges if i in position and j in position)
    return Motif(labels=tuple(range(len(nodes))), edges=edges, directed=motif.directed, parents=None)


def tree_messages(motif: Motif, network: Network, root_mask: np.ndarray | None = None):
    """Leaf-to-root messages of a tree motif (nodes in depth-first order, parents[j] < j).

    message[j](z) = prod_{children c of j} sum_w A_c(z, w) alpha(w) message[c](w), with A_c = A for an edge j -> c and
    A^T for c -> j; each message is divided by its maximum and the logs of those factors are returned, so that
    log t(F, G) = log sum_z alpha(z) message[0](z) + sum(log_scales). `root_mask` (0/1 per network node) restricts the
    image of the root.
    """
    k = motif.num_nodes
    down = motif.tree_edge_points_down()
    messages = [np.ones(network.num_nodes) for _ in range(k)]
    log_scales = np.zeros(k)
    for j in range(k - 1, 0, -1):
        parent = motif.parents[j]
        lifted = network.multiply(network.node_weights * messages[j], transpose=not down[j])
        messages[parent] = messages[parent] * lifted
    for j in range(k):
        if j == 0 and root_mask is not None:
            messages[0] = messages[0] * root_mask
        peak = messages[j].max()
        if peak > 0:
            messages[j] = messages[j] / peak
            log_scales[j] = math.log(peak)
        else:
            log_scales[j] = -math.inf
    return messages, log_scales


def _log_tree_density(motif: Motif, network: Network) -> float:
    # Rescaling a message rescales its parent's message by the same factor: accumulate in a bottom-up pass.
    k = motif.num_nodes
    down = motif.tree_edge_points_down()
    messages = [np.ones(network.num_nodes) for _ in range(k)]
    log_total = 0.0
    for j in range(k - 1, 0, -1):
        peak = messages[j].max()
        if peak <= 0:
            return -math.inf
        messages[j] = messages[j] / peak
        log_total += math.log(peak)
        parent = motif.parents[j]
        lifted = network.multiply(network.node_weights * messages[j], transpose=not down[j])
        messages[parent] = messages[parent] * lifted
    root_total = float(network.node_weights @ messages[0])
    return log_total + (math.log(root_total) if root_total > 0 else -math.inf)


def _log_cycle_density(motif: Motif, network: Network) -> float:
    graph = motif.undirected_graph()
    cycle = [edge[0] for edge in nx.find_cycle(graph, source=0)]
    edge_set = set(motif.edges)
    adjacency = network.dense_adjacency()
    alpha = network.node_weights
    product = np.eye(network.num_nodes)
    log_scale = 0.0
    for position, node in enumerate(cycle):
        following = cycle[(position + 1) % len(cycle)]
        step = adjacency if (node, following) in edge_set else adjacency.T
        product = product @ (step * alpha[None, :])
        peak = np.abs(product).max()
        if peak == 0:
            return -math.inf
        product /= peak
        log_scale += math.log(peak)
    trace = float(np.trace(product))
    return log_scale + (math.log(trace) if trace > 0 else -math.inf)


def exact_pair_expectation(
    motif: Any,
    network: Any,
    pairs: Sequence[tuple[Hashable, Hashable]],
    function: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    weight: str | None = "weight",
    root_mask: np.ndarray | None = None,
) -> np.ndarray:
    """E_pi[function(A(x_a, x_b))] for each (a, b) in `pairs` (motif labels), for a tree motif F, exactly.

    With `function` the identity (the default) this is the conditional density t(F + ab, G | F). The tree path
    a = p_0, ..., p_L = b carries a product of n x n matrices diag(alpha s_0) E_1 diag(alpha s_1) ... E_L
    diag(alpha m_b), where E_t is A or A^T along the path, s_t the messages of the branches that leave the path at
    p_t and m_b the message of b's own subtree (motif rooted at a); its entries, weighted by function(A), summed and
    divided by its total, give the expectation. Dense: at most DENSE_LIMIT network nodes. `root_mask` restricts the
    image of the motif's root (its node 0) to the network nodes where the mask is 1.
    """
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    if not motif.is_tree:
        raise ValueError("exact_pair_expectation: the motif must be a tree (use brute_force_expectation otherwise)")
    transform = (lambda a: a) if function is None else function
    adjacency = network.dense_adjacency()
    transformed = np.asarray(transform(adjacency), dtype=np.float64)
    alpha = network.node_weights
    label_index = {label: i for i, label in enumerate(motif.labels)}
    edge_set = set(motif.edges)
    graph = motif.undirected_graph()
    extra_root = np.ones(network.num_nodes) if root_mask is None else np.asarray(root_mask, dtype=np.float64)
    results = []
    for a_label, b_label in pairs:
        a, b = label_index[a_label], label_index[b_label]
        # Re-root the tree at a: parent pointers by breadth-first search.
        parent = {a: None}
        order = [a]
        for node in order:
            for nb in graph[node]:
                if nb not in parent:
                    parent[nb] = node
                    order.append(nb)
        messages = {node: extra_root.copy() if node == 0 else np.ones(network.num_nodes) for node in order}
        for node in reversed(order[1:]):
            peak = messages[node].max()
            messages[node] = messages[node] / peak if peak > 0 else messages[node]
            p = parent[node]
            lifted = network.multiply(alpha * messages[node], transpose=(p, node) not in edge_set)
            messages[p] = messages[p] * lifted
        path = [b]
        while path[-1] != a:
            path.append(parent[path[-1]])
        path.reverse()
        if a == b:
            weights_a = alpha * messages[a]
            results.append(float(weights_a @ np.diag(transformed)) / float(weights_a.sum()))
            continue
        # side messages s_t: product over children of p_t other than p_{t+1}
        on_path = set(path)
        product = None
        for t, node in enumerate(path):
            if t < len(path) - 1:
                side = np.ones(network.num_nodes) if node != 0 else extra_root.copy()
                for child in graph[node]:
                    if parent.get(child) == node and child not in on_path:
                        side = side * network.multiply(alpha * messages[child], transpose=(node, child) not in edge_set)
                node_factor = alpha * side
            else:
                node_factor = alpha * messages[node]
            if product is None:
                product = np.diag(node_factor)
            else:
                previous = path[t - 1]
                step = adjacency if (previous, node) in edge_set else adjacency.T
                product = (product @ step) * node_factor[None, :]
            peak = np.abs(product).max()
            if peak > 0:
                product = product / peak
        total = product.sum()
        results.append(float((product * transformed).sum() / total) if total > 0 else math.nan)
    return np.asarray(results)


def exact_conditional_density(motif: Any, network: Any, target: Any, *, weight: str | None = "weight") -> float:
    """t(H, G | F) = E_pi[prod_{E_H minus E_F} A(x_i, x_j)] for a target H that adds edges to F on F's nodes.

    One added edge on a tree motif: by exact_pair_expectation. Otherwise t(H, G) / t(F, G) when both have exact
    evaluators (see exact_homomorphism_density).
    """
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    extra = added_edges(motif, target)
    if len(extra) == 1 and motif.is_tree:
        ((i, j),) = extra
        return float(exact_pair_expectation(motif, network, [(motif.labels[i], motif.labels[j])])[0])
    target_motif = Motif(
        labels=motif.labels, edges=tuple(sorted(set(motif.edges) | set(extra))), directed=motif.directed, parents=None
    )
    log_h = exact_homomorphism_density(target_motif, network, log=True)
    log_f = exact_homomorphism_density(motif, network, log=True)
    return math.exp(log_h - log_f)


def added_edges(motif: Motif, target: Any) -> list[tuple[int, int]]:
    """The edges of the target H that are not edges of F, as pairs (i, j) of F's internal indices, read A(x_i, x_j).

    H is a graph or an edge list on F's node labels and must contain every edge of F. On an undirected H an edge
    {u, v} matches a motif edge in either orientation.
    """
    index = {label: i for i, label in enumerate(motif.labels)}
    if isinstance(target, nx.Graph):
        target_edges = list(target.edges)
        directed = target.is_directed()
    elif isinstance(target, Iterable) and not isinstance(target, (str, bytes)):
        target_edges = [tuple(edge) for edge in target]
        directed = motif.directed
    else:
        raise ValueError(f"target: expected a networkx graph or an edge list, got {type(target).__name__}")
    for edge in target_edges:
        if len(edge) != 2:
            raise ValueError("target: an edge list must hold pairs (u, v)")
        for label in edge:
            if label not in index:
                raise ValueError(f"target: node {label!r} is not a node of the motif; H must be F plus edges")
        if edge[0] == edge[1]:
            raise ValueError(f"target: self-loop at {edge[0]!r}; targets are simple graphs")

    def key(i: int, j: int):
        return (i, j) if directed else frozenset((i, j))

    motif_keys = {key(i, j) for i, j in motif.edges}
    target_pairs = [(index[u], index[v]) for u, v in target_edges]
    target_keys = {key(i, j) for i, j in target_pairs}
    missing = [(i, j) for i, j in motif.edges if key(i, j) not in target_keys]
    if missing:
        i, j = missing[0]
        raise ValueError(
            f"target: it lacks the motif edge ({motif.labels[i]!r}, {motif.labels[j]!r}); "
            "H must contain every edge of F"
        )
    extra_by_key: dict = {}
    for i, j in target_pairs:
        if key(i, j) not in motif_keys:
            extra_by_key.setdefault(key(i, j), (i, j))
    extra = sorted(extra_by_key.values())
    if not extra:
        raise ValueError("target: it adds no edge to the motif; t(H, G | F) would be 1")
    return extra


def exact_macc(network: Any, num_nodes: int, *, weight: str | None = "weight") -> np.ndarray:
    """The k x k matrix MACC_ij = E_pi[A(x_i, x_j)] for the path motif 0 - 1 - ... - (k-1), exactly.

    With M = A diag(alpha), u_i = (M^T)^i alpha and v_j = M^{k-1-j} 1:
    MACC_ij = u_i^T (M^{j-i} o A) v_j / alpha^T M^{k-1} 1 for i < j (o the entrywise product; A^T in place of A below
    the diagonal), and u_i^T diag(A) v_i / alpha^T M^{k-1} 1 on the diagonal (0 without self-loops). M is divided by
    its largest row sum, which leaves every ratio unchanged. Dense: at most DENSE_LIMIT network nodes.
    """
    _check_count("num_nodes", num_nodes, 2)
    network = as_network(network, weight=weight)
    adjacency = network.dense_adjacency()
    alpha = network.node_weights
    k = num_nodes
    step = adjacency * alpha[None, :]
    step = step / step.sum(axis=1).max()
    powers = [np.eye(network.num_nodes)]
    for _ in range(k - 1):
        powers.append(powers[-1] @ step)
    left = [alpha]
    for _ in range(k - 1):
        left.append(left[-1] @ step)
    right = [np.ones(network.num_nodes)]
    for _ in range(k - 1):
        right.append(step @ right[-1])
    right = right[::-1]  # right[j] = M^{k-1-j} 1
    total = float(alpha @ powers[k - 1] @ np.ones(network.num_nodes))
    result = np.zeros((k, k))
    diagonal = np.diag(adjacency)
    for i in range(k):
        result[i, i] = float(left[i] @ (diagonal * right[i])) / total
        for j in range(i + 1, k):
            gap = powers[j - i]
            result[i, j] = float(left[i] @ (gap * adjacency) @ right[j]) / total
            result[j, i] = float(left[i] @ (gap * adjacency.T) @ right[j]) / total
    return result


def exact_chd_profile(
    network: Any,
    motif: Any,
    target: Any,
    thresholds: Sequence[float],
    *,
    weight: str | None = "weight",
) -> np.ndarray:
    """f(H, G | F)(s) = P_pi(prod_{E_H minus E_F} A(x_i, x_j) >= s) for each threshold s, exactly.

    One added edge (a, b) on a tree motif: exact_pair_expectation of the indicator 1[A >= s]; otherwise brute force.
    The threshold is inclusive, so f(0) = 1.
    """
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    extra = added_edges(motif, target)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if len(extra) == 1 and motif.is_tree:
        ((i, j),) = extra
        pair = [(motif.labels[i], motif.labels[j])]
        return np.array(
            [
                exact_pair_expectation(motif, network, pair, lambda a, s=s: (a >= s).astype(np.float64))[0]
                for s in thresholds
            ]
        )
    adjacency = network.dense_adjacency()
    rows = np.array([e[0] for e in extra])
    cols = np.array([e[1] for e in extra])

    def observable(maps: np.ndarray) -> np.ndarray:
        values = np.prod(adjacency[maps[rows], maps[cols]], axis=0)
        return (values[None, :] >= thresholds[:, None]).astype(np.float64)

    return brute_force_expectation(motif, network, observable)


def brute_force_homomorphism_density(motif: Any, network: Any, *, weight: str | None = "weight") -> float:
    """t(F, G) by summing over all n^k maps (at most BRUTE_FORCE_LIMIT of them)."""
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    total = 0.0
    for _maps, weights in _all_maps(motif, network):
        total += float(weights.sum())
    return total


def brute_force_expectation(
    motif: Any, network: Any, observable: Callable[[np.ndarray], np.ndarray], *, weight: str | None = "weight"
) -> np.ndarray:
    """The exact expectation E_pi[observable(x)], summed over all n^k maps.

    `observable` takes a (k, m) integer array of m maps and returns an array whose last axis has length m.
    """
    motif = as_motif(motif)
    network = as_network(network, weight=weight)
    numerator, denominator = 0.0, 0.0
    for maps, weights in _all_maps(motif, network):
        numerator = numerator + np.asarray(observable(maps)) @ weights
        denominator += float(weights.sum())
    if denominator <= 0:
        raise ValueError("brute_force_expectation: the motif has no homomorphism into the network")
    return np.asarray(numerator) / denominator


def _all_maps(motif: Motif, network: Network, chunk: int = 1 << 18):
    n, k = network.num_nodes, motif.num_nodes
    count = n**k
    if count > BRUTE_FORCE_LIMIT:
        raise ValueError(
            f"brute force: {n}^{k} = {count} maps is more than {BRUTE_FORCE_LIMIT}; use a smaller network or motif, "
            "an exact evaluator (trees, cycles) or the samplers"
        )
    adjacency = network.dense_adjacency()
    alpha = network.node_weights
    for start in range(0, count, chunk):
        flat = np.arange(start, min(count, start + chunk))
        maps = np.stack(np.unravel_index(flat, (n,) * k)) if k > 0 else np.zeros((0, flat.size), dtype=int)
        weights = np.prod(alpha[maps], axis=0)
        for i, j in motif.edges:
            weights = weights * adjacency[maps[i], maps[j]]
        yield maps, weights
