"""The agents' communication graph, their layout over devices and the neighbour exchange (D-ADMMS and D-SGLD).

n agents on an undirected graph (V, E) with degrees d_i, D = sum_i d_i. The agent axis is split over devices
(``jax.shard_map`` over a mesh axis), several agents per device as a vmapped block (padded with inactive slots when
the counts do not divide). The neighbour exchange sum_{j in N_i} W_ij x_j maps onto collectives: ``ppermute`` of
the block edges for a cycle, one ``psum`` for the complete graph, and a masked ``all_gather`` for any other graph.
Network-wide statistics (the degree-weighted average x_bar = sum_i (d_i / D) x_i, the consensus residual, the dual
sum, the largest local-solve residual) take one ``psum`` and one ``pmax``.

Noise scale of D-ADMMS (Tzikas et al. 2024, arXiv 2401.15838, with the calibration of docs/methods/admm.md):
the network average takes a proximal Langevin step of size 1 / (2 rho D) on sum_i f_i, which targets the posterior
when sigma_i^2 = D / (rho sum_j d_j^2) with independent draws ("calibrated"), or sigma^2 = 1 / (rho D) with one draw
shared by every agent ("common": the agents then stay near consensus); the authors' code uses sigma = sqrt(2) / (2 rho)
with independent draws ("paper").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GRAPH_NAMES",
    "NOISE_NAMES",
    "Topology",
    "make_topology",
    "AgentLayout",
    "make_layout",
    "noise_scale",
    "AgentBlock",
    "make_agent_block",
    "slot_data",
    "Exchange",
    "make_exchange",
    "NetworkInfo",
    "network_info",
]

GRAPH_NAMES = ("complete", "cycle", "star")
NOISE_NAMES = ("common", "calibrated", "paper")


# ---------------------------------------------------------------------------------------------------------------------
# the communication graph
class Topology(NamedTuple):
    """The agents' undirected graph: ``kind`` is "complete", "cycle" or "graph" (anything else, e.g. a star).

    ``adjacency`` is the symmetric 0/1 matrix (zero diagonal) in agent order; ``degrees`` its row sums.
    ``kind`` picks the collective of the neighbour exchange (psum, ppermute or a masked all-gather).
    """

    kind: str
    adjacency: np.ndarray
    degrees: np.ndarray

    @property
    def num_agents(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def regular(self) -> bool:
        return bool(np.all(self.degrees == self.degrees[0]))


def make_topology(graph, num_agents: int | None = None) -> Topology:
    """A `Topology` from a graph name, a networkx graph or an adjacency matrix.

    ``graph`` is a name ("complete", "cycle", "star": agent 0 is the hub) with ``num_agents``, a networkx graph
    (agents are its nodes in ``graph.nodes`` order), or an (n, n) adjacency matrix. Degree-0 agents are refused: their proximal step has no neighbours to average with.
    """
    import networkx as nx

    if isinstance(graph, str):
        if graph not in GRAPH_NAMES:
            raise ValueError(
                f"graph={graph!r} is not a known graph name; use one of {list(GRAPH_NAMES)}, a networkx "
                "graph or an adjacency matrix"
            )
        if not isinstance(num_agents, (int, np.integer)) or isinstance(num_agents, bool) or num_agents < 2:
            raise ValueError(f"num_agents must be an integer >= 2 for graph={graph!r}, got {num_agents!r}")
        n = int(num_agents)
        if graph == "complete" or (graph == "cycle" and n == 2):
            adjacency = np.ones((n, n)) - np.eye(n)
        elif graph == "cycle":
            adjacency = np.asarray(nx.to_numpy_array(nx.cycle_graph(n)))
        else:
            adjacency = np.asarray(nx.to_numpy_array(nx.star_graph(n - 1)))
    elif isinstance(graph, nx.Graph):
        if graph.is_directed():
            raise ValueError(
                "graph must be undirected (agents exchange with their neighbours both ways); pass graph.to_undirected()"
            )
        if nx.number_of_selfloops(graph):
            raise ValueError(f"graph has self-loops at nodes {list(nx.nodes_with_selfloops(graph))}; remove them")
        adjacency = np.asarray(nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None))
        adjacency = (adjacency != 0).astype(float)
        if num_agents is not None and num_agents != adjacency.shape[0]:
            raise ValueError(
                f"num_agents={num_agents} but the graph has {adjacency.shape[0]} nodes; drop "
                "num_agents or pass a graph with that many nodes"
            )
    else:
        adjacency = np.asarray(graph, dtype=float)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(
                f"graph must be a name, a networkx graph or a square adjacency matrix, got an array of "
                f"shape {adjacency.shape}"
            )
        if not np.array_equal(adjacency, adjacency.T) or np.any(np.diag(adjacency) != 0):
            raise ValueError(
                "the adjacency matrix must be symmetric with a zero diagonal (an undirected graph without self-loops)"
            )
        adjacency = (adjacency != 0).astype(float)
    n = adjacency.shape[0]
    if n < 2:
        raise ValueError(f"ADMM needs at least 2 agents, the graph has {n}")
    degrees = adjacency.sum(axis=1)
    isolated = np.flatnonzero(degrees == 0)
    if isolated.size:
        raise ValueError(
            f"agents {isolated.tolist()} have no neighbours (degree 0): their ADMM step is "
            "deterministic and never mixes with the network; connect them or drop them from the graph"
        )
    if np.array_equal(adjacency, np.ones((n, n)) - np.eye(n)):
        kind = "complete"
    elif n >= 3 and np.array_equal(adjacency, np.asarray(nx.to_numpy_array(nx.cycle_graph(n)))):
        kind = "cycle"
    else:
        kind = "graph"
    return Topology(kind, adjacency, degrees)


# ---------------------------------------------------------------------------------------------------------------------
# agents over devices
class AgentLayout(NamedTuple):
    """Which agent sits in which slot: ``num_shards`` devices times ``agents_per_shard`` slots along the agent axis.

    Shards come in ``num_groups`` consecutive groups (one per process); each group holds a contiguous block of
    ``num_agents / num_groups`` agents spread over its shards, padded at the end with inactive slots
    (``slot_agent == -1``).
    """

    num_agents: int
    num_shards: int
    num_groups: int
    agents_per_shard: int
    slot_agent: np.ndarray

    @property
    def num_slots(self) -> int:
        return self.num_shards * self.agents_per_shard

    @property
    def padded(self) -> bool:
        return bool(np.any(self.slot_agent < 0))

    def group_slots(self, group: int) -> slice:
        per_group = self.num_slots // self.num_groups
        return slice(group * per_group, (group + 1) * per_group)


def make_layout(num_agents: int, num_shards: int = 1, num_groups: int = 1) -> AgentLayout:
    """Spread ``num_agents`` over ``num_shards`` devices in ``num_groups`` processes (see `AgentLayout`)."""
    for name, value in (("num_agents", num_agents), ("num_shards", num_shards), ("num_groups", num_groups)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_shards % num_groups:
        raise ValueError(
            f"num_shards={num_shards} devices cannot be split evenly over num_groups={num_groups} "
            "processes; give every process the same number of devices"
        )
    if num_agents % num_groups:
        raise ValueError(
            f"num_agents={num_agents} cannot be split evenly over {num_groups} processes; use a multiple "
            f"of {num_groups} agents"
        )
    agents_per_group = num_agents // num_groups
    shards_per_group = num_shards // num_groups
    per_shard = -(-agents_per_group // shards_per_group)
    slots = []
    for group in range(num_groups):
        block = np.full(per_shard * shards_per_group, -1)
        block[:agents_per_group] = group * agents_per_group + np.arange(agents_per_group)
        slots.append(block)
    return AgentLayout(int(num_agents), int(num_shards), int(num_groups), int(per_shard), np.concatenate(slots))


def noise_scale(noise, topology: Topology, rho: float) -> np.ndarray:
    """Per-agent noise standard deviations sigma_i.

    "common" sqrt(1 / (rho D)) (one noise draw shared by every agent: build the sampler with ``shared_noise=True``),
    "calibrated" sqrt(D / (rho sum_j d_j^2)) (independent draws), "paper" sqrt(2) / (2 rho), or a number (0 gives
    plain ADMM).
    """
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    n = topology.num_agents
    if isinstance(noise, str):
        if noise == "calibrated":
            degrees = topology.degrees
            value = np.sqrt(degrees.sum() / (rho * np.sum(degrees**2)))
        elif noise == "common":
            # one xi shared by every agent: the degree-weighted average gets sigma xi, and 2 h = 1 / (rho D)
            value = np.sqrt(1.0 / (rho * topology.degrees.sum()))
        elif noise == "paper":
            value = np.sqrt(2.0) / (2.0 * rho)
        else:
            raise ValueError(
                f"noise={noise!r} is not known; use one of {list(NOISE_NAMES)} or a number >= 0 "
                "(0 is plain decentralised ADMM)"
            )
        return np.full(n, value)
    if (
        isinstance(noise, bool)
        or not isinstance(noise, (int, float, np.integer, np.floating))
        or not 0 <= noise < np.inf
    ):
        raise ValueError(f"noise must be one of {list(NOISE_NAMES)} or a number >= 0 (and finite), got {noise!r}")
    return np.full(n, float(noise))


# ---------------------------------------------------------------------------------------------------------------------
class AgentBlock(NamedTuple):
    """The agents one device holds; every leaf has a leading slot axis.

    index: global agent id (0 in padding slots); degree: d_i (1 in padding slots, so nothing divides by zero);
    noise_scale: sigma_i; active: False in padding slots; neighbour_weights: row i of the exchange matrix over all
    slots (the adjacency for ADMM, the mixing weights for D-SGLD), used by the masked all-gather; data: the agent's
    potential data (a shard of observations, or a `QuadraticPotential`).
    """

    index: Any
    degree: Any
    noise_scale: Any
    active: Any
    neighbour_weights: Any
    data: Any


def slot_data(values, layout: AgentLayout, slots: slice | None = None):
    """Per-agent arrays (leading agent axis, agent order) -> per-slot arrays (padding slots repeat agent 0)."""
    slot_agent = layout.slot_agent if slots is None else layout.slot_agent[slots]
    take = np.where(slot_agent >= 0, slot_agent, 0)
    return jax.tree.map(lambda v: np.asarray(v)[take], values)


def make_agent_block(
    topology: Topology,
    layout: AgentLayout,
    *,
    rho: float,
    noise="calibrated",
    data=None,
    neighbour_weights: np.ndarray | None = None,
    slots: slice | None = None,
    data_in_slots: bool = False,
) -> AgentBlock:
    """Host-side `AgentBlock` of ``slots`` (default: every slot) for ``topology`` laid out by ``layout``.

    ``data`` holds one entry per agent along its leading axis (agent order), or per slot of ``slots`` when
    ``data_in_slots`` (a process that holds only its own agents' data passes those).
    """
    if topology.num_agents != layout.num_agents:
        raise ValueError(f"the graph has {topology.num_agents} agents but the layout {layout.num_agents}")
    slots = slots if slots is not None else slice(0, layout.num_slots)
    slot_agent = layout.slot_agent[slots]
    active = slot_agent >= 0
    index = np.where(active, slot_agent, 0)
    weights_by_agent = topology.adjacency if neighbour_weights is None else np.asarray(neighbour_weights, float)
    all_take = np.where(layout.slot_agent >= 0, layout.slot_agent, 0)
    all_active = layout.slot_agent >= 0
    rows = weights_by_agent[index][:, all_take] * all_active[None, :] * active[:, None]
    sigma = noise_scale(noise, topology, rho)[index] * active
    degree = np.where(active, topology.degrees[index], 1.0)
    if data is not None and not data_in_slots:
        data = slot_data(data, layout, slots)
    return AgentBlock(index.astype(np.int32), degree, sigma, active, rows, data)


# ---------------------------------------------------------------------------------------------------------------------
# the neighbour exchange
class Exchange(NamedTuple):
    """The neighbour exchange and the network-wide reductions of one device's agents.

    ``neighbour_sum(x, agents)``: sum_j W_ij x_j over each agent's neighbours (W the adjacency, or the block's
    ``neighbour_weights`` for the all-gather path); ``network_sum(v, agents)``: the sum over every active agent of the
    network, the same on all devices; ``network_max(v, agents)``: the largest value over active agents;
    ``local(v)``: a value that is the same on every device, typed as per-device (inside ``shard_map`` the gradient
    with respect to a replicated value is summed over devices implicitly; with respect to ``local(v)`` it is not,
    so that ``network_sum`` counts each agent once). ``x`` has shape (slots, ...), as held by one device.
    """

    kind: str
    neighbour_sum: Callable
    network_sum: Callable
    network_max: Callable
    local: Callable


def make_exchange(
    topology: Topology, layout: AgentLayout, axis_name: str | None = None, kind: str | None = None
) -> Exchange:
    """The neighbour exchange of ``topology`` over ``layout``'s shards.

    It runs inside ``shard_map`` over ``axis_name``, or on one device when ``axis_name`` is None. ``kind`` forces
    "gather" (masked all-gather) instead of the graph's fast path; a cycle whose agents do not fill the slots exactly
    also falls back to it.
    """
    kind = kind or topology.kind
    if kind == "graph":
        kind = "gather"
    if kind == "cycle" and layout.padded:
        kind = "gather"
    if kind not in ("complete", "cycle", "gather"):
        raise ValueError(f"unknown exchange kind {kind!r}")
    # inside shard_map every reduction goes through the collective, even over one device, so the results are
    # replicated values of the mesh axis (shard_map checks this)
    sharded = axis_name is not None

    def network_sum(v, agents):
        mask = agents.active.reshape((-1,) + (1,) * (v.ndim - 1))
        local = jnp.sum(jnp.where(mask, v, 0), axis=0)
        return jax.lax.psum(local, axis_name) if sharded else local

    def network_max(v, agents):
        mask = agents.active.reshape((-1,) + (1,) * (v.ndim - 1))
        local = jnp.max(jnp.where(mask, v, -jnp.inf), axis=0)
        return jax.lax.pmax(local, axis_name) if sharded else local

    if kind == "complete":

        def neighbour_sum(x, agents):
            return network_sum(x, agents)[None] - x

    elif kind == "cycle":
        shards = layout.num_shards

        def neighbour_sum(x, agents):
            if not sharded or shards == 1:
                return jnp.roll(x, 1, axis=0) + jnp.roll(x, -1, axis=0)
            from_left = jax.lax.ppermute(x[-1:], axis_name, [(k, (k + 1) % shards) for k in range(shards)])
            from_right = jax.lax.ppermute(x[:1], axis_name, [(k, (k - 1) % shards) for k in range(shards)])
            left = jnp.concatenate([from_left, x[:-1]], axis=0)
            right = jnp.concatenate([x[1:], from_right], axis=0)
            return left + right

    else:

        def neighbour_sum(x, agents):
            everyone = jax.lax.all_gather(x, axis_name, axis=0, tiled=True) if sharded else x
            weights = agents.neighbour_weights.astype(x.dtype)
            return jnp.tensordot(weights, everyone, axes=(1, 0))

    def local(v):
        return jax.lax.pcast(v, axis_name, to="varying") if sharded else v

    return Exchange(kind, neighbour_sum, network_sum, network_max, local)


# ---------------------------------------------------------------------------------------------------------------------
# what every device learns about the whole network after a step
class NetworkInfo(NamedTuple):
    """What every device learns about the whole network after a step.

    Per replica: the degree-weighted network average sum_i (d_i / D) x_i (replicas, dim); the consensus residual
    sqrt(sum_i (d_i / D) ||x_i - x_bar||^2); the dual sum ||sum_i p_i|| (0 up to rounding: the invariant of ADMM);
    the largest local-solve residual over agents (see `samplax.kernels.admm.dadmms.newton_prox`); ``diverging``:
    an agent's local solve missed its tolerance or gave a non-finite point (that agent kept its last iterate).
    """

    network_average: jax.Array
    consensus_residual: jax.Array
    dual_sum: jax.Array
    prox_residual: jax.Array
    diverging: jax.Array


def network_info(position, dual, agents: AgentBlock, exchange: Exchange, residual=None, failed=None) -> NetworkInfo:
    """The `NetworkInfo` of a step, from one psum and one pmax.

    One ``network_sum`` (a single psum) gives the weighted average, the residual and the dual sum; one
    ``network_max`` the worst local solve. ``residual`` and ``failed`` are per (slot, replica), or None.
    """
    dim = position.shape[-1]
    degree = agents.degree.astype(position.dtype)[:, None, None]
    squared = jnp.sum(position**2, axis=-1, keepdims=True)
    ones = jnp.ones_like(squared)
    stacked = jnp.concatenate([degree * position, dual, degree * squared, degree * ones], axis=-1)
    total = exchange.network_sum(stacked, agents)
    weight_total = total[..., -1:]
    average = total[..., :dim] / weight_total
    dual_sum = jnp.linalg.norm(total[..., dim : 2 * dim], axis=-1)
    spread = total[..., 2 * dim] / weight_total[..., 0] - jnp.sum(average**2, axis=-1)
    if residual is None:
        worst = jnp.zeros(position.shape[1], position.dtype)
        diverging = jnp.zeros(position.shape[1], bool)
    else:
        flags = jnp.asarray(failed, position.dtype) if failed is not None else jnp.zeros_like(residual)
        worst_both = exchange.network_max(jnp.stack([residual.astype(position.dtype), flags], axis=-1), agents)
        worst, diverging = worst_both[..., 0], worst_both[..., 1] > 0
    return NetworkInfo(average, jnp.sqrt(jnp.maximum(spread, 0.0)), dual_sum, worst, diverging)
