"""The quick conformance subset (``make test``): samplax ``nuts`` against NumPyro's NUTS on a handful of models.

The ``quick`` models of the corpus cover the features NumPyro users rely on: flat priors (``ImproperUniform``), data
read with ``int()``, a GP Poisson regression, a ``-inf`` region. Every corpus model is also checked to initialise
under NumPyro's own ``initialize_model`` (no sampling). The full corpus and the method-support matrix run with
``make conformance`` (`tests.conformance.run`).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from numpyro.infer.util import initialize_model

from . import compare
from .corpus import CORPUS, FEATURES, entries
from .run import classify_exception, classify_run, one_line

QUICK = [entry.name for entry in entries("quick")]


# ------------------------------------------------------------------------------------------------------------------
# The corpus itself.
# ------------------------------------------------------------------------------------------------------------------


def test_corpus_size_and_sources():
    """At least 30 models, 15 of them posteriordb posteriors, every feature used, quick subset covering its brief."""
    assert len(CORPUS) >= 30
    assert len(entries("posteriordb")) >= 15
    used = {feature for entry in CORPUS.values() for feature in entry.features}
    assert used == set(FEATURES), f"features never used: {set(FEATURES) - used}"
    quick_features = {feature for name in QUICK for feature in CORPUS[name].features}
    assert {"flat_prior", "int_data", "gp", "neg_inf", "discrete_obs"} <= quick_features
    for entry in entries("posteriordb"):
        assert entry.model.__doc__ and f"posteriordb {entry.name}" in entry.model.__doc__, entry.name


@pytest.mark.parametrize("name", QUICK)
def test_numpyro_initialises_the_quick_models(name):
    """NumPyro's ``initialize_model`` accepts the model and its data, at a finite log density with finite gradient
    (``make conformance`` runs NumPyro's NUTS on every model; here only the quick ones, to keep ``make test`` short).

    ``initialize_model`` runs inside one ``jax.jit`` (the persistent compilation cache then serves later runs);
    outside a trace it would dispatch every operation of the model eagerly, one small compilation each.
    """
    entry = CORPUS[name]
    data = entry.data()

    def init(rng_key):
        info = initialize_model(rng_key, entry.model, model_kwargs=data)
        return info.param_info.z, info.param_info.potential_energy, info.param_info.z_grad

    with jax.enable_x64(entry.precision == "float64"):
        z, potential_energy, z_grad = jax.jit(init)(jax.random.PRNGKey(0))
    assert z, f"{name} has no latent sites"
    assert np.isfinite(float(potential_energy))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(z_grad))
    for site in entry.skip_sites + entry.log_sites:
        assert site in z, f"{name}: {site} is not a latent site"


@pytest.mark.parametrize("name", list(CORPUS))
@pytest.mark.slow
def test_samplax_reads_every_model_and_methods_refuse_before_compiling(name):
    """samplax's bridge traces every corpus model (shapes, supports, dims, data mode) without compiling a sampler,
    and every method either accepts the model's features or refuses it with UnsupportedModelError naming one of
    them: the refusal needs no compilation, so it is checked for every (model, method) pair here."""
    from samplax.infer.driver import unsupported_features
    from samplax.infer.registry import REGISTRY
    from samplax.models.bridge import UnsupportedModelError, build_target

    entry = CORPUS[name]
    with jax.enable_x64(entry.precision == "float64"):
        target = build_target(entry.model, entry.data())
    assert target.dim > 0 or target.discrete_sites
    features = target.features()
    for method_name, method in REGISTRY.items():
        refused = set(unsupported_features(method)) & features
        try:
            target.require_supported(method_name, unsupported_features(method))
        except UnsupportedModelError as error:
            assert error.feature in refused and error.method == method_name
        else:
            assert not refused


def test_dependent_support_is_mapped_at_every_point():
    """garch11's beta1 lives on (0, 1 - alpha1), a bound set by another latent site: samplax constrains every point
    with the support of that point (NumPyro's MCMC.get_samples does not, see the corpus note)."""
    from samplax.models.bridge import build_target

    target = build_target(CORPUS["garch-garch11"].model, CORPUS["garch-garch11"].data())
    z = jax.random.normal(jax.random.key(0), (2000, target.dim)) * 2.0
    values = jax.vmap(target.constrain)(z)
    beta1, alpha1 = np.asarray(values["beta1"]), np.asarray(values["alpha1"])
    assert np.all(beta1 > 0) and np.all(beta1 < 1 - alpha1)
    assert np.ptp(1 - alpha1) > 0.5  # the bound really moves across the points


# ------------------------------------------------------------------------------------------------------------------
# The comparison and the classification can fail.
# ------------------------------------------------------------------------------------------------------------------


def _normal_samples(seed, loc=0.0, scale=1.0, shape=(4, 1000, 3)):
    return {"x": np.random.default_rng(seed).normal(loc, scale, shape)}


def test_compare_passes_on_same_distribution_and_fails_on_shift_or_spread():
    reference = _normal_samples(0)
    assert compare.compare(_normal_samples(1), reference, ["x"]).passed
    shifted = compare.compare(_normal_samples(1, loc=0.2), reference, ["x"])
    assert not shifted.passed and shifted.worst_z > compare.Z_MAX
    wider = compare.compare(_normal_samples(1, scale=1.3), reference, ["x"])
    assert not wider.passed and wider.worst_sd > compare.SD_RTOL
    nan = _normal_samples(1)
    nan["x"][0, 0, 0] = np.nan
    assert not compare.compare(nan, reference, ["x"]).passed


def test_compare_log_sites_and_fixed_components():
    rng = np.random.default_rng(0)
    reference = {"s": np.exp(rng.normal(size=(2, 2000))), "L": np.ones((2, 2000, 2))}
    candidate = {"s": np.exp(rng.normal(size=(2, 2000))), "L": np.ones((2, 2000, 2))}
    result = compare.compare(candidate, reference, ["s", "L"], log_sites=("s",))
    assert result.passed and result.rows[0][0] == "log s"
    candidate["L"] = candidate["L"] * 1.01
    assert not compare.compare(candidate, reference, ["s", "L"], log_sites=("s",)).passed
    assert compare.mean_error(candidate, reference, ["L"]) == math.inf


def test_matrix_figures_call_bias_wrong_and_noise_ok():
    # exact draws, shifted so that the means differ by exactly `shift` reference sds: 0.3 sd is ~3 MCSE with
    # 2 x 100 draws a side (noise at these settings) and ~21 MCSE with 4 x 5000 (bias); 0.05 sd is never wrong
    rng = np.random.default_rng(1)

    def shifted(reference, shape, shift):
        x = rng.normal(size=shape)
        return {"x": x - x.mean() + reference["x"].mean() + shift * reference["x"].std(ddof=1)}

    reference = {"x": rng.normal(size=(2, 100))}
    worst, z = compare.matrix_figures(shifted(reference, (2, 100), 0.3), reference, ["x"])
    assert worst == pytest.approx(0.3) and 1.5 < z < 4.0 and classify_run(worst, z) == "ok"
    reference = {"x": rng.normal(size=(4, 5000))}
    worst, z = compare.matrix_figures(shifted(reference, (4, 5000), 0.3), reference, ["x"])
    assert z > 15 and classify_run(worst, z) == "wrong"
    worst, z = compare.matrix_figures(shifted(reference, (4, 5000), 0.05), reference, ["x"])
    assert worst == pytest.approx(0.05) and z == 0.0 and classify_run(worst, z) == "ok"
    assert compare.matrix_figures({"x": np.full((2, 100), np.nan)}, reference, ["x"]) == (math.inf, math.inf)


def test_classification():
    class Unsupported(ValueError):
        def __init__(self, feature, method):
            super().__init__(f"{method} does not support {feature}")
            self.feature, self.method = feature, method

    assert classify_exception(Unsupported("discrete latent", "nuts"), Unsupported) == ("refused", "discrete latent")
    status, message = classify_exception(RuntimeError("boom\nmore"), Unsupported)
    assert (status, message) == ("error", "RuntimeError: boom")
    assert classify_exception(ValueError("x"), None)[0] == "error"
    assert classify_run(None) == "ok" and classify_run(0.2, 0.0) == "ok" and classify_run(0.7, 3.9) == "ok"
    assert classify_run(0.7, 4.5) == "wrong" and classify_run(math.inf, math.inf) == "wrong"
    assert one_line(KeyError()) == "KeyError"


# ------------------------------------------------------------------------------------------------------------------
# samplax nuts against NumPyro NUTS on the quick models.
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def references():
    """NumPyro NUTS samples of the quick models, computed once per session on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            entry = CORPUS[name]
            data = entry.data()
            cache[name] = (compare.numpyro_nuts(entry, data)["samples"], _compared_sites(entry, data))
        return cache[name]

    return get


def _compared_sites(entry, data) -> list[str]:
    """`compare.compared_sites`, traced abstractly (``jax.eval_shape``): the site names depend only on the model's
    structure, and outside a trace NumPyro's ``initialize_model`` runs every operation of the model eagerly, one
    small compilation each (seconds per model on a cold cache)."""
    sites = []
    jax.eval_shape(lambda: sites.extend(compare.compared_sites(entry, data)))
    return sites


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK)
def test_quick_nuts_matches_numpyro(name, references):
    """samplax nuts agrees with NumPyro NUTS: means within 4 combined MCSE, sds within 15 %."""
    entry = CORPUS[name]
    ref_samples, sites = references(name)
    fit = compare.samplax_fit(entry)
    for site in sites:
        assert site in fit["samples"], f"samplax's posterior lacks {site}"
    result = compare.compare(fit["samples"], ref_samples, sites, log_sites=entry.log_sites)
    assert result.passed, (
        f"{name}: worst mean z {result.worst_z:.2f} at {result.worst_z_component}, worst sd "
        f"deviation {result.worst_sd:.3f} at {result.worst_sd_component}"
    )
