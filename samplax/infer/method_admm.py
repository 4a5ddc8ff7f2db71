"""Registers the distributed samplers ``admm`` (D-ADMMS) and its baseline ``dsgld`` (decentralised SGLD) with `fit`.

Both split the model's data along the observation plate into ``num_agents`` shards (`Target.shards`: unequal shards
padded and masked), one per agent; agent i's potential is its shard's negative log-likelihood plus 1 / num_agents of
the negative log-prior. Agents sit on the devices of `samplax.infer.distributed.agent_mesh` (several per device) and
talk only to their graph neighbours through collectives. ``chains`` are independent replicas of the whole network,
``warmup`` discarded iterations, ``draws`` kept iterations.

Draws: the posterior group holds the degree-weighted network average sum_i (d_i / D) x_i (what the calibrated
noise targets); ``sample_stats`` holds ``agent_z`` (every agent's own iterate, unconstrained, shape
(chain, draw, agent, z)), ``consensus_residual`` and, for admm, ``dual_sum`` (||sum_i p_i||, 0 up to rounding).

Several processes: call `samplax.infer.distributed.initialize` first in each. By default every process holds the
full data and keeps its own agents' shards; a process that holds only its own observations passes
``num_observations`` (the global count) and its data are split over its ``num_agents / num_processes`` agents.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer import distributed
from samplax.infer.methods import DirectMethod, DirectResult
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels import admm as kernel

__all__ = ["ADMM_SCHEMA", "DSGLD_SCHEMA", "build_topology", "agent_problem", "run_admm", "run_dsgld"]

_COMMON = (
    Option("num_agents", int, 5, "number of agents (data shards); a multiple of the number of processes", minimum=2),
    Option("graph", str, "cycle", "the agents' communication graph (agent 0 is the hub of a star)",
           choices=kernel.GRAPH_NAMES),
    Option("edges", object, None, "a custom graph instead: a networkx graph, or a list of [i, j] agent pairs "
           "(JSON on the command line); overrides graph", allow_none=True),
    Option("num_devices", int, None, "devices for the agent axis (default: every device of the job)", minimum=1,
           allow_none=True),
    Option("num_observations", int, None, "global number of observations when each process passes only its own "
           "data (multi-process runs)", minimum=1, allow_none=True),
    Option("record_agents", bool, True, "keep every agent's iterates in sample_stats['agent_z']"),
)

ADMM_SCHEMA = MethodSchema(
    "admm", "mcmc",
    "distributed MCMC by ADMM (D-ADMMS, Tzikas et al. 2024): agents hold data shards and exchange iterates with "
    "graph neighbours over JAX collectives; chains = replicas of the network", (
        *_COMMON[:3],
        Option("rho", float, 5.0, "ADMM penalty; progress scales like 1 / (rho * degree) (rule of thumb: rho d ≈ "
               "10-20)", minimum=1e-12),
        Option("noise", object, "calibrated", "'calibrated' (targets the posterior through the network average), "
               "'paper' (sigma = sqrt(2) / (2 rho), the authors' code) or a number >= 0 (0: plain ADMM -> MAP)"),
        Option("solver", str, "auto", "local proximal solve: 'closed_form' (Gaussian-linear agents), 'newton', or "
               "'auto' (closed form when every agent's potential is quadratic)",
               choices=("auto", "closed_form", "newton")),
        Option("newton_steps", int, 5, "damped Newton steps per proximal solve (warm-started)", minimum=1),
        *_COMMON[3:],
    ), unsupported=("no_observations", "no_observation_plate", "data_read_as_values"))

DSGLD_SCHEMA = MethodSchema(
    "dsgld", "mcmc",
    "decentralised SGLD (Gürbüzbalaban et al. 2021), the baseline of admm: gossip averaging with Metropolis "
    "weights plus a Langevin step on each agent's shard; chains = replicas of the network", (
        *_COMMON[:3],
        Option("step_size", float, 1e-3, "Langevin step size eta (tune it: too large is unstable, too small slow)",
               minimum=1e-12),
        Option("batch_size", int, None, "minibatch per agent and step (default: the whole shard)", minimum=1,
               allow_none=True),
        *_COMMON[3:],
    ), unsupported=("no_observations", "no_observation_plate", "data_read_as_values"))


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
        raise ValueError(f"option 'edges' must be a networkx graph or a list of [i, j] agent pairs, got {edges!r}") \
            from None
    bad = [pair for pair in pairs if not (0 <= pair[0] < num_agents and 0 <= pair[1] < num_agents)]
    if bad:
        raise ValueError(f"option 'edges' names agents {bad} outside 0 .. num_agents - 1 = {num_agents - 1}; raise "
                         "num_agents or fix the pairs")
    graph = nx.Graph()
    graph.add_nodes_from(range(num_agents))
    graph.add_edges_from(pairs)
    return kernel.make_topology(graph)


class AgentProblem:
    """The model seen by the agents of this process: topology, layout, mesh, potentials and this process's slots."""

    def __init__(self, target, options: dict):
        self.topology = build_topology(options)
        num_agents = self.topology.num_agents
        self.mesh = distributed.agent_mesh(options.get("num_devices"))
        processes = jax.process_count()
        self.layout = kernel.make_layout(num_agents, int(self.mesh.devices.size), processes)
        self.process = jax.process_index()
        self.slots = self.layout.group_slots(self.process)
        per_process = num_agents // processes
        if processes > 1 and options.get("num_observations") is not None:
            shards = target.shards(per_process, num_observations=options["num_observations"])
            data = _pad_observations(shards.data, int(distributed.allgather_host(shards.data["mask"].shape[1]).max()))
            total = int(distributed.allgather_host(np.sum(shards.sizes)).sum())
            if total != options["num_observations"]:
                raise ValueError(f"num_observations={options['num_observations']} but the processes hold {total} "
                                 "observations together; pass the global count")
            local = self.layout.slot_agent[self.slots] - self.process * per_process
            slot_values = jax.tree.map(lambda v: np.asarray(v)[np.where(local >= 0, local, 0)], data)
            in_slots = True
        else:
            if options.get("num_observations") is not None and processes == 1:
                raise ValueError("num_observations is for multi-process runs where each process passes only its "
                                 "own data; in one process the data are the whole data set: drop it")
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

    def quadratic(self, block_data) -> kernel.QuadraticPotential | None:
        """Per-slot (A_i, b_i) when every agent's potential is quadratic (checked on every process), else None."""
        dtype = jnp.zeros(()).dtype
        dim = self.dim
        potential = self.local_potential
        points = jax.random.normal(jax.random.key(7), (3, dim), dtype) * jnp.asarray([0.5, 1.0, 2.0], dtype)[:, None]
        tolerance = 1e-3 if dtype == jnp.float32 else 1e-7

        def check(shard):
            zero = jnp.zeros(dim, dtype)
            value0, grad0 = jax.value_and_grad(potential)(zero, shard)
            hess0 = jax.hessian(potential)(zero, shard)

            def at(z):
                predicted = value0 + grad0 @ z + 0.5 * z @ hess0 @ z
                value = potential(z, shard)
                hess = jax.hessian(potential)(z, shard)
                scale = 1.0 + jnp.abs(value) + jnp.abs(predicted)
                return jnp.maximum(jnp.abs(value - predicted) / scale,
                                   jnp.max(jnp.abs(hess - hess0)) / (1.0 + jnp.max(jnp.abs(hess0))))

            error = jnp.max(jax.vmap(at)(points))
            return hess0, -grad0, error

        hess, linear, error = jax.jit(jax.vmap(check))(jax.tree.map(jnp.asarray, block_data))
        active = self.layout.slot_agent[self.slots] >= 0
        local_ok = bool(np.all(np.asarray(error)[active] <= tolerance) and np.all(np.isfinite(np.asarray(hess))))
        everyone_ok = bool(distributed.allgather_host(np.asarray(local_ok)).all())
        if not everyone_ok:
            return None
        return kernel.QuadraticPotential(np.asarray(hess), np.asarray(linear))


def agent_problem(target, options: dict) -> AgentProblem:
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


def _subsample(key, shard, batch_size):
    """``batch_size`` observations drawn with replacement from the shard's real (unmasked) ones, and the factor
    (shard size / batch size) that makes the minibatch log-likelihood unbiased."""
    size = jnp.sum(shard["mask"])
    index = jnp.floor(jax.random.uniform(key, (batch_size,)) * size).astype(jnp.int32)
    batch = {name: value[index] for name, value in shard.items()}
    batch["mask"] = jnp.ones((batch_size,), bool)
    return batch, size / batch_size


# ---------------------------------------------------------------------------------------------------------------------
def run_admm(target, options, key, chains, warmup, draws) -> DirectResult:
    start = time.perf_counter()
    problem = agent_problem(target, options)
    rho = float(options["rho"])
    noise = options["noise"]
    kernel.noise_scale(noise, problem.topology, rho)  # check the value before compiling anything
    solver = options["solver"]
    data = problem.slot_data()
    if solver in ("auto", "closed_form"):
        quadratic = problem.quadratic(data)
        if quadratic is None and solver == "closed_form":
            raise ValueError("solver='closed_form' needs a quadratic potential on every agent (a Gaussian-linear "
                             "model with real, unconstrained parameters); this model is not: use solver='newton'")
        solver = "closed_form" if quadratic is not None else "newton"
        if quadratic is not None:
            data = quadratic
    block = kernel.make_agent_block(problem.topology, problem.layout, rho=rho, noise=noise, data=data,
                                    slots=problem.slots, data_in_slots=True)
    topology, layout = problem.topology, problem.layout
    local_potential, newton_steps = problem.local_potential, options["newton_steps"]

    def make_sampler(local_block):
        exchange = kernel.make_exchange(topology, layout, distributed.AGENT_AXIS)
        return kernel.admm(local_block, exchange, rho=rho, solver=solver, local_potential=local_potential,
                           newton_steps=newton_steps)

    run = distributed.run_agents(make_sampler, block, layout, problem.mesh, key=key, num_replicas=chains,
                                 dim=problem.dim, warmup=warmup, draws=draws, record_agents=options["record_agents"])
    stats = {"consensus_residual": run.consensus_residual, "dual_sum": run.dual_sum}
    if run.agent_positions is not None:
        stats["agent_z"] = run.agent_positions
    extra = _extra(problem, run, start, solver=solver, rho=rho,
                   noise_scale=float(kernel.noise_scale(noise, topology, rho)[0]))
    return _result(run.network_average, stats, extra)


def run_dsgld(target, options, key, chains, warmup, draws) -> DirectResult:
    start = time.perf_counter()
    problem = agent_problem(target, options)
    weights = kernel.metropolis_weights(problem.topology)
    data = problem.slot_data()
    block = kernel.make_agent_block(problem.topology, problem.layout, rho=1.0, noise=0.0, data=data,
                                    neighbour_weights=weights, slots=problem.slots, data_in_slots=True)
    topology, layout = problem.topology, problem.layout
    likelihood_potential, prior_potential = problem.likelihood_potential, problem.prior_potential
    step_size, batch_size = float(options["step_size"]), options["batch_size"]
    # the fast exchanges of regular graphs apply the uniform weight 1 / (1 + d), which equals the Metropolis weight
    kind = None if topology.regular else "gather"

    def make_sampler(local_block):
        exchange = kernel.make_exchange(topology, layout, distributed.AGENT_AXIS, kind=kind)
        return kernel.dsgld(local_block, exchange, likelihood_potential, prior_potential, step_size=step_size,
                            batch_size=batch_size, subsample=_subsample if batch_size else None)

    run = distributed.run_agents(make_sampler, block, layout, problem.mesh, key=key, num_replicas=chains,
                                 dim=problem.dim, warmup=warmup, draws=draws, record_agents=options["record_agents"])
    stats = {"consensus_residual": run.consensus_residual}
    if run.agent_positions is not None:
        stats["agent_z"] = run.agent_positions
    extra = _extra(problem, run, start, step_size=step_size)
    return _result(run.network_average, stats, extra)


def _result(z, stats: dict, extra: dict) -> DirectResult:
    fields = dict(z=z, sample_stats=stats, log_evidence=None, elbo=None, extra=extra)
    if "dims" in DirectResult._fields:  # name the agent dimension once fit can pass dims to ArviZ
        fields["dims"] = {"agent_z": ["agent", "agent_z_dim"]}
    return DirectResult(**fields)


def _extra(problem: AgentProblem, run, start: float, **settings) -> dict:
    extra = {"num_agents": problem.num_agents, "graph": problem.topology.kind,
             "degrees": problem.topology.degrees.astype(int), "devices": int(problem.mesh.devices.size),
             "processes": jax.process_count(), "agents_per_device": problem.layout.agents_per_shard,
             "shard_sizes": np.asarray(problem.shards.sizes), "training_s": time.perf_counter() - start,
             **run.timing}
    extra.update(settings)
    return extra


ADMM = DirectMethod(ADMM_SCHEMA, run_admm)
DSGLD = DirectMethod(DSGLD_SCHEMA, run_dsgld)

METHODS = (ADMM, DSGLD)
