"""Motifs: the small simple graphs F = ([k], E_F) whose homomorphisms into a network are sampled.

`as_motif` reads a networkx graph or an edge list into a `Motif`, numbering its nodes 0..k-1 in the order the
kernels use (depth-first from the root for a tree motif, so that every node's parent comes before it). The
constructors build the motifs of Lyu, Mémoli and Sivakoff (2023): paths, stars, cycles, complete graphs and the pairs
(F_{k1,k2}, H_{k1,k2}) of conditional homomorphism densities.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

__all__ = ["Motif", "as_motif", "chd_motifs", "complete_motif", "cycle_motif", "path_motif", "star_motif"]


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

    Args:
        motif: a networkx ``Graph`` or ``DiGraph`` (simple: no self-loops, not a multigraph), an edge list of pairs,
            or a `Motif` (returned as it is).
        root: a node label (default the first node) that roots a tree motif: its nodes are renumbered in depth-first
            order from the root (neighbours visited in the motif's node order), so `path_motif(k)` keeps 0..k-1 and
            is rooted at an end.
        require_tree: refuse a motif that is not a tree (the pivot chain).

    Returns:
        The `Motif`.

    Raises:
        ValueError: the motif is empty, has a self-loop, is a multigraph, is not a tree when ``require_tree`` is set,
            or ``root`` is not one of its nodes (or is given for a motif that is not a tree).
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
    """The complete graph on 0..num_nodes-1."""
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
