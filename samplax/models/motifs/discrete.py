"""Discrete motifs: a pattern of binary nodes, matched on the model's dependency graph.

A `DiscreteMotif` has ``block`` nodes (proposed jointly), ``blanket`` nodes (the conditioning set C, the block's
Markov blanket) and the ordered parents of every node whose conditional table lies inside the motif. It is matched
with `networkx` subgraph monomorphisms, then the exact-blanket check: every block and child node has exactly the
pattern's parents, and the blanket of the block's image is the image of the pattern's blanket. Its local parameters
Theta are those conditional tables, read P(x = 1 | parents) in pattern order (first parent most significant). It can
forward-sample its own sub-network with random tables (the meta-training data) and enumerate the exact block
conditional (for held-out KL checks).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from samplax.models.motifs.base import MOTIF_VERSION
from samplax.models.motifs.model_view import ModelView

__all__ = ["DiscreteInstance", "DiscreteMotif"]


@dataclasses.dataclass(frozen=True)
class DiscreteInstance:
    """One instantiation of a discrete motif: block, conditioning set and conditional-table nodes as sites."""

    block: tuple
    context: tuple
    mapping: dict


@dataclasses.dataclass(frozen=True)
class DiscreteMotif:
    """A pattern of binary nodes: a block proposed jointly given its blanket.

    ``block`` nodes (proposed jointly), ``blanket`` nodes (the conditioning set) and the ordered ``parents`` of every
    node whose conditional table lies inside the motif (the block nodes and the children of the block).
    Theta = P(x = 1 | parent configuration) of those nodes, first parent most significant; c = the blanket values in
    ``blanket`` order.
    """

    name: str
    block: tuple
    blanket: tuple
    parents: tuple  # ((node, (parent, ...)), ...) in Theta order

    kind = "discrete"

    @property
    def parent_map(self) -> dict:
        return dict(self.parents)

    @property
    def table_nodes(self) -> tuple:
        return tuple(node for node, _ in self.parents)

    @property
    def theta_size(self) -> int:
        return sum(2 ** len(ps) for _, ps in self.parents)

    @property
    def num_inputs(self) -> int:
        return self.theta_size + len(self.blanket)

    @property
    def block_size(self) -> int:
        return len(self.block)

    def signature(self) -> dict:
        return {
            "kind": "discrete",
            "name": self.name,
            "version": MOTIF_VERSION,
            "num_categories": 2,
            "block": list(self.block),
            "blanket": list(self.blanket),
            "parents": [[node, list(ps)] for node, ps in self.parents],
        }

    def pattern(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(self.block + self.blanket)
        graph.add_edges_from((p, node) for node, ps in self.parents for p in ps)
        return graph

    # ------------------------------------------------------------------------------------------------------------
    def match(self, view: ModelView) -> list[DiscreteInstance]:
        """Every instantiation in the model (one per distinct block; overlapping instances included)."""
        index = view.variable_index
        binary = {
            name
            for name, v in index.items()
            if view.num_states[v] == 2 and np.allclose(view.support_values[v, :2], (0.0, 1.0))
        }
        local = {name for name, v in index.items() if view.local[v]}
        candidates = view.graph.subgraph([n for n in view.graph if n in binary]).copy()
        pattern = self.pattern()
        parent_map = self.parent_map
        block_set = set(self.block)
        matcher = nx.algorithms.isomorphism.DiGraphMatcher(candidates, pattern)
        best: dict = {}
        order = tuple(self.block + self.blanket)
        for forward in matcher.subgraph_monomorphisms_iter():
            image = {p: g for g, p in forward.items()}
            blocks = frozenset(image[b] for b in self.block)
            if not blocks <= local:
                continue
            if any(set(view.parents[image[node]]) != {image[p] for p in parent_map[node]} for node in parent_map):
                continue
            model_blanket = set()
            for b in blocks:
                model_blanket.update(view.parents[b])
                for child in view.children[b]:
                    model_blanket.add(child)
                    model_blanket.update(view.parents[child])
            model_blanket -= blocks
            if model_blanket != {image[b] for b in self.blanket}:
                continue
            if any(image[node] not in index for node in self.table_nodes if node not in block_set):
                continue
            # automorphisms of the pattern (a grid block's transpose) give the same block several times: keep the
            # mapping with the smallest variable indices, so the choice does not depend on the search order
            rank = tuple(index[image[n]] for n in order)
            if blocks not in best or rank < best[blocks][0]:
                best[blocks] = (rank, image)
        found = [
            DiscreteInstance(tuple(image[b] for b in self.block), tuple(image[b] for b in self.blanket), image)
            for _, image in best.values()
        ]
        found.sort(key=lambda inst: [index[b] for b in inst.block])
        return found

    def theta(self, view: ModelView, instance: DiscreteInstance) -> np.ndarray:
        """P(x = 1 | parents) of every table node, in pattern order (first parent most significant)."""
        index = view.variable_index
        position = {name: f for f, name in enumerate(view.factor_names)}
        out = []
        for node, ps in self.parents:
            site = instance.mapping[node]
            f = position[site]
            scope = view.factor_scopes[f]
            order = [scope.index(index[site])] + [scope.index(index[instance.mapping[p]]) for p in ps]
            table = np.transpose(view.log_tables[f], order)  # [x, p1, p2, ...]
            with np.errstate(over="ignore"):
                probs = np.exp(table[1] - np.logaddexp(table[0], table[1]))
            out.append(np.nan_to_num(probs, nan=0.5).reshape(-1))
        return np.concatenate(out)

    # ------------------------------------------------------------------------------------------------------------
    # meta-training data: forward samples of the motif's own sub-network with random tables
    def sample_training_batch(self, key, batch_size: int, *, deterministic_probability: float = 1.0 / 20):
        """(x (N, num_inputs), block (N, block_size) int32) from the motif sub-network.

        Each table row is [0, 1] or [1, 0] with probability deterministic_probability / 2 each and
        Dirichlet(0.5, 0.5) otherwise (the paper's prior); root (blanket-only) nodes are Bernoulli(u), u ~ Beta(.5, .5).
        """
        nodes = self.block + self.blanket
        position = {n: i for i, n in enumerate(nodes)}
        parent_map = self.parent_map
        order = list(nx.topological_sort(self.pattern()))
        roots = [n for n in order if n not in parent_map]
        theta_size = self.theta_size

        def one(k):
            k_theta, k_kind, k_coin, k_root, k_sample = jax.random.split(k, 5)
            rows = jax.random.beta(k_theta, 0.5, 0.5, (theta_size,))
            kind = jax.random.uniform(k_kind, (theta_size,))
            coin = jax.random.bernoulli(k_coin, 0.5, (theta_size,)).astype(rows.dtype)
            rows = jnp.where(kind < deterministic_probability, coin, rows)
            root_p = jax.random.beta(k_root, 0.5, 0.5, (len(roots),))
            uniforms = jax.random.uniform(k_sample, (len(nodes),))
            values = [None] * len(nodes)
            for r, node in enumerate(roots):
                values[position[node]] = (uniforms[position[node]] < root_p[r]).astype(jnp.int32)
            offsets, offset = {}, 0
            for node, ps in self.parents:
                offsets[node] = offset
                offset += 2 ** len(ps)
            for node in order:
                if node in parent_map:
                    ps = parent_map[node]
                    row = 0
                    for p in ps:
                        row = 2 * row + values[position[p]]
                    prob = rows[offsets[node] + row]
                    values[position[node]] = (uniforms[position[node]] < prob).astype(jnp.int32)
            stacked = jnp.stack(values)
            block = stacked[: len(self.block)]
            context = stacked[len(self.block) :]
            return jnp.concatenate([rows, context.astype(rows.dtype)]), block

        return jax.vmap(one)(jax.random.split(key, batch_size))

    def exact_log_conditional(self, inputs, states):
        """The exact block conditional log p(b | c, Theta).

        Over ``states`` (S, block_size), for each row of ``inputs`` (N, num_inputs).
        """
        nodes = self.block + self.blanket
        position = {n: i for i, n in enumerate(nodes)}
        theta_size = self.theta_size
        states = jnp.asarray(states)

        def one(x):
            rows, context = x[:theta_size], x[theta_size:]

            def log_joint(b):
                values = jnp.concatenate([b.astype(x.dtype), context])
                total, offset = 0.0, 0
                for node, ps in self.parents:
                    row = 0
                    for p in ps:
                        row = 2 * row + values[position[p]].astype(jnp.int32)
                    prob = rows[offset + row]
                    value = values[position[node]]
                    total = total + jnp.log(jnp.where(value > 0.5, prob, 1.0 - prob))
                    offset += 2 ** len(ps)
                return total

            lp = jax.vmap(log_joint)(states)
            return lp - jax.scipy.special.logsumexp(lp)

        return jax.vmap(one)(jnp.asarray(inputs))
