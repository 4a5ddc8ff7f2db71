"""samplax's preconditioned MALA kernel (samplax.kernels.baselines): the MH ratio against the Gaussian proposal
densities written out, and invariance of an exact Gaussian target started from exact draws."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from samplax.kernels import baselines

MEAN = jnp.array([1.0, -2.0, 0.5])
SD = jnp.array([0.3, 2.0, 1.0])


def _logdensity(z):
    return jnp.sum(stats.norm.logpdf(0.0, 0.0, 1.0) - 0.5 * ((z - MEAN) / SD) ** 2 - jnp.log(SD))


def _log_q(to, frm, step_size, m):
    """log N(to; frm + eps m grad log p(frm), 2 eps m), the MALA proposal density."""
    mean = frm + step_size * m * jax.grad(_logdensity)(frm)
    return float(np.sum(stats.norm.logpdf(np.asarray(to), np.asarray(mean), np.sqrt(2 * step_size * np.asarray(m)))))


def test_acceptance_probability_is_the_metropolis_hastings_ratio():
    """With precision to spare (float64), the kernel's acceptance probability equals min(1, p(z') q(z | z') /
    (p(z) q(z' | z))) computed from the Gaussian densities, for a non-identity mass matrix."""
    with jax.enable_x64(True):
        m = jnp.array([0.5, 3.0, 1.5])
        step_size = 0.4
        kernel = baselines.mala_step(_logdensity, baselines.MALAParams(jnp.asarray(step_size), m))
        state = baselines.mala_init(jnp.array([0.2, 0.1, -1.0]), _logdensity)
        for seed in range(5):
            new_state, info = kernel(jax.random.key(seed), state)
            # the proposal is the new position when accepted; rebuild it from the same key when rejected
            gaussians = jax.random.normal(jax.random.key(seed), (4,), jnp.float64)
            proposal = (
                state.position + step_size * m * state.logdensity_grad + jnp.sqrt(2 * step_size * m) * gaussians[:-1]
            )
            log_ratio = (
                _logdensity(proposal)
                - _logdensity(state.position)
                + _log_q(state.position, proposal, step_size, m)
                - _log_q(proposal, state.position, step_size, m)
            )
            np.testing.assert_allclose(float(info.acceptance_rate), min(1.0, float(np.exp(log_ratio))), rtol=1e-9)
            accepted = bool(info.is_accepted)
            expected = proposal if accepted else state.position
            np.testing.assert_allclose(np.asarray(new_state.position), np.asarray(expected), rtol=1e-12)
            assert not bool(info.diverging)


def test_non_finite_proposal_is_a_rejected_divergence():
    def logdensity(z):
        return jnp.where(z[0] > 0.0, -jnp.inf, -0.5 * jnp.sum(z**2))

    kernel = baselines.mala_step(logdensity, baselines.MALAParams(jnp.asarray(1.0), jnp.ones(2)))
    state = baselines.mala_init(jnp.array([-0.1, 0.0]), logdensity)
    found = False
    for seed in range(20):
        new_state, info = kernel(jax.random.key(seed), state)
        if bool(info.diverging):
            found = True
            assert not bool(info.is_accepted) and float(info.acceptance_rate) == 0.0
            np.testing.assert_array_equal(np.asarray(new_state.position), np.asarray(state.position))
    assert found


def test_steps_from_exact_draws_keep_the_gaussian_target():
    """20 000 chains started at exact draws, 10 steps with a step size that rejects often: every coordinate's mean
    and variance stay at the target's within 4 standard errors (an invariance failure of the kernel would move
    them)."""
    chains = 20_000
    m = SD**2 * jnp.array([2.0, 0.5, 1.0])  # a mass matrix off the target's scales, so it matters
    kernel = jax.vmap(baselines.mala_step(_logdensity, baselines.MALAParams(jnp.asarray(0.8), m)))
    draws = MEAN + SD * jax.random.normal(jax.random.key(0), (chains, 3))
    states = jax.vmap(lambda z: baselines.mala_init(z, _logdensity))(draws)

    def body(states, key):
        states, info = kernel(jax.random.split(key, chains), states)
        return states, info.acceptance_rate.mean()

    states, acceptance = jax.lax.scan(body, states, jax.random.split(jax.random.key(1), 10))
    assert 0.2 < float(acceptance.mean()) < 0.9
    z = np.asarray(states.position, dtype=np.float64)
    mean_se = np.asarray(SD) / np.sqrt(chains)
    assert np.all(np.abs(z.mean(axis=0) - np.asarray(MEAN)) < 4 * mean_se), (z.mean(axis=0), MEAN)
    variance_se = np.asarray(SD) ** 2 * np.sqrt(2.0 / (chains - 1))
    assert np.all(np.abs(z.var(axis=0, ddof=1) - np.asarray(SD) ** 2) < 4 * variance_se), (z.var(axis=0), SD**2)


def test_online_window_adaptation_follows_blackjax_window_adaptation_step_for_step():
    """Same schedule, positions and acceptance rates: the online adaptation gives BlackJAX's (deprecated) step-by-step
    window adaptation's step sizes and inverse mass matrices at every step, and the same final values."""
    import warnings

    import pytest
    from blackjax.adaptation.staged_adaptation import build_schedule

    window_adaptation = pytest.importorskip("blackjax.adaptation.window_adaptation")
    if not hasattr(window_adaptation, "base"):
        pytest.skip("BlackJAX no longer ships window_adaptation.base")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = window_adaptation.base(True, 0.7)
    ours = baselines.online_window_adaptation(0.7)
    num_steps = 150
    schedule = build_schedule(num_steps)
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(num_steps, 3)) * np.array([0.1, 1.0, 5.0])
    acceptance = rng.uniform(size=num_steps)
    start = jnp.zeros(3)
    state_ref, state_ours = reference[0](start, 0.5), ours[0](start, 0.5)
    update_ref, update_ours = jax.jit(reference[1]), jax.jit(ours[1])
    for t in range(num_steps):
        stage = (schedule[t][0], schedule[t][1])
        state_ref = update_ref(state_ref, stage, jnp.asarray(positions[t]), acceptance[t])
        state_ours = update_ours(state_ours, stage, jnp.asarray(positions[t]), acceptance[t])
        np.testing.assert_allclose(float(state_ours.step_size), float(state_ref.step_size), rtol=1e-5)
        np.testing.assert_allclose(
            np.asarray(state_ours.inverse_mass_matrix), np.asarray(state_ref.inverse_mass_matrix), rtol=1e-5
        )
    for a, b in zip(ours[2](state_ours), reference[2](state_ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
    assert not np.allclose(np.asarray(state_ours.inverse_mass_matrix), 1.0)  # the windows did adapt the metric
