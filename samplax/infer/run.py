"""Run vectorised chains in jitted fixed-length chunks, with a host-side progress bar and atomic checkpoints.

A chunk is one compiled call: ``lax.scan`` over draws of a ``vmap`` over chains. The key of draw ``t`` of a chain is
``fold_in(chain_key, t)``, so a run cut into chunks, or stopped and resumed from a checkpoint, gives the same draws as
one uninterrupted run. Draws leave the device after each chunk (bounded device memory); the progress bar advances
between chunks on the host, never through a per-step callback.

Checkpoint layout (a directory; no pickle anywhere, loading runs no code):
    manifest.json     format version, method, options, seed, raw key data, chain count, device layout, chunking,
                      site shapes, a fingerprint of the data, completed chunks
    data.npz          the data the model was conditioned on
    warmup.npz        the chains' states and adapted parameters after warm-up
    chunk_00003.npz   the draws, sample statistics and log-likelihoods of chunk 3, and the states at its end
Every file is written to a temporary name and renamed, and the manifest is rewritten only after the chunk file it
mentions exists, so a killed run leaves a consistent checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplax.models.bridge import data_fingerprint

__all__ = ["chunk_size_for", "ChainRunner", "CompiledCache", "COMPILED", "Checkpoint", "CHECKPOINT_FORMAT_VERSION", "chain_sharding",
           "data_fingerprint"]

CHECKPOINT_FORMAT_VERSION = 1


def chunk_size_for(draws: int, requested: int | None = None, max_chunks: int = 20) -> int:
    # callers pass max_chunks=1 when nothing happens between chunks (no progress bar, no checkpoint)
    """The chunk length: ``requested`` if given, else the smallest divisor of ``draws`` giving <= max_chunks chunks.

    A divisor means every chunk has the same length, so the chunk function compiles once.
    """
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, got {requested!r}")
        return min(requested, draws)
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


def _atomic_write(path: str, write: Callable):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _flatten(prefix: str, tree) -> dict:
    leaves = jax.tree.leaves(tree)
    return {f"{prefix}{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}


def _unflatten(prefix: str, archive, like):
    leaves, treedef = jax.tree.flatten(like)
    loaded = [archive[f"{prefix}{i:04d}"] for i in range(len(leaves))]
    for i, (want, got) in enumerate(zip(leaves, loaded)):
        if tuple(want.shape) != tuple(got.shape):
            raise ValueError(f"checkpoint array {prefix}{i:04d} has shape {got.shape}, expected {want.shape}: "
                             "the checkpoint was written for another model or chain count")
    return jax.tree.unflatten(treedef, [jnp.asarray(x, dtype=w.dtype) for x, w in zip(loaded, leaves)])


class Checkpoint:
    """Read and write one checkpoint directory (see the module docstring for the layout)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)

    @property
    def manifest_path(self):
        return os.path.join(self.path, "manifest.json")

    def exists(self) -> bool:
        return os.path.exists(self.manifest_path)

    def start(self, manifest: dict, data: dict):
        os.makedirs(self.path, exist_ok=True)
        arrays = {k: np.asarray(v) for k, v in data.items() if v is not None}
        _atomic_write(os.path.join(self.path, "data.npz"), lambda p: np.savez(p, **arrays))
        manifest = dict(manifest, format_version=CHECKPOINT_FORMAT_VERSION, completed_chunks=0, warmup_done=False)
        self.write_manifest(manifest)
        return manifest

    def write_manifest(self, manifest: dict):
        _atomic_write(self.manifest_path, lambda p: open(p, "w").write(json.dumps(manifest, indent=1)))

    def read_manifest(self) -> dict:
        if not self.exists():
            raise ValueError(f"no checkpoint at {self.path!r} (manifest.json missing)")
        with open(self.manifest_path) as handle:
            manifest = json.load(handle)
        if manifest.get("format_version") != CHECKPOINT_FORMAT_VERSION:
            raise ValueError(f"checkpoint format version {manifest.get('format_version')} is not supported "
                             f"(this samplax writes version {CHECKPOINT_FORMAT_VERSION})")
        return manifest

    def read_data(self) -> dict:
        with np.load(os.path.join(self.path, "data.npz"), allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}

    def save_warmup(self, manifest: dict, states, params, extra: dict):
        payload = {**_flatten("state", states), **_flatten("param", params),
                   **{f"extra_{k}": np.asarray(v) for k, v in extra.items()}}
        _atomic_write(os.path.join(self.path, "warmup.npz"), lambda p: np.savez(p, **payload))
        manifest["warmup_done"] = True
        self.write_manifest(manifest)

    def load_warmup(self, states_like, params_like):
        with np.load(os.path.join(self.path, "warmup.npz"), allow_pickle=False) as archive:
            extra = {k[len("extra_"):]: archive[k] for k in archive.files if k.startswith("extra_")}
            return _unflatten("state", archive, states_like), _unflatten("param", archive, params_like), extra

    def chunk_path(self, index: int) -> str:
        return os.path.join(self.path, f"chunk_{index:05d}.npz")

    def save_chunk(self, manifest: dict, index: int, states, host: dict):
        payload = {**_flatten("state", states)}
        for group, values in host.items():
            for name, value in values.items():
                payload[f"{group}/{name}"] = value
        _atomic_write(self.chunk_path(index), lambda p: np.savez(p, **payload))
        manifest["completed_chunks"] = index + 1
        self.write_manifest(manifest)

    def load_chunk(self, index: int, states_like=None):
        with np.load(self.chunk_path(index), allow_pickle=False) as archive:
            host: dict = {}
            for key in archive.files:
                if "/" in key:
                    group, name = key.split("/", 1)
                    host.setdefault(group, {})[name] = archive[key]
            states = _unflatten("state", archive, states_like) if states_like is not None else None
        return states, host
