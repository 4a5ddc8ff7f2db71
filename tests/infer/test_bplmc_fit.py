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
from samplax.infer.options import parse_cli_option, validate
from samplax.infer.registry import get as get_method
from samplax.models import zoo
from samplax.models.bridge import build_target

pytestmark = pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning")

Z = 4.5
SMOOTHING = 0.1
PRIOR_SCALE = 0.2  # Laplace scale: L1 weight 5, so the kink matters next to a likelihood precision of 100
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
        moment = [
            integrate.quad(
                lambda w: w**k * density(w), lo, hi, points=[0.0] if lo < 0 < hi else None, limit=200, epsabs=1e-13
            )[0]
            for k in range(3)
        ]
        mean = moment[1] / moment[0]
        means.append(mean)
        sds.append(np.sqrt(moment[2] / moment[0] - mean**2))
    return np.array(means), np.array(sds)


def run_fit(model, data, method, chains=8, warmup=1000, draws=4000, seed=0, **options):
    return samplax.fit(
        model, data, method=method, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=False, **options
    )


@pytest.fixture(scope="module")
def lasso():
    data = orthogonal_lasso_data()
    model = zoo.get("sparse_regression").model
    fits = {method: run_fit(model, data, method, smoothing=SMOOTHING) for method in ("bplmc", "myula")}
    # adjusted myula (diagonal preconditioner on by default): fewer draws suffice, it mixes far better
    fits["myula adjusted"] = run_fit(
        model, data, "myula", chains=4, warmup=500, draws=2000, adjusted=True, smoothing=SMOOTHING
    )
    return data, fits


@pytest.fixture(scope="module")
def constrained():
    """Adjusted bplmc (the default on constrained sites) on Gamma shape 0.5 and Dirichlet concentration 0.5."""
    out = {}
    for name, sizes in (
        ("gamma_poisson", {"seed": 0, "shape": 0.5, "num_observations": 3, "true_rate": 0.3}),
        ("dirichlet_multinomial", {"seed": 1, "categories": 4, "total_count": 6, "concentration": 0.5}),
    ):
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
@pytest.mark.slow
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


@pytest.mark.slow
def test_adjusted_myula_recovers_the_exact_lasso_posterior(lasso):
    """Adjusted myula (Metropolis test on f + g, the envelope only in the proposal) samples the EXACT posterior
    pi(w_j) ∝ exp(-n (w_j - b_j)^2 / (2 sigma^2) - |w_j| / scale): quadrature with g itself as the "envelope".
    Tolerance 4.5 MCSE, nothing else. It can fail: the smoothed posterior's moments differ from the exact ones by more
    than the tolerance on some coordinate (checked), and the preconditioner must be the draws' variances."""
    data, fits = lasso
    fit = fits["myula adjusted"]
    mean, sd = smoothed_moments(data, lambda w, weight, smoothing: weight * np.abs(w))
    check_moments(fit.idata.posterior, "weights", mean, sd)
    smoothed_mean, smoothed_sd = smoothed_moments(data, euclidean_envelope)
    mcse = az.mcse(fit.idata.posterior[["weights"]], method="sd")["weights"].values
    assert np.any(np.abs(smoothed_sd - sd) > 2 * Z * mcse)
    stats = fit.idata.sample_stats
    assert abs(float(stats["acceptance_rate"].mean()) - 0.574) < 0.1
    assert not bool(stats["diverging"].any())


@pytest.mark.slow
def test_myula_auto_step_size_is_the_curvature_rule(lasso):
    """myula's smooth part is the Gaussian likelihood in z = w, whose curvature is exactly n / sigma^2 = 100
    everywhere, so every chain's step size is 0.2 / (100 + 1/lambda) (float32 power iteration: 1e-4 relative)."""
    _, fits = lasso
    steps = fits["myula"].idata.sample_stats["step_size"].values
    np.testing.assert_allclose(steps, 0.2 / (NUM_OBSERVATIONS / NOISE_SD**2 + 1 / SMOOTHING), rtol=1e-4)


@pytest.mark.parametrize("name", ["gamma_poisson", "dirichlet_multinomial"])
@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_draws_stay_in_support(constrained, lasso):
    lam = constrained["gamma_poisson"][0].idata.posterior["lam"].values
    assert np.all(np.isfinite(lam)) and np.all(lam > 0)
    probs = constrained["dirichlet_multinomial"][0].idata.posterior["probs"].values
    assert np.all(probs > 0) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    for label, fit in lasso[1].items():
        if label == "myula adjusted":
            continue
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
    expected[site["weights"].start : site["weights"].stop] = 2.0
    np.testing.assert_allclose(np.asarray(weight), expected)
    np.testing.assert_allclose(np.asarray(center), 0.0)
    assert not np.any(np.asarray(method_bplmc.myula_l1_terms(target, {"weights": False})[0]))


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, options, message",
    [
        ("bplmc", {"side": "middle"}, "option 'side'='middle' is not one of"),
        ("bplmc", {"legendre": {"lam": "parabola"}}, "gives site 'lam' the value 'parabola'; expected one of"),
        ("bplmc", {"legendre": ["burg"]}, "option 'legendre' must be a dict"),
        ("bplmc", {"beta": -1.0}, "option 'beta' must be a number > 0"),
        ("bplmc", {"nonsmooth": {"w": "yes"}}, "expected True or False"),
        ("bplmc", {"step_size": 0.0}, "option 'step_size'=0.0 must be >="),
        ("bplmc", {"smoothing": "small"}, "option 'smoothing' must be float"),
        ("myula", {"total_variation": {"site": "x"}}, "option 'total_variation' must be a dict"),
        ("bplmc", {"total_variation": {"site": "x", "weight": 1.0, "factor": "tv"}}, "unknown option(s)"),
        ("myula", {"legendre": {"lam": "burg"}}, "unknown option(s) ['legendre']"),
    ],
)
def test_option_errors_name_the_option(method, options, message):
    entry = zoo.get("gamma_poisson")
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        samplax.fit(
            entry.model, entry.make_data(), method=method, chains=1, warmup=5, draws=5, progress=False, **options
        )


def test_cli_parses_site_maps():
    assert parse_cli_option("bplmc", 'legendre={"lam": "burg"}') == ("legendre", {"lam": "burg"})
    assert parse_cli_option("bplmc", "beta=0.5") == ("beta", 0.5)
    assert parse_cli_option("bplmc", "adjusted=none") == ("adjusted", None)
    with pytest.raises(ValueError, match="expected one of"):
        parse_cli_option("bplmc", 'legendre={"lam": "nope"}')


def test_model_errors_name_the_site():
    """A site name the model does not have, and a Laplace prior whose scale is latent, are refused with the fix."""
    entry = zoo.get("gamma_poisson")
    with pytest.raises(ValueError, match="option 'legendre' names site 'rate'"):
        samplax.fit(
            entry.model,
            entry.make_data(),
            method="bplmc",
            chains=1,
            warmup=5,
            draws=5,
            progress=False,
            legendre={"rate": "burg"},
        )

    def latent_scale(y=None):
        import numpyro
        import numpyro.distributions as dist

        scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        w = numpyro.sample("w", dist.Laplace(0.0, scale))
        numpyro.sample("y", dist.Normal(w, 1.0), obs=y)

    with pytest.raises(ValueError, match="site 'w': its Laplace scale .* use method='nuts'"):
        samplax.fit(latent_scale, {"y": jnp.array(0.3)}, method="myula", chains=1, warmup=5, draws=5, progress=False)


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
    _, gamma, inverse_mass, _ = warmup(jax.random.key(1), setup.to_kernel(z0))
    np.testing.assert_array_equal(np.asarray(inverse_mass), 1.0)  # bplmc: phi's geometry, no preconditioner
    assert float(gamma) == pytest.approx(0.05)
    state, params = jax.jit(get_method("bplmc").start(target, options))(z0)
    a_post = 0.5 + float(np.sum(data["y"]))
    assert float(params.step_size) == pytest.approx(0.2 / max(a_post - 1, 1.0), rel=1e-4)
    np.testing.assert_allclose(np.asarray(state.z), np.asarray(z0), rtol=1e-5, atol=1e-6)


# -- the Legendre policy (bplmc's, not the bridge's) ------------------------------------------------------------------
def test_legendre_policy_follows_the_supports_and_the_overrides():
    """Real + L1 -> hyperbolic entropy centred at the L1 centre, positive -> Boltzmann-Shannon (Burg when adjusted),
    simplex -> entropic (Burg simplex when adjusted), interval -> Fermi-Dirac on its bounds; overrides win."""
    import numpyro
    import numpyro.distributions as dist

    def model(X, y=None):
        w = numpyro.sample("w", dist.Laplace(0.3, 0.5).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        p = numpyro.sample("p", dist.Dirichlet(jnp.ones(3)))
        r = numpyro.sample("r", dist.Uniform(-1.0, 2.0))
        numpyro.sample("y", dist.Normal(X @ w + p[0] + r, sigma), obs=y)

    rng = np.random.default_rng(0)
    target = build_target(model, {"X": rng.normal(size=(7, 2)), "y": rng.normal(size=7)})
    composite = target.composite()
    specs = method_bplmc.legendre_blocks(target, composite)
    assert [s.name for s in specs] == ["hyperbolic_entropy", "boltzmann_shannon", "entropic_simplex", "fermi_dirac"]
    np.testing.assert_allclose(specs[0].params["center"], 0.3)
    assert specs[3].params == {"lower": -1.0, "upper": 2.0}
    barrier = method_bplmc.legendre_blocks(target, composite, barrier=True)
    assert [s.name for s in barrier][1:3] == ["burg", "burg_simplex"]
    override = method_bplmc.legendre_blocks(target, composite, {"w": "euclidean"}, beta={"w": 2.0})
    assert override[0].name == "euclidean"
    assert method_bplmc.legendre_blocks(target, composite, beta={"w": 2.0})[0].params["beta"] == 2.0
    with pytest.raises(ValueError, match="not a continuous latent site"):
        method_bplmc.legendre_blocks(target, composite, {"nope": "euclidean"})


# -- total variation: a small deconvolution ---------------------------------------------------------------------------
TV_WEIGHT = 4.0


def tv_model(y=None):
    """A 3 x 3 image with a flat prior, a TV prior of weight 4 and noise sd 0.3: written as a NumPyro user would."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    from samplax.kernels.bregman.total_variation import total_variation

    x = numpyro.sample("x", dist.ImproperUniform(constraints.real, (), (3, 3)))
    numpyro.factor("tv", -TV_WEIGHT * total_variation(x))
    numpyro.sample("y", dist.Normal(x, 0.3).to_event(2), obs=y)


TV_DATA = {"y": np.array([[0.0, 0.1, 1.0], [0.2, 0.9, 1.1], [0.8, 1.0, 0.9]])}


@pytest.mark.slow
def test_adjusted_myula_with_a_declared_tv_prior_matches_nuts():
    """Adjusted myula with the TV term declared (prox in the proposal, exact target in the test) against nuts on the
    same 9-pixel posterior: every pixel's mean within 4.5 combined MCSE (sqrt(MCSE_a^2 + MCSE_b^2))."""
    declared = {"site": "x", "weight": TV_WEIGHT, "factor": "tv"}
    fit = run_fit(tv_model, TV_DATA, "myula", chains=4, warmup=500, draws=2000, adjusted=True, total_variation=declared)
    reference = run_fit(tv_model, TV_DATA, "nuts", chains=4, warmup=500, draws=1000, seed=1)
    means, mcses = [], []
    for f in (fit, reference):
        posterior = f.idata.posterior
        means.append(posterior["x"].mean(("chain", "draw")).values)
        mcses.append(az.mcse(posterior[["x"]], method="mean")["x"].values)
    assert np.all(np.abs(means[0] - means[1]) <= Z * np.hypot(*mcses)), (means, mcses)
    assert float(fit.idata.sample_stats["envelope_grad_norm"].mean()) > 0  # the TV envelope is active
    # the TV prior pulls the data towards piecewise-constant values: the means differ from y by more than noise
    assert np.max(np.abs(means[1] - TV_DATA["y"])) > 2 * Z * np.max(mcses[1])


def test_tv_declaration_is_checked_against_the_model():
    """A declared weight that is not the factor's, a factor or site the model lacks: clear errors, before sampling."""
    target = build_target(tv_model, TV_DATA)
    with pytest.raises(ValueError, match="factor 'tv' is .* where -2.0 \\* total_variation\\(x\\)"):
        method_bplmc.myula_tv_terms(target, {"site": "x", "weight": 2.0, "factor": "tv"})
    with pytest.raises(ValueError, match="the model has no site 'prior'"):
        method_bplmc.myula_tv_terms(target, {"site": "x", "weight": TV_WEIGHT, "factor": "prior"})
    with pytest.raises(ValueError, match="names site 'image'"):
        method_bplmc.myula_tv_terms(target, {"site": "image", "weight": TV_WEIGHT, "factor": "tv"})
    (term,) = method_bplmc.myula_tv_terms(target, {"site": "x", "weight": TV_WEIGHT, "factor": "tv"})
    assert (term.start, term.stop, term.shape, term.weight) == (0, 9, (3, 3), TV_WEIGHT)


def test_dense_preconditioned_myula_recovers_a_correlated_conjugate_posterior():
    """Bayesian linear regression with strongly correlated covariates, known noise: the posterior is Gaussian with
    covariance (X^T X + I)^-1 and mean that times X^T y. Adjusted myula with ``precondition="dense"`` adapts the draws'
    covariance; means within 4 MCSE, sds within 10 %."""
    import numpyro
    import numpyro.distributions as dist

    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 1))
    X = np.hstack([base + 0.1 * rng.normal(size=(60, 1)) for _ in range(3)])
    y = X @ np.array([1.0, -0.5, 0.2]) + rng.normal(size=60)

    def model(X, y=None):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([3]))
        numpyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y)

    covariance = np.linalg.inv(X.T @ X + np.eye(3))
    mean = covariance @ X.T @ y
    fit = samplax.fit(
        model,
        {"X": X, "y": y},
        method="myula",
        adjusted=True,
        precondition="dense",
        chains=4,
        warmup=1000,
        draws=2000,
        seed=0,
        progress=False,
    )
    beta = fit.idata.posterior["beta"]
    mcse = az.mcse(fit.idata, var_names=["beta"])["beta"].values
    assert np.all(np.abs(beta.mean(("chain", "draw")).values - mean) < 4 * mcse)
    np.testing.assert_allclose(beta.std(("chain", "draw")).values, np.sqrt(np.diag(covariance)), rtol=0.1)
    with pytest.raises(ValueError, match="'precondition' must be None, True, False, 'diagonal' or 'dense'"):
        samplax.fit(model, {"X": X, "y": y}, method="myula", precondition="full", progress=False)
