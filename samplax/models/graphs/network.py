"""Networks: a graph G = ([n], A, alpha) as compressed sparse rows, and the checks that the chains can mix on it.

`as_network` reads a networkx graph into a `Network`: nonnegative edge weights A scaled to [0, 1] by A / max A, node
weights alpha normalised to a probability vector (uniform unless given), and refuses an empty network, multigraphs
and negative or non-finite weights. `check_irreducible` refuses a disconnected network (the chains never move between
components) and a bipartite network with an odd-cycle motif (no homomorphism), and flags other bipartite networks.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from samplax.models.graphs.motif import Motif

__all__ = ["DENSE_LIMIT", "Network", "ReducibleChainWarning", "as_network", "check_irreducible"]

DENSE_LIMIT = 5000  # largest network (nodes) for which the exact evaluators build dense n x n matrices


class ReducibleChainWarning(UserWarning):
    """The chain cannot reach every homomorphism from every start (bipartite or disconnected network)."""


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
        """The side of each node, side[u] in {0, 1}, when the support is bipartite; else None.

        0 is the side of the first node of each component that has edges; isolated nodes get 0.
        """
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

    Args:
        network: a networkx ``Graph`` or ``DiGraph`` (not a multigraph), or a `Network` (returned as it is unless
            ``component`` is given).
        weight: the edge attribute holding A(u, v) (edges without it count 1, as in networkx), or None for the 0/1
            adjacency. Weights are divided by their maximum, so conditional densities and CHD profiles see A in
            [0, 1].
        node_weight: None (uniform), a node attribute name, a mapping label -> weight, or an array in node order;
            normalised to a probability vector.
        component: None (the whole network), "largest" (the largest connected component that has edges) or a node
            label (the component that holds it): the chains are reducible on a disconnected network, and this
            restricts them to one component (estimates are then of that component).

    Returns:
        The `Network`.

    Raises:
        ValueError: an empty network or one without edges, a multigraph, a negative, non-finite or non-numeric edge
            weight, bad node weights, or a ``component`` node without edges; each message names the fix.
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
