"""Tests for samplax.kernels.meta_proposal (the mixture-density proposal, meta-training, the data-only proposal files)
and samplax.kernels.gibbs (the tabular updates, the colouring rule).

Statistical checks compare frequencies with exact probabilities; a frequency from N independent draws has standard
error sqrt(p (1 - p) / N), and the tolerance is 4 of those (plus 1e-3 for rounding).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from samplax.kernels import gibbs as gb
from samplax.kernels import meta_proposal as mp
from samplax.models import motifs

EMPTY = jnp.zeros((0,))


def _random_params(config, key, scale=1.0):
    params = mp.init_params(key, config)
    head = params["head"]
    params["head"] = {
        "w": scale * jax.random.normal(jax.random.fold_in(key, 1), head["w"].shape),
        "b": scale * jax.random.normal(jax.random.fold_in(key, 2), head["b"].shape),
    }
    return params


def test_discrete_proposal_is_normalised_and_positive_on_every_state():
    """sum_b q(b | x) = 1 over all 2^5 states, and every state keeps q >= floor^5 (the per-variable floor inside
    each component) even when the head's logits are huge (scale 50)."""
    config = mp.ProposalConfig(
        num_inputs=6, num_discrete=5, hidden_sizes=(16,), num_components=3, probability_floor=1e-3
    )
    states = jnp.asarray(mp.discrete_block_states(5))
    for scale in (1.0, 50.0):
        params = _random_params(config, jax.random.key(0), scale)
        x = jax.random.normal(jax.random.key(3), (6,))
        log_q = jax.jit(jax.vmap(lambda s: mp.log_prob(params, config, x, mp.BlockValue(s, EMPTY))))(states)
        assert abs(float(logsumexp(log_q))) < 1e-4
        assert float(jnp.min(log_q)) >= 5 * np.log(1e-3) - 1e-4


def test_sampling_component_first_matches_the_mixture_density():
    """Frequencies of 40 000 draws of a 3-variable block equal exp(log q) within 4 standard errors: the sampler draws
    a component, then the block, and log_prob scores the mixture (not a product of marginals)."""
    config = mp.ProposalConfig(
        num_inputs=4, num_discrete=3, hidden_sizes=(8,), num_components=2, probability_floor=1e-3
    )
    params = _random_params(config, jax.random.key(1), scale=3.0)
    x = jnp.ones(4)
    draws = jax.jit(jax.vmap(lambda k: mp.sample(params, config, k, x).discrete))(
        jax.random.split(jax.random.key(2), 40_000)
    )
    codes = np.asarray(draws) @ np.array([1, 2, 4])
    freq = np.bincount(codes, minlength=8) / codes.size
    states = mp.discrete_block_states(3)
    exact = np.exp(
        np.asarray(
            jax.jit(jax.vmap(lambda s: mp.log_prob(params, config, x, mp.BlockValue(s, EMPTY))))(jnp.asarray(states)),
            dtype=float,
        )
    )
    product_of_marginals = np.prod([[exact[(states[:, v] == s[v])].sum() for v in range(3)] for s in states], axis=1)
    se = np.sqrt(exact * (1 - exact) / codes.size)
    np.testing.assert_array_less(np.abs(freq - exact), 4 * se + 1e-3)
    assert np.max(np.abs(exact - product_of_marginals)) > 0.01  # the check above could tell the two apart


def test_real_block_proposal_density_integrates_to_one():
    """A one-dimensional real block: the trapezoid integral of q over [-40, 40] is 1 within 1e-3."""
    config = mp.ProposalConfig(num_inputs=2, num_real=1, hidden_sizes=(8,), num_components=4)
    params = _random_params(config, jax.random.key(4), scale=0.5)
    grid = jnp.linspace(-40, 40, 40_001)
    log_q = jax.jit(
        jax.vmap(lambda r: mp.log_prob(params, config, jnp.ones(2), mp.BlockValue(jnp.zeros((0,), jnp.int32), r[None])))
    )(grid)
    assert abs(float(jnp.trapezoid(jnp.exp(log_q), grid)) - 1.0) < 1e-3


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="probability_floor"):
        mp.init_params(jax.random.key(0), mp.ProposalConfig(num_inputs=3, num_discrete=2, probability_floor=0.6))
    with pytest.raises(ValueError, match="num_discrete \\+ num_real"):
        mp.init_params(jax.random.key(0), mp.ProposalConfig(num_inputs=3))


@pytest.fixture(scope="module")
def trained_grid_proposal():
    from samplax.infer.proposal_library import train_motif_proposal

    motif = motifs.grid_block_motif(3, 3)
    params, config, history = train_motif_proposal(
        motif,
        jax.random.key(0),
        num_steps=400,
        batch_size=128,
        learning_rate=3e-3,
        hidden_sizes=(64,),
        num_components=4,
        eval_every=200,
        num_heldout=32,
    )
    return motif, params, config, history


@pytest.mark.slow
def test_meta_training_lowers_heldout_kl_and_raises_acceptance(trained_grid_proposal):
    """Held-out exact KL(p(B | c) || q) (512-state enumeration of the 9-node block, 32 held-out parameter draws) falls
    at every evaluation and by at least 10 % over 400 steps, and the stationary independence-MH acceptance rate rises
    by half. Both are exact functions of the network (enumeration), so only the optimisation moves them; with this
    seed KL goes 3.6 -> 2.9 and acceptance 0.027 -> 0.056 (the shipped proposal, 20 000 steps: KL about 0.7,
    acceptance about 0.45)."""
    _, _, _, history = trained_grid_proposal
    kl, acceptance = history.metrics["heldout_kl"], history.metrics["heldout_acceptance"]
    assert history.step == [0, 200, 400]
    assert kl[2] < kl[1] < kl[0] and kl[-1] < 0.9 * kl[0]
    assert acceptance[-1] > 1.5 * acceptance[0]
    assert history.heldout_nll[-1] < history.heldout_nll[0]


def test_exact_kl_is_zero_for_the_exact_conditional_and_acceptance_one():
    """With q = p (a one-component 'proposal' whose table is the exact conditional of a 2-variable block), the KL is
    0 and independence MH always accepts; checked through exact_kl_and_acceptance's formulas on a tiny block."""
    config = mp.ProposalConfig(num_inputs=1, num_discrete=2, hidden_sizes=(), num_components=1, probability_floor=1e-6)
    params = mp.init_params(jax.random.key(0), config)
    p_first, p_second = 0.3, 0.8  # independent variables: q with one component can be exact
    bias = jnp.concatenate([jnp.zeros(1), jnp.log(jnp.array([1 - p_first, p_first, 1 - p_second, p_second]))])
    params["head"] = {"w": jnp.zeros_like(params["head"]["w"]), "b": bias}
    states = mp.discrete_block_states(2)
    log_p = np.log(
        [(1 - p_first) * (1 - p_second), p_first * (1 - p_second), (1 - p_first) * p_second, p_first * p_second]
    )
    kl, acceptance = mp.exact_kl_and_acceptance(params, config, jnp.zeros((1, 1)), jnp.asarray(log_p)[None], states)
    assert abs(float(kl)) < 1e-4 and abs(float(acceptance) - 1.0) < 1e-4


# --------------------------------------------------------------------------------------------------- saving, loading
def test_saved_proposal_reloads_and_proposes_identically(trained_grid_proposal, tmp_path):
    """Same key -> the same proposed block and the same log q after a save/load round trip (float32 both ways)."""
    motif, params, config, _ = trained_grid_proposal
    path = tmp_path / "grid.npz"
    mp.save_proposal(path, params, config, {"motif": motif.signature(), "training": {"steps": 400}})
    loaded, loaded_config, header = mp.load_proposal(path)
    assert loaded_config == config
    assert header["motif"] == json.loads(json.dumps(motif.signature()))
    assert header["format_version"] == mp.FORMAT_VERSION and header["training"]["steps"] == 400
    x, _ = jax.jit(motif.sample_training_batch, static_argnums=1)(jax.random.key(5), 64)
    keys = jax.random.split(jax.random.key(100), 64)

    @jax.jit
    def propose(params, keys, x):
        blocks = jax.vmap(lambda k, xi: mp.sample(params, config, k, xi))(keys, x)
        return blocks.discrete, jax.vmap(lambda xi, b: mp.log_prob(params, config, xi, b))(x, blocks)

    before, after = propose(params, keys, x), propose(loaded, keys, x)
    np.testing.assert_array_equal(np.asarray(before[0]), np.asarray(after[0]))
    np.testing.assert_array_equal(np.asarray(before[1]), np.asarray(after[1]))


def test_loading_refuses_other_versions_shapes_and_pickles(trained_grid_proposal, tmp_path):
    motif, params, config, _ = trained_grid_proposal
    path = tmp_path / "grid.npz"
    mp.save_proposal(path, params, config, {"motif": motif.signature()})
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["header"].tobytes())
    header["format_version"] = 999
    np.savez(tmp_path / "version.npz", **{**arrays, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)})
    with pytest.raises(ValueError, match="format version 999"):
        mp.load_proposal(tmp_path / "version.npz")
    np.savez(tmp_path / "shape.npz", **{**arrays, "head_b": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="head_b"):
        mp.load_proposal(tmp_path / "shape.npz")
    np.savez(tmp_path / "pickled.npz", header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable proposal file"):
        mp.load_proposal(tmp_path / "pickled.npz")


# ------------------------------------------------------------------------------------------------ tabular updates
def _chain_tables():
    """x0 -> x1 -> x2 -> x3, binary, with random tables; returns (FactorTables, exact joint over 16 states)."""
    rng = np.random.default_rng(0)
    p0 = rng.uniform(0.1, 0.9)
    rows = rng.uniform(0.05, 0.95, size=(3, 2))  # P(x_{k+1} = 1 | x_k)
    log_tables = [np.log([1 - p0, p0])]
    for k in range(3):
        log_tables.append(np.log(np.stack([1 - rows[k], rows[k]])))  # [x_{k+1}, x_k]
    scopes = [(0,), (1, 0), (2, 1), (3, 2)]
    scope = np.full((5, 2), 4, np.int32)
    strides = np.zeros((5, 2), np.int32)
    log_table = np.zeros((5, 4))
    for f, (members, table) in enumerate(zip(scopes, log_tables)):
        scope[f, : len(members)] = members
        strides[f, : len(members)] = [2, 1][-len(members) :] if len(members) == 2 else [1]
        log_table[f, : table.size] = table.reshape(-1)
    variable_factors = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 4]], np.int32)
    tables = gb.FactorTables(
        jnp.asarray(scope),
        jnp.asarray(strides),
        jnp.asarray(log_table, jnp.float32),
        jnp.asarray(variable_factors),
        jnp.asarray([2, 2, 2, 2, 1], jnp.int32),
        jnp.asarray(np.array([[0, 1]] * 4 + [[0, 0]], np.float32)),
    )
    states = mp.discrete_block_states(4)
    joint = np.array([sum(log_tables[f][tuple(s[list(m)])] for f, m in enumerate(scopes)) for s in states])
    return tables, states, np.exp(joint)


def test_local_log_prob_matches_the_joint_through_the_tables():
    tables, states, joint = _chain_tables()
    idx = jnp.asarray(np.concatenate([states, np.zeros((16, 1), np.int32)], axis=1))
    values = jax.jit(jax.vmap(lambda i: gb.local_log_prob(tables, i, jnp.arange(4))))(idx)
    np.testing.assert_allclose(np.asarray(values), np.log(joint), atol=1e-5)


def test_parallel_single_site_gibbs_draws_each_exact_conditional():
    """x0 and x2 share no factor, so one parallel update of both from a fixed state draws each from its exact full
    conditional: 20 000 updates, frequencies within 4 standard errors."""
    tables, states, joint = _chain_tables()
    idx = jnp.asarray([1, 0, 1, 1, 0], jnp.int32)
    new = jax.jit(jax.vmap(lambda k: gb.single_site_gibbs(k, tables, idx, jnp.asarray([0, 2]))))(
        jax.random.split(jax.random.key(0), 20_000)
    )
    for v in (0, 2):
        others = [w for w in range(4) if w != v]
        match = np.all(states[:, others] == np.asarray(idx)[others], axis=1)
        exact = joint[match & (states[:, v] == 1)].sum() / joint[match].sum()
        freq = float(jnp.mean(new[:, v]))
        assert abs(freq - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-3
    unchanged = np.broadcast_to(np.asarray(idx)[[1, 3, 4]], (20_000, 3))
    np.testing.assert_array_equal(np.asarray(new[:, [1, 3, 4]]), unchanged)


def test_block_updates_leave_the_distribution_invariant():
    """Exact block Gibbs and block MH with an untrained (random) proposal on the block {x1, x2}, started from exact
    joint draws: after one update the 16 state frequencies (20 000 chains) still equal the joint within 4 standard
    errors."""
    tables, states, joint = _chain_tables()
    n = 20_000
    draws = np.random.default_rng(1).choice(16, size=n, p=joint / joint.sum())
    idx = jnp.asarray(np.concatenate([states[draws], np.zeros((n, 1), np.int32)], axis=1))
    instances = gb.BlockInstances(
        jnp.asarray([[1, 2], [4, 4]], jnp.int32),
        jnp.asarray([[1, 2, 3], [4, 4, 4]], jnp.int32),
        jnp.ones((2, 3)),
        jnp.asarray([[0, 3], [4, 4]], jnp.int32),
    )
    config = mp.ProposalConfig(num_inputs=5, num_discrete=2, hidden_sizes=(8,), num_components=2)
    params = _random_params(config, jax.random.key(7), scale=2.0)
    ids = jnp.asarray([0, 1])  # instance 1 is the dummy: it must change nothing
    keys = jax.random.split(jax.random.key(3), n)
    block_states = jnp.asarray(mp.discrete_block_states(2))
    gibbs = jax.jit(jax.vmap(lambda k, s: gb.exact_block_gibbs(k, tables, s, instances, ids, block_states)))(keys, idx)
    mh, accept = jax.jit(jax.vmap(lambda k, s: gb.block_metropolis(k, tables, s, instances, ids, params, config)))(
        keys, idx
    )
    target = joint / joint.sum()
    se = np.sqrt(target * (1 - target) / n)
    for new in (gibbs, mh):
        codes = np.asarray(new[:, :4]) @ (2 ** np.arange(4))
        assert np.all(np.asarray(new[:, 4]) == 0)
        np.testing.assert_array_less(np.abs(np.bincount(codes, minlength=16) / n - target), 4 * se + 1e-3)
    assert 0.05 < float(jnp.mean(accept[:, 0])) < 1.0 and bool(jnp.all(jnp.isfinite(accept[:, 0])))


def test_colouring_separates_blocks_that_meet_each_others_blankets():
    """Chain 0-1-2-...-9 with blanket(v) = {v-1, v+1}: no class holds neighbours; blocks {0,1},{2,3} conflict (1 is
    in the blanket of 2) while {0,1},{4,5} do not; parallel=False gives singletons in order."""
    members = [[v] for v in range(10)]
    blankets = [{v - 1, v + 1} - {-1, 10} for v in range(10)]
    classes = gb.colour_classes(members, blankets)
    for c in classes:
        assert all(abs(a - b) > 1 for a in c for b in c if a != b)
    assert sorted(v for c in classes for v in c) == list(range(10))
    blocks = [[0, 1], [2, 3], [4, 5]]
    block_blankets = [{2}, {1, 4}, {3, 6}]
    classes = gb.colour_classes(blocks, block_blankets)
    assert not any({0, 1} <= set(c) or {1, 2} <= set(c) for c in classes)
    assert any({0, 2} <= set(c) for c in classes)
    assert gb.colour_classes(blocks, block_blankets, parallel=False) == [[0], [1], [2]]
    padded = gb.pad_classes([[[0, 2], [1]], [[1]]], fill=9)
    assert padded.shape == (2, 2, 2) and padded[1, 1].tolist() == [9, 9] and padded[0, 1].tolist() == [1, 9]
