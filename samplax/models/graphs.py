"""Motifs and networks for sampling random graph homomorphisms, and exact evaluators.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network data analysis",
JMLR 24(9), 2023 (arXiv:1910.09483).

A network G = ([n], A, alpha) has nonnegative edge weights A, scaled here to [0, 1] by A / max A, and node weights
alpha (a probability vector, uniform unless given). A motif F = ([k], E_F) is a small simple graph. The target of the
samplers is the law on maps x: [k] -> [n]

    pi(x) = prod_{(i, j) in E_F} A(x_i, x_j) prod_i alpha(x_i) / t(F, G),

whose normaliser t(F, G) is the homomorphism density (hom(F, G) / n^k for 0/1 adjacency and uniform alpha).

This module turns networkx graphs (or edge lists) into the arrays the kernels of `samplax.kernels.graph_hom`
read, checks them (empty network, motif without edges, non-tree motif for the pivot chain, bipartite or disconnected network,
negative weights), and evaluates observables exactly where that is cheap: tree motifs by leaf-to-root dynamic
programming in O(k nnz(A)), cycles by traces of matrix products, expectations of a function of A(x_a, x_b) under pi
for a tree motif by dense matrix products along the tree path from a to b (MACC, CHD profiles), and brute force over
all n^k maps for tiny graphs. Everything here is NumPy in float64; nothing imports the kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

__all__ = [
    "Motif",
    "Network",
    "ReducibleChainWarning",
    "as_motif",
    "as_network",
    "path_motif",
    "star_motif",
    "cycle_motif",
    "complete_motif",
    "chd_motifs",
    "exact_homomorphism_density",
    "exact_homomorphism_count",
    "exact_pair_expectation",
    "exact_conditional_density",
    "exact_macc",
    "exact_chd_profile",
    "brute_force_homomorphism_density",
    "brute_force_expectation",
    "exact_tree_sample",
    "search_homomorphisms",
]

DENSE_LIMIT = 5000  # largest network (nodes) for which the exact evaluators build dense n x n matrices
BRUTE_FORCE_LIMIT = 20_000_000  # largest number of maps n^k that brute force enumerates


class ReducibleChainWarning(UserWarning):
    """The chain cannot reach every homomorphism from every start (bipartite or disconnected network)."""


# --------------------------------------------------------------------------------------------------------------------
# Motifs
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motif:
    """A small simple graph F, with its nodes numbered 0..k-1 in the order the kernels use.

    `labels[i]` is the user's name of internal node i. `edges` lists each motif edge once as (i, j): read as
    A(x_i, x_j), which matters only on a directed network. For a tree motif the nodes are in depth-first order from the
    root (`parents[j] < j`, `parents[0] == -1`) and each edge is oriented parent -> child unless the motif was a
    directed graph, whose own directions are kept (`edges` may then hold child -> parent edges).
    """

    labels: tuple
    edges: tuple[tuple[int, int], ...]
    directed: bool
    parents: tuple[int, ...] | None  # tree motifs only

    @property
    def num_nodes(self) -> int:
        return len(self.labels)

    @property
    def is_tree(self) -> bool:
        return self.parents is not None

    def undirected_graph(self) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(range(self.num_nodes))
        graph.add_edges_from(self.edges)
        return graph

    def neighbours(self, node: int) -> list[int]:
        return sorted({j for i, j in self.edges if i == node} | {i for i, j in self.edges if j == node})

    def tree_edge_points_down(self) -> tuple[bool, ...]:
        """For a tree motif: entry j (j >= 1) is True when the edge between j and its parent reads A(x_parent, x_j)."""
        if self.parents is None:
            raise ValueError("tree_edge_points_down() needs a tree motif")
        edge_set = set(self.edges)
        return tuple(True if j == 0 else (self.parents[j], j) in edge_set for j in range(self.num_nodes))


def as_motif(motif: Any, *, root: Hashable | None = None, require_tree: bool = False) -> Motif:
    """Read a motif from a networkx graph, an edge list, or a `Motif`.

    `root` (a node label, default the first node) roots a tree motif: its nodes are renumbered in depth-first order
    from the root (neighbours visited in the motif's node order), so `path_motif(k)` keeps 0..k-1 and is rooted at an
    end. `require_tree=True` (the pivot chain) refuses a motif that is not a tree.
    """
    if isinstance(motif, Motif):
        if require_tree and not motif.is_tree:
            raise ValueError(_not_a_tree_message(motif.undirected_graph()))
        return motif
    if isinstance(motif, (nx.MultiGraph, nx.MultiDiGraph)):
        raise ValueError("motif: multigraphs are not motifs; pass nx.Graph(motif) or nx.DiGraph(motif)")
    if isinstance(motif, nx.Graph):
        graph = motif
    elif isinstance(motif, Iterable) and not isinstance(motif, (str, bytes)):
        edge_list = [tuple(edge) for edge in motif]
        if any(len(edge) != 2 for edge in edge_list):
            raise ValueError("motif: an edge list must hold pairs (u, v)")
        graph = nx.Graph()
        graph.add_edges_from(edge_list)
    else:
        raise ValueError(f"motif: expected a networkx graph or an edge list of pairs, got {type(motif).__name__}")
    if graph.number_of_nodes() == 0:
        raise ValueError("motif: the motif has no nodes")
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise ValueError(f"motif: node {loops[0][0]!r} has a self-loop; motifs are simple graphs (remove the loop)")
    directed = graph.is_directed()
    undirected = graph.to_undirected(as_view=True) if directed else graph
    labels = list(graph.nodes)
    is_tree = nx.is_tree(undirected)
    if require_tree and not is_tree:
        raise ValueError(_not_a_tree_message(undirected))
    if not is_tree:
        if root is not None:
            raise ValueError("motif: `root` applies to tree motifs only; this motif is not a tree")
        index = {label: i for i, label in enumerate(labels)}
        edges = []
        for u, v in graph.edges:
            i, j = index[u], index[v]
            edges.append((i, j) if directed else (min(i, j), max(i, j)))
        return Motif(labels=tuple(labels), edges=tuple(sorted(set(edges))), directed=directed, parents=None)

    root_label = labels[0] if root is None else root
    if root_label not in graph:
        raise ValueError(f"motif: root {root_label!r} is not a node of the motif (nodes: {labels})")
    order_position = {label: i for i, label in enumerate(labels)}
    order: list = []
    parent_label: dict = {root_label: None}
    stack = [root_label]
    while stack:
        node = stack.pop()
        order.append(node)
        children = sorted((v for v in undirected[node] if v != parent_label[node]), key=order_position.__getitem__)
        for child in reversed(children):
            parent_label[child] = node
            stack.append(child)
    index = {label: i for i, label in enumerate(order)}
    parents = tuple(-1 if parent_label[label] is None else index[parent_label[label]] for label in order)
    edges = []
    for j in range(1, len(order)):
        p = parents[j]
        if directed and not graph.has_edge(order[p], order[j]):
            edges.append((j, p))
        else:
            edges.append((p, j))
    return Motif(labels=tuple(order), edges=tuple(edges), directed=directed, parents=parents)


def _not_a_tree_message(graph: nx.Graph) -> str:
    reason = "it is disconnected" if not nx.is_connected(graph) else "it has a cycle"
    return (
        f"motif: the pivot chain needs a tree motif, and this one is not a tree ({reason}: {graph.number_of_nodes()} "
        f"nodes, {graph.number_of_edges()} edges); use chain='glauber', which takes any motif, or sample a spanning "
        "tree with the pivot chain and estimate the rest as a conditional density (targets=...)"
    )


def path_motif(num_nodes: int) -> nx.Graph:
    """The path 0 - 1 - ... - (num_nodes - 1), rooted at node 0 (an end) for the pivot chain."""
    _check_count("num_nodes", num_nodes, 2)
    return nx.path_graph(num_nodes)


def star_motif(num_leaves: int) -> nx.Graph:
    """The star with centre 0 and leaves 1..num_leaves."""
    _check_count("num_leaves", num_leaves, 1)
    return nx.star_graph(num_leaves)


def cycle_motif(num_nodes: int) -> nx.Graph:
    """The cycle 0 - 1 - ... - (num_nodes - 1) - 0."""
    _check_count("num_nodes", num_nodes, 3)
    return nx.cycle_graph(num_nodes)


def complete_motif(num_nodes: int) -> nx.Graph:
    _check_count("num_nodes", num_nodes, 2)
    return nx.complete_graph(num_nodes)


def chd_motifs(first_arm: int, second_arm: int) -> tuple[nx.Graph, nx.Graph]:
    """The canonical pair (F_{k1,k2}, H_{k1,k2}) of conditional homomorphism densities.

    F is a path through the root 0 with arms of `first_arm` nodes (1..k1) and `second_arm` nodes (k1+1..k1+k2);
    H is F plus the edge (k1, k1+k2) that closes the cycle. (F_{1,1}, H_{1,1}) = (2-star, triangle): its conditional
    density is a clustering coefficient.
    """
    _check_count("first_arm", first_arm, 1)
    _check_count("second_arm", second_arm, 1)
    motif = nx.Graph()
    motif.add_node(0)
    motif.add_edges_from([(0, 1)] + [(i, i + 1) for i in range(1, first_arm)])
    start = first_arm + 1
    motif.add_edges_from([(0, start)] + [(i, i + 1) for i in range(start, first_arm + second_arm)])
    target = motif.copy()
    target.add_edge(first_arm, first_arm + second_arm)
    return motif, target


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Network:
    """A network as compressed sparse rows, with edge weights scaled to [0, 1] and node weights summing to 1.

    Row u of the `out_*` arrays lists the v with A(u, v) > 0 (sorted), and `out_weights` the scaled A(u, v). For a
    directed network the `in_*` arrays list, in row u, the v with A(v, u) > 0; for an undirected one they are the
    same arrays. `weight_scale` is max A before scaling (1 for 0/1 adjacency). `unweighted` is True when every edge
    weight is 1 and the node weights are uniform: the kernels then sample neighbours by index, without searching.
    """

    labels: tuple
    directed: bool
    out_indptr: np.ndarray
    out_indices: np.ndarray
    out_weights: np.ndarray
    in_indptr: np.ndarray
    in_indices: np.ndarray
    in_weights: np.ndarray
    node_weights: np.ndarray
    weight_scale: float
    unweighted: bool
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_nodes(self) -> int:
        return len(self.labels)

    @property
    def num_edges(self) -> int:
        """Stored (directed) entries of A: an undirected edge counts twice, a self-loop once."""
        return int(self.out_indices.size)

    @property
    def max_degree(self) -> int:
        return int(max(np.diff(self.out_indptr).max(), np.diff(self.in_indptr).max()))

    def index(self, label: Hashable) -> int:
        lookup = self._cache.setdefault("index", {label: i for i, label in enumerate(self.labels)})
        if label not in lookup:
            raise ValueError(f"network: node {label!r} is not in the network")
        return lookup[label]

    def dense_adjacency(self) -> np.ndarray:
        """The scaled adjacency matrix A as a dense float64 array (n <= DENSE_LIMIT)."""
        if self.num_nodes > DENSE_LIMIT:
            raise ValueError(
                f"network: {self.num_nodes} nodes is too many for the dense exact evaluators (limit {DENSE_LIMIT}); "
                "estimate with samplax.graphs.sample_homomorphisms / macc / chd_profile instead"
            )
        if "dense" not in self._cache:
            dense = np.zeros((self.num_nodes, self.num_nodes))
            dense[self._out_rows(), self.out_indices] = self.out_weights
            self._cache["dense"] = dense
        return self._cache["dense"]

    def _out_rows(self) -> np.ndarray:
        if "out_rows" not in self._cache:
            self._cache["out_rows"] = np.repeat(np.arange(self.num_nodes), np.diff(self.out_indptr))
        return self._cache["out_rows"]

    def multiply(self, vector: np.ndarray, transpose: bool = False) -> np.ndarray:
        """A @ vector (or A^T @ vector) in O(nnz) without a dense matrix."""
        rows, cols = self._out_rows(), self.out_indices
        if transpose:
            rows, cols = cols, rows
        return np.bincount(rows, weights=self.out_weights * vector[cols], minlength=self.num_nodes)

    def undirected_graph(self) -> nx.Graph:
        """The support of A + A^T as an undirected networkx graph on 0..n-1 (self-loops kept)."""
        if "graph" not in self._cache:
            graph = nx.Graph()
            graph.add_nodes_from(range(self.num_nodes))
            graph.add_edges_from(zip(self._out_rows().tolist(), self.out_indices.tolist()))
            self._cache["graph"] = graph
        return self._cache["graph"]

    def edge_components(self) -> list[np.ndarray]:
        """Connected components (of the undirected support) that hold at least one edge, largest first."""
        if "components" not in self._cache:
            graph = self.undirected_graph()
            components = [
                np.array(sorted(c)) for c in nx.connected_components(graph) if graph.subgraph(c).number_of_edges() > 0
            ]
            components.sort(key=len, reverse=True)
            self._cache["components"] = components
        return self._cache["components"]

    def bipartition(self) -> np.ndarray | None:
        """None unless the support is bipartite; then side[u] in {0, 1} (0 for the side of the first node of each
        component that has edges; isolated nodes get 0)."""
        if "bipartition" not in self._cache:
            graph = self.undirected_graph()
            side = None
            if nx.is_bipartite(graph):
                side = np.zeros(self.num_nodes, dtype=np.int8)
                for component in nx.connected_components(graph):
                    first = min(component)
                    for node, distance in nx.single_source_shortest_path_length(graph, first).items():
                        side[node] = distance % 2
            self._cache["bipartition"] = side
        return self._cache["bipartition"]

    def restrict(self, nodes: Sequence[int]) -> Network:
        """The sub-network induced on the given node indices, node weights renormalised, weights rescaled."""
        nodes = np.asarray(sorted(set(int(u) for u in nodes)))
        graph = nx.DiGraph() if self.directed else nx.Graph()
        graph.add_nodes_from(self.labels[u] for u in nodes)
        keep = np.zeros(self.num_nodes, dtype=bool)
        keep[nodes] = True
        rows = self._out_rows()
        mask = keep[rows] & keep[self.out_indices]
        for u, v, w in zip(rows[mask], self.out_indices[mask], self.out_weights[mask]):
            graph.add_edge(self.labels[u], self.labels[v], weight=float(w))
        node_weights = {self.labels[u]: float(self.node_weights[u]) for u in nodes}
        return as_network(graph, weight=None if self.unweighted else "weight", node_weight=node_weights)

    def kernel_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of `samplax.kernels.graph_hom.CSRNetwork` (int32 / float32).

        Rows 0..n-1 are the out-rows A(u, .); a directed network adds rows n..2n-1, the in-rows A(., u). The walk
        arrays hold max(A, A^T), on which the pivot chain's root walks.
        """
        if "kernel_arrays" in self._cache:
            return self._cache["kernel_arrays"]
        if self.directed:
            indptr = np.concatenate([self.out_indptr, self.in_indptr[1:] + self.out_indptr[-1]])
            indices = np.concatenate([self.out_indices, self.in_indices])
            weights = np.concatenate([self.out_weights, self.in_weights])
        else:
            indptr, indices, weights = self.out_indptr, self.out_indices, self.out_weights
        weighted = weights * self.node_weights[indices]
        cumulative, strength = _row_cumsum(indptr, weighted)
        walk_indptr, walk_indices, walk_weights = self._walk_csr()
        walk_cumulative, walk_strength = _row_cumsum(walk_indptr, walk_weights)
        node_cumulative = np.cumsum(self.node_weights)
        arrays = dict(
            indptr=indptr.astype(np.int32),
            indices=indices.astype(np.int32),
            weights=weights.astype(np.float32),
            cumulative=cumulative.astype(np.float32),
            strength=strength.astype(np.float32),
            node_weights=self.node_weights.astype(np.float32),
            node_cumulative=(node_cumulative / node_cumulative[-1]).astype(np.float32),
            walk_indptr=walk_indptr.astype(np.int32),
            walk_indices=walk_indices.astype(np.int32),
            walk_cumulative=walk_cumulative.astype(np.float32),
            walk_strength=walk_strength.astype(np.float32),
        )
        self._cache["kernel_arrays"] = arrays
        return arrays

    def _walk_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.directed:
            return self.out_indptr, self.out_indices, self.out_weights
        rows = np.concatenate([self._out_rows(), self.out_indices])
        cols = np.concatenate([self.out_indices, self._out_rows()])
        weights = np.concatenate([self.out_weights, self.out_weights])
        order = np.lexsort((-weights, cols, rows))
        rows, cols, weights = rows[order], cols[order], weights[order]
        first = np.ones(rows.size, dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])  # keeps the max of A(u, v), A(v, u)
        rows, cols, weights = rows[first], cols[first], weights[first]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.num_nodes))])
        return indptr, cols, weights


def _row_cumsum(indptr: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running sums that restart at each CSR row, and the row totals."""
    total = np.cumsum(values)
    starts = indptr[:-1]
    before = np.concatenate([[0.0], total])[starts]
    counts = np.diff(indptr)
    cumulative = total - np.repeat(before, counts)
    strength = np.concatenate([[0.0], total])[indptr[1:]] - before
    return cumulative, strength


def as_network(
    network: Any,
    *,
    weight: str | None = "weight",
    node_weight: str | Mapping | Sequence | np.ndarray | None = None,
    component: Hashable | str | None = None,
) -> Network:
    """Read a networkx graph (or a `Network`) into CSR arrays with edge weights scaled to [0, 1].

    weight: the edge attribute holding A(u, v) (edges without it count 1, as in networkx), or None for the 0/1
        adjacency. Weights are divided by their maximum, so conditional densities and CHD profiles see A in [0, 1].
    node_weight: None (uniform), a node attribute name, a mapping label -> weight, or an array in node order;
        normalised to a probability vector.
    component: None (the whole network), "largest" (the largest connected component that has edges) or a node
        label (the component that holds it): the chains are reducible on a disconnected network, and this restricts
        them to one component (estimates are then of that component).
    """
    if isinstance(network, Network):
        if component is not None:
            return _restrict_to_component(network, component)
        return network
    if isinstance(network, (nx.MultiGraph, nx.MultiDiGraph)):
        raise ValueError(
            "network: multigraphs are not supported; merge parallel edges first, e.g. nx.Graph(G) or summing the "
            "weights into one edge"
        )
    if not isinstance(network, nx.Graph):
        raise ValueError(f"network: expected a networkx graph, got {type(network).__name__}")
    labels = list(network.nodes)
    n = len(labels)
    if n == 0:
        raise ValueError("network: the network has no nodes")
    index = {label: i for i, label in enumerate(labels)}
    directed = network.is_directed()
    rows, cols, values = [], [], []
    for u, v, data in network.edges(data=True):
        value = 1.0 if weight is None else data.get(weight, 1.0)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"network: edge ({u!r}, {v!r}) has a non-numeric {weight!r} = {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"network: edge ({u!r}, {v!r}) has weight {weight!r} = {value}; weights must be finite and >= 0 "
                "(shift or drop negative weights, or pass weight=None for the 0/1 adjacency)"
            )
        if value == 0:
            continue
        i, j = index[u], index[v]
        rows.append(i)
        cols.append(j)
        values.append(value)
        if not directed and i != j:
            rows.append(j)
            cols.append(i)
            values.append(value)
    if not rows:
        raise ValueError(
            f"network: the network has {n} nodes but no edges (of positive weight); there is nothing to map a motif's "
            "edges onto"
        )
    rows_array, cols_array, values_array = np.asarray(rows), np.asarray(cols), np.asarray(values, dtype=np.float64)
    scale = float(values_array.max())
    values_array = values_array / scale
    out_indptr, out_indices, out_weights = _csr(rows_array, cols_array, values_array, n)
    if directed:
        in_indptr, in_indices, in_weights = _csr(cols_array, rows_array, values_array, n)
    else:
        in_indptr, in_indices, in_weights = out_indptr, out_indices, out_weights
    node_weights = _node_weights(network, labels, node_weight)
    unweighted = bool(np.all(out_weights == 1.0) and np.all(node_weights == node_weights[0]))
    result = Network(
        labels=tuple(labels),
        directed=directed,
        out_indptr=out_indptr,
        out_indices=out_indices,
        out_weights=out_weights,
        in_indptr=in_indptr,
        in_indices=in_indices,
        in_weights=in_weights,
        node_weights=node_weights,
        weight_scale=scale,
        unweighted=unweighted,
    )
    if component is not None:
        return _restrict_to_component(result, component)
    return result


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int):
    order = np.lexsort((cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
    return indptr, cols.astype(np.int64), values


def _node_weights(network: nx.Graph, labels: list, node_weight) -> np.ndarray:
    n = len(labels)
    if node_weight is None:
        return np.full(n, 1.0 / n)
    if isinstance(node_weight, str):
        values = np.array([float(network.nodes[label].get(node_weight, 1.0)) for label in labels])
    elif isinstance(node_weight, Mapping):
        missing = [label for label in labels if label not in node_weight]
        if missing:
            raise ValueError(f"node_weight: no weight for node {missing[0]!r}; give every node a weight")
        values = np.array([float(node_weight[label]) for label in labels])
    else:
        values = np.asarray(node_weight, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"node_weight: expected {n} weights in node order, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError("node_weight: node weights must be finite, >= 0 and not all zero")
    return values / values.sum()


def _restrict_to_component(network: Network, component: Hashable | str) -> Network:
    components = network.edge_components()
    if isinstance(component, str) and component == "largest" and "largest" not in network.labels:
        chosen = components[0]
    else:
        node = network.index(component)
        matches = [c for c in components if node in set(c.tolist())]
        if not matches:
            raise ValueError(f"component: node {component!r} has no edges; pick a node of a component with edges")
        chosen = matches[0]
    if len(components) == 1 and chosen.size == network.num_nodes:
        return network
    return network.restrict(chosen)


def check_irreducible(network: Network, motif: Motif, chain: str) -> str | None:
    """Raise or warn when the chain is reducible on this network; return 'bipartite' or None.

    A motif with an edge maps into one connected component, and neither chain moves between components. On a
    bipartite network the Glauber chain keeps the side that each motif node lands on (two classes of
    homomorphisms it never crosses), while the pivot chain crosses them and only needs to be lazy (its root walk has
    period 2).
    """
    if not motif.edges:
        return None
    components = network.edge_components()
    if len(components) > 1:
        sizes = ", ".join(str(len(c)) for c in components[:5])
        raise ValueError(
            f"network: it has {len(components)} connected components with edges (sizes {sizes}"
            f"{', ...' if len(components) > 5 else ''}); "
            "the chains never move between components, so their estimates would depend on where they start. "
            "Pass component='largest' (or a node label) to restrict the sampling to one component"
        )
    if network.bipartition() is None:
        return None
    if _has_odd_cycle(motif):
        raise ValueError(
            "motif/network: the network is bipartite and the motif has an odd cycle, so there is no homomorphism"
        )
    return "bipartite"


def _has_odd_cycle(motif: Motif) -> bool:
    return not nx.is_bipartite(motif.undirected_graph())


# --------------------------------------------------------------------------------------------------------------------
# Exact evaluators
# --------------------------------------------------------------------------------------------------------------------


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
    """hom(F, G) = sum_x prod_{E_F} A(x_i, x_j) with uniform node weights (an integer for the 0/1 adjacency, the
    default here); equals t(F, G) n^k. Weighted: the sum of products of the scaled weights."""
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
        (i, j), = extra
        return float(exact_pair_expectation(motif, network, [(motif.labels[i], motif.labels[j])])[0])
    target_motif = Motif(labels=motif.labels, edges=tuple(sorted(set(motif.edges) | set(extra))),
                         directed=motif.directed, parents=None)
    log_h = exact_homomorphism_density(target_motif, network, log=True)
    log_f = exact_homomorphism_density(motif, network, log=True)
    return math.exp(log_h - log_f)


def added_edges(motif: Motif, target: Any) -> list[tuple[int, int]]:
    """The edges of the target H that are not edges of F, as pairs (i, j) of F's internal indices, read A(x_i, x_j).

    H is a graph or an edge list on F's node labels and must contain every edge of F. On an undirected H an edge
    {u, v} matches a motif edge in either orientation."""
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
        (i, j), = extra
        pair = [(motif.labels[i], motif.labels[j])]
        return np.array([
            exact_pair_expectation(motif, network, pair, lambda a, s=s: (a >= s).astype(np.float64))[0]
            for s in thresholds
        ])
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
    for maps, weights in _all_maps(motif, network):
        total += float(weights.sum())
    return total


def brute_force_expectation(
    motif: Any, network: Any, observable: Callable[[np.ndarray], np.ndarray], *, weight: str | None = "weight"
) -> np.ndarray:
    """E_pi[observable(x)] over all n^k maps; `observable` takes a (k, m) integer array of m maps and returns an
    array whose last axis has length m."""
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


# --------------------------------------------------------------------------------------------------------------------
# Starting states
# --------------------------------------------------------------------------------------------------------------------


def exact_tree_sample(
    motif: Motif, network: Network, num_samples: int, rng: np.random.Generator, root_mask: np.ndarray | None = None
) -> np.ndarray:
    """Independent draws x ~ pi for a tree motif (num_samples, k), by the tree messages: the root from
    alpha(z) message[0](z), then each child j from A_j(x_parent, z) alpha(z) message[j](z) (A_j = A or A^T)."""
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
    """Random homomorphisms (num_samples, k) found by randomised backtracking (any motif; a starting point for the
    Glauber chain, not a draw from pi). Motif nodes are placed in breadth-first order, each on a random candidate
    adjacent (with positive weight, in the right direction) to its already placed motif-neighbours."""
    k = motif.num_nodes
    graph = motif.undirected_graph()
    order: list[int] = []
    for component in sorted(nx.connected_components(graph), key=min):
        start = min(component)
        order.extend(nx.bfs_tree(graph, start).nodes)
    out_sets = [set(network.out_indices[network.out_indptr[u]:network.out_indptr[u + 1]].tolist())
                for u in range(network.num_nodes)]
    in_sets = out_sets if not network.directed else [
        set(network.in_indices[network.in_indptr[u]:network.in_indptr[u + 1]].tolist())
        for u in range(network.num_nodes)
    ]
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

