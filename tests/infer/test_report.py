"""The HTML diagnostics report: verdicts on good, bad and weighted fits, escaping, panels, thinning, a real browser.

The report is judged on what a reviewer reads: the verdict section's wording, which checks and table cells are marked,
which panels appear, and that nothing the model names reaches the page unescaped. Real fits are tiny NumPyro models
(compilation dominates their cost); everything else uses synthetic InferenceData with known defects.
"""

import html
import json
import re
import shutil
import subprocess
import warnings

import jax.numpy as jnp
import matplotlib.image
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import samplax
from samplax.infer import arviz_compat, diagnostics
from samplax.infer.fit import Fit
from samplax.infer.report import render_report, write_report

# also run by make test-py313 (Python 3.13, the newest ArviZ): synthetic fits are built through arviz_compat
pytestmark = pytest.mark.arviz1


def section(page: str, anchor: str) -> str:
    """The HTML of one section of the report ('' when the section is absent)."""
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, flags=re.S)
    return match.group(1) if match else ""


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samplax.fit(*args, progress=False, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# real fits
Y = np.array([0.3, -0.4, 1.1, 0.8, 0.2, -0.1])
Z = np.array([1.5, 2.5, 1.9, 2.2])


def html_named_model(y, z):
    """Two independent conjugate normal sites whose names contain HTML: '<b>x' and 'a&b' (no '/': an ArviZ 1.x
    DataTree cannot hold it)."""
    x = numpyro.sample("<b>x", dist.Normal(0.0, 1.0))
    ab = numpyro.sample("a&b", dist.Normal(1.0, 2.0))
    with numpyro.plate("y_plate", y.shape[0]):
        numpyro.sample("y", dist.Normal(x, 1.0), obs=y)
    with numpyro.plate("z_plate", z.shape[0]):
        numpyro.sample("z", dist.Normal(ab, 1.0), obs=z)


def funnel(n=5):
    """Neal's funnel: centred, so NUTS with a 5-step warm-up diverges in the neck."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    with numpyro.plate("i", n):
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)))


@pytest.fixture(scope="module")
def good_fit():
    return quiet_fit(html_named_model, {"y": Y, "z": Z}, chains=2, warmup=200, draws=600, seed=1)


@pytest.fixture(scope="module")
def good_page(good_fit):
    return render_report(good_fit)


@pytest.fixture(scope="module")
def bad_fit():
    return quiet_fit(funnel, chains=2, warmup=5, draws=100, seed=3)


def test_good_fit_verdict_is_trustworthy(good_fit, good_page):
    """A well-mixed fit of two independent Gaussian sites passes every check and the verdict says so.

    Sanity of the set-up: diagnostics.convergence_warnings must be empty (R-hat <= 1.01, bulk/tail ESS >= 400 from
    1200 NUTS draws of near-independent Gaussians, no divergences, E-BFMI >= 0.3).
    """
    assert diagnostics.convergence_warnings(good_fit.idata) == []
    verdict = section(good_page, "verdict")
    assert 'class="verdict good"' in verdict
    assert "Trustworthy" in verdict and "Not trustworthy" not in verdict
    assert "none of the 1200 transitions diverged" in verdict
    checks = section(good_page, "checks")
    assert "FAIL" not in checks and "Largest R-hat" in checks and "Smallest E-BFMI" in checks
    for anchor in ("summary", "trace", "rank", "pair", "energy", "sampler", "run"):
        assert section(good_page, anchor), anchor
    assert "could not be drawn" not in good_page
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', good_page)) == 4  # trace rank pair energy


def test_summary_table_matches_diagnostics_summary(good_fit, good_page):
    """The table shows diagnostics.summary's numbers: the R-hat cell of 'a&b' equals its unrounded R-hat to 3 d.p.,
    and the mean cell agrees with the table's mean to the 4 significant digits printed."""
    table = diagnostics.summary(good_fit.idata, sampling_seconds=good_fit.timing["sampling_s"])
    rhat = float(arviz_compat.rhat(arviz_compat.group(good_fit.idata, "posterior"))["a&b"])
    row = re.search(r"<tr><th>a&amp;b</th>(.*?)</tr>", section(good_page, "summary")).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    headers = re.findall(r"<th>([^<]*)</th>", section(good_page, "summary").split("</thead>")[0])[1:]
    values = dict(zip(headers, cells))
    assert values["R-hat"] == f"{rhat:.3f}"
    assert float(values["mean"]) == pytest.approx(table.loc["a&b", "mean"], rel=1e-3, abs=1e-3)
    assert set(headers) >= {
        "mean",
        "sd",
        "MCSE mean",
        "ESS bulk",
        "ESS tail",
        "R-hat",
        "ESS bulk / s (whole fit)",
        "ESS bulk / s (sampling)",
    }


def test_site_names_with_html_are_escaped(good_page):
    """NumPyro allows any site name: '<b>x' and 'a&b' must reach the page only escaped."""
    assert "<b>x" not in good_page and "<b>" not in good_page
    assert "a&b" not in good_page
    assert html.escape("<b>x") in section(good_page, "summary")
    assert "a&amp;b" in section(good_page, "summary")


def test_bad_fit_verdict_says_why(bad_fit):
    """A centred funnel with 5 warm-up steps diverges; the verdict says not to trust it and names divergences, and
    the failing cells and checks are marked."""
    divergences = int(bad_fit.idata.sample_stats["diverging"].sum())
    assert divergences > 0  # the set-up produces the defect the report must catch
    page = render_report(bad_fit)
    verdict = section(page, "verdict")
    assert 'class="verdict bad"' in verdict and "Not trustworthy" in verdict
    assert f"{divergences} of 200 transitions after warm-up were divergent" in verdict
    checks = section(page, "checks")
    assert re.search(r"Divergent transitions after warm-up</td><td>\d+ of 200.*?FAIL", checks, flags=re.S)
    assert 'class="bad"' in section(page, "summary")
    assert "red points are divergent transitions" in section(page, "pair")
    assert "could not be drawn" not in page


@pytest.fixture(scope="module")
def smc_fit():
    return quiet_fit(html_named_model, {"y": Y, "z": Z}, method="smc", chains=2, warmup=0, draws=200, seed=0)


def test_weighted_fit_uses_weights_not_rhat(smc_fit):
    """SMC draws are independent repeats: the page shows the importance weights' ESS and Pareto k-hat (per repeat,
    equal to diagnostics.importance_diagnostics) and the log-evidence, and never judges or tabulates R-hat."""
    page = render_report(smc_fit)
    weights = diagnostics.importance_diagnostics(smc_fit.idata.sample_stats["log_weight"].values)
    checks = section(page, "checks")
    assert f"{weights['ess']:.0f} of 400 draws" in checks and "Pareto k-hat" in checks
    assert "Largest R-hat" not in checks
    verdict = section(page, "verdict")
    assert "R-hat is above" not in verdict and "weighted draws" in verdict
    assert "R-hat" not in section(page, "summary").split("</thead>")[0]
    assert not section(page, "rank")
    evidence = section(page, "evidence")
    assert "log-evidence" in evidence and "Pareto k-hat" in evidence and "tempering steps" in evidence
    assert f"{weights['ess_per_repeat'][0]:.0f} of 200" in evidence
    assert "could not be drawn" not in page


# ---------------------------------------------------------------------------------------------------------------------
# synthetic fits: panels, escaping of everything else, thinning, loading, errors
def synthetic(posterior, sample_stats=None, attrs=None, **kwargs):
    base = {
        "method": "nuts",
        "options": json.dumps({"target_accept": 0.8, "max_tree_depth": 10}),
        "draws_kind": "mcmc",
        "timing": json.dumps({"compile_s": 1.0, "warmup_s": 1.0, "sampling_s": 2.0}),
    }
    base.update(attrs or {})
    groups = {"posterior": posterior, "sample_stats": sample_stats or {}}
    return Fit(arviz_compat.from_dict(groups, attrs=base, **kwargs))  # InferenceData or DataTree (ArviZ 1.x)


def test_method_panels_appear_with_their_records():
    """Each method panel appears exactly when its records exist, and unknown records land in 'Other records'."""
    rng = np.random.default_rng(0)
    chains, draws = 2, 300
    stats = {
        "diverging": np.zeros((chains, draws), bool),
        "consensus_residual": np.exp(-np.arange(draws))[None, :, None] * rng.uniform(1, 2, (chains, 1, 3)),
        "envelope_grad_norm": rng.gamma(2.0, size=(chains, draws)),
        "block_acceptance": rng.uniform(size=(chains, draws, 2)) * np.array([0.9, 0.01]),
        "mystery_stat": rng.normal(size=(chains, draws)),
    }
    attrs = {
        "method": "bplmc",
        "options": json.dumps({"smoothing": 0.1, "step_size": 0.01}),
        "extra_elbo_vs_flow_length": json.dumps([[100, -0.5, 0.02], [200, -0.41, 0.02], [500, -0.28, 0.03]]),
        "extra_inversion_error": json.dumps([1e-14, 3e-14]),
        "extra_mystery": json.dumps([1, 2, 3]),
        "extra_rho": json.dumps(1.25),
        "extra_max_prox_residual": json.dumps(4e-7),
        "extra_variance_ratio_min": json.dumps(0.81),
        "extra_variance_ratio_max": json.dumps(0.92),
        "extra_mixflow_check": json.dumps({"importance_pareto_k": 0.31, "nuts_check_passed": False}),
        "extra_method_warnings": json.dumps(["mixflow: the draws disagree with a short NUTS run"]),
        "extra_cost": json.dumps({"sampling": 4991040}),
        "extra_leapfrog_steps": json.dumps(268),
        "extra_spread_over_reference": json.dumps([8.9, 7.26]),
    }
    fit = synthetic(
        {"theta": rng.normal(size=(chains, draws, 2))},
        stats,
        attrs,
        coords={"agent": ["north", "south", "east"], "block": ["b0", "<i>b1</i>"]},
        dims={"consensus_residual": ["agent"], "block_acceptance": ["block"]},
    )
    page = render_report(fit)
    assert "could not be drawn" not in page
    assert "Last value per agent" in section(page, "admm")
    assert "penalty rho" in section(page, "admm") and "0.81&ndash;0.92 times the posterior" in section(page, "admm")
    assert "0.1" in section(page, "proximal") and "envelope" in section(page, "proximal")
    assert "Blocks accepting under 5% of proposals: &lt;i&gt;b1&lt;/i&gt;" in section(page, "blocks")
    assert "<i>" not in page
    assert "ELBO against flow length" in section(page, "mixflow") and "inversion error" in section(page, "mixflow")
    other = section(page, "other")
    assert "sample_stats.mystery_stat" in other and "attrs.extra_mystery" in other
    assert "consensus_residual" not in other and "extra_inversion_error" not in other
    assert "1 check(s) failed: mixflow: the draws disagree" in section(page, "mixflow")
    assert "4991040" in section(page, "mixflow") and "extra_mixflow_check" not in other and "extra_rho" not in other
    assert "steps per map as run: 268" in section(page, "mixflow") and "extra_leapfrog_steps" not in other

    plain = render_report(synthetic({"theta": rng.normal(size=(chains, draws))}))
    for anchor in ("admm", "proximal", "blocks", "mixflow", "other", "evidence", "energy"):
        assert not section(plain, anchor), anchor


def test_everything_from_the_file_is_escaped():
    """Coordinates, attrs, options, method names and record names with markup never reach the page raw; a site
    name with dollar signs (matplotlib mathtext) still plots."""
    rng = np.random.default_rng(1)
    evil = "<script>alert(1)</script>"
    fit = synthetic(
        {"a$b$": rng.normal(size=(2, 200, 2)), "ok": rng.normal(size=(2, 200))},
        {"diverging": np.zeros((2, 200), bool), evil.replace("/", ""): rng.normal(size=(2, 200))},
        {
            "method": evil,
            "options": json.dumps({evil: evil}),
            "versions": json.dumps({evil: evil}),
            f"extra_{evil}": json.dumps([1.0]),
        },
        coords={"k": [evil, "&"]},
        dims={"a$b$": ["k"]},
    )
    page = render_report(fit)
    assert "<script" not in page.lower()
    assert html.escape(evil) in section(page, "summary")
    assert html.escape(evil) in section(page, "run") and html.escape(evil) in section(page, "other")
    assert "could not be drawn" not in page


def test_large_fit_is_thinned_and_problems_come_first():
    """10 chains x 1200 draws x 121 scalars: plots use 8 chains, one draw in 2 and 8 parameters, the table 100 rows,
    and the one broken coordinate (theta[117], chains offset by 3 sd: R-hat >> 1.01) is shown in the table, the
    trace plot and the verdict although it lies beyond the first 100 rows."""
    rng = np.random.default_rng(2)
    theta = rng.normal(size=(10, 1200, 120))
    theta[:, :, 117] += 3.0 * np.arange(10)[:, None]
    fit = synthetic({"mu": rng.normal(size=(10, 1200)), "theta": theta}, {"diverging": np.zeros((10, 1200), bool)})
    page = render_report(fit)
    summary = section(page, "summary").split("<tbody>")[1]
    assert summary.count("<tr><th>") == 100 and "Showing 100 of 121" in summary
    assert "<th>theta[117]</th>" in summary
    note = section(page, "trace")
    assert "Showing 8 of 121 scalar parameters" in note and "the first 8 of 10 chains" in note
    assert "one draw in 2 (600 of 1200 per chain)" in note
    assert "theta[117]" in section(page, "verdict") and "Not trustworthy" in section(page, "verdict")


def test_iid_and_nonfinite_draws():
    """I.i.d. draws get no R-hat column or rank plot; NaN draws make the verdict 'not trustworthy' and say so (and
    an unknown sampling time leaves ESS/s blank instead of breaking the table)."""
    rng = np.random.default_rng(3)
    iid = render_report(synthetic({"x": rng.normal(size=(4, 250))}, attrs={"method": "mixflow", "draws_kind": "iid"}))
    assert "R-hat" not in section(iid, "summary").split("</thead>")[0] and not section(iid, "rank")
    assert "Trustworthy" in section(iid, "verdict")
    broken = rng.normal(size=(2, 300))
    broken[1, 40:] = np.nan
    page = render_report(
        synthetic(
            {"x": broken, "y": rng.normal(size=(2, 300))}, attrs={"timing": json.dumps({"sampling_s": float("nan")})}
        )
    )
    assert "Not trustworthy" in section(page, "verdict") and "NaN or infinite" in section(page, "verdict")
    assert "could not be" not in page and "<th>y</th>" in section(page, "summary")


def test_loaded_fit_reports_like_the_original(tmp_path):
    """A fit saved to NetCDF and loaded back (no model attached) gives the same verdict, checks and table."""
    rng = np.random.default_rng(4)
    fit = synthetic(
        {"x": rng.normal(size=(2, 400)), "y": rng.normal(size=(2, 400, 3))},
        {"diverging": np.zeros((2, 400), bool), "energy": rng.normal(size=(2, 400))},
    )
    fit.save(tmp_path / "fit.nc")
    original, loaded = render_report(fit), render_report(samplax.load(tmp_path / "fit.nc"))
    for anchor in ("verdict", "checks", "summary"):
        assert section(loaded, anchor) == section(original, anchor), anchor
    assert "2 s" in section(loaded, "run")  # timing survives the file


def test_write_report_and_errors(tmp_path):
    """write_report writes the page and returns the path; bad arguments fail with errors that name the fix."""
    fit = synthetic({"x": np.random.default_rng(5).normal(size=(2, 100))})
    path = tmp_path / "report.html"
    assert write_report(fit, path) == path
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert write_report(fit.idata, tmp_path / "from_idata.html").exists()  # an InferenceData works too
    assert "Diagnostics report: nuts" in fit.report(tmp_path / "via_fit.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="fit must be a samplax Fit"):
        render_report({"x": 1})
    with pytest.raises(ValueError, match="does not exist"):
        write_report(fit, tmp_path / "missing" / "report.html")
    with pytest.raises(ValueError, match="must name a file"):
        write_report(fit, tmp_path)
    with pytest.raises(ValueError, match="no posterior"):
        render_report(arviz_compat.from_dict({"sample_stats": {"diverging": np.zeros((2, 10), bool)}}))


def test_deterministic_sites_are_reported_not_judged():
    """A 60-element deterministic p with R-hat >> 1.01 in 11 elements and clean latent sites: the verdict stays
    'Trustworthy', says so in one deterministic line, the checks list p once as a note, and the table lists latent
    sites first with p's failing cells marked as notes, not failures."""
    rng = np.random.default_rng(6)
    p = rng.normal(size=(2, 400, 60))
    p[1, :, 40:51] += 3.0
    fit = synthetic(
        {"p": p, "mu": rng.normal(size=(2, 400)), "sigma": rng.normal(size=(2, 400))},
        {"diverging": np.zeros((2, 400), bool)},
        {"deterministic_sites": json.dumps(["p"])},
    )
    page = render_report(fit)
    verdict = section(page, "verdict")
    assert 'class="verdict good"' in verdict and "R-hat is above" not in verdict
    assert verdict.count("Deterministic sites (p: 60 values) are functions of the latent sites") == 1
    assert "11 of the 60 values have R-hat above 1.01" in verdict
    checks = section(page, "checks")
    assert "FAIL" not in checks and "Largest R-hat</td><td>" in checks
    assert re.search(
        r"Deterministic sites \(functions of the latent sites\)</td><td>p \(60 values\); 11 would fail "
        r"R-hat or ESS</td><td>not judged</td><td class=\"status\">note",
        checks,
    )
    table = section(page, "summary").split("<tbody>")[1]
    labels = re.findall(r"<tr><th>([^<]*)</th>", table)
    assert labels[:2] == ["mu", "sigma"] and labels[2:] == [f"p[{i}]" for i in range(60)]
    assert table.index("Deterministic sites: functions of the latent sites") < table.index("<th>p[0]</th>")
    assert 'class="bad"' not in table and table.count('class="note" title="R-hat above 1.01 (not judged') == 11
    assert "3 sites (mu, sigma, p; 1 deterministic)" in page
    # the same draws without the attribute: p is judged, and the verdict says not to trust the fit
    judged = render_report(synthetic({name: fit.idata.posterior[name].values for name in ("p", "mu", "sigma")}))
    assert "Not trustworthy" in section(judged, "verdict") and "Deterministic sites" not in judged


def test_var_names_restricts_the_report(tmp_path):
    """var_names keeps only those sites in the verdict, checks, table and plots; unknown names list the valid ones."""
    rng = np.random.default_rng(7)
    stuck = rng.normal(size=(2, 300))
    stuck[1] += 4.0
    fit = synthetic(
        {"stuck": stuck, "fine": rng.normal(size=(2, 300)), "v": rng.normal(size=(2, 300, 3))},
        {"diverging": np.zeros((2, 300), bool)},
    )
    assert "Not trustworthy" in section(render_report(fit), "verdict")
    page = render_report(fit, var_names=["v", "fine"])
    assert "Trustworthy" in section(page, "verdict") and "Not trustworthy" not in page
    rows = section(page, "summary").split("<tbody>")[1]
    assert re.findall(r"<tr><th>([^<]*)</th>", rows) == ["fine", "v[0]", "v[1]", "v[2]"]
    assert "stuck" not in page and "selected with var_names from 3 sites" in page
    path = write_report(fit, tmp_path / "stuck.html", var_names="stuck")
    assert "Not trustworthy" in section(path.read_text(encoding="utf-8"), "verdict")
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['nope'\]; the posterior has \['fine', 'stuck', "):
        write_report(fit, tmp_path / "never.html", var_names=["nope"])
    assert not (tmp_path / "never.html").exists()


# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_opens_in_headless_chromium(tmp_path, good_fit):
    """Headless Chromium loads the page without console errors, parses every section and writes a screenshot."""
    path = write_report(good_fit, tmp_path / "report.html")
    common = [
        "chromium",
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        common
        + [
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={screenshot}",
            "--window-size=1200,3000",
            f"file://{path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (3000, 1200) and pixels[..., :3].std() > 0.05  # a drawn page, not a blank one
    dom = subprocess.run(common + ["--dump-dom", f"file://{path}"], capture_output=True, text=True, timeout=120)
    assert 'class="verdict good"' in dom.stdout
    for anchor in ("verdict", "checks", "summary", "trace", "rank", "pair", "energy", "run"):
        assert f'id="{anchor}"' in dom.stdout, anchor
    assert "&lt;b&gt;x" in dom.stdout and "<b>x" not in dom.stdout
