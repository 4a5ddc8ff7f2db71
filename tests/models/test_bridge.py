"""The NumPyro bridge: densities with Jacobians, init, constrain, composite, shards, factor graph, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy

import samplax
from samplax.models import zoo
from samplax.models.bridge import build_target


def positive_model(y=None):
    sigma = numpyro.sample("sigma", dist.Gamma(2.0, 1.0))
    with numpyro.plate("n", 5):
        numpyro.sample("y", dist.Normal(0.0, sigma), obs=y)


def test_logdensity_matches_numpyro_potential_with_jacobian():
    """logdensity(z) equals -NumPyro's potential energy (which includes the log|det J| of exp)."""
    y = jnp.arange(5.0)
    target = build_target(positive_model, {"y": y})
    z = jnp.array([0.3])
    expected = -potential_energy(positive_model, (), {"y": y}, {"sigma": z[0]})
    np.testing.assert_allclose(target.logdensity(z), expected, rtol=1e-6)
    # explicit: log Gamma(e^z) + log N(y | 0, e^z) + z
    sigma = np.exp(0.3)
    manual = dist.Gamma(2.0, 1.0).log_prob(sigma) + dist.Normal(0, sigma).log_prob(y).sum() + 0.3
    np.testing.assert_allclose(target.logdensity(z), manual, rtol=1e-5)
    assert target.constrain(z)["sigma"] == pytest.approx(sigma, rel=1e-6)
    assert target.log_likelihood(z)["y"].shape == (5,)


def test_init_strategies_and_values():
    target = build_target(positive_model, {"y": jnp.ones(5)})
    key = jax.random.key(0)
    for strategy in (None, "uniform", "median", "prior"):
        z = target.init(key, 3, strategy)
        assert z.shape == (3, 1) and np.isfinite(np.asarray(jax.vmap(target.logdensity)(z))).all()
    z = target.init(key, 2, {"sigma": 2.5})
    np.testing.assert_allclose(np.exp(z), 2.5, rtol=1e-6)


def test_nonfinite_initial_value_names_site_and_value():
    target = build_target(positive_model, {"y": jnp.ones(5)})
    with pytest.raises(ValueError, match=r"sigma.*shape"):
        target.init(jax.random.key(0), 1, {"sigma": jnp.ones(2)})
    with pytest.raises(ValueError, match="not a valid strategy"):
        target.init(jax.random.key(0), 1, "sideways")

    def cliff(x=None):
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("obs", dist.Uniform(a - 0.1, a + 0.1), obs=x)

    bad = build_target(cliff, {"x": 5.0})
    with pytest.raises(ValueError, match=r"site 'obs'.*-inf.*init='median'"):
        bad.init(jax.random.key(0), 1, {"a": 0.0})
    with pytest.raises(ValueError, match="initial log-density"):
        samplax.fit(cliff, {"x": 5.0}, init={"a": 0.0}, progress=False)


def test_wrong_data_is_refused_before_compilation():
    with pytest.raises(ValueError, match=r"\['z'\] are not arguments"):
        build_target(positive_model, {"z": jnp.ones(5)})
    with pytest.raises(ValueError, match="ragged"):
        build_target(positive_model, {"y": [[1.0, 2.0], [3.0]]})
    with pytest.raises(ValueError, match="could not be run|shape"):
        samplax.fit(positive_model, {"y": jnp.ones((2, 3))}, progress=False)


def test_discrete_latent_refused_for_gradient_methods():
    def mixture(y=None):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(z * 2.0, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"discrete latent sites \['z'\].*gibbs"):
        samplax.fit(mixture, {"y": 1.0}, method="nuts", progress=False)


def test_unknown_and_ill_typed_options_list_the_valid_ones():
    entry = zoo.get("normal_normal")
    with pytest.raises(ValueError, match=r"unknown option.*target_accept \(float\)"):
        samplax.fit(entry.model, entry.make_data(), method="nuts", step_sise=0.1, progress=False)
    with pytest.raises(ValueError, match="max_tree_depth' must be int"):
        samplax.fit(entry.model, entry.make_data(), method="nuts", max_tree_depth="deep", progress=False)
    with pytest.raises(ValueError, match="unknown method 'numts'"):
        samplax.fit(entry.model, entry.make_data(), method="numts", progress=False)
    with pytest.raises(ValueError, match="chains must be an integer"):
        samplax.fit(entry.model, entry.make_data(), chains=0, progress=False)
    with pytest.raises(ValueError, match="precision"):
        samplax.fit(entry.model, entry.make_data(), precision="float16", progress=False)


def lasso(X, y=None, scale=0.5):
    w = numpyro.sample("w", dist.Laplace(0.0, scale).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(3)))
    r = numpyro.sample("r", dist.Uniform(-1.0, 2.0))
    with numpyro.plate("n", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ w + p[0] + r, sigma), obs=y)


def test_composite_detects_l1_terms_and_site_blocks():
    """(The Legendre function of each block is bplmc's choice: tests/infer/test_bplmc_fit.py.)"""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 2)), rng.normal(size=7)
    target = build_target(lasso, {"X": X, "y": y})
    comp = target.composite()
    assert [(b.start, b.stop) for b in comp.blocks] == [(0, 2), (2, 3), (3, 5), (5, 6)]  # w, sigma, p (K-1), r
    assert comp.dim == 2 + 1 + 2 + 1
    np.testing.assert_allclose(np.asarray(comp.l1_weight)[:2], 2.0)  # 1/scale on w only
    assert float(jnp.sum(comp.l1_weight)) == pytest.approx(4.0)
    # f + g equals the negative log joint in constrained coordinates up to the Laplace normalisers
    z = target.init(jax.random.key(1), 1)[0]
    x = comp.from_unconstrained(z)
    values = comp.to_constrained(x)
    log_joint, _ = numpyro.infer.util.log_density(lasso, (), {"X": X, "y": y}, values)
    g = jnp.sum(comp.l1_weight * jnp.abs(x - comp.l1_center))
    const = 2 * np.log(2 * 0.5)
    np.testing.assert_allclose(comp.smooth_potential(x) + g, -log_joint - const, rtol=1e-5)
    with pytest.raises(ValueError, match="not a continuous latent site"):
        target.composite(nonsmooth={"nope": False})


def test_latent_scale_laplace_is_a_clear_error():
    def hier(y=None):
        b = numpyro.sample("b", dist.HalfNormal(1.0))
        w = numpyro.sample("w", dist.Laplace(0.0, b))
        numpyro.sample("y", dist.Normal(w, 1.0), obs=y)

    target = build_target(hier, {"y": 0.3})
    with pytest.raises(ValueError, match=r"site 'w'.*depends on the latent sites \['b'\].*nuts"):
        target.composite()
    assert target.composite(nonsmooth={"w": False}).dim == 2


def test_shards_split_the_likelihood_exactly():
    """Sum over padded, masked shards of the shard log-likelihood equals the full log-likelihood; prior + it = joint."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(11, 2)), rng.normal(size=11)
    target = build_target(lasso, {"X": X, "y": y})
    shards = target.shards(3)
    assert list(shards.sizes) == [4, 4, 3] and shards.data["X"].shape == (3, 4, 2)
    z = target.init(jax.random.key(2), 1)[0]
    per_shard = jax.vmap(lambda shard: shards.shard_loglik(z, shard))(shards.data)
    full = jnp.sum(target.log_likelihood(z)["y"])
    np.testing.assert_allclose(jnp.sum(per_shard), full, rtol=1e-5)
    np.testing.assert_allclose(shards.prior_logdensity(z) + full, target.logdensity(z), rtol=1e-5)
    with pytest.raises(ValueError, match="exceeds the number of observations"):
        target.shards(12)
