"""The distributed samplers ``admm`` (D-ADMMS) and its baseline ``dsgld`` (decentralised SGLD) as Markov methods.

Both split the model's data along the observation plate into ``num_agents`` shards (`Target.shards`: unequal shards
padded and masked), one per agent; agent i's potential is its shard's negative log-likelihood plus 1 / num_agents of
the negative log-prior. Agents sit on the devices of `samplax.infer.agents.agent_mesh` (several per device) and
talk only to their graph neighbours through collectives. ``chains`` are independent replicas of the whole network,
``warmup`` discarded iterations, ``draws`` kept iterations.

Both are `MCMCMethod` s run by `fit`'s one chain driver (`samplax.infer.run.ChainRunner`), so checkpoints and
resume, ``thin``, progress bars and ``fold_in(chain_key, t)`` keys work as for nuts. ``prepare`` builds an
`AgentChains` (the agents' blocks on their mesh, and for admm everything tuned on the host before the first
iteration); its ``map_chains`` runs each chain's transition inside one ``jax.shard_map`` over the agent axis
(`samplax.infer.agents.agent_map_chains`), so the data shards stay on their devices and only the exchanged iterates
travel. Chains start from x_i^0 ~ N(0, I) per agent in the coordinates the agents run in (``init=`` is refused).

admm adapts to the problem (`samplax.kernels.admm.precondition`): a Laplace warm-up (Newton on the summed potential,
one d x d all-reduce per step) finds the mode and curvature; the agents then run in preconditioned coordinates u
(x = mode + L u, L^T H L = I), where rho is chosen from the agents' curvature (`kernel.choose_rho`, around
5 / D, D = sum of degrees) unless given, the noise is one draw shared by every agent (``noise="common"``, drawn from
a key all agents hold: no communication), and the local proximal problems are solved to ``prox_tolerance`` (in u:
posterior-sd units).

Draws: the posterior group holds the degree-weighted network average sum_i (d_i / D) x_i (what the calibrated
noise targets). ``sample_stats``: ``agent_z`` (every agent's own iterate, unconstrained, shape
(chain, draw, agent, z)), ``consensus_residual`` (in u for admm), and for admm ``dual_sum`` (||sum_i p_i||, 0 up to
rounding), ``prox_residual`` (the largest local-solve residual over agents, a bound on the solve's error in u) and
``diverging`` (a local solve missed its tolerance or was not finite). ``idata.attrs["extra_*"]`` for admm:
``rho``, ``rho_rule``, ``noise_scale``, ``solver``, ``prox_tolerance``, ``precondition`` (the kind used),
``precondition_condition_number`` (of the summed potential's Hessian at the mode), ``laplace_sd`` (per coordinate,
from that Hessian), ``laplace_newton_decrement`` (the warm-up's distance to the mode, in posterior sds),
``variance_ratio`` (per coordinate: the network average's stationary variance / the target's, exact for the Gaussian
with the agents' curvature at the mode, i.e. the method's own variance deficit; null when too large to solve),
``variance_ratio_min`` and ``variance_ratio_max``, ``max_prox_residual`` and ``divergences``.

Several processes: call `samplax.infer.distributed.initialize` first in each. By default every process holds the
full data and keeps its own agents' shards; a process that holds only its own observations passes
``num_observations`` (the global count) and its data are split over its ``num_agents / num_processes`` agents.
"""

from __future__ import annotations

import hashlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from samplax.infer import agents, distributed
from samplax.infer.methods import MCMCMethod
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels import admm as kernel

__all__ = [
    "ADMM_SCHEMA",
    "DSGLD_SCHEMA",
    "ADMM",
    "DSGLD",
    "build_topology",
    "agent_problem",
    "AgentChains",
    "AgentInfo",
]

_COMMON = (
    Option("num_agents", int, 5, "number of agents (data shards); a multiple of the number of processes", minimum=2),
    Option(
        "graph",
        str,
        "cycle",
        "the agents' communication graph (agent 0 is the hub of a star)",
        choices=kernel.GRAPH_NAMES,
    ),
    Option(
        "edges",
        object,
        None,
        "a custom graph instead: a networkx graph, or a list of [i, j] agent pairs "
        "(JSON on the command line); overrides graph",
        allow_none=True,
    ),
    Option(
        "num_devices",
        int,
        None,
        "devices for the agent axis (default: every device of the job)",
        minimum=1,
        allow_none=True,
    ),
    Option(
        "num_observations",
        int,
        None,
        "global number of observations when each process passes only its own data (multi-process runs)",
        minimum=1,
        allow_none=True,
    ),
    Option("record_agents", bool, True, "keep every agent's iterates in sample_stats['agent_z']"),
)

# a numpyro.factor term has no place in a data split: each agent would evaluate it on its own shard as part of its
# prior share (wrong for a factor over observations), and a -inf factor breaks the local solves
_UNSUPPORTED = (
    "no_observations",
    "no_observation_plate",
    "latent_in_observation_plate",
    "observations_not_along_data",
    "data_read_as_values",
    "factor",
)

ADMM_SCHEMA = MethodSchema(
    "admm",
    "mcmc",
    "distributed MCMC by ADMM (D-ADMMS, Tzikas et al. 2024): agents hold data shards and exchange iterates with "
    "graph neighbours over JAX collectives; chains = replicas of the network",
    (
        *_COMMON[:3],
        Option(
            "rho",
            float,
            None,
            "ADMM penalty in preconditioned coordinates (default: 5 / D, D the sum of the "
            "degrees: the network average then takes Langevin steps of 0.1 posterior variances, a ~5 % variance "
            "deficit); progress scales like 1 / (rho * degree)",
            minimum=1e-12,
            allow_none=True,
        ),
        Option(
            "noise",
            object,
            "common",
            "'common' (one noise draw shared by all agents from a common key, "
            "sigma^2 = 1 / (rho D): the network average targets the posterior and the agents stay near consensus), "
            "'calibrated' (independent draws, sigma_i^2 = D / (rho sum d_j^2): the agents' spread biases "
            "non-Gaussian targets), 'paper' (sigma = sqrt(2) / (2 rho), the authors' code) or a number >= 0 (0: "
            "plain ADMM -> MAP)",
        ),
        Option(
            "solver",
            str,
            "auto",
            "local proximal solve: 'closed_form' (Gaussian-linear agents), 'newton', or "
            "'auto' (closed form when every agent's potential is quadratic)",
            choices=("auto", "closed_form", "newton"),
        ),
        Option(
            "newton_steps",
            int,
            20,
            "at most this many damped Newton steps per proximal solve (warm-started; "
            "the solve stops at prox_tolerance)",
            minimum=1,
        ),
        Option(
            "prox_tolerance",
            float,
            None,
            "local solves stop when ||grad|| / (2 rho d_i), a bound on the distance "
            "to the proximal point in preconditioned coordinates, is below it (default 1e-3 in float32, 1e-6 in "
            "float64); a solve that misses it is a divergence",
            minimum=1e-15,
            allow_none=True,
        ),
        Option(
            "precondition",
            str,
            "auto",
            "coordinates the agents run in: 'dense' (x = mode + L u with L^T H L = I, "
            "H the summed potential's Hessian at the mode found in warm-up), 'diagonal' (Jacobi), 'none' (the "
            "model's unconstrained coordinates), 'auto' (dense up to 500 dimensions)",
            choices=kernel.PRECONDITIONERS,
        ),
        *_COMMON[3:],
    ),
    unsupported=_UNSUPPORTED,
)

DSGLD_SCHEMA = MethodSchema(
    "dsgld",
    "mcmc",
    "decentralised SGLD (Gürbüzbalaban et al. 2021), the baseline of admm: gossip averaging with Metropolis "
    "weights plus a Langevin step on each agent's shard; chains = replicas of the network",
    (
        *_COMMON[:3],
        Option(
            "step_size",
            float,
            1e-3,
            "Langevin step size eta (tune it: too large is unstable, too small slow)",
            minimum=1e-12,
        ),
        Option(
            "batch_size",
            int,
            None,
            "minibatch per agent and step (default: the whole shard)",
            minimum=1,
            allow_none=True,
        ),
        *_COMMON[3:],
    ),
    unsupported=_UNSUPPORTED,
)


# ---------------------------------------------------------------------------------------------------------------------
def build_topology(options: dict) -> kernel.Topology:
    """The graph of ``options``: ``edges`` (networkx graph or pairs) when given, else ``graph`` and ``num_agents``."""
    edges = options.get("edges")
    num_agents = options["num_agents"]
    if edges is None:
        return kernel.make_topology(options["graph"], num_agents)
    import networkx as nx

    if isinstance(edges, nx.Graph):  # its nodes are the agents (num_agents is ignored)
        return kernel.make_topology(edges)
    try:
        pairs = [(int(i), int(j)) for i, j in edges]
    except (TypeError, ValueError):
        raise ValueError(
            f"option 'edges' must be a networkx graph or a list of [i, j] agent pairs, got {edges!r}"
        ) from None
    bad = [pair for pair in pairs if not (0 <= pair[0] < num_agents and 0 <= pair[1] < num_agents)]
    if bad:
        raise ValueError(
            f"option 'edges' names agents {bad} outside 0 .. num_agents - 1 = {num_agents - 1}; raise "
            "num_agents or fix the pairs"
        )
    graph = nx.Graph()
    graph.add_nodes_from(range(num_agents))
    graph.add_edges_from(pairs)
    return kernel.make_topology(graph)


class AgentProblem:
    """The model seen by the agents of this process: topology, layout, mesh, potentials and this process's slots."""

    def __init__(self, target, options: dict):
        self.topology = build_topology(options)
        num_agents = self.topology.num_agents
        self.mesh = agents.agent_mesh(options.get("num_devices"))
        processes = jax.process_count()
        self.layout = kernel.make_layout(num_agents, int(self.mesh.devices.size), processes)
        self.process = jax.process_index()
        self.slots = self.layout.group_slots(self.process)
        # the global slot of every agent, in agent order (padding slots left out)
        slot_agent = self.layout.slot_agent
        self.agent_slots = np.argsort(np.where(slot_agent >= 0, slot_agent, slot_agent.size + 1))[:num_agents]
        per_process = num_agents // processes
        if processes > 1 and options.get("num_observations") is not None:
            shards = target.shards(per_process, num_observations=options["num_observations"])
            data = _pad_observations(shards.data, int(agents.allgather_host(shards.data["mask"].shape[1]).max()))
            total = int(agents.allgather_host(np.sum(shards.sizes)).sum())
            if total != options["num_observations"]:
                raise ValueError(
                    f"num_observations={options['num_observations']} but the processes hold {total} "
                    "observations together; pass the global count"
                )
            local = self.layout.slot_agent[self.slots] - self.process * per_process
            slot_values = jax.tree.map(lambda v: np.asarray(v)[np.where(local >= 0, local, 0)], data)
            in_slots = True
        else:
            if options.get("num_observations") is not None and processes == 1:
                raise ValueError(
                    "num_observations is for multi-process runs where each process passes only its "
                    "own data; in one process the data are the whole data set: drop it"
                )
            shards = target.shards(num_agents)
            slot_values = jax.tree.map(np.asarray, shards.data)
            in_slots = False
        self.shards = shards
        self.num_agents = num_agents
        log_prior = shards.shard_log_prior
        loglik = shards.shard_loglik

        def likelihood_potential(z, shard):
            return -loglik(z, shard)

        def prior_potential(z, shard):
            return -log_prior(z, shard) / num_agents

        self.likelihood_potential = likelihood_potential
        self.prior_potential = prior_potential
        self.local_potential = lambda z, shard: likelihood_potential(z, shard) + prior_potential(z, shard)
        self.slot_values = slot_values
        self.in_slots = in_slots
        self.dim = target.dim

    def slot_data(self):
        """This process's slots of the shard data (padding slots repeat a real shard; they are masked inactive)."""
        if self.in_slots:
            return self.slot_values
        return kernel.slot_data(self.slot_values, self.layout, self.slots)

    def quadratic(self, block_data, potential=None) -> kernel.QuadraticPotential | None:
        """Per-slot (A_i, b_i) when every agent's ``potential`` (default f_i) is quadratic, else None.

        Checked on every process (`samplax.kernels.admm.quadratic_check`).
        """
        dtype = jnp.zeros(()).dtype
        check = kernel.quadratic_check(potential or self.local_potential, self.dim, dtype)
        hess, linear, error = jax.jit(jax.vmap(check))(jax.tree.map(jnp.asarray, block_data))
        active = self.layout.slot_agent[self.slots] >= 0
        local_ok = bool(
            np.all(np.asarray(error)[active] <= kernel.quadratic_tolerance(dtype))
            and np.all(np.isfinite(np.asarray(hess)))
        )
        everyone_ok = bool(agents.allgather_host(np.asarray(local_ok)).all())
        if not everyone_ok:
            return None
        return kernel.QuadraticPotential(np.asarray(hess), np.asarray(linear))


def agent_problem(target, options: dict) -> AgentProblem:
    """The `AgentProblem` of ``target`` for the method's ``options`` (graph, agents, devices, data split)."""
    return AgentProblem(target, options)


def _pad_observations(data: dict, width: int) -> dict:
    """Pad every shard array to ``width`` observations (axis 1), the padding masked out."""

    def pad(value):
        value = np.asarray(value)
        missing = width - value.shape[1]
        if missing <= 0:
            return value
        filler = np.repeat(value[:, -1:], missing, axis=1)
        if value.dtype == bool:
            filler = np.zeros_like(filler)
        return np.concatenate([value, filler], axis=1)

    return {key: pad(value) for key, value in data.items()}


# ---------------------------------------------------------------------------------------------------------------------
# what the chain driver runs on
class AgentInfo(NamedTuple):
    """What one D-ADMMS or D-SGLD transition of one chain reports (replicated on every device but agent_position).

    Attributes:
        network_average: the degree-weighted average sum_i (d_i / D) x_i, in the model's unconstrained coordinates.
        consensus_residual: sqrt(sum_i (d_i / D) ||x_i - x_bar||^2) (in u for admm).
        dual_sum: ||sum_i p_i|| (0 up to rounding; admm only).
        prox_residual: the largest local-solve residual over agents (admm only).
        diverging: a local solve missed its tolerance or was not finite, or the average is not finite.
        agent_position: every agent's iterate in unconstrained coordinates, (agents, dim) (per slot inside
            ``shard_map``), or None when the agents are not recorded.
    """

    network_average: jax.Array
    consensus_residual: jax.Array
    dual_sum: jax.Array
    prox_residual: jax.Array
    diverging: jax.Array
    agent_position: jax.Array | None


class AgentChains:
    """What `fit`'s chain driver runs admm and dsgld on, in place of the `Target` (built by ``prepare``).

    A chain is one replica of the whole network: its state holds every agent's iterate, sharded over the agents'
    mesh. The compiled programs take the agents' arrays (`samplax.kernels.admm.AgentBlock`, sharded: each device
    holds its agents' data) and the model's data arrays (for the posterior and log-likelihood of the network
    average, ``finishing_target``) as their data argument; ``map_chains`` (`samplax.infer.agents.agent_map_chains`)
    runs each chain's transition inside ``shard_map`` over the agent axis, so only the collectives' values travel.
    What warm-up chose (preconditioner, rho) is baked into the programs: ``static_data_key`` holds its SHA-256.
    """

    def __init__(self, target, problem, block, make_sampler, to_position, settings: dict, arrays=None):
        self.target, self.problem, self.make_sampler, self.to_position = target, problem, make_sampler, to_position
        self.settings = settings  # JSON-able records of what prepare chose; they go to the fit's attrs
        self.record_agents = bool(settings["record_agents"])
        self.map_chains = agents.agent_map_chains(problem.mesh)
        self._host_block = block
        if arrays is None:
            arrays = {
                "agents": agents.global_agents(block, problem.layout, problem.mesh),
                "model": target.data_arrays(),
            }
        self.arrays = arrays
        self.finishing_target = target.with_data(arrays["model"])

    def data_arrays(self):
        return self.arrays

    def with_data(self, arrays) -> AgentChains:
        return AgentChains(
            self.target, self.problem, self._host_block, self.make_sampler, self.to_position, self.settings, arrays
        )

    def static_data_key(self):
        return (self.settings["fingerprint"], self.target.static_data_key())

    def init(self, key, chains: int, strategy=None):
        """x_i^0 ~ N(0, I) per agent (in the coordinates the agents run in), keyed by chain and agent index."""
        del strategy  # refused before this point: the agents start from their own reference
        dtype = jnp.zeros(()).dtype
        block = self._host_block

        def one(chain_key):
            return kernel.initial_positions(chain_key, block, 1, self.problem.dim, dtype)[:, 0]

        # one small compiled program (op by op, every random op would compile on its own)
        local = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, chains)))  # (chains, local slots, dim)
        return agents.global_agents(local, self.problem.layout, self.problem.mesh, slot_axis=1)

    # the single-chain functions of one device's agents, mapped by map_chains
    def start_function(self) -> agents.AgentFunction:
        def start(block, position):
            return _one_chain(self.make_sampler(block).init(position[:, None])), ()

        return agents.AgentFunction(start, self.arrays["agents"], (_PER_SLOT,), (_PER_SLOT, P()))

    def warmup_function(self, num_steps: int) -> agents.AgentFunction:
        def warm(block, key, position):
            sampler = self.make_sampler(block)
            state = jax.lax.fori_loop(
                0,
                num_steps,
                lambda t, s: sampler.step(jax.random.fold_in(key, t), s)[0],
                sampler.init(position[:, None]),
            )
            return _one_chain(state), (), jnp.zeros((), position.dtype)

        return agents.AgentFunction(warm, self.arrays["agents"], (P(), _PER_SLOT), (_PER_SLOT, P(), P()))

    def step_function(self) -> agents.AgentFunction:
        record_agents, to_position = self.record_agents, self.to_position

        def step(block, key, state, params):
            del params
            state, info = self.make_sampler(block).step(key, jax.tree.map(lambda x: x[:, None], state))
            state, info = _one_chain(state), jax.tree.map(lambda x: x[0], info)
            return state, AgentInfo(
                to_position(info.network_average),
                info.consensus_residual,
                info.dual_sum,
                info.prox_residual,
                info.diverging,
                to_position(state.position) if record_agents else None,
            )

        info_specs = AgentInfo(P(), P(), P(), P(), P(), _PER_SLOT if record_agents else None)
        order = self.problem.agent_slots

        def in_agent_order(out):  # outside shard_map: slots -> agents, padding slots dropped
            state, info = out
            if info.agent_position is None:
                return out
            return state, info._replace(agent_position=info.agent_position[:, order])

        return agents.AgentFunction(
            step, self.arrays["agents"], (P(), _PER_SLOT, P()), (_PER_SLOT, info_specs), in_agent_order
        )

    def extra(self, params, stats: dict) -> dict:
        """JSON-able records kept in the fit's attrs (``extra_*``)."""
        del params
        problem = self.problem
        extra = {
            "num_agents": problem.num_agents,
            "graph": problem.topology.kind,
            "degrees": problem.topology.degrees.astype(int),
            "devices": int(problem.mesh.devices.size),
            "processes": jax.process_count(),
            "agents_per_device": problem.layout.agents_per_shard,
            "shard_sizes": np.asarray(problem.shards.sizes),
        }
        extra.update({k: v for k, v in self.settings.items() if k not in ("fingerprint", "record_agents")})
        if "prox_residual" in stats:
            extra["max_prox_residual"] = float(np.max(stats["prox_residual"]))
            extra["divergences"] = int(np.sum(stats["diverging"]))
        return extra


_PER_SLOT = P(None, distributed.AGENT_AXIS)  # chain-batched arrays with a slot axis


def _one_chain(state):
    """A sampler state of one replica, (slots, 1, ...) -> (slots, ...)."""
    return jax.tree.map(lambda x: x[:, 0], state)


def _fingerprint(problem: AgentProblem, *parts) -> str:
    """SHA-256 of what prepare baked into the programs (graph, layout, devices and the chosen constants)."""
    digest = hashlib.sha256()
    for part in (
        problem.topology.adjacency,
        problem.layout.slot_agent,
        np.asarray([d.id for d in problem.mesh.devices.flat]),
        *parts,
    ):
        digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return digest.hexdigest()


def _prepare_admm(target, options, key, warmup) -> AgentChains:
    """The Laplace warm-up, the preconditioner, rho and the local solver: everything before the first iteration."""
    del key, warmup  # deterministic; the warm-up iterations run in the driver's warm-up program
    problem = agent_problem(target, options)
    noise = options["noise"]
    topology, layout = problem.topology, problem.layout
    kernel.noise_scale(noise, topology, 1.0)  # checks the value before anything compiles
    shared = noise == "common"
    tolerance = options["prox_tolerance"]
    raw_data = problem.slot_data()

    # the mode and curvature of the summed potential, the coordinates the agents run in, then rho
    begin = time.perf_counter()
    laplace, agent_hessians = _laplace(problem, raw_data)
    preconditioner = kernel.make_preconditioner(laplace.mode, laplace.hessian, options["precondition"])
    scale = np.asarray(preconditioner.scale, np.float64)
    agent_precisions = np.einsum("ji,ajk,kl->ail", scale, agent_hessians, scale)  # the agents' curvature in u
    rho_record = {}
    if options["rho"] is not None:
        rho, rho_rule = float(options["rho"]), "given"
    elif noise in ("common", "calibrated"):
        rho, rho_record = kernel.choose_rho(
            topology, agent_precisions, lambda value: kernel.noise_scale(noise, topology, value), shared_noise=shared
        )
        rho_rule = (
            "fastest of the grid (5 / D) 2^k with a variance deficit <= 10 % (Laplace curvature)"
            if rho_record.get("grid")
            else "5 / D in preconditioned coordinates"
        )
    else:
        rho, rho_rule = kernel.default_rho(topology), "5 / D in preconditioned coordinates"
    sigma = kernel.noise_scale(noise, topology, rho)
    laplace_s = time.perf_counter() - begin
    potential = preconditioner.potential(problem.local_potential)

    solver, data = options["solver"], raw_data
    if solver in ("auto", "closed_form"):
        quadratic = problem.quadratic(raw_data, potential)
        if quadratic is None and solver == "closed_form":
            raise ValueError(
                "solver='closed_form' needs a quadratic potential on every agent (a Gaussian-linear "
                "model with real, unconstrained parameters); this model is not: use solver='newton'"
            )
        solver = "closed_form" if quadratic is not None else "newton"
        if quadratic is not None:
            data = quadratic
    block = kernel.make_agent_block(
        topology, layout, rho=rho, noise=noise, data=data, slots=problem.slots, data_in_slots=True
    )
    newton_steps = options["newton_steps"]

    def make_sampler(local_block):
        exchange = kernel.make_exchange(topology, layout, distributed.AGENT_AXIS)
        return kernel.admm(
            local_block,
            exchange,
            rho=rho,
            solver=solver,
            local_potential=potential,
            newton_steps=newton_steps,
            tolerance=tolerance,
            shared_noise=shared,
        )

    shift, matrix = np.asarray(preconditioner.shift), np.asarray(preconditioner.scale)

    def to_position(u):  # x = mode + L u, in the draws' dtype
        return jnp.asarray(shift, u.dtype) + u @ jnp.asarray(matrix, u.dtype).T

    # the method's own variance deficit, exact for the Gaussian with the agents' curvature at the mode
    ratio = kernel.variance_ratio(topology, rho, sigma, agent_precisions, scale, shared_noise=shared)
    dtype = jnp.zeros(()).dtype
    summary = preconditioner.summary
    resolved_tolerance = float(tolerance if tolerance is not None else kernel.default_tolerance(dtype))
    settings = dict(
        solver=solver,
        rho=rho,
        noise_scale=float(sigma[0]),
        rho_rule=rho_rule,
        rho_grid=rho_record.get("grid"),
        rho_grid_variance_ratio=rho_record.get("variance_ratio_min"),
        rho_grid_autocorrelation_time=rho_record.get("autocorrelation_time"),
        prox_tolerance=resolved_tolerance,
        precondition=summary["kind"],
        precondition_condition_number=summary.get("condition_number"),
        laplace_sd=summary.get("laplace_sd"),
        laplace_newton_decrement=float(laplace.newton_decrement),
        laplace_s=laplace_s,
        variance_ratio=ratio,
        variance_ratio_min=None if ratio is None else float(np.min(ratio)),
        variance_ratio_max=None if ratio is None else float(np.max(ratio)),
        record_agents=options["record_agents"],
    )
    settings["fingerprint"] = _fingerprint(
        problem, shift, matrix, (solver, rho, noise, resolved_tolerance, newton_steps, str(dtype))
    )
    return AgentChains(target, problem, block, make_sampler, to_position, settings)


def _laplace(problem: AgentProblem, raw_data):
    """The Laplace warm-up over the agents (`samplax.kernels.admm.laplace_warmup`).

    Returns:
        (LaplaceInfo on the host, the active agents' Hessians at the mode in agent order).
    """
    topology, layout = problem.topology, problem.layout
    block = kernel.make_agent_block(
        topology, layout, rho=1.0, noise=0.0, data=raw_data, slots=problem.slots, data_in_slots=True
    )
    potential, dim = problem.local_potential, problem.dim

    def warm(local_block):
        exchange = kernel.make_exchange(topology, layout, distributed.AGENT_AXIS)
        info = kernel.laplace_warmup(potential, local_block, exchange, dim)
        return info._replace(agent_hessians=None), info.agent_hessians

    laplace, hessians = agents.run_on_agents(warm, block, layout, problem.mesh)
    order = layout.slot_agent
    hessians = np.asarray(hessians, np.float64)[np.argsort(np.where(order >= 0, order, order.size + 1))]
    return laplace, hessians[: layout.num_agents]


def _prepare_dsgld(target, options, key, warmup) -> AgentChains:
    """The agents' blocks with Metropolis mixing weights: D-SGLD needs no tuning."""
    del key, warmup
    problem = agent_problem(target, options)
    weights = kernel.metropolis_weights(problem.topology)
    block = kernel.make_agent_block(
        problem.topology,
        problem.layout,
        rho=1.0,
        noise=0.0,
        data=problem.slot_data(),
        neighbour_weights=weights,
        slots=problem.slots,
        data_in_slots=True,
    )
    topology, layout = problem.topology, problem.layout
    likelihood_potential, prior_potential = problem.likelihood_potential, problem.prior_potential
    step_size, batch_size = float(options["step_size"]), options["batch_size"]
    # the fast exchanges of regular graphs apply the uniform weight 1 / (1 + d), which equals the Metropolis weight
    kind = None if topology.regular else "gather"

    def make_sampler(local_block):
        exchange = kernel.make_exchange(topology, layout, distributed.AGENT_AXIS, kind=kind)
        return kernel.dsgld(
            local_block,
            exchange,
            likelihood_potential,
            prior_potential,
            step_size=step_size,
            batch_size=batch_size,
            subsample=kernel.subsample_shard if batch_size else None,
        )

    dtype = str(jnp.zeros(()).dtype)
    settings = dict(step_size=step_size, record_agents=options["record_agents"])
    settings["fingerprint"] = _fingerprint(problem, (step_size, batch_size, kind, dtype))
    return AgentChains(target, problem, block, make_sampler, lambda x: x, settings)


# ---------------------------------------------------------------------------------------------------------------------
# the MCMCMethod pieces
def _admm_record(state, info: AgentInfo) -> dict:
    del state
    kept = {
        "z": info.network_average,
        "consensus_residual": info.consensus_residual,
        "dual_sum": info.dual_sum,
        "prox_residual": info.prox_residual,
        "diverging": info.diverging,
    }
    if info.agent_position is not None:
        kept["agent_z"] = info.agent_position
    return kept


def _dsgld_record(state, info: AgentInfo) -> dict:
    del state
    kept = {
        "z": info.network_average,
        "consensus_residual": info.consensus_residual,
        "diverging": ~jnp.all(jnp.isfinite(info.network_average)),
    }
    if info.agent_position is not None:
        kept["agent_z"] = info.agent_position
    return kept


def _method(schema: MethodSchema, prepare, record) -> MCMCMethod:
    return MCMCMethod(
        schema,
        lambda chains, options, num_steps: chains.warmup_function(num_steps),
        lambda chains, options: chains.step_function(),
        record,
        lambda chains, options: chains.start_function(),
        prepare=prepare,
        uses_init=False,
    )


ADMM = _method(ADMM_SCHEMA, _prepare_admm, _admm_record)
DSGLD = _method(DSGLD_SCHEMA, _prepare_dsgld, _dsgld_record)

METHODS = (ADMM, DSGLD)
