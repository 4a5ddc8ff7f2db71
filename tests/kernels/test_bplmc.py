"""bplmc (BMUMLA and its adjusted variant) and myula at kernel level: exactness checks and statistical checks.

Statistical tests run many independent vectorised chains from a fixed start with a burn-in; each chain's time
average is one independent estimate, so the Monte Carlo standard error (MCSE) of a moment is the standard deviation of
the chain averages over sqrt(number of chains). Tolerances are 4.5 MCSE (two-sided false-alarm rate ~7e-6 per check,
with fixed seeds).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from samplax.kernels.bregman import bplmc, make_legendre, myula

Z = 4.5


def run_chains(algorithm, legendre, initial_positions, num_steps, burn_in, seed=0, params=None):
    """Run chains in one jitted scan; return per-chain averages (after burn-in) of x, x^2 and |x|, plus safety flags.

    ``algorithm`` is a SamplingAlgorithm, or with ``params`` a function param -> SamplingAlgorithm that is vmapped over
    the leading axis of ``params`` (one compilation for several targets; outputs gain that leading axis).
    ``stayed`` checks that every diverging step left the position unchanged; ``inside`` that every state was finite
    and inside the domain.
    """
    num_chains = initial_positions.shape[0]
    keys = jax.random.split(jax.random.key(seed), num_chains)

    def one_chain(algorithm, key, position):
        state = algorithm.init(position)

        def body(carry, t):
            state, sums, divergences, acceptance, stayed, inside = carry
            new_state, info = algorithm.step(jax.random.fold_in(key, t), state)
            x = new_state.position
            keep = (t >= burn_in).astype(x.dtype)
            sums = (sums[0] + keep * x, sums[1] + keep * x * x, sums[2] + keep * jnp.abs(x))
            stayed = stayed & (~info.diverging | jnp.all(x == state.position))
            inside = inside & jnp.all(jnp.isfinite(x)) & legendre.in_domain(x)
            return (
                new_state,
                sums,
                divergences + info.diverging,
                acceptance + info.acceptance_rate,
                stayed,
                inside,
            ), None

        zeros = jnp.zeros_like(state.position)
        init = (
            state,
            (zeros, zeros, zeros),
            jnp.int32(0),
            jnp.zeros((), zeros.dtype),
            jnp.bool_(True),
            legendre.in_domain(state.position),
        )
        (_, sums, divergences, acceptance, stayed, inside), _ = jax.lax.scan(body, init, jnp.arange(num_steps))
        n = num_steps - burn_in
        return (sums[0] / n, sums[1] / n, sums[2] / n, divergences, acceptance / num_steps, stayed, inside)

    if params is None:
        out = jax.jit(jax.vmap(functools.partial(one_chain, algorithm)))(keys, initial_positions)
    else:

        def for_param(param):
            return jax.vmap(functools.partial(one_chain, algorithm(param)))(keys, initial_positions)

        out = jax.jit(jax.vmap(for_param))(jnp.asarray(params))
    names = ("mean", "second", "absolute", "divergences", "acceptance", "stayed", "inside")
    return {k: np.asarray(v) for k, v in zip(names, out)}


def check_mean(chain_means, exact, label):
    estimate = chain_means.mean(0)
    mcse = chain_means.std(0, ddof=1) / np.sqrt(chain_means.shape[0])
    assert np.all(np.abs(estimate - exact) <= Z * mcse), f"{label}: {estimate} vs {exact} (MCSE {mcse})"
    return mcse


def check_variance(chain_means, chain_second, exact_variance, label):
    """Variance E x^2 - (E x)^2 with its MCSE by the delta method on the per-chain (x, x^2) averages."""
    mu = chain_means.mean(0)
    estimate = chain_second.mean(0) - mu**2
    influence = chain_second - 2 * mu * chain_means
    mcse = influence.std(0, ddof=1) / np.sqrt(chain_means.shape[0])
    assert np.all(np.abs(estimate - exact_variance) <= Z * mcse), (
        f"{label}: variance {estimate} vs {exact_variance} (MCSE {mcse})"
    )


# -- Euclidean BMUMLA is MYULA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["left", "right"])
def test_euclidean_bmumla_equals_myula_step_for_step(side):
    """With phi = |x|^2/2 the BMUMLA step (either envelope side) is MYULA: same keys give the same trajectory
    (float64, 200 steps, to 1e-12; only floating-point reassociation may differ)."""
    with jax.enable_x64(True):
        mean = jnp.array([0.5, -1.0, 2.0, 0.0, 0.3])

        def f(x):
            return 0.5 * jnp.sum((x - mean) ** 2 / jnp.array([1.0, 2.0, 0.5, 1.0, 3.0])) + 0.1 * jnp.sum(x**4)

        weight = jnp.array([1.0, 0.5, 2.0, 0.0, 3.0])
        center = jnp.array([0.0, 0.2, -0.1, 0.0, 1.0])
        kwargs = dict(smoothing=0.2, l1_weight=weight, l1_center=center)
        bm = bplmc.as_top_level_api(f, make_legendre("euclidean"), 0.01, side=side, **kwargs)
        my = myula.as_top_level_api(f, 0.01, **kwargs)

        def trajectory(algorithm):
            def body(state, t):
                state, info = algorithm.step(jax.random.fold_in(jax.random.key(3), t), state)
                return state, (state.position, info.envelope_grad_norm)

            return jax.lax.scan(body, algorithm.init(jnp.array([1.0, -2.0, 0.1, 0.0, 1.0])), jnp.arange(200))[1]

        x_bm, norm_bm = jax.jit(lambda: trajectory(bm))()
        x_my, norm_my = jax.jit(lambda: trajectory(my))()
        np.testing.assert_allclose(np.asarray(x_bm), np.asarray(x_my), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(norm_bm), np.asarray(norm_my), rtol=1e-10)
        assert np.std(np.asarray(x_bm)[:, 2]) > 0.1  # the chain moves


# -- 1-D Laplace under hyperbolic entropy ----------------------------------------------------------------------------
def smoothed_laplace_moments(side, smoothing=0.1, beta=1.0):
    """E|x| and E x^2 under pi^lambda ∝ exp(-env(x)) for g = |x|, by quadrature of independent NumPy formulas."""

    def envelope(x):
        a = abs(x)
        phi = lambda z: z * np.arcsinh(z / beta) - np.hypot(z, beta)  # noqa: E731
        dphi = lambda z: np.arcsinh(z / beta)  # noqa: E731
        if side == "left":
            p = beta * np.sinh(max(np.arcsinh(a / beta) - smoothing, 0.0))
            return p + (phi(p) - phi(a) - dphi(a) * (p - a)) / smoothing
        t = smoothing
        p = max(0.0, (a - t * np.sqrt(a * a + (1 - t * t) * beta**2)) / (1 - t * t))
        return p + (phi(a) - phi(p) - dphi(p) * (a - p)) / smoothing

    def moment(k):
        return 2 * integrate.quad(lambda x: x**k * np.exp(-envelope(x)), 0, 60, limit=200, epsabs=1e-12)[0]

    z = moment(0)
    return moment(1) / z, moment(2) / z


@pytest.mark.parametrize(
    "side, adjusted, step_size, num_chains",
    [("left", False, 0.0025, 16000), ("right", False, 0.0025, 16000), ("left", True, 0.05, 4000)],
)
@pytest.mark.slow
def test_laplace_hyperbolic_entropy_reproduces_smoothed_moments(side, adjusted, step_size, num_chains):
    """f = 0, g = |x|, hyperbolic entropy beta = 1, lambda = 0.1. Exact smoothed moments by quadrature (they match
    methods/bplmc.md: E|x| = 1.041 / 1.040, E x^2 = 2.177 / 2.170 for left / right, against 1 / 2 unsmoothed).
    BMUMLA at gamma = 0.0025 reproduces them within 4.5 MCSE; the adjusted variant (at a 20x larger step) tests
    against the exact target, so it must reproduce the UNSMOOTHED Laplace moments 1 and 2 instead. 16000 chains (4000
    adjusted), 3000 steps (burn-in 500), starting from exact Laplace draws."""
    smoothed_abs, smoothed_sq = smoothed_laplace_moments(side)
    documented = {"left": (1.041, 2.177), "right": (1.040, 2.170)}[side]
    np.testing.assert_allclose((smoothed_abs, smoothed_sq), documented, atol=1.5e-3)
    e_abs, e_sq = (1.0, 2.0) if adjusted else (smoothed_abs, smoothed_sq)

    legendre = make_legendre("hyperbolic_entropy", beta=1.0)
    algorithm = bplmc.as_top_level_api(
        lambda x: jnp.zeros(()),
        legendre,
        step_size,
        smoothing=0.1,
        l1_weight=jnp.ones(1),
        side=side,
        adjusted=adjusted,
    )
    start = jax.random.laplace(jax.random.key(1), (num_chains, 1))
    out = run_chains(algorithm, legendre, start, num_steps=3000, burn_in=500)
    assert out["inside"].all() and out["stayed"].all()
    mcse_abs = check_mean(out["absolute"][:, 0], e_abs, "E|x|")
    check_mean(out["second"][:, 0], e_sq, "E x^2")
    # The test can tell the smoothed target from the exact Laplace (E|x| = 1).
    assert smoothed_abs - 1.0 > 2 * Z * mcse_abs
    if adjusted:
        assert 0.3 < out["acceptance"].mean() < 0.99


# -- Gamma(a, 1) targets ---------------------------------------------------------------------------------------------
SHAPES = np.array([0.5, 1.0, 2.0, 5.0])


@functools.cache
def gamma_runs(legendre_name, adjusted, step_size, num_steps, burn_in, num_chains):
    """Chains for Gamma(a, 1), a in SHAPES, potential f(x) = x - (a - 1) log x, all started at x = 1."""
    legendre = make_legendre(legendre_name)

    def algorithm(shape):
        return bplmc.as_top_level_api(
            lambda x: jnp.sum(x - (shape - 1.0) * jnp.log(x)), legendre, step_size, adjusted=adjusted
        )

    out = run_chains(
        algorithm,
        legendre,
        jnp.ones((num_chains, 1)),
        num_steps,
        burn_in,
        seed=11,
        params=jnp.asarray(SHAPES, jnp.float32),
    )
    return [{k: v[i] for k, v in out.items()} for i in range(len(SHAPES))]


def test_gamma_adjusted_recovers_exact_moments_with_log_barrier_map():
    """Gamma(a, 1), a in {0.5, 1, 2, 5}: the adjusted variant under the Burg (log-barrier) map, gamma = 0.1, recovers
    the exact mean a and variance a within 4.5 MCSE (1000 chains x 2000 steps from x = 1, burn-in 500). Burg steps are
    multiplicative near 0, so the chains reach the x^{a-1} pile-up at 0; proposals outside Burg's dual domain are
    counted as divergences and rejected."""
    for shape, out in zip(SHAPES, gamma_runs("burg", True, 0.1, 2000, 500, 1000)):
        assert out["inside"].all() and out["stayed"].all()
        check_mean(out["mean"][:, 0], shape, f"Gamma({shape}) mean")
        check_variance(out["mean"][:, 0], out["second"][:, 0], shape, f"Gamma({shape})")
        assert 0.5 < out["acceptance"].mean() < 0.95


def test_gamma_adjusted_entropic_map_is_safe_and_exact_away_from_the_boundary():
    """Boltzmann-Shannon map, adjusted, gamma = 0.01 (1000 chains x 2000 steps from x = 1): no NaN and never out of
    the domain for every a; exact mean and variance (4.5 MCSE) for a in {2, 5}. For a <= 1 the chain under-visits
    x << gamma (the dual drift grows like 1/x while the noise grows like 1/sqrt(x)): see docs/methods/bplmc.md."""
    for shape, out in zip(SHAPES, gamma_runs("boltzmann_shannon", True, 0.01, 2000, 500, 1000)):
        assert out["inside"].all() and out["stayed"].all()
        if shape >= 2:
            check_mean(out["mean"][:, 0], shape, f"Gamma({shape}) mean")
            check_variance(out["mean"][:, 0], out["second"][:, 0], shape, f"Gamma({shape})")


def test_gamma_unadjusted_divergences_are_counted_not_hidden():
    """Unadjusted BMUMLA with Boltzmann-Shannon, gamma = 0.01, 2000 steps (the setting of the measured instability
    in methods/bplmc.md): for a = 0.5 the Euler step produces non-finite or out-of-domain proposals; each is counted
    as a divergence, the chain stays in place, and no state is ever NaN or outside the domain. For a = 5 there are
    none."""
    runs = gamma_runs("boltzmann_shannon", False, 0.01, 2000, 500, 1000)
    for out in runs:
        assert out["inside"].all() and out["stayed"].all()
        np.testing.assert_allclose(out["acceptance"] * 2000, 2000 - out["divergences"], rtol=1e-5)
    assert (runs[0]["divergences"] > 0).mean() > 0.2
    assert runs[-1]["divergences"].sum() == 0


# -- Dirichlet targets with concentrations below 1 -------------------------------------------------------------------
ALPHA = np.array([0.4, 0.6, 0.8, 0.5])


def dirichlet_potential(x):
    full = jnp.concatenate([x, 1.0 - jnp.sum(x, keepdims=True)])
    return -jnp.sum((jnp.asarray(ALPHA, x.dtype) - 1.0) * jnp.log(full))


def test_dirichlet_adjusted_recovers_exact_moments_with_log_barrier_simplex_map():
    """Dirichlet(0.4, 0.6, 0.8, 0.5) on its first 3 coordinates: the adjusted variant under the log-barrier simplex
    map, gamma = 0.05, recovers the exact means alpha_i / alpha_0 and variances
    alpha_i (alpha_0 - alpha_i) / (alpha_0^2 (alpha_0 + 1)) within 4.5 MCSE (1000 chains x 3000 steps from the
    barycentre, burn-in 1000); no chain leaves the simplex."""
    legendre = make_legendre("burg_simplex")
    algorithm = bplmc.as_top_level_api(dirichlet_potential, legendre, 0.05, adjusted=True)
    out = run_chains(algorithm, legendre, jnp.full((1000, 3), 0.25), num_steps=3000, burn_in=1000, seed=5)
    assert out["inside"].all() and out["stayed"].all()
    a0 = ALPHA.sum()
    mean = ALPHA[:3] / a0
    check_mean(out["mean"], mean, "Dirichlet mean")
    check_variance(out["mean"], out["second"], mean * (1 - mean) / (a0 + 1), "Dirichlet")
    assert 0.4 < out["acceptance"].mean() < 0.95


@pytest.mark.parametrize("adjusted", [False, True])
def test_dirichlet_entropic_map_never_leaves_the_simplex(adjusted):
    """Entropic simplex map, gamma = 0.01, 1000 chains x 1000 steps: no NaN, no state outside the simplex, every
    divergence leaves the chain in place; the unadjusted Euler step does diverge here, and the count shows it."""
    legendre = make_legendre("entropic_simplex")
    algorithm = bplmc.as_top_level_api(dirichlet_potential, legendre, 0.01, adjusted=adjusted)
    out = run_chains(algorithm, legendre, jnp.full((1000, 3), 0.25), num_steps=1000, burn_in=500, seed=6)
    assert out["inside"].all() and out["stayed"].all()
    if not adjusted:
        assert out["divergences"].sum() > 0


# -- API errors ------------------------------------------------------------------------------------------------------
def test_errors_name_the_argument():
    bs = make_legendre("boltzmann_shannon")
    with pytest.raises(ValueError, match="outside the domain"):
        bplmc.as_top_level_api(lambda x: jnp.sum(x), bs, 0.1).init(jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="step_size"):
        bplmc.as_top_level_api(lambda x: jnp.sum(x), bs, 0.0)
    with pytest.raises(ValueError, match="smoothing"):
        bplmc.as_top_level_api(lambda x: jnp.sum(x), bs, 0.1, smoothing=-1.0)
    with pytest.raises(ValueError, match="side"):
        bplmc.as_top_level_api(lambda x: jnp.sum(x), bs, 0.1, side="both")
    with pytest.raises(ValueError, match="step_size"):
        myula.as_top_level_api(lambda x: jnp.sum(x), float("nan"))
    with pytest.raises(ValueError, match="l1_weight"):
        myula.as_top_level_api(lambda x: jnp.sum(x), 0.1, l1_weight=jnp.array([-1.0]))


@pytest.mark.parametrize("adjusted", [False, True])
def test_dense_myula_with_a_diagonal_factor_is_the_diagonal_kernel(adjusted):
    # M = L L^T with L = diag(sqrt(m)): the dense branch must take the diagonal branch's step exactly
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        m = jnp.asarray(rng.uniform(0.3, 3.0, 4))
        f = lambda x: 0.5 * jnp.sum((x - 1.0) ** 2 * jnp.arange(1.0, 5.0))  # noqa: E731
        kwargs = dict(smoothing=0.2, l1_weight=jnp.full(4, 1.5), adjusted=adjusted)
        diagonal = myula.as_top_level_api(f, 0.05, inverse_mass=m, **kwargs)
        dense = myula.as_top_level_api(f, 0.05, inverse_mass=jnp.diag(jnp.sqrt(m)), **kwargs)
        a = diagonal.init(jnp.asarray(rng.normal(size=4)))
        b = dense.init(a.position)
        for t in range(20):
            key = jax.random.key(t)
            a, info_a = diagonal.step(key, a)
            b, info_b = dense.step(key, b)
            np.testing.assert_allclose(b.position, a.position, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(info_b.acceptance_rate, info_a.acceptance_rate, rtol=1e-10, atol=1e-12)


def test_dense_adjusted_myula_keeps_a_correlated_gaussian_invariant():
    # exact draws in, 30 adjusted steps with a dense M far from the target's covariance: the mean and covariance stay
    # within 4 Monte Carlo standard errors (the draws stay independent across chains)
    covariance = np.array([[1.0, 0.9], [0.9, 1.0]])
    precision = jnp.asarray(np.linalg.inv(covariance))
    factor = jnp.asarray(np.linalg.cholesky(np.array([[2.0, -0.5], [-0.5, 0.5]])))
    algorithm = myula.as_top_level_api(lambda x: 0.5 * x @ precision @ x, 0.1, inverse_mass=factor, adjusted=True)
    count = 20000
    start = np.random.default_rng(4).multivariate_normal(np.zeros(2), covariance, size=count)

    def chain(key, x):
        state = algorithm.init(x)

        def body(state, t):
            state, info = algorithm.step(jax.random.fold_in(key, t), state)
            return state, info.acceptance_rate

        state, acceptance = jax.lax.scan(body, state, jnp.arange(30))
        return state.position, jnp.mean(acceptance)

    keys = jax.random.split(jax.random.key(5), count)
    end, acceptance = jax.jit(jax.vmap(chain))(keys, jnp.asarray(start))
    end = np.asarray(end)
    assert 0.2 < float(np.mean(acceptance)) < 0.95  # the test moves the draws
    assert np.all(np.abs(end.mean(0)) < 4 * np.sqrt(np.diag(covariance) / count))
    sample = np.cov(end.T)
    # var of a sample covariance entry: (S_ij^2 + S_ii S_jj) / n
    se = np.sqrt((covariance**2 + np.outer(np.diag(covariance), np.diag(covariance))) / count)
    assert np.all(np.abs(sample - covariance) < 4 * se)
