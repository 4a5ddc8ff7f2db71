"""Tests for samplax.infer.diagnostics: ArviZ-based summaries, importance weights, KSD, reference checks."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from samplax.infer import arviz_compat, diagnostics

# also run by make test-py313 (Python 3.13, the newest ArviZ): the inputs are built through arviz_compat
pytestmark = pytest.mark.arviz1

CHAINS, DRAWS = 4, 1000


def from_dict(attrs=None, **groups):
    """ArviZ's from_dict under either major, one keyword per group as in ArviZ 0.x."""
    return arviz_compat.from_dict(groups, attrs=attrs)


def iid_idata(seed=0, **sample_stats):
    """Exact i.i.d. N(0, 1) draws laid out as 4 chains x 1000 draws, with sites mu () and theta (2,)."""
    rng = np.random.default_rng(seed)
    posterior = {"mu": rng.normal(size=(CHAINS, DRAWS)), "theta": rng.normal(size=(CHAINS, DRAWS, 2))}
    stats_ = {"diverging": np.zeros((CHAINS, DRAWS), dtype=bool), **sample_stats}
    return from_dict(posterior=posterior, sample_stats=stats_)


# ------------------------------------------------------------------------------------------ summary


def test_summary_columns_and_ess_per_second():
    """i.i.d. draws: bulk and tail ESS are close to n = 4000.

    Over 300 replications of 4 x 1000 i.i.d. normal draws, ArviZ's ESS / n had mean 0.98 (bulk) / 0.96
    (tail) and sd 0.043: the tolerance 0.25 is about 5 sd. The mean must lie within 5 MCSE of the exact 0.
    """
    idata = iid_idata()
    table = diagnostics.summary(idata, sampling_seconds=2.0, wall_seconds=5.0)
    expected = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    assert list(table.columns) == expected + ["ess_bulk_per_s", "ess_bulk_per_sampling_s"]
    assert list(table.index) == ["mu", "theta[0]", "theta[1]"]
    n = CHAINS * DRAWS
    assert np.all(np.abs(table["ess_bulk"] / n - 1.0) < 0.25)
    assert np.all(np.abs(table["ess_tail"] / n - 1.0) < 0.25)
    assert np.all(np.abs(table["mean"]) < 5 * table["mcse_mean"])
    np.testing.assert_allclose(table["ess_bulk_per_s"], table["ess_bulk"] / 5.0)  # the whole fit's wall time
    np.testing.assert_allclose(table["ess_bulk_per_sampling_s"], table["ess_bulk"] / 2.0)
    assert np.all(table["r_hat"] < 1.01)


def test_summary_without_seconds_var_names_and_hdi_prob():
    idata = iid_idata()
    table = diagnostics.summary(idata, var_names=["theta"], hdi_prob=0.9)
    assert list(table.index) == ["theta[0]", "theta[1]"]
    assert "hdi_5%" in table.columns and "hdi_95%" in table.columns
    assert table["ess_bulk_per_s"].isna().all() and table["ess_bulk_per_sampling_s"].isna().all()
    recorded = from_dict(
        posterior={"mu": idata.posterior["mu"].values}, attrs={"timing": '{"sampling_s": 4.0, "total_s": 10.0}'}
    )
    table = diagnostics.summary(recorded)
    np.testing.assert_allclose(table["ess_bulk_per_sampling_s"], table["ess_bulk"] / 4.0)
    np.testing.assert_allclose(table["ess_bulk_per_s"], table["ess_bulk"] / 10.0)
    unrounded = diagnostics.summary(idata, round_to="none")
    assert unrounded.loc["mu", "mean"] == pytest.approx(float(idata.posterior["mu"].mean()), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sampling_seconds": 0.0}, "sampling_seconds"),
        ({"sampling_seconds": -1.0}, "sampling_seconds"),
        ({"hdi_prob": 1.5}, "hdi_prob"),
        ({"var_names": ["sigma"]}, "unknown variable"),
    ],
)
def test_summary_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diagnostics.summary(iid_idata(), **kwargs)


def test_summary_needs_a_posterior():
    with pytest.raises(ValueError, match="no posterior group"):
        diagnostics.summary(from_dict(sample_stats={"diverging": np.zeros((2, 5), bool)}))


# ------------------------------------------------------------------------------- importance weights


def test_importance_equal_weights_give_exact_ess():
    """Equal weights: ESS = number of draws exactly, per repeat and in total; k-hat is -inf (no tail)."""
    result = diagnostics.importance_diagnostics(np.full((4, 500), -3.7))
    np.testing.assert_allclose(result["ess_per_repeat"], 500.0, rtol=1e-12)
    assert result["ess"] == pytest.approx(2000.0, rel=1e-12)
    assert result["ess_fraction"] == pytest.approx(1.0)
    assert result["num_repeats"] == 4 and result["num_draws"] == 500
    assert np.all(result["pareto_k"] == -np.inf)


def test_importance_two_point_weights_exact_ess():
    """50 draws of weight 1 and 50 of weight 3: ESS = (50 + 150)^2 / (50 + 450) = 80 exactly.

    Scaling all weights (a constant in log space) must not change it; a flat input is one repeat.
    """
    log_w = np.log(np.r_[np.ones(50), 3.0 * np.ones(50)]) + 1234.5
    result = diagnostics.importance_diagnostics(log_w)
    assert result["ess"] == pytest.approx(80.0, rel=1e-12)
    assert result["ess_per_repeat"].shape == (1,)
    assert result["ess_fraction"] == pytest.approx(0.8)


def test_importance_zero_weights_count_as_absent():
    """-inf log-weights are zero weights: 30 equal weights plus 70 zeros give ESS = 30 exactly."""
    log_w = np.r_[np.zeros(30), np.full(70, -np.inf)]
    assert diagnostics.importance_diagnostics(log_w)["ess"] == pytest.approx(30.0)


def test_importance_pareto_k_separates_heavy_and_light_tails():
    """Weights w = U^(-xi) are exactly generalised-Pareto-tailed with shape xi.

    xi = 1.2 must be flagged (k > 0.7) and xi = 0.2 must not: with 4000 draws PSIS fits the tail on ~190
    draws, so k-hat has sd about (1 + xi) / sqrt(190) < 0.16, and both margins (0.5) are > 3 sd.
    """
    rng = np.random.default_rng(3)
    heavy = diagnostics.importance_diagnostics(-1.2 * np.log(rng.uniform(size=(2, 4000))))
    light = diagnostics.importance_diagnostics(-0.2 * np.log(rng.uniform(size=(2, 4000))))
    assert np.all(heavy["pareto_k"] > 0.7)
    assert np.all(light["pareto_k"] < 0.7)
    assert heavy["pareto_k_max"] == pytest.approx(heavy["pareto_k"].max())


@pytest.mark.parametrize(
    "log_w, match",
    [
        (np.array([0.0, np.nan]), "NaN"),
        (np.array([0.0, np.inf]), r"\+inf"),
        (np.full(5, -np.inf), "all -inf"),
        (np.zeros((2, 3, 4)), "shape"),
        (np.zeros(0), "shape"),
    ],
)
def test_importance_errors(log_w, match):
    with pytest.raises(ValueError, match=match):
        diagnostics.importance_diagnostics(log_w)


# -------------------------------------------------------------------------- kernel Stein discrepancy


def ksd_numpy(x, s, c=1.0, beta=-0.5):
    """Direct O(n^2) V-statistic from the kernel's gradients, written independently of the JAX version."""
    u = x[:, None, :] - x[None, :, :]
    sq_dist = (u**2).sum(-1)
    q = c**2 + sq_dist
    d = x.shape[1]
    grad_x_k = 2 * beta * u * q[..., None] ** (beta - 1)
    trace = -2 * beta * d * q ** (beta - 1) - 4 * beta * (beta - 1) * sq_dist * q ** (beta - 2)
    stein = (s @ s.T) * q**beta + np.einsum("id,ijd->ij", s, -grad_x_k) + np.einsum("jd,ijd->ij", s, grad_x_k) + trace
    return math.sqrt(stein.mean())


@pytest.mark.parametrize("c, beta, block_size", [(1.0, -0.5, None), (2.0, -0.3, 64), (0.5, -0.8, 7)])
def test_ksd_matches_direct_numpy(c, beta, block_size):
    """Blocked JAX KSD (float32) equals the direct float64 numpy double sum to 1e-4 relative.

    n = 200 is not a multiple of the block sizes, so the padding mask is exercised; draws are offset from
    the origin to check the centring of |x_i - x_j|^2.
    """
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)) + 5.0
    s = -(x - 5.0) + 0.3 * rng.normal(size=(200, 3))
    got = diagnostics.kernel_stein_discrepancy(x, s, c=c, beta=beta, block_size=block_size)
    assert got == pytest.approx(ksd_numpy(x, s, c, beta), rel=1e-4)


def test_ksd_single_point_closed_form():
    """n = 1: KSD^2 = k_p(x, x) = c^(2 beta) |s|^2 - 2 beta d c^(2 beta - 2)."""
    s = np.array([[0.3, -1.2, 2.0]])
    c, beta = 1.5, -0.5
    exact = c ** (2 * beta) * (s**2).sum() - 2 * beta * 3 * c ** (2 * beta - 2)
    got = diagnostics.kernel_stein_discrepancy(np.array([[1.0, 2.0, 3.0]]), s, c=c, beta=beta)
    assert got**2 == pytest.approx(exact, rel=1e-5)


def test_ksd_expectation_for_exact_draws_and_ordering():
    """For exact N(0, I) draws, E[KSD^2] = E k_p(x, x) / n = (E|x|^2 + d) / n = 2d / n (c = 1, beta = -1/2),
    since the off-diagonal terms have mean zero. Checked over 40 replicates within 4 Monte Carlo SE of the
    replicates' mean; shifted draws (mean 0.5, scores of N(0, I)) must score far higher."""
    rng = np.random.default_rng(2)
    n, d = 200, 2
    values = []
    for _ in range(40):
        x = rng.normal(size=(n, d))
        values.append(diagnostics.kernel_stein_discrepancy(x, -x) ** 2)
    values = np.array(values)
    standard_error = values.std(ddof=1) / math.sqrt(values.size)
    assert abs(values.mean() - 2 * d / n) < 4 * standard_error
    x = rng.normal(size=(n, d))
    exact = diagnostics.kernel_stein_discrepancy(x, -x)
    shifted = diagnostics.kernel_stein_discrepancy(x + 0.5, -(x + 0.5))
    assert shifted > 2.0 * exact


def test_ksd_accepts_chain_layout_and_1d():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 50, 3))
    flat = diagnostics.kernel_stein_discrepancy(x.reshape(100, 3), -x.reshape(100, 3))
    assert diagnostics.kernel_stein_discrepancy(x, -x) == pytest.approx(flat, rel=1e-6)
    y = rng.normal(size=40)
    assert diagnostics.kernel_stein_discrepancy(y, -y) == pytest.approx(ksd_numpy(y[:, None], -y[:, None]), rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scores": np.zeros((10, 3))}, "same shape"),
        ({"c": 0.0}, "c must be"),
        ({"beta": 0.5}, "beta must"),
        ({"beta": -1.0}, "beta must"),
        ({"block_size": 0}, "block_size"),
        ({"draws": np.full((10, 2), np.nan)}, "finite"),
    ],
)
def test_ksd_errors(kwargs, match):
    args = {"draws": np.zeros((10, 2)), "scores": np.zeros((10, 2)), **kwargs}
    with pytest.raises(ValueError, match=match):
        diagnostics.kernel_stein_discrepancy(args.pop("draws"), args.pop("scores"), **args)


# ---------------------------------------------------------------------------- reference comparisons


def test_compare_to_reference_standardised_errors_are_standard_normal():
    """Exact N(m, s) draws, 20 coordinates: z = (mean - m) / MCSE are ~N(0, 1) (independent coordinates).

    sum z^2 ~ chi^2_20 must fall inside its central 99.9 % interval, every |z| < 4.5 (chance of any
    exceeding under N(0, 1): 20 * 6.8e-6), and the relative sd error is within 5 sd of zero, its sd being
    about 1 / sqrt(2 n) = 0.011 for n = 4000 normal draws.
    """
    rng = np.random.default_rng(5)
    m = np.linspace(-3.0, 3.0, 20)
    s = np.linspace(0.5, 2.0, 20)
    idata = from_dict(posterior={"theta": m + s * rng.normal(size=(CHAINS, DRAWS, 20))})
    table = diagnostics.compare_to_reference(idata, {"theta": m}, {"theta": s})
    assert list(table.index) == [f"theta[{i}]" for i in range(20)]
    z = table["standardised_error"].to_numpy()
    assert stats.chi2.ppf(0.0005, 20) < (z**2).sum() < stats.chi2.ppf(0.9995, 20)
    assert np.all(np.abs(z) < 4.5)
    assert np.all(np.abs(table["relative_sd_error"]) < 5 / math.sqrt(2 * CHAINS * DRAWS))
    np.testing.assert_allclose(table["reference"], m)
    np.testing.assert_allclose(table["reference_sd"], s)
    assert np.all(np.abs(table["sd_standardised_error"]) < 4.5)


def test_compare_to_reference_detects_a_wrong_reference_and_broadcasts_scalars():
    """A reference mean off by 0.2 (about 12 MCSE for 4000 N(0, 1) draws) gives |z| > 6."""
    idata = iid_idata(seed=6)
    table = diagnostics.compare_to_reference(idata, {"mu": 0.2, "theta": 0.0})
    assert abs(table.loc["mu", "standardised_error"]) > 6
    assert np.all(np.abs(table.loc[["theta[0]", "theta[1]"], "standardised_error"]) < 4.5)
    assert table["reference_sd"].isna().all()


def test_compare_to_reference_weighted_draws():
    """Weighted draws: proposal N(0, 2^2) weighted to N(1, 1), i.e. log w = log N(x; 1, 1) - log N(x; 0, 4).

    The self-normalised estimates must match mean 1 and sd 1 within 5 of their delta-method MCSEs, whereas
    the unweighted draws would be off by about 1 / MCSE >> 5.
    """
    rng = np.random.default_rng(7)
    x = 2.0 * rng.normal(size=(CHAINS, DRAWS))
    log_w = stats.norm.logpdf(x, 1.0, 1.0) - stats.norm.logpdf(x, 0.0, 2.0)
    idata = from_dict(posterior={"mu": x}, sample_stats={"log_weight": log_w})
    row = diagnostics.compare_to_reference(idata, {"mu": 1.0}, {"mu": 1.0}, log_weights=log_w).loc["mu"]
    assert abs(row["standardised_error"]) < 5
    assert abs(row["sd_standardised_error"]) < 5
    assert 0 < row["mcse"] < 0.05
    unweighted = diagnostics.compare_to_reference(idata, {"mu": 1.0}).loc["mu"]  # weights are never implicit
    assert abs(unweighted["standardised_error"]) > 20
    with pytest.raises(ValueError, match="log_weights has shape"):
        diagnostics.compare_to_reference(idata, {"mu": 1.0}, log_weights=log_w[:2])


@pytest.mark.parametrize(
    "mean, sd, match",
    [
        ({"sigma": 0.0}, None, "unknown variable"),
        ({"theta": [0.0, 0.0, 0.0]}, None, "shape"),
        ({}, None, "non-empty"),
        ({"mu": 0.0}, [1.0], "sd must be a dict"),
    ],
)
def test_compare_to_reference_errors(mean, sd, match):
    with pytest.raises(ValueError, match=match):
        diagnostics.compare_to_reference(iid_idata(), mean, sd)


def test_compare_log_evidence():
    result = diagnostics.compare_log_evidence(-10.5, 0.25, -10.0)
    assert result["z"] == pytest.approx(-2.0)
    assert result["error"] == pytest.approx(-0.5)
    assert result["consistent"] is True
    assert diagnostics.compare_log_evidence(-9.0, 0.25, -10.0)["consistent"] is False
    assert diagnostics.compare_log_evidence(1.0, 0.0, 1.0)["z"] == 0.0
    with pytest.raises(ValueError, match="se must be"):
        diagnostics.compare_log_evidence(1.0, -0.1, 1.0)
    with pytest.raises(ValueError, match="se must be"):
        diagnostics.compare_log_evidence(1.0, float("nan"), 1.0)


# ------------------------------------------------------------------------------ convergence warnings


def test_no_warnings_for_a_good_fit():
    """Exact draws with energies whose E-BFMI is ~2 (i.i.d. energies): nothing to warn about."""
    rng = np.random.default_rng(8)
    assert diagnostics.convergence_warnings(iid_idata(energy=rng.normal(size=(CHAINS, DRAWS)))) == []


def test_warnings_for_divergent_stuck_and_sticky_fit():
    """Divergences, one chain stuck at 3.0 (R-hat > 1.01), a random-walk chain (low ESS), random-walk
    energies (E-BFMI ~ 1/n): each gives its own warning that names the next step."""
    rng = np.random.default_rng(9)
    mu = rng.normal(size=(CHAINS, DRAWS))
    mu[1] = 3.0
    sticky = np.cumsum(rng.normal(size=(CHAINS, DRAWS)), axis=1) * 0.01
    diverging = np.zeros((CHAINS, DRAWS), dtype=bool)
    diverging[0, :7] = True
    idata = from_dict(
        posterior={"mu": mu, "sticky": sticky},
        sample_stats={"diverging": diverging, "energy": np.cumsum(rng.normal(size=(CHAINS, DRAWS)), axis=1)},
    )
    messages = diagnostics.convergence_warnings(idata)
    text = "\n".join(messages)
    assert any("7 of 4000" in m and "divergent" in m and "target acceptance" in m for m in messages), text
    assert any("R-hat" in m and "mu" in m and "longer chains" in m for m in messages), text
    assert any("Bulk ESS" in m and "sticky" in m and "more draws" in m for m in messages), text
    assert any("E-BFMI" in m and "Reparameterise" in m for m in messages), text
    assert not any("Pareto" in m for m in messages)


def test_warnings_for_constant_and_non_finite_draws():
    mu = np.full((CHAINS, DRAWS), 2.0)
    bad = np.random.default_rng(10).normal(size=(CHAINS, DRAWS))
    bad[0, 0] = np.nan
    messages = diagnostics.convergence_warnings(from_dict(posterior={"mu": mu, "bad": bad}))
    assert any("cannot be computed" in m and "'mu'" in m for m in messages), messages
    assert any("NaN or infinite" in m and "'bad'" in m for m in messages), messages


def test_weighted_fits_are_judged_by_weights_not_rhat():
    """Repeats centred at different values would fail R-hat, but weighted draws are judged by their weights:
    light-tailed weights (xi = 0.1) give no warning, heavy-tailed ones (xi = 1.2) warn on k-hat and ESS."""
    rng = np.random.default_rng(11)
    draws = rng.normal(size=(CHAINS, DRAWS)) + np.arange(CHAINS)[:, None]
    light = -0.1 * np.log(rng.uniform(size=(CHAINS, DRAWS)))
    heavy = -1.2 * np.log(rng.uniform(size=(CHAINS, DRAWS)))
    good = from_dict(posterior={"mu": draws}, sample_stats={"log_weight": light})
    assert diagnostics.draws_kind(good) == "weighted"
    assert diagnostics.convergence_warnings(good) == []
    messages = diagnostics.convergence_warnings(from_dict(posterior={"mu": draws}, sample_stats={"log_weight": heavy}))
    assert any("Pareto k-hat" in m and "proposal" in m for m in messages), messages
    assert any("weights' ESS" in m for m in messages), messages
    assert not any("R-hat" in m for m in messages)
    zero_weights = light.copy()
    zero_weights[0, :3] = -np.inf  # zero weights are not divergent transitions
    flagged = from_dict(
        posterior={"mu": draws}, sample_stats={"log_weight": zero_weights, "diverging": np.isinf(zero_weights)}
    )
    assert diagnostics.convergence_warnings(flagged) == []


def test_iid_fits_skip_rhat_and_count_draws():
    rng = np.random.default_rng(12)
    draws = rng.normal(size=(CHAINS, 50)) + np.arange(CHAINS)[:, None]
    idata = from_dict(posterior={"mu": draws}, attrs={"draws_kind": "iid"})
    assert diagnostics.draws_kind(idata) == "iid"
    messages = diagnostics.convergence_warnings(idata)
    assert len(messages) == 1 and "200 independent draws" in messages[0] and "more draws" in messages[0]
    assert diagnostics.convergence_warnings(idata, ess_threshold=100) == []


def test_convergence_warning_argument_errors():
    with pytest.raises(ValueError, match="rhat_threshold"):
        diagnostics.convergence_warnings(iid_idata(), rhat_threshold=1.0)
    with pytest.raises(ValueError, match="ess_threshold"):
        diagnostics.convergence_warnings(iid_idata(), ess_threshold=0)
    with pytest.raises(ValueError, match="draws_kind"):
        diagnostics.convergence_warnings(from_dict(posterior={"mu": np.zeros((2, 5))}, attrs={"draws_kind": "x"}))


# ------------------------------------------------------------------------- latent and deterministic sites


def derived_idata(seed=13, deterministic=("p", "mu_hat"), draws=400):
    """Latent sites mu () and sigma () with exact i.i.d. draws (4 x 400: ESS ~1600), and a 150-element derived p
    whose elements 80..120 have one chain offset by 3 sd (R-hat far above 1.01) plus a clean mu_hat (2,): 152
    deterministic values."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(CHAINS, draws, 150))
    p[1, :, 80:121] += 3.0
    posterior = {
        "p": p,
        "mu": rng.normal(size=(CHAINS, draws)),
        "sigma": rng.normal(size=(CHAINS, draws)),
        "mu_hat": rng.normal(size=(CHAINS, draws, 2)),
    }
    attrs = {} if deterministic is None else {"deterministic_sites": json.dumps(list(deterministic))}
    stats_ = {"diverging": np.zeros((CHAINS, draws), dtype=bool)}
    return from_dict(posterior=posterior, sample_stats=stats_, attrs=attrs)


def test_site_roles_reads_the_recorded_deterministic_sites():
    """Roles come from attrs['deterministic_sites'] (names the posterior lacks are ignored), in posterior order;
    without the attribute every site is latent; var_names filters; bad input is a clear error."""
    idata = derived_idata(deterministic=("mu_hat", "p", "gone"))
    assert diagnostics.site_roles(idata) == (["mu", "sigma"], ["p", "mu_hat"])
    assert diagnostics.site_roles(derived_idata(deterministic=None)) == (["p", "mu", "sigma", "mu_hat"], [])
    assert diagnostics.site_roles(idata, var_names=["mu_hat", "sigma"]) == (["sigma"], ["mu_hat"])
    assert diagnostics.site_roles(idata, var_names="p") == ([], ["p"])
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['theta'\]; the posterior has \['mu', 'mu_hat'"):
        diagnostics.site_roles(idata, var_names=["mu", "theta"])
    with pytest.raises(ValueError, match="var_names is empty"):
        diagnostics.site_roles(idata, var_names=[])
    broken = from_dict(posterior={"mu": np.zeros((2, 5))}, attrs={"deterministic_sites": "p, mu_hat"})
    with pytest.raises(ValueError, match="must be a JSON list of site names"):
        diagnostics.site_roles(broken)


def test_deterministic_site_with_bad_rhat_is_described_not_judged():
    """41 deterministic values with R-hat >> 1.01 and fine latent sites: no convergence warning, and one
    informational line that names the deterministic sites, counts their values and the failing ones."""
    idata = derived_idata()
    assert diagnostics.convergence_warnings(idata) == []
    note = diagnostics.deterministic_note(idata)
    assert "\n" not in note
    assert note.startswith(
        "Deterministic sites (p, mu_hat: 152 values) are functions of the latent sites: their "
        "R-hat and ESS are reported in the summary but not judged."
    )
    assert "41 of the 152 values have R-hat above 1.01" in note and "largest R-hat: p[" in note
    # the same draws without the attribute: p is latent, and its R-hat is a warning (the set-up has the defect)
    messages = diagnostics.convergence_warnings(derived_idata(deterministic=None))
    assert any("R-hat is above 1.01 for 41 parameter(s) (worst: p[" in m for m in messages), messages
    assert diagnostics.deterministic_note(derived_idata(deterministic=None)) is None


def test_deterministic_note_for_clean_constant_and_non_finite_sites():
    """Clean deterministic sites get the description alone; a constant one (R-hat undefined) is not a problem; a
    non-finite one is mentioned in the note, never a warning; weighted draws are not judged by R-hat."""
    rng = np.random.default_rng(14)
    clean = from_dict(
        posterior={
            "mu": rng.normal(size=(CHAINS, DRAWS)),
            "twice": rng.normal(size=(CHAINS, DRAWS)),
            "one": np.ones((CHAINS, DRAWS)),
        },
        attrs={"deterministic_sites": json.dumps(["twice", "one"])},
    )
    assert diagnostics.convergence_warnings(clean) == []
    assert diagnostics.deterministic_note(clean) == (
        "Deterministic sites (twice, one: 2 values) are functions of the latent sites: their R-hat and ESS are "
        "reported in the summary but not judged."
    )
    log_p = rng.normal(size=(CHAINS, DRAWS))
    log_p[0, 3] = -np.inf
    nonfinite = from_dict(
        posterior={"mu": rng.normal(size=(CHAINS, DRAWS)), "log_p": log_p},
        attrs={"deterministic_sites": json.dumps(["log_p"])},
    )
    assert diagnostics.convergence_warnings(nonfinite) == []
    assert "log_p contains NaN or infinite values" in diagnostics.deterministic_note(nonfinite)
    weighted = from_dict(
        posterior={"mu": rng.normal(size=(CHAINS, DRAWS)), "p": rng.normal(size=(CHAINS, DRAWS))},
        sample_stats={"log_weight": np.zeros((CHAINS, DRAWS))},
        attrs={"deterministic_sites": json.dumps(["p"])},
    )
    assert "their diagnostics are reported" in diagnostics.deterministic_note(weighted)


def test_var_names_filters_warnings_but_not_the_checks_of_the_whole_run():
    """A stuck latent site 'a' warns only when selected; divergences concern every site and always warn."""
    rng = np.random.default_rng(15)
    a = rng.normal(size=(CHAINS, DRAWS))
    a[1] = 3.0
    diverging = np.zeros((CHAINS, DRAWS), dtype=bool)
    diverging[0, :5] = True
    idata = from_dict(posterior={"a": a, "b": rng.normal(size=(CHAINS, DRAWS))}, sample_stats={"diverging": diverging})
    everything = diagnostics.convergence_warnings(idata)
    assert any("R-hat" in m and "a" in m for m in everything) and any("divergent" in m for m in everything)
    only_b = diagnostics.convergence_warnings(idata, var_names=["b"])
    assert len(only_b) == 1 and "5 of 4000 transitions" in only_b[0], only_b
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['c'\]; the posterior has \['a', 'b'\]"):
        diagnostics.convergence_warnings(idata, var_names=["c"])
    with pytest.raises(ValueError, match="unknown variable"):
        diagnostics.deterministic_note(idata, var_names="c")


def test_summary_lists_latent_sites_first_and_filters():
    """Rows: latent sites (posterior order), then deterministic ones, also under var_names."""
    idata = derived_idata()
    table = diagnostics.summary(idata)
    labels = list(table.index)
    assert labels[:2] == ["mu", "sigma"] and labels[2:152] == [f"p[{i}]" for i in range(150)]
    assert labels[152:] == ["mu_hat[0]", "mu_hat[1]"]
    assert list(diagnostics.summary(idata, var_names=["mu_hat", "sigma"]).index) == ["sigma", "mu_hat[0]", "mu_hat[1]"]
    assert list(diagnostics.summary(idata, var_names="mu").index) == ["mu"]
    assert list(diagnostics.summary(derived_idata(deterministic=None)).index)[:2] == ["p[0]", "p[1]"]
