"""Run vectorised chains in jitted fixed-length chunks, with a host-side progress bar: the one chain driver.

Every Markov method runs here (`ChainRunner`). A chunk is one compiled call: ``lax.scan`` over draws of a ``vmap``
(or another ``map_chains``) over chains. The key of transition ``t`` of a chain is ``fold_in(chain_key, t)``, so a run
cut into chunks, thinned, or stopped and resumed from a checkpoint (`samplax.infer.checkpoint`), gives the same draws
as one uninterrupted run. Draws leave the device after each chunk (bounded device memory); the progress bar advances
between chunks on the host, never through a per-step callback. When nothing has to run between warm-up and sampling
(no bar, no checkpoint), `ChainRunner.fuse` compiles both as one program.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplax.models.bridge import data_fingerprint

__all__ = [
    "chunk_size_for",
    "chunk_plan",
    "num_chunks_for",
    "progress_chunk_size",
    "ChainRunner",
    "CompiledCache",
    "COMPILED",
    "chain_sharding",
    "device_layout",
    "data_fingerprint",
    "to_host",
]


def chunk_size_for(draws: int, requested: int | None = None, max_chunks: int = 20) -> int:
    """The chunk length: ``requested`` if given, else the smallest divisor of ``draws`` giving <= max_chunks chunks.

    ``requested`` need not divide ``draws`` (`chunk_plan` makes the last chunk shorter); the default is a divisor so
    that every chunk has the same length and the chunk function compiles once. Callers pass max_chunks=1 when nothing
    happens between chunks (no progress bar, no checkpoint).
    """
    if requested is not None:
        if not isinstance(requested, (int, np.integer)) or isinstance(requested, bool) or requested < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, got {requested!r}")
        return int(min(requested, draws))  # a Python int: it goes into the JSON manifest
    for size in range(max(1, -(-draws // max_chunks)), draws + 1):
        if draws % size == 0:
            return size
    return draws


PROGRESS_MIN_SECONDS = 2.0  # sampling expected to finish sooner than this runs as one chunk: no bar to watch


def progress_chunk_size(draws: int, seconds_per_draw: float | None) -> int:
    """The chunk length when only a progress bar wants chunks.

    One chunk if sampling should take less than `PROGRESS_MIN_SECONDS` (so a fast fit pays no per-chunk dispatch and
    copy), else at most 20 chunks.

    ``seconds_per_draw`` comes from the warm-up's speed (None when there was no warm-up: 20 chunks). The choice only
    changes how the draws are cut, never the draws: draw t of a chain always uses fold_in(chain_key, t).
    """
    if seconds_per_draw is not None and draws * seconds_per_draw < PROGRESS_MIN_SECONDS:
        return draws
    return chunk_size_for(draws)


def chain_sharding(num_chains: int):
    """Spread chains over the local devices when they divide evenly; else keep them on the default device."""
    devices = jax.local_devices()
    if len(devices) > 1 and num_chains % len(devices) == 0:
        mesh = jax.sharding.Mesh(np.array(devices), ("chain",))
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chain"))
    return None


def device_layout() -> dict:
    """The platform, the number of local devices and the number of processes (recorded with a checkpoint)."""
    devices = jax.local_devices()
    return {"platform": devices[0].platform, "local_devices": len(devices), "processes": jax.process_count()}


class ChainRunner:
    """Drive ``step(key, state, params) -> (state, info)`` over vectorised chains in compiled chunks.

    ``build(data) -> (step, record, finish)`` makes the three functions for the model conditioned on ``data`` (an
    argument of the compiled chunk, so one executable serves every data set of the same shapes): ``record(state,
    info)`` picks what is kept per draw (the unconstrained position under "z" and sample statistics) and
    ``finish(z_chunk)`` maps a chunk of positions to constrained draws and log-likelihoods. A record that also holds
    ``"discrete"`` (constrained values of discrete latent sites, gibbs family) is not finished in the program: the
    chunk returns ``{"position": {"z": ...}, "discrete": ...}`` and the caller substitutes both when it traces the
    model (``finish`` may then be None).

    ``map_chains(f)`` maps a single-chain function over the leading (chain) axis of every argument: `jax.vmap` by
    default; a method whose chains live on a mesh of devices or agents passes a ``shard_map``-based map.
    """

    def __init__(self, build: Callable, chunk_size: int, thin: int = 1, map_chains: Callable = jax.vmap):
        self.chunk_size = chunk_size

        def run_chunk(data, states, params, chain_keys, start):
            step, record, finish = build(data)
            transition = map_chains(step)

            def keys_at(t):  # transition t of a chain always uses fold_in(chain_key, t), whatever the chunking
                return jax.vmap(lambda k: jax.random.fold_in(k, t))(chain_keys)

            if thin == 1:
                # every key of the chunk in one batched op before the scan (cheaper than fold_in inside it); there
                # are as many as kept draws
                keys = jax.vmap(keys_at)(start + jnp.arange(chunk_size))

                def body(states, keys_j):
                    states, info = transition(keys_j, states, params)
                    return states, map_chains(record)(states, info)
            else:
                # kept draw j is the last of `thin` transitions; keys are made inside the inner scan, so memory
                # scales with the kept draws, not with chunk * thin
                keys = start + jnp.arange(chunk_size)

                def body(states, j):
                    def inner(states, i):
                        return transition(keys_at(j * thin + i), states, params)[0], None

                    states, _ = jax.lax.scan(inner, states, jnp.arange(thin - 1))
                    states, info = transition(keys_at(j * thin + thin - 1), states, params)
                    return states, map_chains(record)(states, info)

            states, kept = jax.lax.scan(body, states, keys)
            kept = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), kept)  # (chain, draw, ...)
            z = kept.pop("z")
            discrete = kept.pop("discrete", None)
            finished = finish(z) if discrete is None else {"position": {"z": z}, "discrete": discrete}
            return states, kept, finished

        self.chunk_function = run_chunk  # traceable: `fuse` puts it behind the warm-up in one program
        self.function = jax.jit(run_chunk)
        self.executable = None

    def fuse(self, warmup: Callable):
        """One jitted program: warm-up, then this runner's chunk from draw 0.

        The warm-up is ``warmup(data, warmup_keys, positions) -> (states, params, acceptance)``. Used when nothing has
        to run on the host between warm-up and sampling (no progress bar, no checkpoint): one compilation and one
        dispatch instead of two.
        """
        chunk = self.chunk_function

        def run_all(data, warmup_keys, positions, chain_keys):
            states, params, _ = warmup(data, warmup_keys, positions)
            states, kept, finished = chunk(data, states, params, chain_keys, jnp.asarray(0, jnp.int32))
            return states, params, kept, finished

        return jax.jit(run_all)

    def run(self, data, states, params, chain_keys, start: int):
        states, kept, finished = self.executable(data, states, params, chain_keys, jnp.asarray(start, jnp.int32))
        host = jax.tree.map(to_host, {"stats": kept, **finished})
        return states, host

    @staticmethod
    def run_fused(executable, data, warmup_keys, positions, chain_keys):
        """Run a compiled `fuse` program; returns (states, params, host arrays as `run` gives them)."""
        states, params, kept, finished = executable(data, warmup_keys, positions, chain_keys)
        host = jax.tree.map(to_host, {"stats": kept, **finished})
        return states, params, host


def to_host(value) -> np.ndarray:
    """A result as a host array.

    In a multi-process job (chains on a mesh of every process's devices, as admm's) a replicated result is read from
    the local copy and a sharded one gathered.
    """
    if getattr(value, "is_fully_addressable", True):
        return np.asarray(value)
    if value.sharding.is_fully_replicated:
        return np.asarray(value.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


class CompiledCache:
    """Ahead-of-time compiled executables kept across fits, keyed by everything that changes the program.

    Data enter the executables as arguments, so a second fit of the same model with data of the same shapes (a warm
    refit, or simulation-based calibration over many simulated data sets) compiles nothing.
    """

    def __init__(self, max_entries: int = 64):
        self._entries: dict = {}
        self.max_entries = max_entries

    @staticmethod
    def signature(*args):
        leaves, treedef = jax.tree.flatten(args)
        return treedef, tuple(
            (tuple(x.shape), str(x.dtype), getattr(x, "sharding", None).__class__.__name__) for x in leaves
        )

    def lookup(self, key, *args):
        """The executable compiled for ``key`` and these arguments' shapes, or None (nothing is compiled)."""
        return self._entries.get((key, self.signature(*args)))

    def compile(self, key, function, *args):
        """Return (executable, seconds spent compiling: 0.0 on a hit)."""
        full_key = (key, self.signature(*args))
        if full_key in self._entries:
            return self._entries[full_key], 0.0
        import time

        start = time.perf_counter()
        executable = function.lower(*args).compile()
        elapsed = time.perf_counter() - start
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[full_key] = executable
        return executable, elapsed

    def clear(self):
        self._entries.clear()


COMPILED = CompiledCache()


def chunk_plan(draws: int, chunk_size: int) -> list[tuple[int, int]]:
    """(first kept draw, length) of every chunk: equal chunks of ``chunk_size`` and a shorter last one if needed.

    The remainder is its own chunk (a second compiled executable of that length) rather than dropped or padded:
    draw t of a chain uses fold_in(chain_key, t) whatever the chunk it falls in, so the draws equal an
    uninterrupted run's.
    """
    return [(start, min(chunk_size, draws - start)) for start in range(0, draws, chunk_size)]


def num_chunks_for(draws: int, chunk_size: int) -> int:
    """The number of chunks of ``chunk_size`` draws that hold ``draws`` draws (the last one may be short)."""
    return -(-draws // chunk_size)
