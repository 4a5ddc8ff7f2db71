"""How `samplax.fit` runs a method once the model is a `Target`: the one chain driver and the direct methods.

Every Markov method (an `MCMCMethod`) runs here: warm-up, then sampling in compiled chunks through
`samplax.infer.run.ChainRunner` (one program for both when nothing runs between them: no progress bar, no checkpoint),
with checkpoints written after each chunk and read back on resume, and the draws mapped to constrained values and
log-likelihoods per chunk. Methods that are not Markov chains (a `DirectMethod`) run in one call. Both return the
posterior, the sample statistics, the log-likelihood and ``timing`` (compile, warm-up, sampling and
post-processing seconds, and the programs compiled).
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer.checkpoint import Checkpoint
from samplax.infer.checkpoint import check_resume as _check_resume
from samplax.infer.checkpoint import manifest_for as _checkpoint_manifest
from samplax.infer.progress import Progress
from samplax.infer.run import COMPILED, ChainRunner, chain_sharding, chunk_plan, chunk_size_for, progress_chunk_size
from samplax.models.bridge import Target

__all__ = ["run_mcmc", "run_direct", "unsupported_features", "finish_fn"]


def unsupported_features(method) -> tuple[str, ...]:
    """The model features a registered method refuses (its schema's, plus discrete sites for gradient methods)."""
    return tuple(method.schema.unsupported) + (("discrete_latent",) if method.gradient_based else ())


def finish_fn(target: Target, log_likelihood: bool = True):
    """Chunk of unconstrained positions (chain, draw, dim) -> constrained draws and log-likelihoods."""

    def finish(z):
        flat = z.reshape((-1, z.shape[-1]))
        posterior = jax.vmap(target.constrain)(flat)
        loglik = jax.vmap(target.log_likelihood)(flat) if (target.observed and log_likelihood) else {}
        reshape = lambda x: x.reshape(z.shape[:2] + x.shape[1:])  # noqa: E731
        return {"posterior": jax.tree.map(reshape, posterior), "log_likelihood": jax.tree.map(reshape, loglik)}

    return finish


def run_mcmc(target, method, settings, keys, progress, checkpoint, checkpoint_every, resuming):
    """Warm-up and sampling of an `MCMCMethod` on `ChainRunner`, the one chain driver of every Markov method.

    With a bar or checkpoints: a warm-up program and one chunk program reused by equal chunks. Without either: one
    fused program (`ChainRunner.fuse`) that reports ``warmup_s = 0`` and the whole run as ``sampling_s``, since the two
    cannot be timed apart (docs/architecture.md, "One program"), unless the separate programs are already compiled.
    """
    options, chains, draws = settings["options"], settings["chains"], settings["draws"]
    # programs_compiled: executables this fit compiled (0 on a warm refit; a persistent-cache hit still counts,
    # but its compile_s is the time to load it)
    timing = {"compile_s": 0.0, "warmup_s": 0.0, "sampling_s": 0.0, "programs_compiled": 0}
    # chunks exist for checkpoints and for the progress bar; a bar alone gets them only when sampling is long enough
    # to watch (decided after warm-up, from its speed), since every chunk costs a dispatch and a copy to the host
    chunk = chunk_size_for(draws, checkpoint_every, max_chunks=20 if checkpoint is not None else 1)
    # the checkpoint folder is checked (ours, or empty) and the manifest compared before anything is compiled
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    manifest = None
    if store is not None:
        manifest = _checkpoint_manifest(target, settings, chunk)
        if store.exists():
            current, manifest = manifest, store.read_manifest()
            _check_resume(manifest, current)
        elif resuming:
            raise ValueError(f"no checkpoint at {checkpoint!r}")
        else:
            manifest = store.start(manifest, target.data)
    sharding = chain_sharding(chains)
    init_key, warmup_key, sample_key = keys
    with Progress(progress, settings["method"], draws, chains) as bar:
        # what the kernel runs on: the Target, or what the method builds from it (gibbs: tables, proposals)
        chain_target = target
        if method.prepare is not None:
            problem_key, init_key = jax.random.split(init_key)
            with bar.stage("preparing"):
                chain_target = method.prepare(target, options, problem_key, settings["warmup"])
        return run_chains(
            target,
            chain_target,
            method,
            settings,
            timing,
            bar,
            store,
            manifest,
            sharding,
            chunk,
            (init_key, warmup_key, sample_key),
            progress,
            checkpoint_every,
        )


def run_chains(
    target,
    chain_target,
    method,
    settings,
    timing,
    bar,
    store,
    manifest,
    sharding,
    chunk,
    keys,
    progress,
    checkpoint_every,
):
    options, chains, draws = settings["options"], settings["chains"], settings["draws"]
    init_key, warmup_key, sample_key = keys
    positions = chain_target.init(init_key, chains, settings["init"])
    warmup_keys = jax.random.split(warmup_key, chains)
    chain_keys = jax.random.split(sample_key, chains)
    # chains on a mesh of their own (admm, dsgld: agents) are mapped by the method's map_chains, not spread here
    map_chains = getattr(chain_target, "map_chains", jax.vmap)
    if sharding is not None and map_chains is jax.vmap:
        positions, warmup_keys, chain_keys = jax.device_put((positions, warmup_keys, chain_keys), sharding)
    num_warmup = max(settings["warmup"], 1)
    data = chain_target.data_arrays()

    def warm(data, keys, positions):
        return map_chains(method.warmup(chain_target.with_data(data), options, num_warmup))(keys, positions)

    warmup_fn = jax.jit(warm)
    warmup_program_key = (
        target.model,
        settings["method"],
        json.dumps(options, sort_keys=True, default=str),
        num_warmup,
        chain_target.static_data_key(),
        tuple((site.name, site.shape) for site in target.sites),
    )
    # thinning and the log-likelihood change only the sampling chunks: refits that vary them reuse the warm-up
    program_key = warmup_program_key + (settings["thin"], settings["log_likelihood"])

    def build(data):
        conditioned = chain_target.with_data(data)
        # the draws are finished on the Target; a prepared object that keeps one conditioned on the data (admm,
        # dsgld) names it finishing_target; the gibbs family finishes on the host instead
        finishing = conditioned if chain_target is target else getattr(conditioned, "finishing_target", None)
        finish = finish_fn(finishing, settings["log_likelihood"]) if finishing is not None else None
        return method.step(conditioned, options), method.record, finish

    def compile_program(key, function, *args):
        with bar.stage("compiling"):
            executable, seconds = COMPILED.compile(key, function, *args)
        timing["compile_s"] += seconds
        timing["programs_compiled"] += seconds > 0
        return executable

    # one program when nothing runs between warm-up and sampling (see the docstring)
    fused = (
        store is None
        and not progress
        and checkpoint_every is None
        and settings["warmup"] > 0
        and COMPILED.lookup(("warmup",) + warmup_program_key, data, warmup_keys, positions) is None
    )
    if fused:
        runner = ChainRunner(build, draws, settings["thin"], map_chains)
        executable = compile_program(
            ("fused", draws) + program_key, runner.fuse(warm), data, warmup_keys, positions, chain_keys
        )
        start = time.perf_counter()
        states, params, host = ChainRunner.run_fused(executable, data, warmup_keys, positions, chain_keys)
        timing["sampling_s"] = time.perf_counter() - start  # warm-up included: the two cannot be timed apart
        pieces = [host]
    else:
        # shapes of the chain states, needed only to read them back from a checkpoint (tracing costs seconds)
        states_like, params_like = (
            jax.eval_shape(warmup_fn, data, warmup_keys, positions)[:2] if store is not None else (None, None)
        )
        if store is not None and manifest.get("warmup_done"):
            states, params, _ = store.load_warmup(manifest, states_like, params_like)
        else:
            start = time.perf_counter()
            if settings["warmup"] == 0:
                states, params = map_chains(method.start(chain_target, options))(positions)
            else:
                compiled = compile_program(("warmup",) + warmup_program_key, warmup_fn, data, warmup_keys, positions)
                start = time.perf_counter()
                with bar.stage("warm-up"):
                    states, params, _ = jax.block_until_ready(compiled(data, warmup_keys, positions))
            timing["warmup_s"] = time.perf_counter() - start
            if store is not None:
                store.save_warmup(manifest, states, params, {})
        if progress and store is None and checkpoint_every is None:
            chunk = progress_chunk_size(
                draws, timing["warmup_s"] / settings["warmup"] * settings["thin"] if settings["warmup"] > 0 else None
            )
        runners: dict = {}

        def runner_for(length):
            # every chunk runs on one executable of the plan's first length (see the loop below)
            if length not in runners:
                runner = ChainRunner(build, length, settings["thin"], map_chains)
                runner.executable = compile_program(
                    ("chunk", length) + program_key,
                    runner.function,
                    data,
                    states,
                    params,
                    chain_keys,
                    jnp.asarray(0, jnp.int32),
                )
                runners[length] = runner
            return runners[length]

        plan = chunk_plan(draws, chunk)
        pieces = []
        first = manifest["completed_chunks"] if store is not None else 0
        for index in range(first):
            states_loaded, host = store.load_chunk(
                manifest, index, plan[index][1], states_like if index == first - 1 else None
            )
            pieces.append(host)
            if index == first - 1:
                states = states_loaded
            bar.sampled(plan[index][1], host["stats"])
        for index in range(first, len(plan)):
            begin, length = plan[index]
            # a shorter last chunk (draws % chunk) runs the full chunk's executable and keeps its first `length`
            # draws: at most chunk - 1 transitions of extra work instead of compiling a second program (draw t of a
            # chain uses fold_in(chain_key, t) either way, so the kept draws are the same)
            runner = runner_for(plan[0][1])
            start = time.perf_counter()
            with bar.stage("sampling"):
                states, host = runner.run(data, states, params, chain_keys, begin)
            if length < runner.chunk_size:
                host = jax.tree.map(lambda draws_axis1: draws_axis1[:, :length], host)
            timing["sampling_s"] += time.perf_counter() - start
            pieces.append(host)
            if store is not None:
                store.save_chunk(manifest, index, states, host)
            bar.sampled(length, host["stats"])

    merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *pieces)
    start = time.perf_counter()
    if "discrete" in merged:  # samplers of discrete sites: substitute those values too when tracing the model
        from samplax.models.motifs import finish_with_discrete

        merged.update(
            finish_with_discrete(
                target, merged.pop("position")["z"], merged.pop("discrete"), settings["log_likelihood"]
            )
        )
    timing["postprocess_s"] = time.perf_counter() - start
    step_size = np.asarray(params.step_size) if hasattr(params, "step_size") else None
    if step_size is not None:
        merged["stats"]["step_size"] = np.broadcast_to(step_size.reshape(chains, 1), (chains, draws)).copy()
    extra = dict(chain_target.extra(params, merged["stats"])) if hasattr(chain_target, "extra") else {}
    if fused:
        extra["fused_warmup_sampling"] = True
    return {
        "posterior": merged["posterior"],
        "sample_stats": merged["stats"],
        "log_likelihood": merged["log_likelihood"],
        "timing": timing,
        "extra": extra,
    }


def run_direct(target, method, settings, keys):
    """Run a direct method in one call and finish its draws (constrained values, log-likelihoods).

    Returns the dict `assemble` reads: posterior, sample statistics, log-likelihood, the method's estimates and
    timing.
    """
    start = time.perf_counter()
    result = method.run(target, settings["options"], keys[2], settings["chains"], settings["warmup"], settings["draws"])
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    finished = jax.jit(finish_fn(target, settings.get("log_likelihood", True)))(jnp.asarray(result.z))
    finished = jax.tree.map(np.asarray, finished)
    return {
        "posterior": finished["posterior"],
        "sample_stats": result.sample_stats,
        "log_likelihood": finished["log_likelihood"],
        "log_evidence": result.log_evidence,
        "elbo": result.elbo,
        "extra": result.extra,
        "approximation": result.approximation,
        # one compiled call: its compilation and tuning are inside sampling_s (compile_s is not separated)
        "timing": {
            "compile_s": float("nan"),
            "warmup_s": 0.0,
            "sampling_s": elapsed,
            "postprocess_s": time.perf_counter() - start,
            "programs_compiled": None,
        },
    }
