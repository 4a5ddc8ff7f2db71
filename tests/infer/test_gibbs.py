"""Tests for gibbs, block_gibbs and meta_gibbs (samplax.infer.method_gibbs, samplax.kernels.gibbs), the motifs
(samplax.models.motifs) and the zoo models they run on (grid networks, the open-universe mixture).

Exact answers: posterior marginals of binary grid networks by enumeration and by variable elimination (checked
against each other and against NumPyro's own log density), and P(M | y) of a tiny open-universe mixture by summing
over assignments (checked against quadrature of NumPyro's joint). Chains are checked within 4 Monte Carlo standard
errors (ArviZ's MCSE of the mean over 4 chains, floored at 1e-3 so a node whose chains never flip in a short run
cannot pass or fail on a zero MCSE).
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from samplax.infer import method_gibbs as mg
from samplax.infer.options import validate
from samplax.kernels import meta_proposal as mp
from samplax.models import motifs
from samplax.models.bridge import build_target
from samplax.models.zoo import grid_networks as grid
from samplax.models.zoo import open_universe as ou

CHAINS, WARMUP, DRAWS = 4, 100, 2000
MCSE_FLOOR = 1e-3


def _grid_5x5():
    """5 x 5 network with uniform (non-deterministic) rows; evidence on three nodes outside the one 3 x 3 block."""
    data = grid.grid_network_data(seed=3, rows=5, cols=5, deterministic_fraction=0.0, num_evidence=0)
    data["evidence"][0, 3], data["evidence"][4, 4], data["evidence"][4, 0] = 0, 1, 1
    return data


@pytest.fixture(scope="module")
def grid_problem():
    data = _grid_5x5()
    marginals, _ = grid.variable_elimination_marginals(data["cpt"], data["evidence"])
    exact = {
        grid.site_name(i, j): float(marginals[i, j]) for i in range(5) for j in range(5) if data["evidence"][i, j] < 0
    }
    return build_target(grid.grid_network_model, data), exact


def _run(target, method, seed=0, **options):
    # one chunk: warm-up and sampling compile as one program
    return mg.sample_model(target, method, options, jax.random.key(seed), CHAINS, WARMUP, DRAWS, chunks=1)


def _estimates(run, names):
    out = {}
    for name in names:
        x = np.asarray(run.discrete[name], dtype=float)
        out[name] = (x.mean(), max(float(az.mcse(x)), MCSE_FLOOR))
    return out


def _assert_marginals(run, exact, label):
    for name, (mean, se) in _estimates(run, exact).items():
        assert abs(mean - exact[name]) < 4 * se, (
            f"{label}: {name} estimate {mean:.4f} vs exact {exact[name]:.4f} (MCSE {se:.4f})"
        )


# ------------------------------------------------------------------------------------------------- exact answers
@pytest.mark.parametrize(
    "rows, cols, fraction, evidence",
    [(3, 3, 0.5, 1), (4, 4, 0.5, 2), (3, 5, 0.75, 2), (5, 3, 0.0, 3), (4, 1, 0.5, 1), (1, 4, 0.0, 1)],
)
def test_variable_elimination_agrees_with_enumeration(rows, cols, fraction, evidence):
    """Marginals and log P(evidence) agree to 1e-10 (wide, tall (transposed) and one-column grids)."""
    data = grid.grid_network_data(seed=1, rows=rows, cols=cols, deterministic_fraction=fraction, num_evidence=evidence)
    by_enumeration, log_z_enumeration = grid.enumerate_marginals(data["cpt"], data["evidence"])
    by_elimination, log_z_elimination = grid.variable_elimination_marginals(data["cpt"], data["evidence"])
    np.testing.assert_allclose(by_elimination, by_enumeration, atol=1e-10)
    assert abs(log_z_elimination - log_z_enumeration) < 1e-10


@pytest.mark.slow
def test_grid_reference_matches_numpyro_log_density():
    """The zoo reference (marginals, log Z) equals brute force over NumPyro's log joint of the model as written."""
    data = grid.grid_network_data(seed=2, rows=3, cols=3, deterministic_fraction=0.5, num_evidence=2)
    reference = grid.grid_network_reference(data)
    latent = [(i, j) for i in range(3) for j in range(3) if data["evidence"][i, j] < 0]
    states = mp.discrete_block_states(len(latent))
    params = {grid.site_name(i, j): jnp.asarray(states[:, k]) for k, (i, j) in enumerate(latent)}
    log_joint = np.asarray(
        jax.vmap(lambda p: log_density(grid.grid_network_model, (), data, p)[0])(params), dtype=float
    )
    weights = np.exp(log_joint - log_joint.max())
    assert abs(np.log(weights.sum()) + log_joint.max() - reference.log_z) < 1e-4
    for k, (i, j) in enumerate(latent):
        assert abs(weights @ states[:, k] / weights.sum() - reference.mean[grid.site_name(i, j)]) < 1e-5


def test_open_universe_reference_matches_quadrature():
    """P(M = k | y) from the assignment sum equals quadrature of NumPyro's joint over the means (m = 2, d = 1,
    3 points: 2-D trapezoid-free Riemann sums over both means on a 0.03 grid over [-12, 12])."""
    data = ou.open_universe_data(seed=4, max_components=2, num_observations=3, dim=1, mean_scale=3.0, num_active=2)
    reference = ou.open_universe_reference(data)
    grid_1d = np.arange(-12, 12, 0.03)
    a, b = np.meshgrid(grid_1d, grid_1d, indexing="ij")
    means = jnp.asarray(np.stack([a.reshape(-1), b.reshape(-1)], axis=1)[:, :, None])

    def log_joint(k):
        return jax.jit(
            jax.vmap(lambda mu: log_density(ou.open_universe_model, (), data, {"num_components": k, "means": mu})[0])
        )(means)

    log_evidence = []
    for k in (1, 2):
        values = np.asarray(log_joint(k), dtype=float)
        top = values.max()
        log_evidence.append(top + np.log(np.exp(values - top).sum() * 0.03**2))
    posterior_two = 1.0 / (1.0 + np.exp(log_evidence[0] - log_evidence[1]))
    assert abs((1 + posterior_two) - float(reference.mean["num_components"])) < 1e-3
    assert abs(np.logaddexp(*log_evidence) - reference.log_z) < 1e-3


# ------------------------------------------------------------------------------------------------------ motifs
def test_grid_block_motif_finds_every_diamond_and_reads_its_tables():
    """A 6 x 6 grid has 4 diamonds (top-left corners (1..2, 1..2)); evidence inside one block removes it. Theta
    holds P(x = 1 | parents) of the 9 block nodes and 6 children, in the matched parent order."""
    data = grid.grid_network_data(seed=0, rows=6, cols=6, deterministic_fraction=0.5, num_evidence=0)
    view = motifs.compile_model(build_target(grid.grid_network_model, data))
    motif = motifs.grid_block_motif(3, 3)
    assert motif.num_inputs == 74 and len(motif.blanket) == 14
    instances = motif.match(view)
    assert sorted(inst.block[0] for inst in instances) == ["x_1_1", "x_1_2", "x_2_1", "x_2_2"]
    inst = instances[0]
    theta = motif.theta(view, inst)
    node, parents = motif.parents[0]
    site = inst.mapping[node]
    first, second = (inst.mapping[p] for p in parents)
    i, j = (int(t) for t in site[2:].split("_"))
    cpt = data["cpt"][i, j].reshape(2, 2)  # [up, left]
    expected = cpt if first == grid.site_name(i - 1, j) else cpt.T
    np.testing.assert_allclose(theta[:4], expected.reshape(-1), atol=1e-6)
    data["evidence"][3, 3] = 0  # inside the blocks at (1, 1), (1, 2), (2, 1) and (2, 2)
    data["evidence"][1, 1] = 1
    view = motifs.compile_model(build_target(grid.grid_network_model, data))
    assert motif.match(view) == []


def test_sweep_classes_obey_the_parallel_rule(grid_problem):
    """In every schedule, no two members of a colour class share a factor: a block never meets another block's
    Markov blanket, and no single site lies in another's blanket."""
    target, _ = grid_problem
    problem = mg.build_problem(target, "meta_gibbs", {"parallel": True, "proposals": None}, jax.random.key(0))
    view = problem.view
    blocks = np.asarray(problem.instances.variables)
    for schedule in np.asarray(problem.plan.block_classes):
        for members in schedule:
            real = [blocks[i] for i in members if i < len(blocks) - 1]
            for a in real:
                for b in real:
                    if a is not b:
                        assert not set(a) & (set(b) | view.blanket(b))
    for schedule in np.asarray(problem.plan.single_classes):
        for members in schedule:
            real = [v for v in members if v < view.num_variables]
            assert all(w not in view.blanket([v]) for v in real for w in real)


# ------------------------------------------------------------------------------------------- exact marginals
@pytest.mark.slow
def test_gibbs_parallel_and_sequential_sweeps_reproduce_the_exact_marginals(grid_problem):
    """Single-site Gibbs with colour classes in parallel and one site at a time: both within 4 MCSE of the exact
    marginals (variable elimination) and of each other (4 sqrt(MCSE_a^2 + MCSE_b^2))."""
    target, exact = grid_problem
    parallel = _run(target, "gibbs", parallel=True)
    sequential = _run(target, "gibbs", seed=1, parallel=False)
    _assert_marginals(parallel, exact, "gibbs parallel")
    _assert_marginals(sequential, exact, "gibbs sequential")
    a, b = _estimates(parallel, exact), _estimates(sequential, exact)
    for name in exact:
        assert abs(a[name][0] - b[name][0]) < 4 * np.hypot(a[name][1], b[name][1])
    assert np.all(parallel.sample_stats["acceptance_rate"] == 1.0)


@pytest.mark.slow
def test_block_gibbs_reproduces_the_exact_marginals(grid_problem):
    target, exact = grid_problem
    run = _run(target, "block_gibbs")
    assert run.extra["block_labels"] == ["grid_block_3x3@x_1_1"]
    _assert_marginals(run, exact, "block_gibbs")


@pytest.mark.slow
def test_block_mh_with_an_untrained_proposal_reproduces_the_exact_marginals(grid_problem):
    """An untrained proposal (near uniform on the 512 block states) is a poor but valid independence proposal."""
    target, exact = grid_problem
    run = _run(target, "meta_gibbs", proposals="train", training_steps=0)
    assert run.extra["proposal_sources"] == '{"grid_block_3x3": "trained:0 steps"}'
    _assert_marginals(run, exact, "meta_gibbs untrained")
    acceptance = run.sample_stats["block_acceptance"]
    assert acceptance.shape == (CHAINS, DRAWS, 1) and 0.0 < np.nanmean(acceptance) < 1.0


@pytest.mark.slow
def test_block_mh_with_the_trained_proposal_reproduces_the_exact_marginals(grid_problem):
    """The shipped (meta-trained) proposal, applied to this unseen network without retraining: exact marginals within
    4 MCSE, and a higher block acceptance than the untrained one (the library's held-out acceptance is about 0.4)."""
    target, exact = grid_problem
    run = _run(target, "meta_gibbs")
    assert run.extra["proposal_sources"] == '{"grid_block_3x3": "library:grid_block_3x3"}'
    assert run.extra["training_s"] == 0.0
    _assert_marginals(run, exact, "meta_gibbs trained")
    assert np.nanmean(run.sample_stats["block_acceptance"]) > 0.2


@pytest.mark.slow
def test_meta_gibbs_on_the_open_universe_mixture_matches_the_exact_posterior_of_m():
    """Learned two-means moves (shipped 2-D proposal) + Gibbs on M + random-walk Metropolis on the means: E[M | y]
    within 4 MCSE of the exact value from the assignment sum (m = 3, 8 points)."""
    data = ou.open_universe_data(seed=1, max_components=3, num_observations=8, num_active=2, mean_scale=3.0)
    exact = float(ou.open_universe_reference(data).mean["num_components"])
    target = build_target(ou.open_universe_model, data)
    run = mg.sample_model(target, "meta_gibbs", {}, jax.random.key(0), CHAINS, 300, 3000, chunks=1)
    m = np.asarray(run.discrete["num_components"], dtype=float)
    se = max(float(az.mcse(m)), MCSE_FLOOR)
    assert abs(m.mean() - exact) < 4 * se
    assert run.extra["block_labels"] == ["two_means_2d@(0,1)", "two_means_2d@(0,2)", "two_means_2d@(1,2)"]
    acceptance = run.sample_stats["block_acceptance"]
    assert np.isfinite(acceptance).any() and np.nanmean(acceptance) > 0.0
    assert run.z.shape == (CHAINS, 3000, 6)


@pytest.mark.slow
def test_meta_gibbs_trains_a_proposal_within_warmup_when_the_library_has_none():
    """A 1-D open-universe mixture has the two-means motif but no shipped proposal: one is trained with ``warmup``
    optimiser steps and the run completes, recording the training time and curve."""
    data = ou.open_universe_data(seed=2, max_components=2, num_observations=6, dim=1, num_active=2)
    target = build_target(ou.open_universe_model, data)
    run = mg.sample_model(target, "meta_gibbs", {"training_batch": 32}, jax.random.key(0), 2, 20, 50, chunks=1)
    assert run.extra["proposal_sources"] == '{"two_means_1d": "trained:20 steps"}'
    assert run.extra["training_s"] > 0 and len(run.extra["training_two_means_1d_heldout_nll"]) == 2
    assert np.isfinite(run.sample_stats["lp"]).all()


# ---------------------------------------------------------------------------------------------------- errors
def test_meta_gibbs_refuses_a_model_without_a_known_motif():
    data = grid.grid_network_data(seed=0, rows=3, cols=3, num_evidence=0)
    with pytest.raises(ValueError, match="no known motif"):
        mg.sample_model(build_target(grid.grid_network_model, data), "meta_gibbs", {}, jax.random.key(0), 1, 1, 1)


def test_a_proposal_for_one_motif_refuses_a_model_without_it(grid_problem):
    target, _ = grid_problem
    mixture = build_target(ou.open_universe_model, ou.open_universe_data(seed=0, max_components=3, num_observations=5))
    library = mg.library_entries()
    with pytest.raises(ValueError, match="do not occur in this model.*two_means_2d"):
        mg.sample_model(
            mixture, "meta_gibbs", {"proposals": str(library["grid_block_3x3"])}, jax.random.key(0), 1, 1, 1
        )
    with pytest.raises(ValueError, match="do not occur in this model.*grid_block_3x3"):
        mg.sample_model(target, "meta_gibbs", {"proposals": "two_means_2d"}, jax.random.key(0), 1, 1, 1)
    with pytest.raises(ValueError, match="shipped: \\['grid_block_3x3', 'two_means_2d'\\]"):
        mg.sample_model(target, "meta_gibbs", {"proposals": "no_such_proposal"}, jax.random.key(0), 1, 1, 1)


def test_shipped_library_files_carry_signature_version_and_training_settings():
    library = mg.library_entries()
    assert set(library) == {"grid_block_3x3", "two_means_2d"}
    for name, path in library.items():
        assert path.stat().st_size < 1_000_000
        _, config, header = mp.load_proposal(path)
        assert header["format_version"] == mp.FORMAT_VERSION
        assert mg.library_key(header["motif"]) == name
        assert header["training"]["command"] == mg.TRAIN_COMMAND and header["training"]["num_steps"] > 0
    motif = motifs.grid_block_motif(3, 3)
    assert mp.load_proposal(library["grid_block_3x3"])[2]["motif"] == motif.signature()


def test_discrete_site_without_a_finite_support_is_refused():
    def model():
        rate = numpyro.sample("count", dist.Poisson(3.0))
        numpyro.sample("y", dist.Normal(rate, 1.0), obs=2.0)

    with pytest.raises(ValueError, match="site 'count'.*finite support"):
        mg.sample_model(build_target(model, {}), "gibbs", {}, jax.random.key(0), 1, 1, 1)


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown option.*proposals"):
        validate("meta_gibbs", {"proposal": "x"})
    assert validate("block_gibbs", {})["block_size"] == 4


@pytest.mark.filterwarnings("ignore::UserWarning")  # a 100-draw run earns convergence warnings
def test_fit_returns_discrete_draws_and_block_acceptance():
    import samplax

    data = _grid_5x5()
    fit = samplax.fit(
        grid.grid_network_model, data, method="meta_gibbs", chains=2, warmup=20, draws=100, progress=False
    )
    assert "x_1_1" in fit.idata.posterior and fit.idata.posterior["x_1_1"].shape == (2, 100)
    assert "x_4_4" in fit.idata.log_likelihood  # an evidence node
    assert fit.idata.sample_stats["block_acceptance"].shape == (2, 100, 1)


def test_proposals_train_command_and_its_old_name(tmp_path, monkeypatch):
    """`samplax proposals train` and `python -m samplax.infer.method_gibbs train-library` call the same trainer
    with the same arguments."""
    from samplax import cli
    from samplax.infer import proposal_library

    calls = []
    monkeypatch.setattr(proposal_library, "train_library", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert cli.main(["proposals", "train", "--steps", "3", "--only", "grid_block_3x3", "--out", str(tmp_path)]) == 0
    assert mg.main(["train-library", "--steps", "3", "--only", "grid_block_3x3", "--out", str(tmp_path)]) == 0
    assert calls[0] == calls[1] == ((str(tmp_path),), {"steps": 3, "seed": 0, "only": ["grid_block_3x3"]})
    assert mg.main(["no-such-command"]) == 2
