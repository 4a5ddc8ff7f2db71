"""samplax.infer.arviz_compat: the same results under ArviZ 0.x (InferenceData) and 1.x (DataTree).

This file runs in the Python 3.11 suite against ArviZ 0.23 and in `make test-py313` against the newest ArviZ; the
committed files ``tests/data/fit_arviz0.nc`` and ``fit_arviz1.nc`` (written by ``tests/data/make_arviz_fixtures.py``
under each major) check that a fit saved under one major loads under the other.
"""

import importlib.util
import pathlib
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

import samplax
from samplax.infer import arviz_compat

pytestmark = pytest.mark.arviz1

DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"
CHAINS, DRAWS = 4, 1000


def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_arviz_fixtures", DATA_DIR / "make_arviz_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _groups(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "posterior": {"mu": rng.normal(size=(CHAINS, DRAWS)), "theta": rng.normal(size=(CHAINS, DRAWS, 3))},
        "sample_stats": {"diverging": np.zeros((CHAINS, DRAWS), bool), "energy": rng.normal(size=(CHAINS, DRAWS))},
        "log_likelihood": {"y": -0.5 * rng.normal(size=(CHAINS, DRAWS, 3)) ** 2 - 1.0},
        "observed_data": {"y": np.array([0.1, -0.2, 0.3])},
        "constant_data": {"n": np.asarray(3), "x": np.array([1.0, 2.0, 3.0])},
    }


def _idata(seed=0):
    return arviz_compat.from_dict(
        _groups(seed),
        attrs={"method": "nuts", "seed": 7},
        coords={"school": ["a", "b", "c"]},
        dims={"theta": ["school"], "y": ["obs"], "x": ["obs"]},
    )


def test_the_branch_follows_the_installed_arviz():
    assert arviz_compat.ARVIZ_VERSION == az.__version__
    assert arviz_compat.ARVIZ_MAJOR == int(az.__version__.split(".")[0])
    idata = _idata()
    assert arviz_compat.is_idata(idata) and not arviz_compat.is_idata({"posterior": None})
    assert isinstance(idata, xr.DataTree) == (arviz_compat.ARVIZ_MAJOR >= 1)


def test_from_dict_groups_dims_coords_and_root_attrs():
    idata = _idata()
    assert set(arviz_compat.group_names(idata)) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "constant_data",
    }
    assert arviz_compat.has_group(idata, "posterior") and not arviz_compat.has_group(idata, "prior")
    posterior = arviz_compat.group(idata, "posterior")
    assert isinstance(posterior, xr.Dataset)
    assert posterior["theta"].dims == ("chain", "draw", "school")
    assert list(posterior.coords["school"].values) == ["a", "b", "c"]
    assert arviz_compat.group(idata, "observed_data")["y"].dims == ("obs",)
    constant = arviz_compat.group(idata, "constant_data")
    assert constant["n"].dims == () and int(constant["n"]) == 3  # 0-d stays 0-d on both majors
    assert constant["x"].dims == ("obs",)
    attrs = arviz_compat.root_attrs(idata)
    assert attrs["method"] == "nuts" and int(attrs["seed"]) == 7
    assert arviz_compat.group(idata, "prior") is None


def test_a_slash_in_a_name_is_a_clear_error_under_arviz_1():
    groups = {"posterior": {"a/b": np.zeros((2, 5))}}
    if arviz_compat.ARVIZ_MAJOR >= 1:
        with pytest.raises(ValueError, match=r"\['a/b'\] contain '/'.*rename those sites"):
            arviz_compat.from_dict(groups)
    else:
        assert "a/b" in arviz_compat.group(arviz_compat.from_dict(groups), "posterior")


def test_a_group_is_a_dataset_that_a_list_of_names_can_index():
    """A DataTree node refuses ``node[["a", "b"]]`` ("Selecting via tags is deprecated"); group() gives a Dataset."""
    posterior = arviz_compat.group(_idata(), "posterior")
    assert list(posterior[["theta", "mu"]].data_vars) == ["theta", "mu"]


def test_set_group_adds_then_replaces():
    idata = _idata()
    first = {"y": np.zeros((CHAINS, DRAWS, 3))}
    arviz_compat.set_group(idata, "posterior_predictive", first, dims={"y": ["obs"]})
    assert arviz_compat.group(idata, "posterior_predictive")["y"].dims == ("chain", "draw", "obs")
    arviz_compat.set_group(idata, "posterior_predictive", {"y": np.ones((CHAINS, DRAWS, 3))}, dims={"y": ["obs"]})
    assert arviz_compat.group_names(idata).count("posterior_predictive") == 1
    assert float(arviz_compat.group(idata, "posterior_predictive")["y"].mean()) == 1.0


def test_summary_has_the_same_columns_on_both_majors():
    idata = _idata()
    table = arviz_compat.summary(arviz_compat.group(idata, "posterior"))
    assert list(table.columns) == [
        "mean",
        "sd",
        "hdi_3%",
        "hdi_97%",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    ]
    assert list(table.index) == ["mu", "theta[a]", "theta[b]", "theta[c]"]
    assert all(np.issubdtype(dtype, np.number) for dtype in table.dtypes)
    draws = arviz_compat.group(idata, "posterior")["mu"].values
    raw = arviz_compat.summary(idata, hdi_prob=0.9, round_to="none")  # a container: its posterior
    assert list(raw.columns[2:4]) == ["hdi_5%", "hdi_95%"]
    assert raw.loc["mu", "mean"] == pytest.approx(draws.mean(), abs=1e-12)
    assert raw.loc["mu", "sd"] == pytest.approx(draws.std(ddof=1), rel=1e-6)
    assert table.loc["mu", "mean"] == round(raw.loc["mu", "mean"], 3)  # default rounding as ArviZ 0.x's
    assert float(table.loc["mu", "ess_bulk"]).is_integer()
    # i.i.d. draws: ESS near the 4000 draws, R-hat near 1
    assert 3000 < raw.loc["mu", "ess_bulk"] < 5000 and abs(raw.loc["mu", "r_hat"] - 1.0) < 0.01


def test_ess_rhat_mcse_agree_between_dataset_and_dict_inputs():
    groups = _groups()
    posterior = arviz_compat.group(_idata(), "posterior")
    from_dict = {"mu": groups["posterior"]["mu"]}
    for name in ("ess", "rhat", "mcse"):
        function = getattr(arviz_compat, name)
        assert float(function(posterior[["mu"]])["mu"]) == pytest.approx(float(function(from_dict)["mu"]))
    assert arviz_compat.ess(posterior, method="tail")["theta"].shape == (3,)
    sd = posterior["mu"].values.std()
    assert float(arviz_compat.mcse(posterior, method="mean")["mu"]) == pytest.approx(
        sd / np.sqrt(CHAINS * DRAWS), rel=0.15
    )


def test_bfmi_is_the_e_bfmi_formula():
    energy = _groups()["sample_stats"]["energy"]
    expected = (np.diff(energy, axis=1) ** 2).sum(axis=1) / ((energy - energy.mean(axis=1, keepdims=True)) ** 2).sum(
        axis=1
    )
    np.testing.assert_allclose(arviz_compat.bfmi(_idata()), expected, rtol=1e-10)
    np.testing.assert_allclose(arviz_compat.bfmi(energy), expected, rtol=1e-10)


def test_psislw_recovers_the_pareto_shape():
    """Weights w ~ Pareto(alpha) have tail shape k = 1 / alpha; normal log-weights have a light tail."""
    rng = np.random.default_rng(3)
    heavy = np.log(rng.pareto(1.25, size=(3, 4000)) + 1.0)  # k = 0.8
    light = 0.1 * rng.normal(size=(3, 4000))
    smoothed, k_heavy = arviz_compat.psislw(heavy)
    _, k_light = arviz_compat.psislw(light)
    assert smoothed.shape == heavy.shape and k_heavy.shape == (3,)
    np.testing.assert_allclose(np.logaddexp.reduce(smoothed, axis=-1), 0.0, atol=1e-8)  # normalised
    assert np.all(np.abs(k_heavy - 0.8) < 0.2) and np.all(k_light < 0.5)
    _, k_flat = arviz_compat.psislw(heavy[0])
    assert np.ndim(k_flat) == 0
    tied, k_tied = arviz_compat.psislw(np.zeros((2, 100)))  # no tail to fit: inf on both majors (1.x raises)
    assert np.all(k_tied == np.inf) and np.allclose(tied, -np.log(100))


def test_loo_on_the_container_as_users_call_it():
    idata = _idata()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = arviz_compat.loo_values(az.loo(idata, pointwise=True))
        again = arviz_compat.loo_values(arviz_compat.loo(idata, pointwise=True))
    assert np.isfinite(values["elpd_loo"]) and values["se"] > 0 and values["pareto_k"].shape == (3,)
    assert values["elpd_loo"] == pytest.approx(again["elpd_loo"])


def test_netcdf_roundtrip_keeps_groups_dims_coords_attrs(tmp_path):
    idata = _idata()
    path = arviz_compat.to_netcdf(idata, tmp_path / "idata.nc")
    loaded = arviz_compat.from_netcdf(path)
    assert type(loaded) is type(idata)
    assert arviz_compat.group_names(loaded) == arviz_compat.group_names(idata)
    for name in arviz_compat.group_names(idata):
        xr.testing.assert_equal(arviz_compat.group(loaded, name), arviz_compat.group(idata, name))
    assert arviz_compat.root_attrs(loaded)["method"] == "nuts"
    assert arviz_compat.group(loaded, "sample_stats")["diverging"].dtype == bool


def test_a_datatree_is_accepted_under_either_major():
    tree = xr.DataTree.from_dict({"posterior": arviz_compat.group(_idata(), "posterior")})
    native = arviz_compat.as_idata(tree)
    assert arviz_compat.is_idata(native) and arviz_compat.group_names(native) == ["posterior"]
    with pytest.raises(TypeError, match="InferenceData or an xarray.DataTree"):
        arviz_compat.as_idata({"posterior": {}})


@pytest.mark.parametrize("major", [0, 1])
def test_a_fit_saved_under_either_major_loads_and_reports(major, tmp_path):
    """``fit_arviz0.nc`` was written by ArviZ 0.23 (Python 3.11) and ``fit_arviz1.nc`` by ArviZ 1.x (Python 3.13)."""
    fixtures = _fixture_module()
    fit = samplax.load(DATA_DIR / f"fit_arviz{major}.nc")
    assert arviz_compat.is_idata(fit.idata) and isinstance(fit.idata, xr.DataTree) == (arviz_compat.ARVIZ_MAJOR >= 1)
    assert set(arviz_compat.group_names(fit.idata)) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "constant_data",
    }
    assert fit.method == "nuts" and set(fit.timing) >= {"sampling_s", "total_s"}
    posterior = arviz_compat.group(fit.idata, "posterior")
    assert posterior["mu"].dims == ("chain", "draw", "obs")
    assert list(posterior.coords["obs"].values) == fixtures.COORDS["obs"]
    assert posterior.sizes["chain"] == fixtures.CHAINS and posterior.sizes["draw"] == fixtures.DRAWS
    assert int(arviz_compat.group(fit.idata, "constant_data")["n"]) == 8
    table = fit.summary()
    assert list(table.index[:3]) == ["alpha", "beta", "sigma"] and "ess_bulk_per_s" in table.columns
    assert table.loc["beta", "mean"] == pytest.approx(2.0, abs=0.4)
    fit.predict(model=fixtures.model, seed=1)  # n comes back from constant_data as a Python int
    predicted = arviz_compat.group(fit.idata, "posterior_predictive")["y"]
    assert predicted.dims == ("chain", "draw", "obs") and list(predicted.coords["obs"].values) == fixtures.COORDS["obs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(arviz_compat.loo_values(az.loo(fit.idata))["elpd_loo"])
    page = fit.report(tmp_path / "report.html")
    assert "Verdict" in pathlib.Path(page).read_text(encoding="utf-8")
    resaved = samplax.load(fit.save(tmp_path / "again.nc"))  # written under the installed major
    assert "posterior_predictive" in arviz_compat.group_names(resaved.idata)
