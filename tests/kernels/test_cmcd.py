"""Controlled Monte Carlo Diffusions (samplax.kernels.cmcd) and its fit methods cmcd, ula, mcd, ais.

Sizes are small (d <= 2 in the kernel tests, K <= 8, a few hundred training iterations) so the module stays within
its CI budget; every statistical check states the exact answer and where its tolerance comes from.
"""

import contextlib
import io
import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import samplax
from samplax.infer.diagnostics import importance_diagnostics
from samplax.kernels import cmcd as kernel
from samplax.models import zoo

# A 2-D Gaussian with a known normalising constant: gamma(z) = Z N(z; mean, diag(sd^2)), log Z = 3. Narrower than
# q0 = N(0, I) in every direction, so the importance weights have light tails (Pareto k-hat well below 0.5) and
# standard errors over repeats are trustworthy; a target wider than q0 gives heavy-tailed weights instead.
GAUSS_MEAN = np.array([1.0, -1.0])
GAUSS_SD = np.array([0.5, 0.8])
GAUSS_LOG_Z = 3.0


def gaussian_logdensity(z):
    return (
        GAUSS_LOG_Z
        - 0.5 * jnp.sum(((z - GAUSS_MEAN) / GAUSS_SD) ** 2)
        - jnp.sum(jnp.log(GAUSS_SD))
        - jnp.log(2.0 * jnp.pi)
    )


def bimodal_logdensity(z):
    """1-D: 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2) (normalised, log Z = 0)."""
    x = z[0]
    component = lambda m: -0.5 * ((x - m) / 0.5) ** 2 - math.log(0.5 * math.sqrt(2.0 * math.pi))  # noqa: E731
    return jnp.logaddexp(component(-2.0), component(2.0)) + math.log(0.5)


def _softplus(x):
    return np.log1p(np.exp(x))


def _numpy_control(control, y, index):
    """The control network written out in numpy: [y, e_k] -> residual softplus blocks -> dense -> times scale."""
    h = np.concatenate([y, np.asarray(control["embedding"], np.float64)[index]])
    for weight, bias in zip(
        np.asarray(control["blocks"]["weight"], np.float64), np.asarray(control["blocks"]["bias"], np.float64)
    ):
        h = h + _softplus(h @ weight + bias)
    out = h @ np.asarray(control["output"]["weight"], np.float64) + np.asarray(control["output"]["bias"], np.float64)
    return float(control["scale"]) * out


def _numpy_trajectory(key, params, num_steps, dim, variant):
    """The update and weight of the module docstring, step by step in float64 numpy (same random numbers)."""
    noises = [
        np.asarray(jax.random.normal(jax.random.fold_in(key, k), (dim,)), np.float64) for k in range(num_steps + 1)
    ]
    mean = np.asarray(params["reference"]["mean"], np.float64)
    scale = np.exp(np.asarray(params["reference"]["log_scale"], np.float64))
    weights = _softplus(np.asarray(params["schedule"], np.float64))
    betas = (np.cumsum(weights) / weights.sum())[:-1]
    eps = float(np.clip(np.exp(float(params["log_step_size"])), 1e-7, 0.5))

    def log_gauss(x, m, var):
        var = np.broadcast_to(var, x.shape)
        return float(-0.5 * np.sum((x - m) ** 2 / var) - 0.5 * np.sum(np.log(2.0 * np.pi * var)))

    def grad_target(y):
        return (GAUSS_MEAN - y) / GAUSS_SD**2

    def score(y, beta):
        return beta * grad_target(y) + (1.0 - beta) * (mean - y) / scale**2

    def control(y, index):
        return _numpy_control(params["control"], y, index) if variant != "ula" else np.zeros(dim)

    y = mean + scale * noises[0]
    path = [y]
    log_w = -log_gauss(y, mean, scale**2)
    log_forward_sum = log_gauss(y, mean, scale**2)
    for k in range(1, num_steps + 1):
        beta = betas[k - 1]
        forward_u = control(y, k - 1) if variant == "cmcd" else np.zeros(dim)
        forward_mean = y + eps * score(y, beta) - eps * forward_u
        y_new = forward_mean + np.sqrt(2.0 * eps) * noises[k]
        backward_mean = y_new + eps * score(y_new, beta) + eps * control(y_new, k)
        log_f = log_gauss(y_new, forward_mean, 2.0 * eps)
        log_w += log_gauss(y, backward_mean, 2.0 * eps) - log_f
        log_forward_sum += log_f
        y = y_new
        path.append(y)
    log_w += float(gaussian_logdensity(jnp.asarray(y)))
    return np.stack(path), log_w, log_forward_sum


@pytest.fixture(scope="module")
def gaussian_setup():
    """cmcd on the 2-D Gaussian, K = 8, q0 = N(0, I) held fixed; params before and after 300 KL iterations."""
    algorithm = kernel.cmcd(gaussian_logdensity, 2, 8, initial_step_size=0.05)
    initial = algorithm.init_params(jax.random.key(0))
    trained, info = kernel.train(
        jax.random.key(1),
        algorithm,
        initial,
        num_iterations=300,
        batch_size=64,
        learning_rate=1e-2,
        trainable=("schedule", "log_step_size", "control"),
    )
    return algorithm, initial, trained, info


def test_zero_control_is_ula_step_for_step_and_matches_the_written_out_update():
    """With the output scale at its initial 0, cmcd's path and weight equal ULA's exactly (same random numbers), and
    both equal the update and weight of the module docstring written out in float64 numpy (float32 round-off
    tolerance). With a non-zero control the numpy reference still matches, and cmcd and ULA then differ."""
    num_steps, dim = 4, 2
    cmcd_alg = kernel.cmcd(gaussian_logdensity, dim, num_steps, initial_step_size=0.05, recompute_steps=False)
    ula_alg = kernel.cmcd(
        gaussian_logdensity, dim, num_steps, variant="ula", initial_step_size=0.05, recompute_steps=False
    )
    params = cmcd_alg.init_params(jax.random.key(3))
    params["schedule"] = jnp.array([0.3, -0.2, 0.5, 0.1, 0.0])
    params["reference"] = {"mean": jnp.array([0.2, -0.1]), "log_scale": jnp.array([0.1, -0.3])}
    ula_params = {name: value for name, value in params.items() if name != "control"}
    trajectory = jax.jit(cmcd_alg.trajectory)
    key = jax.random.key(11)
    path_c, log_w_c = trajectory(key, params)
    path_u, log_w_u = jax.jit(ula_alg.trajectory)(key, ula_params)
    np.testing.assert_array_equal(np.asarray(path_c), np.asarray(path_u))
    assert float(log_w_c) == float(log_w_u)
    ref_path, ref_log_w, ref_log_forward = _numpy_trajectory(key, ula_params, num_steps, dim, "ula")
    np.testing.assert_allclose(np.asarray(path_u), ref_path, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(log_w_u), ref_log_w, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        float(ula_alg.path_log_density(ula_params, path_u)), ref_log_forward, rtol=1e-5, atol=1e-4
    )

    params["control"] = dict(params["control"], scale=jnp.asarray(0.7))
    path_c, log_w_c = trajectory(key, params)
    ref_path, ref_log_w, ref_log_forward = _numpy_trajectory(key, params, num_steps, dim, "cmcd")
    np.testing.assert_allclose(np.asarray(path_c), ref_path, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(log_w_c), ref_log_w, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(float(cmcd_alg.path_log_density(params, path_c)), ref_log_forward, rtol=1e-5, atol=1e-4)
    assert not np.allclose(np.asarray(path_c), np.asarray(path_u))
    # mcd: the same network in the backward kernel only
    mcd_alg = kernel.cmcd(
        gaussian_logdensity, dim, num_steps, variant="mcd", initial_step_size=0.05, recompute_steps=False
    )
    path_m, log_w_m = jax.jit(mcd_alg.trajectory)(key, params)
    ref_path, ref_log_w, _ = _numpy_trajectory(key, params, num_steps, dim, "mcd")
    np.testing.assert_allclose(np.asarray(path_m), ref_path, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(log_w_m), ref_log_w, rtol=1e-5, atol=1e-4)


def test_schedules_at_initialisation():
    """beta_k = k / (K + 1) at initialisation and stays increasing for any weights; the cosine step sizes are
    eps cos^2(((k - 1)/K + s)/(1 + s) pi/2), all positive; the step embedding has K + 1 rows."""
    algorithm = kernel.cmcd(gaussian_logdensity, 2, 6, step_schedule="cosine", initial_step_size=0.2)
    params = algorithm.init_params(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(algorithm.betas(params)), np.arange(1, 7) / 7.0, rtol=1e-6)
    params["schedule"] = jax.random.normal(jax.random.key(1), (7,)) * 3.0
    assert np.all(np.diff(np.asarray(algorithm.betas(params))) > 0)
    expected = 0.2 * np.cos((np.arange(6) / 6 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(np.asarray(algorithm.step_sizes(params)), expected, rtol=1e-5)
    assert params["control"]["embedding"].shape == (7, 20)
    sinusoidal = kernel.cmcd(gaussian_logdensity, 2, 6, time_embedding="sinusoidal", embedding_dim=6)
    sin_params = sinusoidal.init_params(jax.random.key(0))
    assert "embedding" not in sin_params["control"]
    sin_params["control"]["scale"] = jnp.asarray(1.0)
    u0 = kernel.apply_control(sin_params["control"], jnp.zeros(2), 0, 6)
    u6 = kernel.apply_control(sin_params["control"], jnp.zeros(2), 6, 6)
    assert u0.shape == (2,) and not np.allclose(np.asarray(u0), np.asarray(u6))


@pytest.mark.slow
def test_gaussian_log_evidence_within_three_standard_errors_and_better_than_ula(gaussian_setup):
    """Exact answer: log Z = 3 for gamma = e^3 N([1, -1], diag(0.25, 0.64)). After training, log Z-hat (mean over
    8 repeats of 500 draws) is within 3 standard errors (spread of the repeats) of 3, plus 0.01 for the known
    downward bias of logmeanexp (about Var(log w) / 2n, under 0.001 here). Training must raise the ELBO above its
    value at initialisation (= ULA, control 0) by more than 3 combined standard errors, and the trained weights'
    variance must be smaller. The SE is trusted only with light-tailed weights: Pareto k-hat below 0.5 is checked."""
    algorithm, initial, trained, info = gaussian_setup
    sample = jax.jit(jax.vmap(algorithm.sample, in_axes=(0, None, None)), static_argnums=2)
    keys = jax.random.split(jax.random.key(5), 8)
    _, log_w_init = sample(keys, initial, 500)
    _, log_w = sample(keys, trained, 500)
    assert np.all(np.isfinite(np.asarray(log_w)))
    assert importance_diagnostics(np.asarray(log_w))["pareto_k_max"] < 0.5
    log_z = np.asarray(kernel.log_evidence(log_w))
    elbo_init, elbo_trained = np.asarray(kernel.elbo(log_w_init)), np.asarray(kernel.elbo(log_w))
    se = log_z.std(ddof=1) / np.sqrt(log_z.size)
    assert abs(log_z.mean() - GAUSS_LOG_Z) < 3.0 * se + 0.01, (log_z.mean(), se)
    se_diff = np.hypot(elbo_init.std(ddof=1), elbo_trained.std(ddof=1)) / np.sqrt(8)
    assert elbo_trained.mean() > elbo_init.mean() + 3.0 * se_diff, (elbo_init.mean(), elbo_trained.mean())
    assert np.var(np.asarray(log_w)) < 0.5 * np.var(np.asarray(log_w_init))
    assert elbo_trained.mean() <= GAUSS_LOG_Z + 3.0 * elbo_trained.std(ddof=1) / np.sqrt(8)  # a lower bound
    assert float(trained["control"]["scale"]) != 0.0  # the network was switched on by training
    assert info.loss.shape == (300,)


@pytest.mark.parametrize("objective, learning_rate", [("kl", 1e-2), ("logvar", 3e-3)])
@pytest.mark.slow
def test_losses_decrease_on_a_bimodal_target(objective, learning_rate):
    """1-D target 0.5 N(-2, 0.25) + 0.5 N(2, 0.25) from q0 = N(0, 1), K = 8. The mean loss of the last 30
    iterations must be below that of the first 30 by more than 3 standard errors of the difference (each iteration's
    loss is an independent batch estimate; the spread within each window, trend included, gives the SE). The
    log-variance loss gets the smaller learning rate: at 1e-2 its noisy batch variance makes Adam unstable."""
    algorithm = kernel.cmcd(bimodal_logdensity, 1, 8, initial_step_size=0.05)
    params = algorithm.init_params(jax.random.key(0))
    _, info = kernel.train(
        jax.random.key(1),
        algorithm,
        params,
        num_iterations=240,
        batch_size=64,
        learning_rate=learning_rate,
        objective=objective,
    )
    loss = np.asarray(info.loss)
    assert np.all(np.isfinite(loss))
    first, last = loss[:30], loss[-30:]
    se = np.hypot(first.std(ddof=1), last.std(ddof=1)) / np.sqrt(30)
    assert last.mean() < first.mean() - 3.0 * se, (objective, first.mean(), last.mean(), se)


def test_funnel_log_weights_finite_and_minus_inf_target_guarded():
    """Neal's funnel d = 10 (log Z = 0) from N(0, I) with ULA at K = 8: every log-weight is finite and the ELBO is
    below 0 (a lower bound; 2000 draws, SE about 0.02). A target that is -inf on a half-space gives weights of
    exactly 0 there (-inf log-weights) but no NaN, and the safe gradient keeps the other trajectories finite."""

    def funnel(z):
        return (
            -0.5 * z[0] ** 2 / 9.0
            - 0.5 * jnp.log(18.0 * jnp.pi)
            - 0.5 * jnp.sum(z[1:] ** 2) * jnp.exp(-z[0])
            - 4.5 * z[0]
            - 4.5 * jnp.log(2.0 * jnp.pi)
        )

    algorithm = kernel.cmcd(funnel, 10, 8, variant="ula", initial_step_size=0.05)
    _, log_w = jax.jit(algorithm.sample, static_argnums=2)(jax.random.key(0), algorithm.init_params(None), 2000)
    log_w = np.asarray(log_w)
    assert np.all(np.isfinite(log_w))
    assert log_w.mean() < 3.0 * log_w.std() / np.sqrt(log_w.size)

    def half_space(z):
        return jnp.where(z[0] > 0.0, -0.5 * jnp.sum(z**2), -jnp.inf)

    guarded = kernel.cmcd(half_space, 2, 4, variant="ula", initial_step_size=0.05)
    _, log_w = jax.jit(guarded.sample, static_argnums=2)(jax.random.key(1), guarded.init_params(None), 400)
    log_w = np.asarray(log_w)
    assert not np.any(np.isnan(log_w))
    assert np.any(np.isneginf(log_w)) and np.sum(np.isfinite(log_w)) > 100
    # log Z = log(pi) for half of a 2-D standard Gaussian kernel; logmeanexp ignores the zero weights correctly
    assert abs(float(kernel.log_evidence(log_w)) - math.log(math.pi)) < 0.5


def test_builder_and_training_errors():
    """Bad arguments name themselves and the fix."""
    with pytest.raises(ValueError, match="variant"):
        kernel.cmcd(gaussian_logdensity, 2, 4, variant="sde")
    with pytest.raises(ValueError, match="num_steps"):
        kernel.cmcd(gaussian_logdensity, 2, 0)
    with pytest.raises(ValueError, match="initial_step_size"):
        kernel.cmcd(gaussian_logdensity, 2, 4, initial_step_size=2.0)
    algorithm = kernel.cmcd(gaussian_logdensity, 2, 4)
    params = algorithm.init_params(jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        kernel.train(jax.random.key(0), algorithm, params, num_iterations=1, batch_size=1, objective="logvar")
    with pytest.raises(ValueError, match="objective"):
        kernel.train(jax.random.key(0), algorithm, params, num_iterations=1, batch_size=4, objective="tb")
    with pytest.raises(ValueError, match="trainable"):
        kernel.train(jax.random.key(0), algorithm, params, num_iterations=1, batch_size=4, trainable=("net",))
    with pytest.raises(ValueError, match="path must have shape"):
        algorithm.path_log_density(params, jnp.zeros((3, 2)))


# ------------------------------------------------------------------------------------------------------ fit
def test_fit_options_are_checked_before_running():
    """Unknown or ill-typed options, and logvar with batch_size 1, are refused with the valid choices."""
    with pytest.raises(ValueError, match="loss"):
        samplax.fit("normal_normal", method="cmcd", loss="tb", progress=False)
    with pytest.raises(ValueError, match="unknown option"):
        samplax.fit("normal_normal", method="ais", learning_rate=0.1, progress=False)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        samplax.fit("normal_normal", method="ula", loss="logvar", batch_size=1, warmup=1, progress=False)


@pytest.fixture(scope="module")
def gamma_poisson_fit():
    """The cmcd fit of gamma_poisson, with its progress display (stderr) captured."""
    entry = zoo.get("gamma_poisson")
    data = entry.make_data()
    shown = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(shown):
        warnings.simplefilter("ignore")
        fit = samplax.fit(
            "gamma_poisson",
            data,
            method="cmcd",
            chains=6,
            warmup=150,
            draws=400,
            seed=0,
            num_steps=6,
            batch_size=64,
            learning_rate=1e-2,
            reference_steps=200,
            progress=True,
        )
    fit.shown = shown.getvalue()
    return fit, entry.reference(data)


@pytest.mark.slow
def test_fit_cmcd_constrained_draws_and_evidence(gamma_poisson_fit):
    """gamma_poisson has an exact log Z and posterior (Gamma). fit.log_evidence is within 3 standard errors (over the
    6 repeats) of the exact log Z, plus 0.01 for logmeanexp's downward bias; the posterior draws (importance
    resampled, constrained: the rate is positive) have the exact posterior mean within 4 Monte Carlo standard
    errors (sd / sqrt(importance ESS)). Layout: log_weight, ess, pareto_k per (repeat, draw), the training curve."""
    fit, reference = gamma_poisson_fit
    site = next(iter(reference.mean))
    draws = fit.idata.posterior[site].values
    assert draws.shape[:2] == (6, 400)
    assert np.all(draws > 0)
    stats = fit.idata.sample_stats
    log_w = stats["log_weight"].values
    assert log_w.shape == (6, 400) and np.all(np.isfinite(log_w))
    assert stats["ess"].shape == (6, 400) and stats["pareto_k"].shape == (6, 400)
    estimate = fit.log_evidence
    assert abs(estimate.value - reference.log_z) < 3.0 * estimate.se + 0.01, (estimate, reference.log_z)
    assert fit.elbo.value <= reference.log_z + 3.0 * fit.elbo.se
    ess = float(stats["ess"].values[:, 0].sum())
    tolerance = 4.0 * float(reference.sd[site]) / np.sqrt(ess)
    assert abs(draws.mean() - float(reference.mean[site])) < tolerance
    attrs = fit.idata.attrs
    assert len(json.loads(attrs["extra_training_loss"])) == 150
    assert float(attrs["extra_training_s"]) > 0
    assert int(attrs["extra_gradient_evaluations_per_draw"]) == 7
    path, _ = jax.jit(fit.approximation.algorithm.trajectory)(jax.random.key(0), fit.approximation.params)
    assert np.isfinite(float(fit.log_density(path)))
    assert fit.log_density(jnp.stack([path, path])).shape == (2,)


@pytest.mark.slow
def test_fit_cmcd_progress_shows_each_loop_with_a_bar_and_a_summary(gamma_poisson_fit):
    """progress=True: stderr shows the reference fit's and the training's compiling clock, then each loop's bar
    advancing between compiled pieces (<= 20: 200 iterations in pieces of 10, 150 in pieces of 8), the step-size grid
    and the evaluation stages, and one summary line naming the loops with their counts."""
    import re

    fit, _ = gamma_poisson_fit
    shown = fit.shown
    for text in (
        "cmcd: reference fit: compiling",
        "cmcd: training: compiling",
        "cmcd: step-size grid",
        "cmcd: evaluating",
    ):
        assert text in shown, (text, shown[-2000:])
    assert {"10/200", "100/200", "200/200"} <= set(re.findall(r"(\d+/200) \[", shown)), shown[-2000:]
    assert {"8/150", "144/150", "150/150"} <= set(re.findall(r"(\d+/150) \[", shown)), shown[-2000:]
    summary = [line for line in shown.replace("\r", "\n").splitlines() if line.startswith("cmcd: done in")]
    assert len(summary) == 1 and "reference fit 200 steps" in summary[0] and "training 150 steps" in summary[0]


def test_scan_in_pieces_does_not_depend_on_the_cut():
    """`kernel.scan_in_pieces` (how train and fit_reference run under a progress bar) equals one lax.scan of the same
    iteration (float32 round-off), and a cut into 5 pieces gives bitwise the same carry and outputs; report sees 0 once
    compiled, then each piece's length."""
    key = jax.random.key(4)

    def iteration(carry, index):
        noise = jax.random.normal(jax.random.fold_in(key, index), (3,))
        carry = 0.9 * carry + jnp.sin(noise)
        return carry, (jnp.sum(carry), index)

    reference = jax.lax.scan(iteration, jnp.zeros(3), jnp.arange(23))
    runs = {}
    for length in (None, 5):
        reports = []
        runs[length] = kernel.scan_in_pieces(iteration, jnp.zeros(3), 23, length, reports.append)
        expected = [0] + ([5, 5, 5, 5, 3] if length == 5 else [23])
        assert reports == expected, (length, reports)
    for leaf, expected in zip(jax.tree.leaves(runs[None]), jax.tree.leaves(reference)):
        np.testing.assert_allclose(leaf, expected, rtol=1e-6)
    for length in (5,):
        for leaf, expected in zip(jax.tree.leaves(runs[length]), jax.tree.leaves(runs[None])):
            np.testing.assert_array_equal(leaf, expected)


@pytest.mark.slow
def test_fit_ais_baseline_gives_evidence_on_a_gaussian_model(capfd):
    """ais (no training, grid-tuned step size, q0 from a mean-field fit) on normal_normal: log Z within 3 standard
    errors over 4 repeats (plus 0.01 for logmeanexp's bias) of the exact value; draws finite."""
    entry = zoo.get("normal_normal")
    data = entry.make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = samplax.fit(
            "normal_normal",
            data,
            method="ais",
            chains=4,
            draws=300,
            num_steps=4,
            batch_size=32,
            reference_steps=200,
            progress=False,
        )
    assert capfd.readouterr().err == ""  # progress=False: no bar, no summary line
    log_z = entry.reference(data).log_z
    assert abs(fit.log_evidence.value - log_z) < 3.0 * fit.log_evidence.se + 0.01, (fit.log_evidence, log_z)
    assert np.all(np.isfinite(fit.idata.posterior["mu"].values))
    assert "training_loss" not in [name[len("extra_") :] for name in fit.idata.attrs]


def test_step_size_grid_goes_below_1e_4_when_every_default_step_diverges():
    # N(0, (1e-3)^2) from the reference N(0, 1e-6 I): a Langevin step above 2 sd^2 = 2e-6 blows up, so the whole
    # default grid (1e-4 .. 0.5) diverges and the extra grid (1e-7 .. 4e-5) must supply a stable step
    sd = 1e-3
    algorithm = kernel.cmcd(lambda y: -0.5 * jnp.sum((y / sd) ** 2), 1, 16, variant="ula", initial_step_size=1e-3)
    params = algorithm.init_params(jax.random.key(0))
    params["reference"] = {"mean": jnp.zeros(1), "log_scale": jnp.full(1, math.log(sd))}
    step = float(jnp.exp(kernel.tune_step_size(jax.random.key(1), algorithm, params, batch_size=32)))
    assert 1e-7 <= step < 2 * sd**2
    log_w = algorithm.sample(jax.random.key(2), {**params, "log_step_size": jnp.log(step)}, 64)[1]
    assert np.all(np.isfinite(np.asarray(log_w)))
