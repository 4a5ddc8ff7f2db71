"""bplmc and myula through `samplax.fit`: exact moments on zoo models, draws in support, step-size rules, errors.

Tolerances: means within 4.5 Monte Carlo standard errors (ArviZ's MCSE of the mean), sds within 4.5 MCSEs of the sd
(ArviZ's ``method="sd"``), a two-sided false-alarm rate of ~7e-6 per check with fixed seeds. The unadjusted chains
(sparse regression) sample the smoothed target pi^lambda only up to the Euler step's bias; there the exact answer is
pi^lambda's moments by quadrature and the tolerance adds the Gaussian bound on that bias (see
`test_sparse_regression_recovers_the_smoothed_posterior`).
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import samplax
from samplax.infer import method_bplmc
from samplax.infer.registry import get as get_method
from samplax.infer.options import parse_cli_option, validate
from samplax.models import zoo
from samplax.models.bridge import build_target

pytestmark = pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning")

Z = 4.5
SMOOTHING = 0.1
PRIOR_SCALE = 0.2          # Laplace scale: L1 weight 5, so the kink matters next to a likelihood precision of 100
NUM_OBSERVATIONS = 100
NOISE_SD = 1.0
TRUE_WEIGHTS = np.array([0.0, 0.0, 0.04, -0.15, 0.6, -1.5])


def orthogonal_lasso_data(seed=0):
    """sparse_regression data with X^T X = n I: the posterior factorises into 1-D posteriors
    pi(w_j) ∝ exp(-n (w_j - b_j)^2 / (2 sigma^2) - |w_j| / scale), b = X^T y / n, which quadrature gets exactly."""
    generator = np.random.default_rng(seed)
    q, _ = np.linalg.qr(generator.normal(size=(NUM_OBSERVATIONS, TRUE_WEIGHTS.size)))
    X = np.sqrt(NUM_OBSERVATIONS) * q
    y = X @ TRUE_WEIGHTS + NOISE_SD * generator.normal(size=NUM_OBSERVATIONS)
    return {"X": X, "y": y, "prior_scale": PRIOR_SCALE, "noise_sd": NOISE_SD}


def euclidean_envelope(w, weight, smoothing):
    """Moreau envelope of weight |w| (Huber): weight |p| + (w - p)^2 / (2 lambda), p the soft-threshold."""
    p = np.sign(w) * np.maximum(np.abs(w) - smoothing * weight, 0.0)
    return weight * np.abs(p) + (w - p) ** 2 / (2 * smoothing)


def hyperbolic_left_envelope(w, weight, smoothing, beta=1.0):
    """Left Bregman-Moreau envelope of weight |w| under phi(z) = z asinh(z/beta) - sqrt(z^2 + beta^2).

    The prox is a soft-threshold in the dual, p = beta sinh(max(asinh(|w|/beta) - lambda weight, 0)), and
    env = weight p + D(p, |w|) / lambda."""
    a = np.abs(w)
    phi = lambda z: z * np.arcsinh(z / beta) - np.hypot(z, beta)  # noqa: E731
    p = beta * np.sinh(np.maximum(np.arcsinh(a / beta) - smoothing * weight, 0.0))
    return weight * p + (phi(p) - phi(a) - np.arcsinh(a / beta) * (p - a)) / smoothing


def smoothed_moments(data, envelope):
    """Mean and sd of each w_j under pi^lambda(w_j) ∝ exp(-n (w_j - b_j)^2 / (2 sigma^2) - env(w_j)) by quadrature."""
    b = data["X"].T @ data["y"] / NUM_OBSERVATIONS
    precision = NUM_OBSERVATIONS / NOISE_SD**2
    means, sds = [], []
    for center in b:
        def density(w, center=center):
            return np.exp(-0.5 * precision * (w - center) ** 2 - envelope(w, 1 / PRIOR_SCALE, SMOOTHING))

        lo, hi = center - 1.5, center + 1.5
        moment = [integrate.quad(lambda w: w**k * density(w), lo, hi, points=[0.0] if lo < 0 < hi else None,
                                 limit=200, epsabs=1e-13)[0] for k in range(3)]
        mean = moment[1] / moment[0]
        means.append(mean)
        sds.append(np.sqrt(moment[2] / moment[0] - mean**2))
    return np.array(means), np.array(sds)


def run_fit(model, data, method, chains=8, warmup=1000, draws=4000, seed=0, **options):
    return samplax.fit(model, data, method=method, chains=chains, warmup=warmup, draws=draws, seed=seed,
                       progress=False, **options)


@pytest.fixture(scope="module")
def lasso():
    data = orthogonal_lasso_data()
    model = zoo.get("sparse_regression").model
    fits = {method: run_fit(model, data, method, smoothing=SMOOTHING) for method in ("bplmc", "myula")}
    return data, fits


@pytest.fixture(scope="module")
def constrained():
    """Adjusted bplmc (the default on constrained sites) on Gamma shape 0.5 and Dirichlet concentration 0.5."""
    out = {}
    for name, sizes in (("gamma_poisson", {"seed": 0, "shape": 0.5, "num_observations": 3, "true_rate": 0.3}),
                        ("dirichlet_multinomial", {"seed": 1, "categories": 4, "total_count": 6,
                                                   "concentration": 0.5})):
        entry = zoo.get(name)
        data = entry.make_data(**sizes)
        out[name] = (run_fit(entry.model, data, "bplmc", seed=1), entry.reference(data))
    return out


# -- exact moments -----------------------------------------------------------------------------------------------------
def check_moments(posterior, site, exact_mean, exact_sd, mean_slack=0.0, sd_slack=0.0):
    """|mean - exact| <= Z MCSE(mean) + mean_slack and |sd - exact| <= Z MCSE(sd) + sd_slack, per coordinate."""
    mean = posterior[site].mean(("chain", "draw")).values
    sd = posterior[site].std(("chain", "draw")).values
    mcse_mean = az.mcse(posterior[[site]], method="mean")[site].values
    mcse_sd = az.mcse(posterior[[site]], method="sd")[site].values
    assert np.all(np.abs(mean - exact_mean) <= Z * mcse_mean + mean_slack), (site, mean, exact_mean, mcse_mean)
    assert np.all(np.abs(sd - exact_sd) <= Z * mcse_sd + sd_slack), (site, sd, exact_sd, mcse_sd)


@pytest.mark.parametrize("method", ["bplmc", "myula"])
def test_sparse_regression_recovers_the_smoothed_posterior(lasso, method):
    """Unadjusted chains on the Bayesian LASSO (orthogonal design, so exact 1-D quadrature) match pi^lambda.

    Exact answer: mean and sd of pi^lambda under the method's envelope (Euclidean Moreau for myula, hyperbolic-entropy
    left envelope with beta = 1 for bplmc), independent NumPy formulas. Tolerance: 4.5 MCSE plus the Euler step's bias
    for a Gaussian with curvature K = n / sigma^2 + 1 / lambda, whose stationary sd is inflated by
    (1 - gamma K / 2)^(-1/2); that relative bias, at the largest chain's step size, is allowed on sds and (times the
    exact sd) on means. It is ~5 % for myula at its default step and less for bplmc.
    """
    data, fits = lasso
    fit = fits[method]
    envelope = hyperbolic_left_envelope if method == "bplmc" else euclidean_envelope
    mean, sd = smoothed_moments(data, envelope)
    curvature = NUM_OBSERVATIONS / NOISE_SD**2 + 1 / SMOOTHING
    gamma = float(fit.idata.sample_stats["step_size"].max())
    assert gamma * curvature < 1.0
    relative_bias = (1 - gamma * curvature / 2) ** -0.5 - 1
    check_moments(fit.idata.posterior, "weights", mean, sd, mean_slack=relative_bias * sd, sd_slack=relative_bias * sd)
    # The check can fail: the L1 term shrinks the large weights' means by ~weight / precision = 0.05, several
    # times the tolerance, so a fit that lost the L1 term (or put it on the wrong coordinates) would not pass.
    b = data["X"].T @ data["y"] / NUM_OBSERVATIONS
    mcse = az.mcse(fit.idata.posterior[["weights"]], method="mean")["weights"].values
    assert np.all(np.abs(b - mean)[-2:] > 2 * (Z * mcse + relative_bias * sd)[-2:])


def test_myula_auto_step_size_is_the_curvature_rule(lasso):
    """myula's smooth part is the Gaussian likelihood in z = w, whose curvature is exactly n / sigma^2 = 100
    everywhere, so every chain's step size is 0.2 / (100 + 1/lambda) (float32 power iteration: 1e-4 relative)."""
    _, fits = lasso
    steps = fits["myula"].idata.sample_stats["step_size"].values
    np.testing.assert_allclose(steps, 0.2 / (NUM_OBSERVATIONS / NOISE_SD**2 + 1 / SMOOTHING), rtol=1e-4)


@pytest.mark.parametrize("name", ["gamma_poisson", "dirichlet_multinomial"])
def test_adjusted_bplmc_recovers_exact_moments_with_mass_at_the_boundary(constrained, name):
    """Gamma shape 0.5 with three zero counts (posterior Gamma(0.5, 4): infinite density at 0, 7 % of the mass below
    0.001) and Dirichlet concentration 0.5 (4 categories, 6 counts): no L1 term, so the adjusted chain's target is
    the exact posterior; the zoo's conjugate reference gives the exact mean and sd. Tolerance 4.5 MCSE, nothing
    else."""
    if name == "gamma_poisson":
        assert float(np.sum(constrained[name][0].target.data["y"])) == 0  # the data pile the posterior at 0
    fit, reference = constrained[name]
    for site in reference.mean:
        check_moments(fit.idata.posterior, site, reference.mean[site], reference.sd[site])


def test_adjusted_bplmc_tunes_acceptance_and_records_its_statistics(constrained):
    """Dual averaging aims at target_accept = 0.574; after warm-up the mean acceptance per fit lies within 0.1 of it
    (dual averaging converges in expectation; 0.1 covers its averaged-step noise over 1000 warm-up steps). Adjusted
    chains report out-of-domain proposals as rejections, never as divergences."""
    for fit, _ in constrained.values():
        stats = fit.idata.sample_stats
        assert {"acceptance_rate", "diverging", "out_of_domain", "envelope_grad_norm", "step_size"} <= set(stats)
        assert abs(float(stats["acceptance_rate"].mean()) - 0.574) < 0.1
        assert not bool(stats["diverging"].any())
        assert np.all(stats["envelope_grad_norm"].values == 0)  # no L1 term
        assert np.all(np.isfinite(stats["step_size"].values)) and np.all(stats["step_size"].values > 0)
        options = fit.options
        assert options["adjusted"] is None and options["step_size"] is None


def test_draws_stay_in_support(constrained, lasso):
    lam = constrained["gamma_poisson"][0].idata.posterior["lam"].values
    assert np.all(np.isfinite(lam)) and np.all(lam > 0)
    probs = constrained["dirichlet_multinomial"][0].idata.posterior["probs"].values
    assert np.all(probs > 0) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    for fit in lasso[1].values():
        stats = fit.idata.sample_stats
        assert "acceptance_rate" not in stats  # unadjusted: nothing is accepted or rejected
        assert not bool(stats["diverging"].any())
        assert np.all(np.isfinite(fit.idata.posterior["weights"].values))
        assert float(stats["envelope_grad_norm"].mean()) > 0  # the L1 envelope is active


# -- pieces without a full fit ---------------------------------------------------------------------------------------
def test_unadjusted_default_uses_entropies_and_adjusted_uses_barriers():
    """adjusted=None resolves to True on a positive site (log-barrier map, whose relative curvature for a Gamma(a, b)
    posterior is exactly a - 1, by hess f = (a - 1)/x^2 and phi''^{-1} = x^2) and to False on real sites."""
    entry = zoo.get("gamma_poisson")
    data = entry.make_data(seed=1, shape=0.5, num_observations=3, true_rate=0.3)
    target = build_target(entry.model, data)
    a_post = 0.5 + float(np.sum(data["y"]))
    adjusted = method_bplmc.bplmc_setup(target, validate("bplmc", {}))
    assert adjusted.adjusted and adjusted.smoothing is None
    assert float(adjusted.curvature(jnp.array([0.7]))) == pytest.approx(abs(a_post - 1), rel=1e-4)
    unadjusted = method_bplmc.bplmc_setup(target, validate("bplmc", {"adjusted": False}))
    # Boltzmann-Shannon: phi''^{-1} = x, so the relative curvature is (a - 1) / x
    assert float(unadjusted.curvature(jnp.array([0.5]))) == pytest.approx(abs(a_post - 1) / 0.5, rel=1e-4)
    lasso_target = build_target(zoo.get("sparse_regression").model, orthogonal_lasso_data())
    assert not method_bplmc.resolve_adjusted(lasso_target, validate("bplmc", {}))
    weight, _ = method_bplmc.myula_l1_terms(lasso_target)
    np.testing.assert_allclose(np.asarray(weight), 1 / PRIOR_SCALE)


def test_myula_l1_terms_sit_on_the_real_sites_of_the_unconstrained_vector():
    """With sigma latent (positive, log-transformed) the flat vector is ordered by site name (sigma, weights): the L1
    weights must land on the weights' slice only."""
    data = zoo.get("sparse_regression").make_data(num_features=3, learn_noise=True, prior_scale=0.5)
    target = build_target(zoo.get("sparse_regression").model, data)
    weight, center = method_bplmc.myula_l1_terms(target)
    site = {s.name: s for s in target.sites}
    expected = np.zeros(target.dim)
    expected[site["weights"].start:site["weights"].stop] = 2.0
    np.testing.assert_allclose(np.asarray(weight), expected)
    np.testing.assert_allclose(np.asarray(center), 0.0)
    assert not np.any(np.asarray(method_bplmc.myula_l1_terms(target, {"weights": False})[0]))


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, options, message", [
    ("bplmc", {"side": "middle"}, "option 'side'='middle' is not one of"),
    ("bplmc", {"legendre": {"lam": "parabola"}}, "gives site 'lam' the value 'parabola'; expected one of"),
    ("bplmc", {"legendre": ["burg"]}, "option 'legendre' must be a dict"),
    ("bplmc", {"beta": -1.0}, "option 'beta' must be a number > 0"),
    ("bplmc", {"nonsmooth": {"w": "yes"}}, "expected True or False"),
    ("bplmc", {"step_size": 0.0}, "option 'step_size'=0.0 must be >="),
    ("bplmc", {"smoothing": "small"}, "option 'smoothing' must be float"),
    ("myula", {"adjusted": True}, "unknown option(s) ['adjusted'] for method 'myula'"),
    ("myula", {"legendre": {"lam": "burg"}}, "unknown option(s) ['legendre']"),
])
def test_option_errors_name_the_option(method, options, message):
    entry = zoo.get("gamma_poisson")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        samplax.fit(entry.model, entry.make_data(), method=method, chains=1, warmup=5, draws=5, progress=False,
                    **options)


def test_cli_parses_site_maps():
    assert parse_cli_option("bplmc", 'legendre={"lam": "burg"}') == ("legendre", {"lam": "burg"})
    assert parse_cli_option("bplmc", "beta=0.5") == ("beta", 0.5)
    assert parse_cli_option("bplmc", "adjusted=none") == ("adjusted", None)
    with pytest.raises(ValueError, match="expected one of"):
        parse_cli_option("bplmc", 'legendre={"lam": "nope"}')


def test_model_errors_name_the_site():
    """A site name the model does not have, and a Laplace prior whose scale is latent, are refused with the fix."""
    entry = zoo.get("gamma_poisson")
    with pytest.raises(ValueError, match="composite override names site 'rate'"):
        samplax.fit(entry.model, entry.make_data(), method="bplmc", chains=1, warmup=5, draws=5, progress=False,
                    legendre={"rate": "burg"})

    def latent_scale(y=None):
        import numpyro
        import numpyro.distributions as dist

        scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        w = numpyro.sample("w", dist.Laplace(0.0, scale))
        numpyro.sample("y", dist.Normal(w, 1.0), obs=y)

    with pytest.raises(ValueError, match="site 'w': its Laplace scale .* use method='nuts'"):
        samplax.fit(latent_scale, {"y": jnp.array(0.3)}, method="myula", chains=1, warmup=5, draws=5,
                    progress=False)


def test_fixed_step_size_is_kept_and_warmup_zero_starts_at_the_curvature_rule():
    """A fixed step_size is used as is (no adaptation); warmup=0 starts every chain at the curvature rule,
    0.2 / max(a - 1, 1) for the Burg map on a Gamma(a, b) posterior, a = 0.5 + sum(y)."""
    entry = zoo.get("gamma_poisson")
    data = entry.make_data(seed=1, shape=0.5, num_observations=3, true_rate=0.3)
    target = build_target(entry.model, data)
    options = validate("bplmc", {})
    z0 = jnp.array([-0.3])  # log lam
    setup = method_bplmc.bplmc_setup(target, options)
    warmup = jax.jit(method_bplmc.warmup_chain(setup, 10, step_size=0.05))
    _, gamma, _ = warmup(jax.random.key(1), setup.init(setup.to_kernel(z0)))
    assert float(gamma) == pytest.approx(0.05)
    state, params = jax.jit(get_method("bplmc").start(target, options))(z0)
    a_post = 0.5 + float(np.sum(data["y"]))
    assert float(params.step_size) == pytest.approx(0.2 / max(a_post - 1, 1.0), rel=1e-4)
    np.testing.assert_allclose(np.asarray(state.z), np.asarray(z0), rtol=1e-5, atol=1e-6)
