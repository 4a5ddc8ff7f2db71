"""Baseline kernels as thin builders over BlackJAX: NUTS, MALA with windowed adaptation, adaptive tempered SMC.

Everything here takes plain functions on a flat vector (``logdensity(z) -> scalar``) and returns pure, jit- and
vmap-friendly functions; nothing knows about NumPyro.

* NUTS (Hoffman and Gelman 2014) with Stan's window adaptation: ``blackjax.window_adaptation``.
* MALA (Roberts and Tweedie 1996), preconditioned by a diagonal inverse mass matrix M^-1:
  z' = z + eps M^-1 grad log p(z) + sqrt(2 eps) M^-1/2 xi, accepted with the Metropolis-Hastings ratio. It is
  BlackJAX's MALA step written in z coordinates with the mass matrix (see `_mala_kernel`). Giving it the HMC-family
  kernel signature ``(key, state, logdensity, step_size, inverse_mass_matrix)`` lets ``blackjax.staged_adaptation``
  tune it with Stan's windows (dual averaging towards an acceptance of 0.574, Welford variance in slow windows).
* Adaptive tempered SMC (Del Moral et al. 2006; Jasra et al. 2011): tempering exponents chosen so the ESS falls by a
  fixed fraction, HMC moves preconditioned by the particles' variance; log Z = sum of log mean incremental weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.mcmc.mala import MALAState

__all__ = [
    "NUTSParams",
    "nuts_warmup",
    "nuts_step",
    "MALAParams",
    "MALAInfo",
    "mala_init",
    "mala_warmup",
    "mala_step",
    "OnlineAdaptationState",
    "online_window_adaptation",
    "SMCResult",
    "SMCCarry",
    "tempered_smc",
    "tempered_smc_pieces",
]


# ---------------------------------------------------------------------------------------------------------------------
# NUTS
class NUTSParams(NamedTuple):
    """NUTS's adapted parameters: the step size and the inverse mass matrix (diagonal or dense)."""

    step_size: jnp.ndarray
    inverse_mass_matrix: jnp.ndarray


def nuts_warmup(
    logdensity: Callable,
    num_steps: int,
    *,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    initial_step_size: float = 1.0,
    max_tree_depth: int = 10,
):
    """Return ``warmup(key, position) -> (state, NUTSParams, acceptance)``: Stan's windowed adaptation for one chain."""
    adaptation = blackjax.window_adaptation(
        blackjax.nuts,
        logdensity,
        is_mass_matrix_diagonal=not dense_mass,
        initial_step_size=initial_step_size,
        target_acceptance_rate=target_accept,
        max_num_doublings=max_tree_depth,
    )

    def warmup(key, position):
        (state, params), info = adaptation.run(key, position, num_steps=num_steps)
        return state, NUTSParams(params["step_size"], params["inverse_mass_matrix"]), info.info.acceptance_rate

    return warmup


def nuts_step(logdensity: Callable, params: NUTSParams, *, max_tree_depth: int = 10):
    """One NUTS transition with fixed adapted parameters: ``step(key, state) -> (state, info)``."""
    kernel = blackjax.nuts.build_kernel()

    def step(key, state):
        return kernel(
            key, state, logdensity, params.step_size, params.inverse_mass_matrix, max_num_doublings=max_tree_depth
        )

    return step


# ---------------------------------------------------------------------------------------------------------------------
# Online Stan window adaptation (one step at a time, for drivers such as numpyro.infer.MCMC)
class OnlineAdaptationState(NamedTuple):
    """The state of the online Stan window adaptation: dual averaging of the step size and the mass matrix sums."""

    step_size_state: Any  # BlackJAX's dual averaging state
    mass_matrix_state: Any  # BlackJAX's mass matrix state (the inverse mass matrix in use + the Welford sums)

    @property
    def step_size(self):
        return jnp.exp(self.step_size_state.log_step_size)

    @property
    def inverse_mass_matrix(self):
        return self.mass_matrix_state.inverse_mass_matrix


def online_window_adaptation(target_accept: float, is_mass_matrix_diagonal: bool = True):
    """``(init, update, final)`` of Stan's windowed adaptation driven one transition at a time.

    Built from BlackJAX's dual averaging (``adaptation.step_size.dual_averaging_adaptation``) and Welford mass matrix
    (``adaptation.mass_matrix.mass_matrix_adaptation``) with the windows of ``staged_adaptation.build_schedule``:
    fast windows adapt the step size; slow windows also accumulate the variance, and at the end of each the inverse
    mass matrix is recomputed and the dual averaging restarts from the current step size. (BlackJAX's own
    step-by-step version, ``window_adaptation.base``, is deprecated; its batch replacements run the whole warm-up in
    one call, which a driver that owns the loop cannot use.)

        init(position, initial_step_size) -> state
        update(state, (stage, is_window_end), position, acceptance_rate) -> state
        final(state) -> (step_size, inverse_mass_matrix)     # the averaged step size
    """
    mm_init, mm_update, mm_final = mass_matrix_adaptation(is_mass_matrix_diagonal)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)

    def init(position, initial_step_size):
        return OnlineAdaptationState(da_init(initial_step_size), mm_init(position.size))

    def update(state, stage, position, acceptance_rate):
        stage_index, is_window_end = stage
        step_state = da_update(state.step_size_state, acceptance_rate)
        mass_state = jax.lax.cond(
            stage_index == 1, lambda m: mm_update(m, position), lambda m: m, state.mass_matrix_state
        )
        state = OnlineAdaptationState(step_state, mass_state)

        def end_of_slow_window(state):
            return OnlineAdaptationState(da_init(da_final(state.step_size_state)), mm_final(state.mass_matrix_state))

        return jax.lax.cond(is_window_end, end_of_slow_window, lambda s: s, state)

    def final(state):
        return jnp.exp(state.step_size_state.log_step_size_avg), state.inverse_mass_matrix

    return init, update, final


# ---------------------------------------------------------------------------------------------------------------------
# MALA
class MALAParams(NamedTuple):
    """MALA's adapted parameters: the step size and the diagonal inverse mass matrix."""

    step_size: jnp.ndarray
    inverse_mass_matrix: jnp.ndarray  # diagonal


class MALAInfo(NamedTuple):
    """What a MALA step reports: the acceptance probability, whether the proposal was taken, and divergence."""

    acceptance_rate: jnp.ndarray
    is_accepted: jnp.ndarray
    diverging: jnp.ndarray  # the proposal's log density or gradient was not finite


def mala_init(position, logdensity: Callable) -> MALAState:
    """The MALA state at ``position``: the position, its log density and gradient (BlackJAX's ``mala.init``)."""
    return blackjax.mala.init(position, logdensity)


def _mala_kernel(precondition: bool = True):
    """Preconditioned MALA with the HMC-family signature, so BlackJAX's staged (Stan window) adaptation can drive it.

    The signature is ``kernel(key, state, logdensity, step_size, inverse_mass_matrix)``.

    With m = M^-1 (diagonal), eps the step size and xi ~ N(0, I):

        z' = z + eps m grad log p(z) + sqrt(2 eps m) xi
        log alpha = log p(z') - log p(z) - |z - z' - eps m grad log p(z')|^2_{m^-1} / (4 eps) + |xi|^2 / 2

    (the forward proposal density is written with xi itself, so it costs no second residual). This is BlackJAX's
    MALA (which has no mass matrix) moved to z coordinates instead of run on a whitened log density: no change of
    variables per evaluation. One key gives d + 1 standard normals per step: xi and a last one, X, whose Phi(X) is the
    uniform of the accept test (accept when log alpha >= 0 or Phi(X) < alpha), one counter-based hash per step
    instead of three (split, normal, uniform). A non-finite log alpha (the proposal's log density or gradient is NaN or infinite) is
    a divergence: the proposal is rejected.
    """

    def kernel(key, state: MALAState, logdensity: Callable, step_size, inverse_mass_matrix):
        m = inverse_mass_matrix if precondition else jnp.ones_like(inverse_mass_matrix)
        position = state.position
        gaussians = jax.random.normal(key, (position.shape[0] + 1,), position.dtype)
        xi = gaussians[:-1]
        proposal_position = position + step_size * m * state.logdensity_grad + jnp.sqrt(2.0 * step_size * m) * xi
        proposal_logdensity, proposal_grad = jax.value_and_grad(logdensity)(proposal_position)
        backward = position - proposal_position - step_size * m * proposal_grad
        log_alpha = (
            proposal_logdensity
            - state.logdensity
            - 0.25 / step_size * jnp.sum(backward * backward / m)
            + 0.5 * jnp.sum(xi * xi)
        )
        diverging = ~jnp.isfinite(log_alpha)
        log_alpha = jnp.where(diverging, -jnp.inf, log_alpha)
        accepted = (log_alpha >= 0.0) | (jax.scipy.special.ndtr(gaussians[-1]) < jnp.exp(log_alpha))
        new_state = MALAState(
            jnp.where(accepted, proposal_position, position),
            jnp.where(accepted, proposal_logdensity, state.logdensity),
            jnp.where(accepted, proposal_grad, state.logdensity_grad),
        )
        return new_state, MALAInfo(jnp.exp(jnp.minimum(log_alpha, 0.0)), accepted, diverging)

    return kernel


def _preconditioned_mala(precondition: bool = True):
    """The kernel as an algorithm namespace (init, build_kernel) for ``blackjax.staged_adaptation``."""
    return SimpleNamespace(init=mala_init, build_kernel=lambda: _mala_kernel(precondition))


def mala_step(logdensity: Callable, params: MALAParams):
    """One preconditioned MALA transition: ``step(key, state) -> (state, MALAInfo)`` (state in z coordinates)."""
    kernel = _mala_kernel()

    def step(key, state):
        return kernel(key, state, logdensity, params.step_size, params.inverse_mass_matrix)

    return step


def mala_warmup(
    logdensity: Callable,
    num_steps: int,
    *,
    target_accept: float = 0.574,
    initial_step_size: float = 0.1,
    precondition: bool = True,
):
    """Return ``warmup(key, position) -> (state, MALAParams, acceptance)`` using Stan's windows for MALA."""
    adaptation = blackjax.staged_adaptation(
        _preconditioned_mala(precondition),
        logdensity,
        "welford_diag",
        initial_step_size=initial_step_size,
        target_acceptance_rate=target_accept,
    )

    def warmup(key, position):
        (state, params), info = adaptation.run(key, position, num_steps=num_steps)
        inverse_mass_matrix = params["inverse_mass_matrix"] if precondition else jnp.ones_like(position)
        return state, MALAParams(params["step_size"], inverse_mass_matrix), info.info.acceptance_rate

    return warmup


# ---------------------------------------------------------------------------------------------------------------------
# adaptive tempered SMC
class SMCResult(NamedTuple):
    """What tempered SMC returns: the final weighted particles, the log-evidence estimate and run statistics."""

    particles: jnp.ndarray  # (num_particles, dim), after the final weighting
    log_weights: jnp.ndarray  # normalised log weights of the final particles
    log_evidence: jnp.ndarray  # log Z estimate
    num_steps: jnp.ndarray  # tempering steps taken
    acceptance_rate: jnp.ndarray  # mean acceptance of the last step's moves


class SMCCarry(NamedTuple):
    """The loop state of tempered SMC: BlackJAX's SMC state, the running log-evidence and counters."""

    state: NamedTuple  # BlackJAX's TemperedSMCState (particles, weights, tempering_param)
    log_evidence: jnp.ndarray  # running log Z estimate
    num_steps: jnp.ndarray  # tempering steps taken so far
    rng_key: jnp.ndarray
    acceptance_rate: jnp.ndarray  # mean acceptance of the last step's moves


def tempered_smc(
    logprior: Callable,
    loglikelihood: Callable,
    *,
    target_ess: float = 0.5,
    num_mcmc_steps: int = 10,
    num_integration_steps: int = 5,
    max_steps: int = 1000,
):
    """Return ``run(key, initial_particles) -> SMCResult``; initial particles are exact prior draws.

    The HMC moves use the particles' variance as inverse mass matrix and a step size of 0.5 d^(-1/4): the tempered
    targets are roughly standardised by that preconditioning. `tempered_smc_pieces` is the same run cut into pieces.
    """
    start, advance, finish = tempered_smc_pieces(
        logprior,
        loglikelihood,
        target_ess=target_ess,
        num_mcmc_steps=num_mcmc_steps,
        num_integration_steps=num_integration_steps,
        max_steps=max_steps,
    )

    def run(key, particles):
        return finish(advance(start(key, particles), max_steps))

    return run


def tempered_smc_pieces(
    logprior: Callable,
    loglikelihood: Callable,
    *,
    target_ess: float = 0.5,
    num_mcmc_steps: int = 10,
    num_integration_steps: int = 5,
    max_steps: int = 1000,
):
    """`tempered_smc` as ``(start, advance, finish)`` for a host loop over compiled pieces (e.g. a progress bar).

    ``start(key, particles) -> SMCCarry``; ``advance(carry, stop) -> SMCCarry`` takes tempering steps until the
    temperature reaches 1 or the step count reaches ``stop`` (a traced integer: one executable serves every piece);
    ``finish(carry) -> SMCResult``. Every step depends only on the carry, so the result does not depend on the stops.
    """

    def make_algorithm(particles, inverse_mass_matrix):
        hmc_step = functools.partial(blackjax.hmc.build_kernel(), num_integration_steps=num_integration_steps)
        # leading axis of length 1: the parameters are shared by all particles
        step_size = 0.5 * particles.shape[1] ** -0.25
        parameters = {
            "step_size": jnp.full((1,), step_size, particles.dtype),
            "inverse_mass_matrix": inverse_mass_matrix[None],
        }
        return blackjax.adaptive_tempered_smc(
            logprior,
            loglikelihood,
            hmc_step,
            blackjax.hmc.init,
            parameters,
            blackjax.smc.resampling.systematic,
            target_ess,
            num_mcmc_steps=num_mcmc_steps,
        )

    def start(key, particles):
        state = make_algorithm(particles, jnp.ones(particles.shape[1], particles.dtype)).init(particles)
        state = state._replace(tempering_param=jnp.zeros((), particles.dtype))
        zero = jnp.zeros((), particles.dtype)
        return SMCCarry(state, zero, jnp.asarray(0), key, zero)

    def advance(carry, stop):
        def cond(carry):
            return (carry.state.tempering_param < 1.0) & (carry.num_steps < jnp.minimum(stop, max_steps))

        def body(carry):
            key, sub = jax.random.split(carry.rng_key)
            particles = carry.state.particles
            step = make_algorithm(particles, jnp.var(particles, axis=0) + 1e-8).step
            state, info = step(sub, carry.state)
            acceptance = jnp.mean(info.update_info.acceptance_rate)
            return SMCCarry(
                state, carry.log_evidence + info.log_likelihood_increment, carry.num_steps + 1, key, acceptance
            )

        return jax.lax.while_loop(cond, body, carry)

    def finish(carry):
        return SMCResult(
            carry.state.particles,
            jnp.log(carry.state.weights),
            carry.log_evidence,
            carry.num_steps,
            carry.acceptance_rate,
        )

    return start, advance, finish
