"""How a method's kernel is warmed up, stepped and recorded on a `Target`, and the baseline methods.

An MCMC method is an `MCMCMethod` (every Markov method: nuts, mala, bplmc, myula, gibbs, block_gibbs,
meta_gibbs, admm, dsgld): ``warmup(target, options, num_steps)`` returns a single-chain function
``(key, position) -> (state, params, warmup_acceptance)`` (vmapped over chains by `fit`), ``step(target, options)``
returns ``(key, state, params) -> (state, info)``, and ``record(state, info)`` picks the unconstrained position
(key "z") and the per-draw sample statistics. Methods that are not Markov chains (smc, variational methods) are a
`DirectMethod`:
``run(target, options, key, chains, warmup, draws) -> DirectResult``.

This module and every ``method_*.py`` only define methods (each exports a ``METHODS`` tuple, with no side effect on
import); `samplax.infer.registry` collects them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer import progress
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels import baselines

__all__ = ["MCMCMethod", "DirectMethod", "DirectResult", "NUTS", "MALA", "SMC", "METHODS"]


class MCMCMethod(NamedTuple):
    """A Markov method, run by `fit`'s one chain driver (`samplax.infer.run.ChainRunner`).

    Checkpoints, ``thin``, progress bars and ``fold_in(chain_key, t)`` keys come with it.

    ``prepare(target, options, key, warmup)``, when given, builds on the host what the kernel runs on in place of
    the `Target` (the gibbs family's factor tables, schedules and proposals, trained with ``key``). That object has
    the Target's ``init(key, chains, strategy)``, ``data_arrays()``, ``with_data(arrays)`` and
    ``static_data_key()``, and may have ``extra(params, stats) -> dict`` (records kept in the fit's attrs),
    ``map_chains`` (how the single-chain functions are mapped over chains in place of `jax.vmap`: admm's
    ``shard_map`` over agents) and ``finishing_target`` (the Target, conditioned on the data, that the draws are
    finished on). A ``record`` that returns a ``"discrete"`` dict (constrained values of discrete latent sites) has them
    substituted when the model is traced for the posterior and log-likelihood.
    """

    schema: MethodSchema
    warmup: Callable
    step: Callable
    record: Callable
    start: Callable  # (target, options) -> (z -> (state, params)): the un-adapted start used when warmup=0
    gradient_based: bool = True
    prepare: Callable | None = None
    uses_init: bool = True  # False: the chains start from the method's own draws, and init= is refused


class DirectResult(NamedTuple):
    """What a direct method returns: equally weighted unconstrained draws, statistics, estimates and extras."""

    z: np.ndarray  # (repeats, draws, dim) unconstrained draws, equally weighted
    sample_stats: dict  # name -> (repeats, draws) arrays
    log_evidence: np.ndarray | None  # (repeats,)
    elbo: np.ndarray | None  # (repeats,)
    extra: dict  # method-specific records kept in attrs (JSON-able arrays)
    approximation: object = None  # e.g. a trained flow; Fit.log_density delegates to its log_density(...)


class DirectMethod(NamedTuple):
    """A method that makes its draws in one call, not by a Markov chain (smc, mixflow, cmcd, ...).

    ``run(target, options, key, chains, warmup, draws) -> DirectResult``; ``gradient_based`` methods refuse
    discrete latent sites.
    """

    schema: MethodSchema
    run: Callable
    gradient_based: bool = True


# ---------------------------------------------------------------------------------------------------------------------
# nuts
def _nuts_warmup(target, options, num_steps):
    return baselines.nuts_warmup(
        target.logdensity,
        num_steps,
        target_accept=options["target_accept"],
        dense_mass=options["dense_mass"],
        initial_step_size=options["initial_step_size"],
        max_tree_depth=options["max_tree_depth"],
    )


def _nuts_step(target, options):
    def step(key, state, params):
        return baselines.nuts_step(target.logdensity, params, max_tree_depth=options["max_tree_depth"])(key, state)

    return step


def _nuts_record(state, info):
    return {
        "z": state.position,
        "lp": state.logdensity,
        "acceptance_rate": info.acceptance_rate,
        "diverging": info.is_divergent | ~jnp.isfinite(state.logdensity),
        "energy": info.energy,
        "n_steps": info.num_integration_steps,
        "tree_depth": info.num_trajectory_expansions,
    }


NUTS = MCMCMethod(
    MethodSchema(
        "nuts",
        "mcmc",
        "No-U-Turn sampler (BlackJAX) with Stan's window adaptation",
        (
            Option(
                "target_accept",
                float,
                0.8,
                "target mean acceptance probability of warm-up",
                minimum=0.05,
                maximum=0.999,
            ),
            Option("max_tree_depth", int, 10, "maximum number of trajectory doublings", minimum=1, maximum=20),
            Option("dense_mass", bool, False, "adapt a dense instead of a diagonal mass matrix"),
            Option("initial_step_size", float, 1.0, "step size at the start of warm-up", minimum=1e-8),
        ),
    ),
    _nuts_warmup,
    _nuts_step,
    _nuts_record,
    lambda target, options: (
        lambda z: (
            blackjax.nuts.init(z, target.logdensity),
            baselines.NUTSParams(jnp.asarray(options["initial_step_size"], z.dtype), jnp.ones_like(z)),
        )
    ),
)


# ---------------------------------------------------------------------------------------------------------------------
# mala
def _mala_warmup(target, options, num_steps):
    return baselines.mala_warmup(
        target.logdensity,
        num_steps,
        target_accept=options["target_accept"],
        initial_step_size=options["initial_step_size"],
        precondition=options["precondition"],
    )


def _mala_step(target, options):
    def step(key, state, params):
        return baselines.mala_step(target.logdensity, params)(key, state)

    return step


def _mala_record(state, info):
    return {
        "z": state.position,
        "lp": state.logdensity,
        "acceptance_rate": info.acceptance_rate,
        "diverging": info.diverging,
    }


MALA = MCMCMethod(
    MethodSchema(
        "mala",
        "mcmc",
        "Metropolis-adjusted Langevin (BlackJAX step) with windowed step-size and diagonal mass adaptation",
        (
            Option(
                "target_accept", float, 0.574, "target acceptance of the dual averaging", minimum=0.05, maximum=0.999
            ),
            Option("initial_step_size", float, 0.1, "step size at the start of warm-up", minimum=1e-10),
            Option("precondition", bool, True, "adapt a diagonal inverse mass matrix during warm-up"),
        ),
    ),
    _mala_warmup,
    _mala_step,
    _mala_record,
    lambda target, options: (
        lambda z: (
            baselines.mala_init(z, target.logdensity),
            baselines.MALAParams(jnp.asarray(options["initial_step_size"], z.dtype), jnp.ones_like(z)),
        )
    ),
)


# ---------------------------------------------------------------------------------------------------------------------
# smc
def _smc_run(target, options, key, chains, warmup, draws):
    del warmup  # adaptive tempering tunes itself
    start, advance, finish = baselines.tempered_smc_pieces(
        target.log_prior,
        lambda z: target.logdensity(z) - target.log_prior(z),
        target_ess=options["target_ess"],
        num_mcmc_steps=options["num_mcmc_steps"],
        num_integration_steps=options["num_integration_steps"],
        max_steps=SMC_MAX_STEPS,
    )

    def start_repeat(key):
        key_prior, key_smc, key_resample = jax.random.split(key, 3)
        particles = jax.vmap(target.sample_prior)(jax.random.split(key_prior, draws))
        return start(key_smc, particles), key_resample

    def finish_repeat(carry, key_resample):
        result = finish(carry)
        # equally weighted draws for the posterior group; the weights themselves go to sample_stats
        index = jax.random.categorical(key_resample, result.log_weights, shape=(draws,))
        return result, result.particles[index]

    # the tempering steps run in compiled pieces of SMC_PIECE_STEPS steps under a progress bar (one piece without):
    # the number of steps is not known ahead, so the bar counts steps and shows the lowest temperature of the repeats
    bar = progress.current()
    carry, keys_resample = jax.jit(jax.vmap(start_repeat))(jax.random.split(key, chains))
    stop_every = SMC_PIECE_STEPS if bar.enabled else SMC_MAX_STEPS
    stop = jnp.asarray(0, jnp.int32)
    with bar.loop("tempering") as loop:
        piece = jax.jit(jax.vmap(advance, in_axes=(0, None))).lower(carry, stop).compile()
        loop.advance(0)
        done = 0
        while done < SMC_MAX_STEPS:
            carry = piece(carry, jnp.asarray(done + stop_every, jnp.int32))
            steps = int(np.max(np.asarray(carry.num_steps)))
            temperature = float(np.min(np.asarray(carry.state.tempering_param)))
            loop.advance(steps - done, note=f"temperature {temperature:.3f}")
            if temperature >= 1.0 or steps < done + stop_every:
                break
            done = steps
    result, draws_z = jax.jit(jax.vmap(finish_repeat))(carry, keys_resample)
    stats = {"log_weight": np.asarray(result.log_weights), "diverging": ~np.isfinite(np.asarray(result.log_weights))}
    extra = {"tempering_steps": np.asarray(result.num_steps), "final_acceptance": np.asarray(result.acceptance_rate)}
    return DirectResult(np.asarray(draws_z), stats, np.asarray(result.log_evidence), None, extra)


SMC_MAX_STEPS = 1000  # tempering steps at most per repeat
SMC_PIECE_STEPS = 4  # tempering steps per compiled piece under a progress bar


SMC = DirectMethod(
    MethodSchema(
        "smc",
        "weighted",
        "adaptive tempered SMC (BlackJAX) from exact prior draws; gives log-evidence; "
        "chains = independent repeats, draws = particles",
        (
            Option(
                "target_ess", float, 0.5, "fraction of ESS kept between tempering steps", minimum=0.05, maximum=0.99
            ),
            Option("num_mcmc_steps", int, 10, "HMC moves per tempering step", minimum=1),
            Option("num_integration_steps", int, 5, "leapfrog steps per HMC move", minimum=1),
            # its particles start as prior draws, which know nothing of a factor's -inf regions
            # (measured: NaN weights on a normal truncated by a factor)
        ),
        unsupported=("improper_prior", "factor"),
    ),
    _smc_run,
)


METHODS = (NUTS, MALA, SMC)
