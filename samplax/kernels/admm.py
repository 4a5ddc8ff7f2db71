"""D-ADMMS: distributed MCMC sampling by the alternating direction method of multipliers, and its baseline D-SGLD.

Paper: A. E. Tzikas, L. Romao, M. Pilanci, A. Abate, M. J. Kochenderfer, "Distributed Markov Chain Monte Carlo
Sampling based on the Alternating Direction Method of Multipliers", arXiv 2401.15838 (2024).

n agents on an undirected graph (V, E) with degrees d_i; agent i holds a private potential f_i (its negative
log-likelihood plus a 1/n share of the negative log-prior); the target is mu*(x) ∝ exp(-sum_i f_i(x)). With
x_i^0 ~ N(0, I), p_i^0 = 0, every agent updates at once (synchronously):

    m_i^k     = (x_i^k + (1/d_i) sum_{j in N_i} x_j^k) / 2,          w_i = sigma_i xi_i,  xi_i ~ N(0, I)
    x_i^{k+1} = argmin_x f_i(x) + <p_i^k, x> + rho d_i ||x - (m_i^k - w_i)||^2        (a noisy proximal step)
    p_i^{k+1} = p_i^k + rho (d_i x_i^{k+1} - sum_{j in N_i} x_j^{k+1})                (the dual step)

One neighbour exchange per iteration: the neighbour sums of x^{k+1} feed both the dual step and the next m_i.
sum_i p_i^k = 0 for every k (the dual-sum invariant, recorded in `ADMMInfo.dual_sum`); sigma = 0 is plain
decentralised ADMM, which converges to the MAP.

Noise scale. Summing the agents' optimality conditions near consensus shows that the degree-weighted network average
x_bar = sum_i (d_i / D) x_i (D = sum_i d_i) takes a proximal Langevin step of size 1 / (2 rho D) on sum_i f_i, which
targets mu* when sigma_i^2 = D / (rho sum_j d_j^2) ("calibrated", the default; 1 / (rho d) on a d-regular graph).
The authors' code uses sigma = sqrt(2) / (2 rho) for every graph ("paper"). For a Gaussian target the (x, p) recursion
is linear and `linear_gaussian_stationary` gives its exact stationary law (a discrete Lyapunov equation): the
calibrated chain's network-average variance is 3-10 % off the posterior's, a property of the method, not of the code.

Layout. The agent axis is split over devices (``jax.shard_map`` over a mesh axis), several agents per device as a
vmapped block (padded with inactive slots when the counts do not divide). The neighbour exchange maps onto
collectives: ``ppermute`` of the block edges for a cycle, one ``psum`` for the complete graph, and a masked
``all_gather`` for any other graph. Each agent's noise key is ``fold_in(step_key, agent_index)``, so the draws do not
depend on how agents are spread over devices. Many replicas (independent chains) run as a vectorised axis:
positions have shape (agents, replicas, dim).

The local proximal step is solved in closed form when f_i is quadratic (Gaussian-linear likelihoods:
f_i(x) = x^T A_i x / 2 - b_i^T x gives x = (A_i + 2 rho d_i I)^{-1} (b_i - p_i + 2 rho d_i (m_i - w_i))), and by a few
damped Newton steps with backtracking (warm-started at x_i^k) otherwise.

Baseline (`dsgld_kernel`): decentralised SGLD (Gürbüzbalaban, Gao, Hu, Zhu, JMLR 2021),
x_i^{k+1} = sum_j W_ij x_j^k - eta grad f_i(x_i^k) + sqrt(2 eta) xi_i, with Metropolis-Hastings mixing weights
W_ij = 1 / (1 + max(d_i, d_j)) on edges and W_ii = 1 - sum_{j != i} W_ij, and a minibatch gradient of f_i.

Usage (one device, 8 agents on a cycle, a quadratic f_i per agent)::

    topology = make_topology("cycle", 8)
    layout = make_layout(8, num_shards=1)
    agents = make_agent_block(topology, layout, rho=5.0, noise="calibrated", data=QuadraticPotential(A, b))
    exchange = make_exchange(topology, layout)
    sampler = admm(agents, exchange, rho=5.0, solver="closed_form")
    state = sampler.init(initial_positions(key, agents, num_replicas=1000, dim=2))
    state, info = jax.jit(sampler.step)(key, state)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

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
    "QuadraticPotential",
    "regression_agents",
    "quadratic_prox",
    "newton_prox",
    "ADMMState",
    "ADMMInfo",
    "DistributedSampler",
    "initial_positions",
    "init",
    "build_kernel",
    "admm",
    "DSGLDState",
    "metropolis_weights",
    "dsgld_kernel",
    "dsgld",
    "linear_gaussian_stationary",
    "gaussian_w2",
]

GRAPH_NAMES = ("complete", "cycle", "star")
NOISE_NAMES = ("calibrated", "paper")


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
    """A `Topology` from a name ("complete", "cycle", "star": agent 0 is the hub) and ``num_agents``, a networkx
    graph (agents are its nodes in ``graph.nodes`` order), or an (n, n) adjacency matrix.

    Degree-0 agents are refused: their proximal step has no neighbours to average with.
    """
    import networkx as nx

    if isinstance(graph, str):
        if graph not in GRAPH_NAMES:
            raise ValueError(f"graph={graph!r} is not a known graph name; use one of {list(GRAPH_NAMES)}, a networkx "
                             "graph or an adjacency matrix")
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
            raise ValueError("graph must be undirected (agents exchange with their neighbours both ways); pass "
                             "graph.to_undirected()")
        if nx.number_of_selfloops(graph):
            raise ValueError(f"graph has self-loops at nodes {list(nx.nodes_with_selfloops(graph))}; remove them")
        adjacency = np.asarray(nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None))
        adjacency = (adjacency != 0).astype(float)
        if num_agents is not None and num_agents != adjacency.shape[0]:
            raise ValueError(f"num_agents={num_agents} but the graph has {adjacency.shape[0]} nodes; drop "
                             "num_agents or pass a graph with that many nodes")
    else:
        adjacency = np.asarray(graph, dtype=float)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"graph must be a name, a networkx graph or a square adjacency matrix, got an array of "
                             f"shape {adjacency.shape}")
        if not np.array_equal(adjacency, adjacency.T) or np.any(np.diag(adjacency) != 0):
            raise ValueError("the adjacency matrix must be symmetric with a zero diagonal (an undirected graph "
                             "without self-loops)")
        adjacency = (adjacency != 0).astype(float)
    n = adjacency.shape[0]
    if n < 2:
        raise ValueError(f"ADMM needs at least 2 agents, the graph has {n}")
    degrees = adjacency.sum(axis=1)
    isolated = np.flatnonzero(degrees == 0)
    if isolated.size:
        raise ValueError(f"agents {isolated.tolist()} have no neighbours (degree 0): their ADMM step is "
                         "deterministic and never mixes with the network; connect them or drop them from the graph")
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
        raise ValueError(f"num_shards={num_shards} devices cannot be split evenly over num_groups={num_groups} "
                         "processes; give every process the same number of devices")
    if num_agents % num_groups:
        raise ValueError(f"num_agents={num_agents} cannot be split evenly over {num_groups} processes; use a multiple "
                         f"of {num_groups} agents")
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
    """Per-agent noise standard deviations sigma_i: "calibrated" sqrt(D / (rho sum_j d_j^2)), "paper"
    sqrt(2) / (2 rho), or a number (0 gives plain ADMM)."""
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    n = topology.num_agents
    if isinstance(noise, str):
        if noise == "calibrated":
            degrees = topology.degrees
            value = np.sqrt(degrees.sum() / (rho * np.sum(degrees ** 2)))
        elif noise == "paper":
            value = np.sqrt(2.0) / (2.0 * rho)
        else:
            raise ValueError(f"noise={noise!r} is not known; use one of {list(NOISE_NAMES)} or a number >= 0 "
                             "(0 is plain decentralised ADMM)")
        return np.full(n, value)
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)) or \
            not 0 <= noise < np.inf:
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


def make_agent_block(topology: Topology, layout: AgentLayout, *, rho: float, noise="calibrated", data=None,
                     neighbour_weights: np.ndarray | None = None, slots: slice | None = None,
                     data_in_slots: bool = False) -> AgentBlock:
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
    """``neighbour_sum(x, agents)``: sum_j W_ij x_j over each agent's neighbours (W the adjacency, or the block's
    ``neighbour_weights`` for the all-gather path); ``network_sum(v, agents)``: the sum over every active agent of the
    network, the same on all devices. ``x`` has shape (slots, ...), as held by one device."""

    kind: str
    neighbour_sum: Callable
    network_sum: Callable


def make_exchange(topology: Topology, layout: AgentLayout, axis_name: str | None = None,
                  kind: str | None = None) -> Exchange:
    """The neighbour exchange of ``topology`` over ``layout``'s shards (inside ``shard_map`` over ``axis_name``, or
    on one device when ``axis_name`` is None). ``kind`` forces "gather" (masked all-gather) instead of the graph's
    fast path; a cycle whose agents do not fill the slots exactly also falls back to it."""
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

    return Exchange(kind, neighbour_sum, network_sum)


# ---------------------------------------------------------------------------------------------------------------------
# the local proximal step: argmin_x f_i(x) + <p, x> + (weight / 2) ||x - anchor||^2, for all replicas of one agent
class QuadraticPotential(NamedTuple):
    """f_i(x) = x^T precision x / 2 - linear^T x (+ a constant): a Gaussian-linear agent."""

    precision: Any
    linear: Any


def regression_agents(num_agents: int, points_per_agent: int = 50, dim: int = 2, seed: int = 0,
                      noise_sd: float = 4.0, prior_variance: float = 10.0) -> QuadraticPotential:
    """The paper's Bayesian linear regression split over agents (defaults: d = 2, noise sd 4, prior N(0, 10 I)
    shared evenly): f_i(x) = ||y_i - X_i x||^2 / (2 s^2) + ||x||^2 / (2 lambda n) = x^T A_i x / 2 - b_i^T x + const,
    A_i = X_i^T X_i / s^2 + I / (lambda n), b_i = X_i^T y_i / s^2 (numpy arrays, (n, d, d) and (n, d))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(num_agents, points_per_agent, dim))
    truth = rng.normal(size=dim) * 2.0
    y = X @ truth + noise_sd * rng.normal(size=(num_agents, points_per_agent))
    precision = np.einsum("nmi,nmj->nij", X, X) / noise_sd ** 2 + np.eye(dim) / (prior_variance * num_agents)
    linear = np.einsum("nmi,nm->ni", X, y) / noise_sd ** 2
    return QuadraticPotential(precision, linear)


def quadratic_prox():
    """Closed form: x = (A + weight I)^{-1} (b - p + weight anchor), one small inverse per agent applied to every
    replica as a matrix product (A + weight I is well conditioned: its eigenvalues are at least weight > 0)."""

    def prox(data: QuadraticPotential, dual, anchor, weight, warm_start):
        del warm_start
        dim = anchor.shape[-1]
        matrix = data.precision.astype(anchor.dtype) + weight * jnp.eye(dim, dtype=anchor.dtype)
        inverse = jnp.linalg.inv(matrix)
        rhs = data.linear.astype(anchor.dtype)[None, :] - dual + weight * anchor
        return rhs @ inverse.T

    return prox


def newton_prox(local_potential: Callable, num_steps: int = 5, num_backtracks: int = 6):
    """Damped Newton on the strongly convex proximal objective g(x) = f_i(x) + <p, x> + weight ||x - anchor||^2 / 2,
    warm-started at the agent's last iterate: ``num_steps`` steps, each the Newton direction (the scaled gradient
    when the Hessian is not positive definite) with Armijo backtracking over ``num_backtracks`` halvings.

    ``local_potential(x, data)`` is f_i at the flat vector ``x`` with the agent's ``data``.
    """
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"newton_steps must be a positive integer, got {num_steps!r}")

    def prox(data, dual, anchor, weight, warm_start):
        def objective(x, p, a):
            return local_potential(x, data) + jnp.dot(p, x) + 0.5 * weight * jnp.sum((x - a) ** 2)

        value_and_grad = jax.value_and_grad(objective)
        hessian = jax.hessian(local_potential)
        steps = 0.5 ** jnp.arange(num_backtracks)

        def one_replica(x0, p, a):
            def newton_step(x, _):
                value, grad = value_and_grad(x, p, a)
                matrix = hessian(x, data) + weight * jnp.eye(x.shape[0], dtype=x.dtype)
                factor = jnp.linalg.cholesky(matrix)  # NaN when the Hessian is not positive definite
                half = jax.lax.linalg.triangular_solve(factor, grad[:, None], left_side=True, lower=True)
                direction = -jax.lax.linalg.triangular_solve(factor, half, left_side=True, lower=True,
                                                             transpose_a=True)[:, 0]
                slope = jnp.dot(grad, direction)
                usable = jnp.all(jnp.isfinite(direction)) & (slope < 0)
                direction = jnp.where(usable, direction, -grad / weight)
                slope = jnp.dot(grad, direction)
                trial = jax.vmap(lambda s: objective(x + s * direction, p, a))(steps)
                armijo = trial <= value + 1e-4 * steps * slope
                first = jnp.argmax(armijo)
                step = jnp.where(jnp.any(armijo), steps[first], 0.0)
                return x + step * direction, None

            x, _ = jax.lax.scan(newton_step, x0, None, length=num_steps)
            return x

        return jax.vmap(one_replica)(warm_start, dual, anchor)

    return prox


# ---------------------------------------------------------------------------------------------------------------------
class ADMMState(NamedTuple):
    """position x_i^k and dual p_i^k (slots, replicas, dim); neighbour_sum: sum_{j in N_i} x_j^k, cached from the
    last exchange because both the dual step and the next proximal centre m_i need it."""

    position: jax.Array
    dual: jax.Array
    neighbour_sum: jax.Array


class ADMMInfo(NamedTuple):
    """Per replica: the degree-weighted network average sum_i (d_i / D) x_i (replicas, dim); the consensus residual
    sqrt(sum_i (d_i / D) ||x_i - x_bar||^2); the dual sum ||sum_i p_i|| (0 up to rounding: the invariant)."""

    network_average: jax.Array
    consensus_residual: jax.Array
    dual_sum: jax.Array


def initial_positions(rng_key, agents: AgentBlock, num_replicas: int, dim: int, dtype=None):
    """x_i^0 ~ N(0, I) for every replica, keyed by the agent's global index (layout independent)."""
    dtype = dtype or jnp.zeros(()).dtype
    keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(jnp.asarray(agents.index))
    draws = jax.vmap(lambda k: jax.random.normal(k, (num_replicas, dim), dtype))(keys)
    return jnp.where(jnp.asarray(agents.active)[:, None, None], draws, 0.0)


def init(position, agents: AgentBlock, exchange: Exchange) -> ADMMState:
    """p^0 = 0 and the neighbour sums of x^0 (one exchange)."""
    position = jnp.where(jnp.asarray(agents.active)[:, None, None], position, 0.0)
    return ADMMState(position, jnp.zeros_like(position), exchange.neighbour_sum(position, agents))


def _network_info(position, dual, agents: AgentBlock, exchange: Exchange) -> ADMMInfo:
    """One ``network_sum`` (a single psum) gives the weighted average, the residual and the dual sum."""
    dim = position.shape[-1]
    degree = agents.degree.astype(position.dtype)[:, None, None]
    squared = jnp.sum(position ** 2, axis=-1, keepdims=True)
    ones = jnp.ones_like(squared)
    stacked = jnp.concatenate([degree * position, dual, degree * squared, degree * ones], axis=-1)
    total = exchange.network_sum(stacked, agents)
    weight_total = total[..., -1:]
    average = total[..., :dim] / weight_total
    dual_sum = jnp.linalg.norm(total[..., dim:2 * dim], axis=-1)
    spread = total[..., 2 * dim] / weight_total[..., 0] - jnp.sum(average ** 2, axis=-1)
    return ADMMInfo(average, jnp.sqrt(jnp.maximum(spread, 0.0)), dual_sum)


def build_kernel(prox: Callable, exchange: Exchange, rho: float):
    """``kernel(rng_key, state, agents) -> (state, info)``: one synchronous D-ADMMS iteration of every agent."""

    def kernel(rng_key, state: ADMMState, agents: AgentBlock):
        position, dual, neighbours = state
        active = agents.active[:, None, None]
        degree = agents.degree.astype(position.dtype)[:, None, None]
        keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(agents.index)
        xi = jax.vmap(lambda k: jax.random.normal(k, position.shape[1:], position.dtype))(keys)
        anchor = 0.5 * (position + neighbours / degree) - agents.noise_scale.astype(position.dtype)[:, None, None] * xi
        weight = 2.0 * rho * agents.degree.astype(position.dtype)
        new_position = jax.vmap(prox)(agents.data, dual, anchor, weight, position)
        new_position = jnp.where(active, new_position, 0.0)
        new_neighbours = exchange.neighbour_sum(new_position, agents)
        new_dual = jnp.where(active, dual + rho * (degree * new_position - new_neighbours), 0.0)
        info = _network_info(new_position, new_dual, agents, exchange)
        return ADMMState(new_position, new_dual, new_neighbours), info

    return kernel


class DistributedSampler(NamedTuple):
    """``init(position) -> state`` and ``step(rng_key, state) -> (state, info)`` over one device's agent block."""

    init: Callable
    step: Callable


def admm(agents: AgentBlock, exchange: Exchange, *, rho: float = 5.0, solver: str = "newton",
         local_potential: Callable | None = None, newton_steps: int = 5) -> DistributedSampler:
    """D-ADMMS over ``agents`` (a device's block). ``solver``: "closed_form" (``agents.data`` is a
    `QuadraticPotential`) or "newton" (``local_potential(x, data)`` is f_i)."""
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    if solver == "closed_form":
        # (A_i + 2 rho d_i I)^{-1} does not change between iterations: invert once, outside the step
        weight = 2.0 * rho * jnp.asarray(agents.degree)
        data = agents.data
        dim = data.linear.shape[-1]
        inverse = jax.vmap(lambda a, w: jnp.linalg.inv(a + w * jnp.eye(dim, dtype=a.dtype)))(
            jnp.asarray(data.precision), weight.astype(jnp.asarray(data.precision).dtype))
        agents = agents._replace(data=(inverse, jnp.asarray(data.linear)))

        def prox(factored, dual, anchor, weight, warm_start):
            inverse, linear = factored
            rhs = linear.astype(anchor.dtype)[None, :] - dual + weight * anchor
            return rhs @ inverse.astype(anchor.dtype).T
    elif solver == "newton":
        if local_potential is None:
            raise ValueError("solver='newton' needs local_potential(x, data), the agent's potential f_i")
        prox = newton_prox(local_potential, newton_steps)
    else:
        raise ValueError(f"solver={solver!r} is not known; use 'closed_form' or 'newton'")
    kernel = build_kernel(prox, exchange, rho)
    return DistributedSampler(lambda position: init(position, agents, exchange),
                              lambda rng_key, state: kernel(rng_key, state, agents))


# ---------------------------------------------------------------------------------------------------------------------
# baseline: decentralised SGLD
class DSGLDState(NamedTuple):
    """position x_i^k (slots, replicas, dim)."""

    position: jax.Array


def metropolis_weights(topology: Topology) -> np.ndarray:
    """Doubly stochastic Metropolis-Hastings mixing weights, off-diagonal part: W_ij = 1 / (1 + max(d_i, d_j))."""
    degrees = topology.degrees
    return topology.adjacency / (1.0 + np.maximum(degrees[:, None], degrees[None, :]))


def dsgld_kernel(likelihood_potential: Callable, prior_potential: Callable, exchange: Exchange, step_size: float,
                 *, batch_size: int | None = None, subsample: Callable | None = None):
    """``kernel(rng_key, state, agents) -> (state, info)``: one D-SGLD step of every agent.

    f_i(x) = likelihood_potential(x, data_i) + prior_potential(x, data_i). Build ``agents`` with
    ``neighbour_weights=metropolis_weights(topology)``: the masked all-gather applies those weights; the fast paths
    of regular graphs (complete, cycle) apply their uniform weight 1 / (1 + d). With ``batch_size``,
    ``subsample(key, data_i, batch_size) -> (batch, scale)`` gives a minibatch whose likelihood potential times
    ``scale`` estimates the shard's.
    """
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if batch_size is not None and subsample is None:
        raise ValueError("batch_size needs subsample(key, data, batch_size) -> (batch, scale)")

    def kernel(rng_key, state: DSGLDState, agents: AgentBlock):
        position = state.position
        off_diagonal = exchange.neighbour_sum(position, agents)
        if exchange.kind != "gather":
            off_diagonal = off_diagonal / (1.0 + agents.degree.astype(position.dtype))[:, None, None]
        row_sum = jnp.sum(agents.neighbour_weights, axis=1).astype(position.dtype)[:, None, None]
        mixed = (1.0 - row_sum) * position + off_diagonal
        keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(agents.index)

        def one_agent(key, x, data):
            noise_key, batch_key = jax.random.split(key)
            if batch_size is None:
                grad = jax.vmap(jax.grad(lambda z: likelihood_potential(z, data) + prior_potential(z, data)))(x)
            else:  # every replica draws its own minibatch, so the replicas stay independent chains
                def replica_grad(z, replica_key):
                    batch, scale = subsample(replica_key, data, batch_size)
                    return jax.grad(lambda u: scale * likelihood_potential(u, batch) + prior_potential(u, data))(z)

                grad = jax.vmap(replica_grad)(x, jax.random.split(batch_key, x.shape[0]))
            return grad, jax.random.normal(noise_key, x.shape, x.dtype)

        grad, xi = jax.vmap(one_agent)(keys, position, agents.data)
        new_position = mixed - step_size * grad + jnp.sqrt(2.0 * step_size) * xi
        new_position = jnp.where(agents.active[:, None, None], new_position, 0.0)
        info = _network_info(new_position, jnp.zeros_like(new_position), agents, exchange)
        return DSGLDState(new_position), info

    return kernel


def dsgld(agents: AgentBlock, exchange: Exchange, likelihood_potential: Callable, prior_potential: Callable, *,
          step_size: float, batch_size: int | None = None, subsample: Callable | None = None) -> DistributedSampler:
    """Decentralised SGLD over ``agents`` (built with ``neighbour_weights=metropolis_weights(topology)``)."""
    kernel = dsgld_kernel(likelihood_potential, prior_potential, exchange, step_size, batch_size=batch_size,
                          subsample=subsample)
    return DistributedSampler(
        lambda position: DSGLDState(jnp.where(jnp.asarray(agents.active)[:, None, None], position, 0.0)),
        lambda rng_key, state: kernel(rng_key, state, agents))


# ---------------------------------------------------------------------------------------------------------------------
# exact answers for Gaussian targets
def linear_gaussian_stationary(topology: Topology, rho: float, sigma, precisions, linears):
    """Exact stationary mean and covariance of synchronous D-ADMMS for quadratic f_i (x^T A_i x / 2 - b_i^T x).

    The state (x, p) follows a linear recursion z' = T z + h + N xi. The dual sum is conserved (and 0), so p lives in
    the (n - 1) d-dimensional complement of the consensus direction; on (x, q) with p = (U ⊗ I) q the recursion is
    stable and its stationary covariance solves the discrete Lyapunov equation S = T S T^T + N N^T
    (`scipy.linalg.solve_discrete_lyapunov`). Returns a dict: ``mean`` (n, dim), ``covariance`` (n dim, n dim) of
    the stacked agent positions, ``average_mean`` and ``average_covariance`` of the degree-weighted network average,
    ``spectral_radius`` of the reduced T.
    """
    import scipy.linalg

    adjacency = topology.adjacency
    degrees = topology.degrees
    n = topology.num_agents
    precisions = np.asarray(precisions, float)
    linears = np.asarray(linears, float)
    dim = linears.shape[-1]
    sigma = np.broadcast_to(np.asarray(sigma, float), (n,))
    eye = np.eye(dim)
    weight = 2.0 * rho * degrees
    solve = [np.linalg.inv(precisions[i] + weight[i] * eye) for i in range(n)]
    # m = C x with C = (I + D^{-1} Adj) / 2
    centre = 0.5 * (np.eye(n) + adjacency / degrees[:, None])
    big = lambda blocks: np.block(blocks)  # noqa: E731
    K = big([[solve[i] * weight[i] * centre[i, j] for j in range(n)] for i in range(n)])   # x' from x
    G = big([[-solve[i] if i == j else np.zeros((dim, dim)) for j in range(n)] for i in range(n)])  # x' from p
    h = np.concatenate([solve[i] @ linears[i] for i in range(n)])
    Nx = big([[-solve[i] * weight[i] * sigma[i] if i == j else np.zeros((dim, dim)) for j in range(n)]
              for i in range(n)])
    laplacian = np.kron(np.diag(degrees) - adjacency, eye) * rho
    # p' = p + rho L x'
    T = np.block([[K, G], [laplacian @ K, np.eye(n * dim) + laplacian @ G]])
    offset = np.concatenate([h, laplacian @ h])
    noise = np.vstack([Nx, laplacian @ Nx])
    # reduce p to the complement of the consensus direction
    basis = scipy.linalg.null_space(np.ones((1, n)))  # (n, n - 1), orthonormal
    P = scipy.linalg.block_diag(np.eye(n * dim), np.kron(basis, eye))  # z = P y
    Pinv = P.T  # orthonormal columns
    T_red = Pinv @ T @ P
    offset_red = Pinv @ offset
    noise_red = Pinv @ noise
    radius = float(np.max(np.abs(np.linalg.eigvals(T_red))))
    if radius >= 1:
        raise ValueError(f"the linear ADMM recursion is not stable (spectral radius {radius:.4f}); check rho and the "
                         "precisions (they must be positive semidefinite with a positive definite sum)")
    mean_red = np.linalg.solve(np.eye(T_red.shape[0]) - T_red, offset_red)
    cov_red = scipy.linalg.solve_discrete_lyapunov(T_red, noise_red @ noise_red.T)
    x_dim = n * dim
    mean = mean_red[:x_dim].reshape(n, dim)
    cov = cov_red[:x_dim, :x_dim]
    average = np.kron(degrees / degrees.sum(), eye)  # (dim, n dim)
    return {"mean": mean, "covariance": cov, "average_mean": average @ mean_red[:x_dim],
            "average_covariance": average @ cov @ average.T, "spectral_radius": radius}


def gaussian_w2(mean_a, cov_a, mean_b, cov_b) -> float:
    """Wasserstein-2 distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    import scipy.linalg

    cov_a = np.atleast_2d(np.asarray(cov_a, float))
    cov_b = np.atleast_2d(np.asarray(cov_b, float))
    root_b = scipy.linalg.sqrtm(cov_b)
    cross = scipy.linalg.sqrtm(root_b @ cov_a @ root_b)
    value = np.sum((np.asarray(mean_a) - np.asarray(mean_b)) ** 2) + np.trace(cov_a + cov_b - 2.0 * np.real(cross))
    return float(np.sqrt(max(value, 0.0)))
