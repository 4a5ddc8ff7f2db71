"""Agents on devices: the one-axis mesh admm and dsgld run on, and running agents' functions inside ``shard_map``.

Three ways in: `agent_map_chains` is the ``map_chains`` of the chain driver (`samplax.infer.run.ChainRunner`) for
methods whose chains are networks of agents (a single-chain `AgentFunction` of one device's agents, vmapped over
chains on every device, sharded over the agent axis); `run_on_agents` runs one function once (a warm-up); and
`run_agents` drives a `samplax.kernels.admm.DistributedSampler` by itself (used by tests of the kernels and of
multi-process jobs). Results are gathered to the host of every process.

The job's start-up, failure reporting and the multi-process context are `samplax.infer.distributed`'s; this module
only places agents on the devices that start-up made available (several agents per device when there are more
agents than devices) and drives them. JAX is imported inside the functions, as in `samplax.infer.distributed`, so
that importing samplax does not initialise JAX's backends before the device count is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from samplax.infer.distributed import AGENT_AXIS, guard
from samplax.infer.run import to_host

__all__ = [
    "agent_mesh",
    "AgentFunction",
    "agent_map_chains",
    "global_agents",
    "AgentRun",
    "run_on_agents",
    "run_agents",
    "allgather_host",
    "to_host",
]


def agent_mesh(num_devices: int | None = None):
    """A one-axis mesh (axis ``"agents"``) over the job's devices, grouped by process.

    Args:
        num_devices: all devices of the job when None; otherwise the first ``num_devices / process_count`` local
            devices of each process.

    Returns:
        A `jax.sharding.Mesh` with the one axis `samplax.infer.distributed.AGENT_AXIS`.
    """
    import jax

    processes = jax.process_count()
    devices = sorted(jax.devices(), key=lambda device: (device.process_index, device.id))
    if num_devices is not None:
        if not isinstance(num_devices, int) or isinstance(num_devices, bool) or num_devices < 1:
            raise ValueError(f"num_devices must be a positive integer, got {num_devices!r}")
        if num_devices > len(devices) or num_devices % processes:
            raise ValueError(
                f"num_devices={num_devices} is not available: the job has {len(devices)} devices over "
                f"{processes} process(es); use at most {len(devices)}, a multiple of {processes} (or "
                "emulate more CPU devices with num_cpu_devices / --devices)"
            )
        per_process = num_devices // processes
        devices = [d for q in range(processes) for d in [x for x in devices if x.process_index == q][:per_process]]
    return jax.sharding.Mesh(np.array(devices), (AGENT_AXIS,))


class AgentFunction(NamedTuple):
    """A single-chain function of one device's agents, for `agent_map_chains`.

    ``fn(block, *args)`` takes the device's `samplax.kernels.admm.AgentBlock` (leading slot axis) and one chain's
    arguments; it may use the agent axis's collectives. ``block`` holds the global agent arrays (sharded over the
    agent axis), passed to ``shard_map`` explicitly so that they stay sharded. ``in_specs`` and ``out_specs`` are
    the `jax.sharding.PartitionSpec` prefixes of the chain-batched arguments and results (chain axis first: ``P()``
    for replicated values, ``P(None, AGENT_AXIS)`` for per-slot ones). ``after``, when given, maps the results
    outside ``shard_map`` (on global arrays: reordering slots into agents, say).
    """

    fn: Callable
    block: object
    in_specs: tuple
    out_specs: object
    after: Callable | None = None


def agent_map_chains(mesh) -> Callable:
    """The ``map_chains`` of `samplax.infer.run.ChainRunner` for chains that are networks of agents on ``mesh``.

    An `AgentFunction` is vmapped over the chain axis on every device inside one ``jax.shard_map`` over the agent
    axis: the agents' data never leave their device and only what the collectives exchange travels. Any other
    function (a ``record`` of global arrays) is simply vmapped.

    Args:
        mesh: the agents' mesh (`agent_mesh`).

    Returns:
        ``map_chains(f) -> mapped f`` with the leading chain axis on every argument and result.
    """
    import jax
    from jax.sharding import PartitionSpec as P

    def map_chains(f):
        if not isinstance(f, AgentFunction):
            return jax.vmap(f)

        def per_device(block, *args):
            return jax.vmap(lambda *chain_args: f.fn(block, *chain_args))(*args)

        sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(AGENT_AXIS), *f.in_specs), out_specs=f.out_specs)

        def mapped(*args):
            out = sharded(f.block, *args)
            return out if f.after is None else f.after(out)

        return mapped

    return map_chains


def global_agents(tree, layout, mesh, slot_axis: int = 0):
    """This process's host arrays of its slots as global arrays sharded over the agent axis.

    Args:
        tree: a pytree of arrays whose axis ``slot_axis`` holds this process's slots of ``layout``.
        layout: the agents' `samplax.kernels.admm.AgentLayout`.
        mesh: the agents' mesh (`agent_mesh`).
        slot_axis: the position of the slot axis (1 for chain-batched arrays).

    Returns:
        The same pytree of global `jax.Array` s, the slot axis sharded over the mesh.
    """
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    if mesh.devices.size != layout.num_shards:
        raise ValueError(f"the layout has {layout.num_shards} shards but the mesh {mesh.devices.size} devices")
    sharding = NamedSharding(mesh, P(*([None] * slot_axis), AGENT_AXIS))

    def to_global(array):
        array = np.asarray(array)
        shape = array.shape[:slot_axis] + (layout.num_slots,) + array.shape[slot_axis + 1 :]
        if jax.process_count() == 1:
            return jax.device_put(array, sharding)
        return jax.make_array_from_process_local_data(sharding, array, shape)

    return jax.tree.map(to_global, tree)


class AgentRun(NamedTuple):
    """Host arrays of a distributed run (`run_agents`).

    network_average (replicas, draws, dim), consensus_residual and dual_sum (replicas, draws), agent_positions
    (replicas, draws, agents, dim) or None, timing in seconds, and the largest local-solve residual over agents and
    the divergence flags (replicas, draws).
    """

    network_average: np.ndarray
    consensus_residual: np.ndarray
    dual_sum: np.ndarray
    agent_positions: np.ndarray | None
    timing: dict
    prox_residual: np.ndarray | None = None
    diverging: np.ndarray | None = None


def run_on_agents(fn: Callable, agents, layout, mesh):
    """Run ``fn(block) -> (replicated, per_slot)`` once over ``mesh``'s agent axis.

    ``fn`` runs inside ``shard_map``, like a sampler's step (a warm-up, a calibration). ``replicated`` must be the
    same on every device (reduced through the exchange's collectives); ``per_slot`` has a leading slot axis.

    Returns:
        Both as host arrays, ``per_slot`` over every slot of the layout, in slot order.
    """
    import jax
    from jax.sharding import PartitionSpec as P

    spec = P(AGENT_AXIS)
    sharded_agents = global_agents(agents, layout, mesh)
    program = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(spec,), out_specs=(P(), spec)))
    with guard():
        replicated, per_slot = program(sharded_agents)
        return jax.tree.map(to_host, replicated), jax.tree.map(to_host, per_slot)


def run_agents(
    make_sampler: Callable,
    agents,
    layout,
    mesh,
    *,
    key,
    num_replicas: int,
    dim: int,
    warmup: int,
    draws: int,
    record_agents: bool = True,
    chunk_size: int | None = None,
    dtype=None,
) -> AgentRun:
    """Run a distributed sampler over ``mesh``'s agent axis.

    ``make_sampler(block)`` builds the sampler (`samplax.kernels.admm.DistributedSampler`) from one device's
    `AgentBlock`, inside ``shard_map``; ``agents`` is the host `AgentBlock` of this process's slots of ``layout``.
    Iteration t (warm-up included) uses ``fold_in(run_key, t)``; positions start at N(0, I) per agent. Warm-up
    iterations are not kept; kept iterations leave the devices in chunks of ``chunk_size``.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    from samplax.infer.run import chunk_size_for
    from samplax.kernels.admm import initial_positions

    dtype = dtype or jnp.zeros(()).dtype
    spec = P(AGENT_AXIS)
    sharded_agents = global_agents(agents, layout, mesh)
    chunk = chunk_size_for(draws, chunk_size)
    if draws % chunk:
        raise ValueError(f"chunk_size={chunk_size} must divide draws={draws} (every chunk compiles once)")
    init_key, run_key = jax.random.split(key)

    def body_start(block, init_key, run_key, count):
        """x^0 ~ N(0, I) per agent, then ``count`` warm-up iterations (t = 0 .. count - 1), nothing kept."""
        sampler = make_sampler(block)
        state = sampler.init(initial_positions(init_key, block, num_replicas, dim, dtype))
        return jax.lax.fori_loop(0, count, lambda t, s: sampler.step(jax.random.fold_in(run_key, t), s)[0], state)

    def body_chunk(block, state, key, start):
        sampler = make_sampler(block)

        def one(state, t):
            state, info = sampler.step(jax.random.fold_in(key, t), state)
            out = {
                "network_average": info.network_average,
                "consensus_residual": info.consensus_residual,
                "dual_sum": info.dual_sum,
                "prox_residual": info.prox_residual,
                "diverging": info.diverging,
            }
            if record_agents:
                out["agents"] = state.position
            return state, out

        return jax.lax.scan(one, state, start + jnp.arange(chunk))

    out_specs = {
        "network_average": P(),
        "consensus_residual": P(),
        "dual_sum": P(),
        "prox_residual": P(),
        "diverging": P(),
    }
    if record_agents:
        out_specs["agents"] = P(None, AGENT_AXIS)
    start_fn = jax.jit(jax.shard_map(body_start, mesh=mesh, in_specs=(spec, P(), P(), P()), out_specs=spec))
    chunk_fn = jax.jit(
        jax.shard_map(body_chunk, mesh=mesh, in_specs=(spec, spec, P(), P()), out_specs=(spec, out_specs))
    )

    timing = {"compile_s": 0.0, "warmup_s": 0.0, "sampling_s": 0.0}
    begin = time.perf_counter()
    count = jnp.asarray(warmup, jnp.int32)
    start_compiled = start_fn.lower(sharded_agents, init_key, run_key, count).compile()
    state_shape = jax.eval_shape(start_fn, sharded_agents, init_key, run_key, count)
    chunk_compiled = chunk_fn.lower(sharded_agents, state_shape, run_key, jnp.int32(0)).compile()
    timing["compile_s"] = time.perf_counter() - begin

    begin = time.perf_counter()
    with guard():
        state = jax.block_until_ready(start_compiled(sharded_agents, init_key, run_key, count))
    timing["warmup_s"] = time.perf_counter() - begin

    pieces = []
    begin = time.perf_counter()
    order = np.argsort(np.where(layout.slot_agent >= 0, layout.slot_agent, np.iinfo(np.int32).max))[: layout.num_agents]
    for index in range(draws // chunk):
        with guard():
            # the warm-up loop folds in t = 0 .. warmup - 1 (it counts from 0), kept draws continue from there
            state, out = chunk_compiled(sharded_agents, state, run_key, jnp.int32(warmup + index * chunk))
            host = {name: to_host(value) for name, value in out.items()}
        pieces.append(host)
    timing["sampling_s"] = time.perf_counter() - begin
    merged = {name: np.concatenate([piece[name] for piece in pieces], axis=0) for name in pieces[0]}
    agents_out = None
    if record_agents:
        agents_out = merged["agents"][:, order]  # (draws, agents, replicas, dim)
        agents_out = np.transpose(agents_out, (2, 0, 1, 3))
    per_draw = {name: np.swapaxes(merged[name], 0, 1) for name in out_specs if name != "agents"}
    return AgentRun(
        per_draw["network_average"],
        per_draw["consensus_residual"],
        per_draw["dual_sum"],
        agents_out,
        timing,
        per_draw["prox_residual"],
        per_draw["diverging"],
    )


def allgather_host(value) -> np.ndarray:
    """A small host value from every process, stacked along a new leading axis (one row per process)."""
    import jax

    if jax.process_count() == 1:
        return np.asarray(value)[None]
    from jax.experimental import multihost_utils

    with guard():
        return np.asarray(multihost_utils.process_allgather(np.asarray(value)))
