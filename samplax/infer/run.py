"""Run vectorised chains in jitted fixed-length chunks, with a host-side progress bar.

A chunk is one compiled call: ``lax.scan`` over draws of a ``vmap`` over chains. The key of draw ``t`` of a chain is
``fold_in(chain_key, t)``, so a run cut into chunks, or stopped and resumed from a checkpoint
(`samplax.infer.checkpoint`), gives the same draws as one uninterrupted run. Draws leave the device after each chunk
(bounded device memory); the progress bar advances between chunks on the host, never through a per-step callback.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplax.models.bridge import data_fingerprint

__all__ = ["chunk_size_for", "chunk_plan", "num_chunks_for", "progress_chunk_size", "ChainRunner", "CompiledCache",
           "COMPILED", "chain_sharding", "device_layout", "data_fingerprint"]


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
    """The chunk length when only a progress bar wants chunks: one chunk if sampling should take less than
    `PROGRESS_MIN_SECONDS` (so a fast fit pays no per-chunk dispatch and copy), else at most 20 chunks.

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
    devices = jax.local_devices()
    return {"platform": devices[0].platform, "local_devices": len(devices), "processes": jax.process_count()}


class ChainRunner:
    """Drive ``step(key, state, params) -> (state, info)`` over vectorised chains in compiled chunks.

    ``build(data) -> (step, record, finish)`` makes the three functions for the model conditioned on ``data`` (an
    argument of the compiled chunk, so one executable serves every data set of the same shapes): ``record(state,
    info)`` picks what is kept per draw (the unconstrained position under "z" and sample statistics) and
    ``finish(z_chunk)`` maps a chunk of positions to constrained draws and log-likelihoods.
    """

    def __init__(self, build: Callable, chunk_size: int, thin: int = 1):
        self.chunk_size = chunk_size

        def run_chunk(data, states, params, chain_keys, start):
            step, record, finish = build(data)

            def transition(states, keys):
                return jax.vmap(step)(keys, states, params)

            # every transition key of the chunk in one batched op before the scan (cheaper than fold_in inside
            # it); transition t of a chain always uses fold_in(chain_key, t), whatever the chunking
            steps = start * thin + jnp.arange(chunk_size * thin)
            keys = jax.vmap(lambda t: jax.vmap(lambda k: jax.random.fold_in(k, t))(chain_keys))(steps)

            def body(states, keys_j):
                # kept draw j is the last of `thin` transitions (no inner loop at all when thin == 1: an empty
                # scan still costs a loop per draw)
                if thin > 1:
                    states, _ = jax.lax.scan(lambda s, k: transition(s, k), states, keys_j[:-1])
                    keys_j = keys_j[-1]
                states, info = transition(states, keys_j)
                return states, jax.vmap(record)(states, info)

            if thin > 1:
                keys = keys.reshape((chunk_size, thin) + keys.shape[1:])

            states, kept = jax.lax.scan(body, states, keys)
            kept = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), kept)  # (chain, draw, ...)
            return states, kept, finish(kept.pop("z"))

        self.function = jax.jit(run_chunk)
        self.executable = None

    def run(self, data, states, params, chain_keys, start: int):
        states, kept, finished = self.executable(data, states, params, chain_keys, jnp.asarray(start, jnp.int32))
        host = jax.tree.map(np.asarray, {"stats": kept, **finished})
        return states, host


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
        return treedef, tuple((tuple(x.shape), str(x.dtype), getattr(x, "sharding", None).__class__.__name__)
                              for x in leaves)

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
    return -(-draws // chunk_size)
