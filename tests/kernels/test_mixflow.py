"""MixFlows: exact one-step inversion, normalisation, sampler/density agreement, the cached-orbit ELBO against the
naive one and against quadrature, the authors' cross-target figures, and ``samplax.fit(method="mixflow")``.

Every statistical check compares with an exact answer (1, a quadrature, an exact posterior, a histogram of i.i.d.
draws) at a tolerance of about 4 Monte Carlo standard errors estimated from the same run; seeds are fixed.
Flows that several tests share are module-scoped fixtures (their compiled programs are reused).
"""

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import samplax
from samplax.infer import method_mixflow
from samplax.kernels import mixflow as mf
from samplax.models import zoo

pytestmark = pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning")


# ---------------------------------------------------------------------------------------------------------------------
# targets (normalised, so that ELBO <= 0)
def mixture_1d(x):
    """0.5 N(1, 0.5^2) + 0.5 N(-1, 0.7^2)."""
    return (
        jnp.logaddexp(-0.5 * ((x[0] - 1.0) / 0.5) ** 2 - jnp.log(0.5), -0.5 * ((x[0] + 1.0) / 0.7) ** 2 - jnp.log(0.7))
        - jnp.log(2.0)
        - 0.5 * jnp.log(2 * jnp.pi)
    )


CORRELATION = 0.6


def correlated_2d(x):
    """A standard bivariate normal with correlation 0.6."""
    quadratic = (x[0] ** 2 - 2 * CORRELATION * x[0] * x[1] + x[1] ** 2) / (1 - CORRELATION**2)
    return -0.5 * quadratic - jnp.log(2 * jnp.pi) - 0.5 * jnp.log(1 - CORRELATION**2)


def cross(x):
    """The authors' cross: 1/4 sum of N((0, +-2), diag(0.15^2, 1)) and N((+-2, 0), diag(1, 0.15^2))."""
    s = 0.15
    components = jnp.stack(
        [
            -0.5 * (x[0] / s) ** 2 - 0.5 * (x[1] - 2.0) ** 2,
            -0.5 * (x[0] + 2.0) ** 2 - 0.5 * (x[1] / s) ** 2,
            -0.5 * (x[1] / s) ** 2 - 0.5 * (x[0] - 2.0) ** 2,
            -0.5 * (x[1] + 2.0) ** 2 - 0.5 * (x[0] / s) ** 2,
        ]
    )
    return jax.nn.logsumexp(components) - jnp.log(2 * jnp.pi * s) - jnp.log(4.0)


@pytest.fixture(scope="module")
def flow_1d():
    """N = 4 terms on the 1-D mixture, whitened, Laplace momentum: small enough for quadrature over (x, rho, u)."""
    return mf.mixflow(
        mixture_1d, jnp.array([0.0]), jnp.array([1.1]), flow_length=4, step_size=0.15, num_steps=4, batch_size=1024
    )


@pytest.fixture(scope="module")
def flow_2d():
    """N = 6 terms on the correlated 2-D normal, reference deliberately off (mean-field, shifted)."""
    return mf.mixflow(
        correlated_2d,
        jnp.array([0.2, -0.1]),
        jnp.array([0.8, 0.9]),
        flow_length=6,
        step_size=0.12,
        num_steps=5,
        batch_size=1024,
    )


def _laplace_points(rng, count, dim, scale=1.0):
    return rng.laplace(0.0, scale, (count, dim))


# ---------------------------------------------------------------------------------------------------------------------
# the map
@pytest.mark.parametrize("momentum", ["laplace", "gaussian"])
def test_one_step_inversion_error_is_below_1e10_in_float64(momentum, flow_2d):
    """max |T^-1(T(s)) - s| <= 1e-10 at reference draws, at tail momenta (|rho| up to 6 for Laplace, 3 for
    Gaussian), at u next to 0 and 1 and (Laplace, whitened) at i.i.d. draws of the flow. Further out in rho the
    refreshment's own conditioning dominates: its derivative is m(rho) / m(rho'), so the error grows like
    1e-16 / m(rho) whatever the arithmetic; the last assertion shows that growth. The Gaussian flow runs unwhitened."""
    rng = np.random.default_rng(0)
    if momentum == "laplace":
        flow, tail = flow_2d, 6.0
        draws = flow.sample(jax.random.key(6), 20_000)  # the histogram test's program and draws
        extra = (draws.position[:100], draws.momentum[:100], draws.uniform[:100])
        rho = rng.laplace(size=(150, 2))
    else:
        flow, tail = (
            mf.mixflow(
                correlated_2d,
                np.array([0.2, -0.1]),
                np.array([0.8, 0.9]),
                flow_length=6,
                step_size=0.12,
                num_steps=5,
                momentum="gaussian",
                whiten=False,
            ),
            3.0,
        )
        extra = (rng.normal(size=(100, 2)), rng.normal(size=(100, 2)), rng.uniform(size=100))
        rho = rng.normal(size=(150, 2))
    rho[100:] = rng.uniform(-tail, tail, size=(50, 2))
    x = np.concatenate([rng.normal(size=(150, 2)), extra[0], np.zeros((1, 2))])
    rho = np.concatenate([rho, extra[1], np.full((1, 2), 3 * tail)])
    u = np.concatenate(
        [rng.uniform(size=140), np.array([0.0, 1e-17, 1 - 2**-53, 0.5 - 1e-17] * 2 + [0.3, 0.7]), extra[2], [0.25]]
    )
    errors = flow.inversion_error(x, rho, u)
    assert errors.shape == (251,)
    assert np.max(errors[:-1]) <= 1e-10, f"worst one-step inversion error {np.max(errors[:-1]):.3g}"
    assert 1e-13 < errors[-1] < 0.1  # rho = 3 x tail: conditioning, not arithmetic


def test_float32_inversion_error_is_far_larger():
    """The pure map follows its input dtype: in float32 the one-step error is ~1e-7 (why the flow runs in float64)."""
    flow = mf.mixflow(
        correlated_2d, np.zeros(2), np.ones(2), flow_length=2, step_size=0.1, num_steps=7, whiten=False
    ).flow  # whitening would close over float64 constants
    flow32 = flow._replace(
        reference=mf.Reference(jnp.zeros(2, jnp.float32), jnp.ones(2, jnp.float32)), step_size=jnp.float32(0.1)
    )
    rng = np.random.default_rng(1)
    x, rho = rng.normal(size=(64, 2)).astype(np.float32), rng.laplace(size=(64, 2)).astype(np.float32)
    u = rng.uniform(size=64).astype(np.float32)
    errors = jax.jit(jax.vmap(lambda x, r, u: mf.inversion_error(flow32, flow32.init(x, r, u))))(x, rho, u)
    assert errors.dtype == jnp.float32
    assert 1e-9 < float(jnp.max(errors)) < 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# the density
@pytest.mark.parametrize("which", ["1d", "2d"])
def test_density_is_normalised(which, flow_1d, flow_2d):
    """E_r[q_N(S) / r(S)] = 1 for S ~ r = N(0, (2.5)^2 I) x Laplace(0, 2)^d x Uniform(0, 1), r wider than q_N in
    every direction so the ratio has finite variance. Tolerance: 4 standard errors of the mean ratio (sample sd /
    sqrt(65536)), which must itself be below 0.03 for the check to have teeth. (65536 = the quadrature test's grid:
    the same compiled program.)"""
    flow, dim = (flow_1d, 1) if which == "1d" else (flow_2d, 2)
    rng = np.random.default_rng(2)
    count = 64 * 64 * 16
    x = rng.normal(0.0, 2.5, (count, dim))
    rho = _laplace_points(rng, count, dim, 2.0)
    u = rng.uniform(size=count)
    log_r = stats.norm.logpdf(x, 0, 2.5).sum(-1) + stats.laplace.logpdf(rho, 0, 2.0).sum(-1)
    ratio = np.exp(flow.log_density(x, rho, u) - log_r)
    mean, se = ratio.mean(), ratio.std(ddof=1) / math.sqrt(count)
    assert se < 0.03
    assert abs(mean - 1.0) < 4 * se, f"E_r[q_N / r] = {mean:.4f} +- {se:.4f}"


def _gauss_legendre_bins(edges, order):
    nodes, weights = np.polynomial.legendre.leggauss(order)
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    return centres[:, None] + half[:, None] * nodes, half[:, None] * weights  # (bins, order)


def _histogram_z_scores(counts, total, probability, probability_se):
    variance = probability * (1 - probability) / total + probability_se**2
    return (counts / total - probability) / np.sqrt(variance)


def test_marginal_estimate_matches_histogram_1d(flow_1d):
    """Bin probabilities of 20000 i.i.d. draws against the x-marginal estimate integrated over each bin (4-point
    Gauss-Legendre; quadrature error negligible at bin width 0.5). Tolerance: |z| < 4 per bin with the binomial
    variance plus the importance-sampling standard error of the integrated estimate (summed over nodes, which share
    their (rho, u) samples)."""
    draws = flow_1d.sample(jax.random.key(4), 20_000).position[:, 0]
    edges = np.linspace(-2.5, 2.5, 11)
    counts, _ = np.histogram(draws, edges)
    nodes, weights = _gauss_legendre_bins(edges, 4)
    estimate, se = flow_1d.marginal_log_density(jax.random.key(5), nodes.reshape(-1, 1), 2000)
    density = np.exp(estimate).reshape(nodes.shape)
    probability = np.sum(weights * density, axis=1)
    probability_se = np.sum(weights * density * se.reshape(nodes.shape), axis=1)
    assert np.all(probability_se < 0.05 * probability)
    z = _histogram_z_scores(counts, draws.size, probability, probability_se)
    assert np.max(np.abs(z)) < 4, f"z-scores {np.round(z, 2)}"


def test_marginal_estimate_matches_histogram_2d(flow_2d):
    """As the 1-D check, on a 4 x 4 grid of unit bins with 3 x 3 Gauss-Legendre nodes per bin."""
    draws = flow_2d.sample(jax.random.key(6), 20_000).position
    edges = np.linspace(-2.0, 2.0, 5)
    counts, _, _ = np.histogram2d(draws[:, 0], draws[:, 1], [edges, edges])
    nodes, weights = _gauss_legendre_bins(edges, 3)
    grid_x = nodes[:, None, :, None] + 0 * nodes[None, :, None, :]
    grid_y = nodes[None, :, None, :] + 0 * nodes[:, None, :, None]
    points = np.stack([grid_x, grid_y], -1).reshape(-1, 2)
    estimate, se = flow_2d.marginal_log_density(jax.random.key(7), points, 1000)
    weight = weights[:, None, :, None] * weights[None, :, None, :]
    density = np.exp(estimate).reshape(grid_x.shape)
    probability = np.sum(weight * density, axis=(2, 3))
    probability_se = np.sum(weight * density * se.reshape(grid_x.shape), axis=(2, 3))
    assert np.all(probability_se < 0.05 * probability)
    z = _histogram_z_scores(counts, draws.shape[0], probability, probability_se)
    assert np.max(np.abs(z)) < 4, f"z-scores {np.round(z, 2)}"


# ---------------------------------------------------------------------------------------------------------------------
# the ELBO
def test_draws_without_density_are_the_same_points_for_about_half_the_maps(flow_2d):
    """`sample_keys` (draws sorted by their number of maps K, each chunk of 1024 run to its largest K) gives, key for
    key, the point T^K S0 that `draw_keys` gives with its density (same S0, same K: exact to 1e-12), with the same
    log pibar and inversion error, and K is uniform on {0..N-1}: mean (N-1)/2 = 2.5 within 4 SE (SE = sqrt((N^2 -
    1)/12 / 1500)). `sample` is this path too: the histogram tests above check its draws against the density."""
    keys = jax.random.split(jax.random.key(21), 1500)  # two chunks
    exact, cheap = flow_2d.draw_keys(keys), flow_2d.sample_keys(keys)
    np.testing.assert_allclose(cheap.position, exact.position, atol=1e-12)
    np.testing.assert_allclose(cheap.momentum, exact.momentum, atol=1e-12)
    np.testing.assert_allclose(cheap.log_target, exact.log_target, atol=1e-10)
    np.testing.assert_allclose(cheap.inversion_error, exact.inversion_error, atol=1e-12)
    assert cheap.log_density is None and cheap.elbo is None
    indices = flow_2d.draw_indices(keys)
    assert indices.min() == 0 and indices.max() == 5
    assert abs(indices.mean() - 2.5) < 4 * math.sqrt((6**2 - 1) / 12 / 1500)


@pytest.mark.slow
def test_cached_orbit_elbo_equals_naive_elbo(flow_1d):
    """The O(N) cached-orbit estimate equals the O(N^2) one (a fresh backward pass at every orbit point) on the
    same 10000 reference draws, to 1e-9 (floating point only)."""
    cached = flow_1d.elbo(jax.random.key(10), 10_000)
    naive = flow_1d.naive_elbo(jax.random.key(10), 10_000)
    assert np.max(np.abs(cached - naive)) < 1e-9
    assert np.ptp(cached) > 0.1  # the orbits differ: the check compares many different orbits


def test_sliding_logsumexp_matches_brute_force():
    """The O(N) windowed logsumexp equals logsumexp over each window, including windows of -inf and huge spreads."""
    rng = np.random.default_rng(9)
    for width in (1, 2, 7, 50):
        values = rng.normal(0, 300, 2 * width - 1)
        values[rng.uniform(size=values.size) < 0.2] = -np.inf
        values[width - 1] = 0.0  # every window holds a finite value
        with jax.enable_x64(True):
            fast = np.asarray(mf._sliding_logsumexp(jnp.asarray(values), width))
        slow = np.array([np.logaddexp.reduce(values[n : n + width]) for n in range(width)])
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-9)


def test_elbo_is_unbiased_against_quadrature(flow_1d):
    """Mean of 10000 per-orbit ELBO estimates against the ELBO integral over (x, rho, u) of
    q_N (log pibar - log q_N), with q_N from the backward pass (not the estimator's cached orbits).

    The integral is a randomised lattice rule: rho = F^-1(v), x in [-6, 6] (q_N's mass outside is < 1e-6), a
    64 x 64 x 16 grid in (x, v, u) shifted by a uniform random offset, 8 independent shifts. Each shifted rule is
    unbiased, so their spread gives the quadrature's standard error even though q_N has jumps (the refreshment
    wraps around). Tolerance: 4 combined standard errors, which must be below 0.01."""
    estimates = flow_1d.elbo(jax.random.key(10), 10_000)
    mc_mean, mc_se = estimates.mean(), estimates.std(ddof=1) / math.sqrt(estimates.size)

    rng = np.random.default_rng(11)
    low, high, shape = -6.0, 6.0, (64, 64, 16)
    rules, masses = [], []
    for _ in range(8):
        offset = rng.uniform(size=3)
        x, v, u = [(np.arange(n) + o) / n for n, o in zip(shape, offset)]
        x = low + (high - low) * x
        grid_x, grid_v, grid_u = (a.reshape(-1) for a in np.meshgrid(x, v, u, indexing="ij"))
        rho = stats.laplace.ppf(grid_v)
        log_m = stats.laplace.logpdf(rho)
        log_q = flow_1d.log_density(grid_x[:, None], rho[:, None], grid_u)
        log_target = np.asarray(jax.vmap(mixture_1d)(grid_x[:, None])) + log_m
        weight = np.exp(log_q - log_m) * (high - low) / np.prod(shape)  # d rho = dv / m(rho)
        rules.append(np.sum(weight * (log_target - log_q)))
        masses.append(np.sum(weight))
    quad_mean, quad_se = np.mean(rules), np.std(rules, ddof=1) / math.sqrt(len(rules))
    assert abs(np.mean(masses) - 1.0) < 0.01  # the lattice integrates q_N itself to 1
    combined = math.hypot(mc_se, quad_se)
    assert combined < 0.01
    assert abs(mc_mean - quad_mean) < 4 * combined, (
        f"MC {mc_mean:.4f} +- {mc_se:.4f}, quadrature {quad_mean:.4f} +- {quad_se:.4f}"
    )
    assert quad_mean < 0.0  # a normalised target: ELBO = -KL(q_N || pi) on the augmented space


@pytest.mark.slow
def test_cross_target_elbo_rises_with_flow_length():
    """The authors' cross target, unwhitened as they ran it (Laplace momentum, L = 60, eps = 0.0035), from a
    mean-field Gaussian fitted by NumPyro SVI (published ELBO -0.850; here its own ELBO is checked to lie in
    [-0.95, -0.75]). Published MixFlow ELBOs: -0.414 at N = 200 and -0.194 at N = 1000.

    Checks, with 512 orbits at each N (independent; per-orbit sd is about 0.45): the ELBO at N = 200 beats the
    reference's by more than 4 SE; the ELBO at N = 1000 beats N = 200 by more than 4 SE of the difference; and it
    lies in [-0.26, -0.13] (its SE is about 0.02, so each end of the band is 3 SE from the published value).
    (N = 1000 rather than the published N = 2000: a third of the gradients, to pay for the fit-check tests.)"""
    reference = method_mixflow.fit_mean_field(cross, np.array([0.05, -0.03]), jax.random.key(12), num_steps=3000)
    assert np.allclose(np.sort(reference.scale), [0.158, 2.0], rtol=0.1)  # locks onto one arm of the cross
    reference_value, reference_se = method_mixflow.reference_elbo(
        cross, reference.mean, reference.scale, jax.random.key(13), 4000
    )
    assert -0.95 < reference_value < -0.75
    estimates = {}
    for flow_length, orbits in ((200, 512), (1000, 512)):
        flow = mf.mixflow(
            cross,
            reference.mean,
            reference.scale,
            flow_length=flow_length,
            step_size=0.0035,
            num_steps=60,
            whiten=False,
        )
        estimates[flow_length] = flow.elbo(jax.random.key(14), orbits)
    short, long = estimates[200], estimates[1000]
    se_short = short.std(ddof=1) / math.sqrt(short.size)
    se_long = long.std(ddof=1) / math.sqrt(long.size)
    assert short.mean() > reference_value + 4 * math.hypot(se_short, reference_se)
    assert long.mean() - short.mean() > 4 * math.hypot(se_short, se_long)
    assert se_long < 0.025
    assert -0.26 <= long.mean() <= -0.13, f"ELBO at N = 1000: {long.mean():.3f} +- {se_long:.3f}"


# ---------------------------------------------------------------------------------------------------------------------
# samplax.fit(method="mixflow")
@pytest.fixture(scope="module")
def gamma_poisson_fit():
    entry = zoo.get("gamma_poisson")
    data = entry.make_data(seed=0, shape=2.0)
    fit = samplax.fit(
        entry.model,
        data,
        method="mixflow",
        chains=4,
        warmup=500,
        draws=500,
        seed=0,
        progress=False,
        flow_length=20,
        leapfrog_steps=5,
        step_size_grid=5,
        tuning_orbits=16,
        health_checks=8,
    )
    return fit, entry.reference(data)


@pytest.mark.slow
def test_fit_recovers_exact_posterior(gamma_poisson_fit):
    """Gamma-Poisson (positive site, log transform): 2000 i.i.d. draws' mean within 4 SE (sd / sqrt(2000)) and sd
    within 10 % (relative MC error of an sd from 2000 i.i.d. draws: 1.6 %) of the exact Gamma posterior; the ELBO
    lies below log Z (within 4 SE) and within 0.1 of it."""
    fit, reference = gamma_poisson_fit
    lam = fit.idata.posterior["lam"].values
    assert lam.shape == (4, 500) and np.all(lam > 0)
    exact_mean, exact_sd = float(reference.mean["lam"]), float(reference.sd["lam"])
    assert abs(lam.mean() - exact_mean) < 4 * lam.std() / math.sqrt(lam.size)
    assert abs(lam.std() / exact_sd - 1) < 0.10
    assert fit.elbo.value < reference.log_z + 4 * fit.elbo.se
    assert fit.elbo.value > reference.log_z - 0.1
    assert fit.idata.attrs["draws_kind"] == "iid" and fit.precision == "float64"


@pytest.mark.slow
def test_fit_records_step_size_and_numerical_health(gamma_poisson_fit):
    """sample_stats carry log q_N, log pibar, the orbit ELBO and the one-step inversion error per draw; attrs carry
    the tuned step size (on the grid), the grid's ELBOs and the two-route log q_N agreement."""
    fit, _ = gamma_poisson_fit
    stats_ = fit.idata.sample_stats
    for name in ("log_q", "log_target", "orbit_elbo", "inversion_error", "diverging"):
        assert stats_[name].shape == (4, 500)
    assert float(stats_["inversion_error"].max()) <= 1e-10
    assert not bool(stats_["diverging"].any())
    np.testing.assert_allclose(stats_["orbit_elbo"].mean("draw").values.mean(), fit.elbo.value)
    attrs = fit.idata.attrs
    step_size = float(attrs["extra_step_size"])
    grid = np.asarray(json.loads(attrs["extra_step_size_grid"]))
    assert np.isclose(grid, step_size).any() and len(grid) == 5
    assert float(attrs["extra_log_q_two_route_max_abs_diff"]) < 1e-8
    assert float(attrs["extra_training_s"]) > 0


@pytest.mark.slow
def test_fit_log_density_exact_and_estimated(gamma_poisson_fit):
    """fit.log_density(z, rho, u) reproduces log q_N of the draws; in constrained space it subtracts
    log |d lam / dz| = z; for x alone it is a `LogDensityEstimate` with a standard error, and its exponential
    integrates to about 1 over lam (trapezoid on a grid; tolerance 0.05 from the IS standard errors and the grid)."""
    fit, _ = gamma_poisson_fit
    approximation = fit.approximation
    flow = approximation.flow
    draws = flow.draw(jax.random.key(15), 4 * 128)  # the fit's own compiled programs: its 4 x 128 density draws
    z, momentum, uniform = draws.position[:32], draws.momentum[:32], draws.uniform[:32]
    exact = fit.log_density(z, momentum, uniform)
    np.testing.assert_allclose(exact, draws.log_density[:32], atol=1e-8)
    constrained = fit.log_density({"lam": np.exp(z[:, 0])}, momentum, uniform, space="constrained")
    np.testing.assert_allclose(constrained, exact - z[:, 0], atol=1e-8)
    lam = np.linspace(0.05, 8.0, 200)
    estimate = fit.log_density({"lam": lam}, space="constrained", rng_key=jax.random.key(16), num_samples=500)
    assert isinstance(estimate, method_mixflow.LogDensityEstimate)
    assert estimate.estimate.shape == (200,) and np.all(estimate.standard_error > 0)
    assert abs(np.trapezoid(np.exp(estimate.estimate), lam) - 1.0) < 0.05


@pytest.mark.slow
def test_flow_draws_are_a_deterministic_function_of_the_key(gamma_poisson_fit):
    """The fit's flow gives the same draws for the same key and different draws for another (no hidden state)."""
    flow = gamma_poisson_fit[0].approximation.flow
    first, again = flow.draw(jax.random.key(17), 4 * 128), flow.draw(jax.random.key(17), 4 * 128)
    other = flow.draw(jax.random.key(18), 4 * 128)
    np.testing.assert_array_equal(first.position, again.position)
    assert not np.array_equal(first.position, other.position)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"step_size": "fast"}, "'step_size' must be 'auto' or a positive number"),
        ({"step_size": -0.1}, "'step_size' must be 'auto' or a positive number"),
        ({"momentum": "cauchy"}, "'momentum'='cauchy' is not one of"),
        ({"flow_length": 0}, "'flow_length'=0 must be >= 1"),
        ({"num_orbits": 3}, "unknown option(s) ['num_orbits']"),
    ],
)
def test_fit_rejects_bad_options(options, message):
    with pytest.raises(ValueError) as error:
        samplax.fit("normal_normal", method="mixflow", progress=False, **options)
    assert message in str(error.value)


@pytest.mark.slow
def test_fit_rejects_zero_warmup_and_bad_density_calls(gamma_poisson_fit):
    with pytest.raises(ValueError, match="warmup >= 1"):
        samplax.fit("normal_normal", method="mixflow", warmup=0, progress=False)
    fit, _ = gamma_poisson_fit
    with pytest.raises(ValueError, match="pass both momentum and uniform"):
        fit.log_density(np.zeros((2, 1)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="space="):
        fit.log_density(np.zeros((2, 1)), space="latent")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 1\)"):
        fit.log_density(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="uniform must lie in"):
        fit.log_density(np.zeros((2, 1)), np.zeros((2, 1)), np.array([0.5, 1.5]))


def test_kernel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="step_size must be a positive"):
        mf.mixflow(mixture_1d, [0.0], [1.0], flow_length=3, step_size=0.0, num_steps=2)
    with pytest.raises(ValueError, match="reference_scale must be positive"):
        mf.mixflow(mixture_1d, [0.0], [-1.0], flow_length=3, step_size=0.1, num_steps=2)
    with pytest.raises(ValueError, match="flow_length must be a positive integer"):
        mf.mixflow(mixture_1d, [0.0], [1.0], flow_length=0, step_size=0.1, num_steps=2)
    with pytest.raises(ValueError, match="momentum='cauchy' is not one of"):
        mf.mixflow(mixture_1d, [0.0], [1.0], flow_length=3, step_size=0.1, num_steps=2, momentum="cauchy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mf.mixflow(mixture_1d, [0.0], [1.0], flow_length=3, step_size=0.1, num_steps=2)  # no dtype warnings


# ---------------------------------------------------------------------------------------------------------------------
# targets that are zero in places, the fit's own check, and the float32-then-float64 dtype clash
def test_support_elbo_restricts_the_estimate_to_the_support():
    """All points inside: the plain mean of log pibar - log q_N. Some at -inf: the mean over the others plus log of
    their fraction (the ELBO of q_N conditioned on pi > 0). None inside: -inf."""
    log_q = jnp.array([-1.0, -2.0, -0.5, -1.5])
    inside = jnp.array([-1.2, -1.9, -0.7, -1.1])
    np.testing.assert_allclose(mf.support_elbo(inside, log_q), jnp.mean(inside - log_q))
    partly = inside.at[1].set(-jnp.inf).at[3].set(jnp.nan)
    expected = float(jnp.mean((inside - log_q)[jnp.array([0, 2])])) + math.log(0.5)
    np.testing.assert_allclose(mf.support_elbo(partly, log_q), expected)
    assert mf.support_elbo(jnp.full(4, -jnp.inf), log_q) == -jnp.inf


def half_normal_by_factor():
    """x ~ N(0, 1) truncated to x > 0 by a -inf factor, as a user writes it: the half-normal."""
    import numpyro
    import numpyro.distributions as dist

    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.factor("positive", jnp.where(x > 0, 0.0, -jnp.inf))


def test_fit_on_a_target_that_is_zero_in_places_draws_inside_its_support():
    """A factor of -inf (conformance: truncated_by_factor): every draw is inside the support (draws where log pi is
    -inf are redrawn and counted) and the 1000 draws' mean is within 4 SE of the half-normal's sqrt(2/pi), their sd
    within 10 % of sqrt(1 - 2/pi) (relative MC error of an sd from 1000 draws: about 2.5 %)."""
    fit = samplax.fit(
        half_normal_by_factor,
        method="mixflow",
        chains=2,
        warmup=300,
        draws=500,
        progress=False,
        flow_length=20,
        leapfrog_steps=5,
        step_size_grid=4,
        tuning_orbits=16,
        health_checks=0,
        check="importance",
    )
    x = fit.idata.posterior["x"].values
    assert np.all(x > 0) and np.all(np.isfinite(fit.idata.sample_stats["log_target"].values))
    assert int(fit.idata.attrs["extra_draws_rejected_outside_support"]) > 0
    assert abs(x.mean() - math.sqrt(2 / math.pi)) < 4 * x.std() / math.sqrt(x.size)
    assert abs(x.std() / math.sqrt(1 - 2 / math.pi) - 1) < 0.10
    assert np.isfinite(fit.elbo.value)


def banana(scale=3.0, curvature=0.1):
    """x1 ~ N(0, scale^2), x2 | x1 ~ N(curvature (x1^2 - scale^2), 1) (the benchmark uses scales 1 and 10)."""
    import numpyro
    import numpyro.distributions as dist

    x1 = numpyro.sample("x1", dist.Normal(0.0, scale))
    numpyro.sample("x2", dist.Normal(curvature * (x1**2 - scale**2), 1.0))


def test_fit_warns_when_a_short_flow_misses_a_curved_target():
    """A flow far too short for a banana (N = 10, L = 4): its draws' sd of x2 is far below the exact
    sqrt(1 + 2 * 0.1^2 * 3^4) = 1.63, and the fit's NUTS check says so in a ConvergenceWarning and in attrs."""
    with pytest.warns(samplax.ConvergenceWarning, match="disagree with a short NUTS run"):
        fit = samplax.fit(
            banana,
            method="mixflow",
            chains=2,
            warmup=200,
            draws=250,
            progress=False,
            flow_length=10,
            leapfrog_steps=4,
            step_size_grid=3,
            tuning_orbits=8,
            health_checks=0,
            travel=False,  # keep the maps this short
        )
    check = json.loads(fit.idata.attrs["extra_mixflow_check"])
    assert check["nuts_check_passed"] is False and check["nuts_coordinates_off"] >= 1
    assert any("NUTS" in message for message in json.loads(fit.idata.attrs["extra_method_warnings"]))
    assert fit.idata.posterior["x2"].values.std() < 0.9 * math.sqrt(1 + 2 * 0.1**2 * 3**4)
    cost = json.loads(fit.idata.attrs["extra_cost"])
    # 128 draws per repeat with their density (2N - 2 maps + 2), 122 without ((N - 1)/2 maps on average + 2)
    assert cost["sampling"] == 2 * 128 * (2 * 10 - 2 + 2) * 4 + 2 * 122 * (4.5 + 2) * 4
    assert cost["estimated_sampling_s"] > cost["estimated_compile_s"] >= 0


@pytest.mark.slow
def test_fit_check_passes_on_an_exact_posterior(gamma_poisson_fit):
    """The gamma-Poisson fit recovers its exact posterior (test above): its checks raise no warning."""
    fit, _ = gamma_poisson_fit
    check = json.loads(fit.idata.attrs["extra_mixflow_check"])
    assert check["nuts_check_passed"] is True and check["importance_pareto_k"] < 0.7
    assert json.loads(fit.idata.attrs["extra_method_warnings"]) == []
    curve = np.asarray(json.loads(fit.idata.attrs["extra_elbo_vs_flow_length"]))  # the report panel's ELBO curve
    assert curve.shape == (2, 3) and curve[:, 0].tolist() == [10, 20] and np.all(np.isfinite(curve))
    assert float(fit.idata.attrs["extra_nonfinite_fraction"]) == 0.0


def normal_sd3(x):
    return -0.5 * jnp.sum((x / 3.0) ** 2)


def test_travel_rule_lengthens_the_maps_to_the_width_the_flow_reaches():
    """N(0, 3^2) with a reference 6 times too narrow (sd 0.5), as a mean-field fit of a curved target can be, and a
    step of 0.5 reference sds, L = 3, N = 40: the rule's 256 pilot draws spread beyond 1.5 reference sds, so L becomes
    ceil(3 max s); the lengthened flow's 4000 i.i.d. draws have the exact mean 0 within 4 SE (3 / sqrt(4000)) and sd 3
    within 4 SE of an sd (relative 1 / sqrt(2 x 4000)). A spread up to 1.5 keeps L (the reference's own width)."""
    reference = method_mixflow.MeanField(np.array([0.0]), np.array([0.5]), np.zeros(1))
    options = dict(flow_length=40, leapfrog_steps=3, momentum="laplace", whiten=True, orbit_batch_size=1024)
    steps, spread = method_mixflow._travel_steps(normal_sd3, reference, 0.5, jax.random.key(0), options)
    assert spread[0] > method_mixflow.SPREAD_LIMIT and steps == math.ceil(3 * spread[0])
    flow = mf.mixflow(normal_sd3, [0.0], [0.5], flow_length=40, step_size=0.5, num_steps=steps, batch_size=1024)
    x = flow.sample(jax.random.key(1), 4000).position[:, 0]
    assert abs(x.mean()) < 4 * 3.0 / math.sqrt(4000)
    assert abs(x.std() / 3.0 - 1) < 4 / math.sqrt(8000)
    wide = method_mixflow.MeanField(np.array([0.0]), np.array([3.0]), np.zeros(1))  # the target's own width
    assert method_mixflow._travel_steps(normal_sd3, wide, 0.5, jax.random.key(0), options)[0] == 3


def grouped_intercepts(group, y=None):
    """Integer group codes index a latent vector, the number of groups read as a Python value."""
    import numpyro
    import numpyro.distributions as dist

    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0).expand([int(group.max()) + 1]).to_event(1))
    numpyro.sample("y", dist.Normal(alpha[group], 1.0), obs=y)


def test_float64_target_after_a_float32_one_of_the_same_int_data():
    """Conformance (hierarchical_logistic_regression x mixflow after float32 fits): JAX keeps a NumPy constant's
    device copy per object in the dtype of its first trace (int64 data -> int32 under float32), and samplax's cached
    batch log density was keyed without the dtype; a float64 target of the same data must still build and start."""
    from samplax.models.bridge import build_target

    data = {"group": np.repeat(np.arange(3), 4), "y": np.linspace(-1.0, 1.0, 12)}
    with jax.enable_x64(False):
        build_target(grouped_intercepts, data).init(jax.random.key(0), 1)
    with jax.enable_x64(True):
        start = build_target(grouped_intercepts, data).init(jax.random.key(0), 1)
    assert start.dtype == jnp.float64 and start.shape == (1, 3)


def test_an_elbo_fall_warns_unless_a_nuts_run_agreed_with_the_draws():
    from samplax.infer.mixflow_checks import check_warnings

    fell = dict(elbo_gain_over_half=-3.37, elbo_gain_over_half_se=0.36, elbo_half_flow_length=-2.55)
    fell.update(elbo_flow_length=-5.92, half_flow_length=100)
    assert ["ELBO falls" in m for m in check_warnings(fell)] == [True]  # no NUTS check (check="importance")
    assert ["ELBO falls" in m for m in check_warnings(dict(fell, nuts_check_passed=True))] == []
    nuts_off = dict(fell, nuts_check_passed=False, nuts_coordinates_off=1, nuts_mean_shift_max_sd=0.5)
    nuts_off.update(nuts_sd_ratio_min=0.7, nuts_sd_ratio_max=1.0)
    assert sorted("ELBO falls" in m for m in check_warnings(nuts_off)) == [False, True]
    assert check_warnings(dict(fell, elbo_gain_over_half=-0.5)) == []  # within 3 SE: noise
