"""fit(): statistical recovery of analytic posteriors, InferenceData layout, determinism, checkpoints, errors."""

import json
import os
import shutil

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import samplax
from samplax.infer import arviz_compat
from samplax.models import zoo

# Short fits below warn about ESS on purpose; the warning itself is tested in test_convergence_warning_*.
pytestmark = pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning")

# (zoo name, make_data kwargs): conjugate models with exact posteriors, incl. shape / concentration below 1. The
# two gamma_poisson cases have data of the same shapes (3 observations), so each method compiles one program for both.
CONJUGATE_CASES = [
    ("normal_normal", {}),
    ("gamma_poisson", {"shape": 0.5, "num_observations": 3, "true_rate": 0.3}),
    ("gamma_poisson", {"shape": 2.0, "num_observations": 3}),
    ("dirichlet_multinomial", {"categories": 4, "total_count": 6, "concentration": 0.5}),
]
METHODS = ["nuts", "mala"]


@pytest.fixture(scope="session")
def conjugate_fits():
    """One fit per (method, case), shared by the statistical tests below."""
    fits = {}
    for method in METHODS:
        for index, (name, sizes) in enumerate(CONJUGATE_CASES):
            entry = zoo.get(name)
            data = entry.make_data(seed=index, **sizes)
            draws = 1000 if method == "nuts" else 2000
            result = samplax.fit(
                entry.model, data, method=method, chains=4, warmup=1000, draws=draws, seed=index, progress=False
            )
            fits[method, index] = (result, entry.reference(data), entry)
    return fits


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "case", range(len(CONJUGATE_CASES)), ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONJUGATE_CASES)]
)
@pytest.mark.slow
def test_recovers_analytic_posterior(conjugate_fits, method, case):
    """Posterior means within 4 MCSE (ArviZ's bulk MCSE) and sds within 10 % of the exact conjugate answer.

    4 MCSE: a two-sided z-test at about 6e-5 per coordinate. The sd tolerance is the issue's 10 %: with ESS > 400 the
    Monte Carlo relative error of an sd is about 1/sqrt(2 ESS) < 4 %, so 10 % is ~3 of those standard errors.
    """
    result, reference, _ = conjugate_fits[method, case]
    posterior = result.idata.posterior
    for site, exact_mean in reference.mean.items():
        draws = posterior[site]
        mcse = az.mcse(posterior[[site]], method="mean")[site].values
        estimate = draws.mean(("chain", "draw")).values
        z = np.abs(estimate - np.asarray(exact_mean)) / mcse
        assert np.all(z < 4), f"{method} {site}: standardised mean error {z} (estimate {estimate}, exact {exact_mean})"
        sd = draws.std(("chain", "draw")).values
        rel = np.abs(sd / np.asarray(reference.sd[site]) - 1)
        assert np.all(rel < 0.10), f"{method} {site}: sd {sd} vs exact {reference.sd[site]}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow
def test_constrained_draws_stay_in_support(conjugate_fits, method):
    """Every constrained draw lies in its site's support (positive rate, simplex probabilities)."""
    for case, (name, _) in enumerate(CONJUGATE_CASES):
        result, _, entry = conjugate_fits[method, case]
        posterior = result.idata.posterior
        if name == "gamma_poisson":
            assert float(posterior["lam"].min()) > 0
        if name == "dirichlet_multinomial":
            probs = posterior["probs"].values
            assert np.all(probs >= 0)
            np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
        assert not result.idata.sample_stats["diverging"].values.any()


@pytest.mark.slow
def test_smc_log_evidence_within_three_standard_errors():
    """SMC's log Z (mean over 8 independent repeats) is within 3 standard errors of the exact normal-normal log Z."""
    entry = zoo.get("normal_normal")
    data = entry.make_data(seed=3)
    result = samplax.fit(entry.model, data, method="smc", chains=8, draws=500, seed=1, progress=False)
    exact = entry.reference(data).log_z
    estimate = result.log_evidence
    assert np.isfinite(estimate.se) and estimate.se > 0
    assert abs(estimate.value - exact) < 3 * estimate.se + 1e-3, (estimate, exact)
    assert result.idata.attrs["draws_kind"] == "weighted"
    assert result.idata.sample_stats["log_weight"].shape == (8, 500)


@pytest.fixture(scope="module")
def small_fit():
    entry = zoo.get("eight_schools")
    return samplax.fit(
        entry.model, entry.make_data(), method="nuts", chains=2, warmup=200, draws=100, seed=7, progress=False
    )


@pytest.mark.arviz1
def test_inference_data_layout(small_fit):
    idata = small_fit.idata
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(arviz_compat.group_names(idata))
    posterior = idata.posterior
    assert {"mu", "tau", "theta_tilde", "theta"} <= set(posterior.data_vars)  # theta: deterministic site
    assert posterior["theta"].shape == (2, 100, 8)
    assert idata.log_likelihood["y"].shape == (2, 100, 8)
    for name in ("acceptance_rate", "diverging", "step_size", "energy", "lp", "tree_depth"):
        assert idata.sample_stats[name].shape == (2, 100), name
    attrs = idata.attrs
    assert attrs["method"] == "nuts" and attrs["seed"] == 7
    assert json.loads(attrs["options"])["target_accept"] == 0.8
    assert "jax" in json.loads(attrs["versions"])
    assert set(small_fit.timing) == TIMING_FIELDS
    parts = sum(small_fit.timing[k] for k in ("compile_s", "warmup_s", "sampling_s", "postprocess_s"))
    assert parts <= small_fit.timing["total_s"]  # the whole fit also traced the model and drew its starts
    table = small_fit.summary()
    assert "ess_bulk_per_s" in table.columns and "r_hat" in table.columns
    np.testing.assert_allclose(table["ess_bulk_per_s"], table["ess_bulk"] / small_fit.timing["total_s"])
    np.testing.assert_allclose(table["ess_bulk_per_sampling_s"], table["ess_bulk"] / small_fit.timing["sampling_s"])


TIMING_FIELDS = {"compile_s", "warmup_s", "sampling_s", "postprocess_s", "total_s", "programs_compiled"}


def test_smc_timing_has_every_field():
    """A method that runs in one compiled call reports the same timing fields (its compilation is not separated)."""
    entry = zoo.get("normal_normal")
    result = samplax.fit(entry.model, entry.make_data(seed=3), method="smc", chains=2, draws=50, seed=1, progress=False)
    assert set(result.timing) == TIMING_FIELDS and np.isnan(result.timing["compile_s"])
    assert result.timing["sampling_s"] + result.timing["postprocess_s"] <= result.timing["total_s"]
    assert json.loads(result.idata.attrs["timing"])["total_s"] == result.timing["total_s"]


@pytest.mark.arviz1
def test_loo_runs(small_fit):
    loo = az.loo(small_fit.idata)  # as a user calls it, on ArviZ 0.x or 1.x
    assert np.isfinite(arviz_compat.loo_values(loo)["elpd_loo"])


@pytest.mark.arviz1
def test_predict_adds_posterior_predictive(small_fit):
    idata = small_fit.predict(seed=1)
    assert idata.posterior_predictive["y"].shape == (2, 100, 8)
    assert np.isfinite(idata.posterior_predictive["y"].values).all()


@pytest.mark.arviz1
def test_save_and_load_roundtrip(small_fit, tmp_path):
    path = small_fit.save(tmp_path / "fit.nc")
    loaded = samplax.load(path)
    np.testing.assert_array_equal(loaded.idata.posterior["mu"].values, small_fit.idata.posterior["mu"].values)
    assert loaded.method == "nuts" and loaded.timing == small_fit.timing


def _tiny(method="mala", **kwargs):
    entry = zoo.get("gamma_poisson")
    settings = dict(method=method, chains=2, warmup=50, draws=40, seed=3, progress=False)
    settings.update(kwargs)
    return samplax.fit(entry.model, entry.make_data(), **settings)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_draws(method):
    first, second = _tiny(method), _tiny(method)
    np.testing.assert_array_equal(first.idata.posterior["lam"].values, second.idata.posterior["lam"].values)
    third = _tiny(method, seed=4)
    assert not np.array_equal(first.idata.posterior["lam"].values, third.idata.posterior["lam"].values)


def test_progress_bar_cuts_only_runs_long_enough_to_watch(monkeypatch):
    """A progress bar alone cuts sampling into chunks only when it should take >= PROGRESS_MIN_SECONDS; the cut
    never changes the draws."""
    from samplax.infer import run

    assert run.progress_chunk_size(1000, 1e-5) == 1000  # 10 ms of sampling: one chunk
    assert run.progress_chunk_size(1000, 0.01) == 50  # 10 s: 20 chunks
    assert run.progress_chunk_size(1000, None) == 50  # no warm-up to time: 20 chunks
    quiet = _tiny()
    monkeypatch.setattr(run, "PROGRESS_MIN_SECONDS", 0.0)  # force the bar's 20 chunks on this tiny fit
    calls, original = [], run.ChainRunner.run
    monkeypatch.setattr(run.ChainRunner, "run", lambda self, *args: calls.append(1) or original(self, *args))
    with_bar = _tiny(progress=True)
    assert len(calls) == 20
    np.testing.assert_array_equal(quiet.idata.posterior["lam"].values, with_bar.idata.posterior["lam"].values)


def test_chunking_does_not_change_draws(tmp_path, monkeypatch):
    """fold_in(chain_key, t) keys: 40 draws in one chunk equal checkpointed chunks of 15, 15 and 10.

    The shorter last chunk runs on the same executable (15 transitions, the first 10 kept): one chunk program.
    """
    from samplax.infer import run

    whole = _tiny()
    lengths, original = [], run.ChainRunner.run
    monkeypatch.setattr(
        run.ChainRunner, "run", lambda self, *args: lengths.append(self.chunk_size) or original(self, *args)
    )
    chunked = _tiny(checkpoint=str(tmp_path / "ck"), checkpoint_every=15)
    assert lengths == [15, 15, 15]
    np.testing.assert_array_equal(whole.idata.posterior["lam"].values, chunked.idata.posterior["lam"].values)
    np.testing.assert_array_equal(
        whole.idata.sample_stats["acceptance_rate"].values, chunked.idata.sample_stats["acceptance_rate"].values
    )


def test_resume_after_interruption_gives_identical_draws(tmp_path):
    """Simulate a run killed after two of four chunks: resume finishes it with the uninterrupted draws."""
    path = tmp_path / "ck"
    full = _tiny(checkpoint=str(path), checkpoint_every=10)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["completed_chunks"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    for index in (2, 3):
        os.remove(path / f"chunk_{index:05d}.npz")
    resumed = samplax.resume(str(path), progress=False)
    np.testing.assert_array_equal(full.idata.posterior["lam"].values, resumed.idata.posterior["lam"].values)
    np.testing.assert_array_equal(
        full.idata.sample_stats["acceptance_rate"].values, resumed.idata.sample_stats["acceptance_rate"].values
    )


def test_mismatched_resume_is_refused(tmp_path):
    path = tmp_path / "ck"
    _tiny(checkpoint=str(path), checkpoint_every=10)
    other = zoo.get("gamma_poisson").make_data(seed=11)
    with pytest.raises(ValueError, match="data_fingerprint"):
        samplax.resume(str(path), data=other, progress=False)
    with pytest.raises(ValueError, match="options"):
        _tiny(checkpoint=str(path), checkpoint_every=10, target_accept=0.7)
    copy = tmp_path / "ck2"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format version"):
        samplax.resume(str(copy), progress=False)


def test_nonfinite_logdensity_counts_as_divergence():
    """A density that is NaN on half the line: proposals into it are flagged in sample_stats.diverging."""

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        numpyro.factor("cliff", jax.numpy.where(x > 0.5, jax.numpy.nan, 0.0))

    result = samplax.fit(
        model, method="mala", chains=2, warmup=100, draws=200, seed=0, progress=False, init={"x": -1.0}
    )
    diverging = result.idata.sample_stats["diverging"].values
    assert diverging.sum() > 0
    assert np.isfinite(result.idata.posterior["x"].values).all()
    assert float(result.idata.posterior["x"].max()) <= 0.5


def test_convergence_warning_names_the_problem():
    """Too little warm-up on the centered eight schools: a ConvergenceWarning that names R-hat/ESS/divergences."""
    entry = zoo.get("eight_schools_centered")
    with pytest.warns(samplax.infer.fit.ConvergenceWarning):
        samplax.fit(
            entry.model, entry.make_data(), method="mala", chains=2, warmup=10, draws=50, seed=0, progress=False
        )


def test_thinning_keeps_every_kth_transition():
    """thin=3 keeps transitions 2, 5, 8, ... of the same chain: equal to every third draw of an unthinned run."""
    whole = _tiny(draws=60)
    thinned = _tiny(draws=20, thin=3)
    np.testing.assert_array_equal(whole.idata.posterior["lam"].values[:, 2::3], thinned.idata.posterior["lam"].values)
    with pytest.raises(ValueError, match="thin must be"):
        _tiny(thin=0)


def test_log_likelihood_can_be_skipped():
    result = _tiny(log_likelihood=False)
    assert "log_likelihood" not in result.idata.groups()
    np.testing.assert_array_equal(result.idata.posterior["lam"].values, _tiny().idata.posterior["lam"].values)


def test_progress_shows_stages_and_leaves_a_summary_line(capsys):
    """From the first second the bar names the stage (compiling, warm-up, sampling) with its clock; the running
    mean acceptance and divergence count follow the draws; one summary line stays on stderr when the bar closes.
    A fresh model so that nothing is in the process's compiled-program cache."""
    from samplax.infer import progress as progress_module

    seen = []
    original = progress_module.Progress._describe
    progress_module.Progress._describe = lambda self, text: seen.append(text) or original(self, text)

    def fresh(y=None):
        lam = numpyro.sample("lam", dist.Gamma(3.0, 1.0))
        with numpyro.plate("obs", 6):
            numpyro.sample("y", dist.Poisson(lam), obs=y)

    try:
        result = samplax.fit(
            fresh, {"y": np.arange(6)}, method="mala", chains=2, warmup=50, draws=40, seed=1, progress=True
        )
    finally:
        progress_module.Progress._describe = original
    stages = [text.split(" ")[0] for text in seen]
    assert stages.index("compiling") < stages.index("warm-up") < stages.index("sampling"), seen
    err = capsys.readouterr().err
    line = [text for text in err.splitlines() if text.startswith("mala: 2 chains x 40 draws in")]
    assert line and "compiling" in line[0] and "warm-up" in line[0] and "sampling" in line[0], err
    acceptance = float(result.idata.sample_stats["acceptance_rate"].mean())
    assert f"mean acceptance {acceptance:.2f}" in line[0] and "0 divergences" in line[0]
    # a new model compiles its warm-up and its sampling chunk; the same fit again compiles nothing
    assert result.timing["programs_compiled"] == 2
    again = samplax.fit(
        fresh, {"y": np.arange(6)}, method="mala", chains=2, warmup=50, draws=40, seed=1, progress=False
    )
    assert again.timing["programs_compiled"] == 0 and again.timing["compile_s"] == 0.0
