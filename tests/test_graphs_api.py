"""samplax.graphs: estimates from the Glauber and pivot chains against exact values, within 4 Monte Carlo standard
errors (ArviZ's MCSE of the mean, from the chains' effective sample size). Exact values: graph_hom.md's karate-club
numbers (0/1 adjacency) and the exact evaluators of samplax.models.graphs, themselves checked against brute force in
tests/models/test_graphs.py. Seeds are fixed."""

import json

import arviz as az
import networkx as nx
import numpy as np
import pytest

import samplax.graphs as sg
from samplax.infer import run

KARATE = nx.karate_club_graph()
TRIANGLE_GIVEN_TWO_STAR = 270 / 1212  # tr(A^3) / sum_v d_v^2 = 0.222772


def _within(estimate, exact, scale=4.0):
    value = getattr(estimate, "value", None)
    value = np.asarray(getattr(estimate, "matrix", value) if value is None else value)
    se = np.asarray(estimate.se)
    exact = np.asarray(exact)
    assert np.all(np.abs(value - exact) <= scale * se + 1e-12), (value, exact, se)


@pytest.fixture(scope="module")
def two_star():
    return sg.chd_motifs(1, 1)


@pytest.mark.parametrize("chain", ["glauber", "pivot"])
def test_triangle_given_two_star_on_karate(chain, two_star):
    """t(K3 | 2-star rooted at the centre) = 270 / 1212 on karate's 0/1 adjacency."""
    motif, target = two_star
    result = sg.sample_homomorphisms(
        motif,
        KARATE,
        chain=chain,
        weight=None,
        targets={"triangle": target},
        pairwise=False,
        steps=30_000,
        chains=4,
        seed=0,
    )
    estimate = result.estimates["triangle"]
    _within(estimate, TRIANGLE_GIVEN_TWO_STAR)
    assert 0 < estimate.se < 0.01 and estimate.rhat < 1.01 and estimate.ess > 1000
    idata = result.idata
    assert set(idata.posterior.data_vars) == {"triangle"}
    assert idata.posterior["triangle"].shape[0] == 4
    assert idata.attrs["chain"] == chain
    assert 0 < float(idata.sample_stats["acceptance_rate"].mean()) <= 1
    assert "triangle" in result.summary().index


def test_traces_save_to_netcdf(tmp_path):
    """The InferenceData (attrs included) round-trips through NetCDF, the format samplax saves fits in."""
    result = sg.sample_homomorphisms(
        sg.path_motif(3), KARATE, chain="pivot", steps=64, chains=3, seed=7, keep_states=True, burn_in=0
    )
    path = tmp_path / "homomorphisms.nc"
    result.idata.to_netcdf(str(path))
    loaded = az.from_netcdf(str(path))
    np.testing.assert_array_equal(loaded.posterior["pairwise"].values, result.idata.posterior["pairwise"].values)
    assert loaded.attrs["chain"] == "pivot" and "motif_edges" in loaded.attrs


def test_homomorphism_density_of_a_triangle(two_star):
    """t(K3) = 270 / 34^3 = t(2-star) t(K3 | 2-star) with t(2-star) exact (1212 / 34^3); trees are exact outright."""
    estimate = sg.homomorphism_density(sg.cycle_motif(3), KARATE, weight=None, steps=30_000, chains=4, seed=1)
    _within(estimate, 270 / 34**3)
    tree = sg.homomorphism_density(sg.path_motif(4), KARATE, weight=None)
    assert tree.value == pytest.approx(7280 / 34**4) and tree.se == 0.0


def test_macc_rows_on_karate():
    """The 5-path MACC against exact_macc (row 0: 1, 0.265225, 0.587407, 0.274258); the diagonal is exactly 0 and
    the first off-diagonals exactly 1, with standard error 0."""
    estimate = sg.macc(KARATE, 5, weight=None, steps=60_000, chains=4, seed=2)
    exact = sg.exact_macc(KARATE, 5, weight=None)
    _within(estimate, exact)
    np.testing.assert_array_equal(np.diag(estimate.matrix), 0.0)
    np.testing.assert_array_equal(np.diag(estimate.matrix, 1), 1.0)
    np.testing.assert_array_equal(np.diag(estimate.se, 1), 0.0)
    assert np.all(estimate.se[0, 2:] > 0)
    assert estimate.idata.posterior["pairwise"].dims[-2:] == ("motif_node", "motif_node_2")


def test_weighted_chd_profile_on_karate(two_star):
    """Karate's weights (1..7, scaled by 1/7): the clustering profile P(A(x_1, x_2) >= s) and t(K3 | 2-star) from
    the pivot chain against exact_chd_profile / exact_conditional_density."""
    thresholds = np.array([0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 1.0])
    estimate = sg.chd_profile(KARATE, thresholds=thresholds, chain="pivot", steps=40_000, chains=4, seed=3)
    motif, target = two_star
    exact = sg.exact_chd_profile(KARATE, motif, target, thresholds)
    assert exact[0] == 1.0 and estimate.profile[0] == 1.0 and estimate.se[0] == 0.0
    assert np.all(np.diff(estimate.profile) <= 0)
    _within(sg.ObservableEstimate(estimate.profile, estimate.se, None, None), exact)
    _within(estimate.conditional_density, sg.exact_conditional_density(motif, KARATE, target))
    assert estimate.idata.posterior["target_chd"].dims[-1] == "threshold"


def test_non_tree_motif_with_glauber_on_one_component():
    """Diamond (K4 minus an edge) with target K4 on karate, given as one component of a disconnected network
    (component='largest' drops a disjoint path): t(K4 | diamond) by brute force over karate's 34^4 maps."""
    diamond = nx.complete_graph(4)
    diamond.remove_edge(2, 3)
    network = sg.as_network(KARATE, weight=None)
    adjacency = network.dense_adjacency()
    exact = float(sg.brute_force_expectation(diamond, network, lambda x: adjacency[x[2], x[3]]))
    union = nx.disjoint_union(KARATE, nx.path_graph(3))
    result = sg.sample_homomorphisms(
        diamond,
        union,
        weight=None,
        component="largest",
        targets={"K4": nx.complete_graph(4)},
        pairwise=False,
        steps=40_000,
        chains=4,
        seed=4,
    )
    _within(result.estimates["K4"], exact)
    assert result.network.num_nodes == 34
    assert result.idata.attrs["conditional"] == "enumerate"  # karate's largest degree is 17
    with pytest.raises(ValueError, match="2 connected components.*component='largest'"):
        sg.sample_homomorphisms(diamond, union, weight=None)


@pytest.fixture(scope="module")
def davis():
    return nx.davis_southern_women_graph()


def test_bipartite_davis_network(davis):
    """Davis' women-event network is bipartite: the Glauber chain refuses it unless restricted to one side for the
    root; the pivot chain runs lazily. Motif: a spider 0-1, 0-2, 0-3-4, whose two root classes differ. Exact values:
    pair expectations by tree dynamic programming (root confined to side 0 for the restricted Glauber chain)."""
    with pytest.raises(ValueError, match="bipartite.*chain='pivot'.*bipartite_side"):
        sg.macc(davis, 4, weight=None)
    spider = nx.Graph([(0, 1), (0, 2), (0, 3), (3, 4)])
    network = sg.as_network(davis, weight=None)
    pairs = [(i, j) for i in range(5) for j in range(5)]
    exact = sg.exact_pair_expectation(spider, network, pairs).reshape(5, 5)
    side = (network.bipartition() == 0).astype(float)
    exact_side = sg.exact_pair_expectation(spider, network, pairs, root_mask=side).reshape(5, 5)
    assert abs(exact_side[1, 4] - exact[1, 4]) > 0.005  # the two classes differ

    pivot = sg.sample_homomorphisms(spider, davis, chain="pivot", weight=None, steps=20_000, chains=4, seed=5)
    assert pivot.idata.attrs["lazy"] == 1
    _within(pivot.estimates["pairwise"], exact)
    restricted = sg.sample_homomorphisms(spider, davis, weight=None, bipartite_side=0, steps=50_000, chains=4, seed=6)
    _within(restricted.estimates["pairwise"], exact_side)
    assert restricted.estimates["pairwise"].value[1, 2] == 0.0  # even distance: same side, never adjacent


def test_chunking_and_seeds_fix_the_draws(monkeypatch):
    """Step t of a chain uses fold_in(chain_key, t): cutting the run into shorter chunks gives the same draws, and
    the same seed gives the same result."""
    motif = sg.path_motif(3)
    first = sg.sample_homomorphisms(
        motif, KARATE, chain="pivot", steps=64, chains=3, seed=7, keep_states=True, burn_in=0
    )
    monkeypatch.setattr(sg, "_MAX_CHUNK_DRAWS", 16)
    chunked = sg.sample_homomorphisms(
        motif, KARATE, chain="pivot", steps=64, chains=3, seed=7, keep_states=True, burn_in=0
    )
    assert first.states.shape == (3, 64, 3)
    np.testing.assert_array_equal(first.states, chunked.states)
    np.testing.assert_array_equal(first.idata.posterior["pairwise"], chunked.idata.posterior["pairwise"])
    assert len({tuple(row) for row in first.states[0]}) > 10  # it moves


RUN = {"chain": "pivot", "steps": 48, "burn_in": 16, "chains": 3, "seed": 7, "keep_states": True}  # 16 + 48 draws


@pytest.fixture(scope="module")
def plain_run():
    """The uninterrupted run that the checkpoint and thinning tests compare with."""
    return sg.sample_homomorphisms(sg.path_motif(3), KARATE, **RUN)


def _assert_same_draws(first, second):
    np.testing.assert_array_equal(first.states, second.states)
    for group in ("posterior", "sample_stats"):
        for name, values in getattr(first.idata, group).data_vars.items():
            np.testing.assert_array_equal(values.values, getattr(second.idata, group)[name].values)


def test_checkpoint_resume_and_progress(plain_run, tmp_path, monkeypatch, capsys):
    """The chains run through samplax's ChainRunner: a checkpointed run stopped after two of its four chunks (the
    first all burn-in) resumes, when called again with the same arguments, to the draws of the plain run, running
    only the chunks left; a finished checkpoint is read back without sampling; a run that differs is refused, naming
    the argument. The same seed gives the same draws, another seed others. The progress bar shows its stages."""
    motif, path = sg.path_motif(3), str(tmp_path / "ck")
    _assert_same_draws(plain_run, sg.sample_homomorphisms(motif, KARATE, **RUN))
    assert not np.array_equal(plain_run.states, sg.sample_homomorphisms(motif, KARATE, **{**RUN, "seed": 8}).states)
    calls, original = [], run.ChainRunner.run

    def stopped_after_two_chunks(self, *args):
        if len(calls) == 2 and not resuming:
            raise KeyboardInterrupt
        calls.append(args[-1])
        return original(self, *args)

    monkeypatch.setattr(run.ChainRunner, "run", stopped_after_two_chunks)
    resuming = False
    with pytest.raises(KeyboardInterrupt):
        sg.sample_homomorphisms(motif, KARATE, **RUN, checkpoint=path, checkpoint_every=16, progress=True)
    assert json.loads((tmp_path / "ck" / "manifest.json").read_text())["completed_chunks"] == 2
    shown = capsys.readouterr().err
    assert all(f"pivot chain: {stage}" in shown for stage in ("compiling", "burn-in", "sampling")), shown
    resuming = True
    resumed = sg.sample_homomorphisms(motif, KARATE, **RUN, checkpoint=path, checkpoint_every=16, progress=True)
    assert calls == [0, 16, 32, 48]  # chunk starts, in draws: the resumed call ran the last two only
    assert "pivot chain: 3 chains x 48 draws" in capsys.readouterr().err  # the summary line
    _assert_same_draws(plain_run, resumed)
    assert resumed.idata.attrs["burn_in"] == 16
    _assert_same_draws(plain_run, sg.sample_homomorphisms(motif, KARATE, **RUN, checkpoint=path))
    assert len(calls) == 4 and capsys.readouterr().err == ""  # read back, nothing run; no bar unless asked
    with pytest.raises(ValueError, match="'seed' was 7 and is now 9"):
        sg.sample_homomorphisms(motif, KARATE, **{**RUN, "seed": 9}, checkpoint=path)
    with pytest.raises(ValueError, match="'lazy' was False and is now True"):
        sg.sample_homomorphisms(motif, KARATE, **RUN, lazy=True, checkpoint=path)
    with pytest.raises(ValueError, match="another run: 'motif' was .*edges"):
        sg.sample_homomorphisms(sg.path_motif(4), KARATE, **RUN, checkpoint=path)
    with pytest.raises(ValueError, match="'checkpoint_every' was 16 and is now 8"):
        sg.sample_homomorphisms(motif, KARATE, **RUN, checkpoint=path, checkpoint_every=8)
    with pytest.raises(ValueError, match="another network"):
        sg.sample_homomorphisms(motif, nx.florentine_families_graph(), **RUN, checkpoint=path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a samplax checkpoint"):
        sg.sample_homomorphisms(motif, KARATE, **RUN, checkpoint=str(tmp_path / "notes"))
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
        sg.sample_homomorphisms(motif, KARATE, **RUN, checkpoint_every=0)
    with pytest.raises(ValueError, match="progress must be True or False"):
        sg.sample_homomorphisms(motif, KARATE, **RUN, progress="yes")


def test_thin_keeps_every_second_draw(plain_run):
    """thin=2 keeps the state after every second step: half the draws, equal to draws 1, 3, 5, ... of thin=1 (the
    burn-in of 16 steps is 8 draws of 2 steps)."""
    thinned = sg.sample_homomorphisms(sg.path_motif(3), KARATE, **RUN, thin=2)
    assert thinned.states.shape == (3, 24, 3) and thinned.idata.attrs["thin"] == 2
    np.testing.assert_array_equal(thinned.states, plain_run.states[:, 1::2])
    np.testing.assert_array_equal(
        thinned.idata.posterior["pairwise"].values, plain_run.idata.posterior["pairwise"].values[:, 1::2]
    )


def test_explicit_starting_states():
    """init takes network node labels (one row for all chains, or one per chain); a map that is not a homomorphism
    is refused."""
    result = sg.sample_homomorphisms(
        sg.path_motif(3), KARATE, chain="pivot", steps=64, chains=3, seed=7, keep_states=True, burn_in=0, init=[2, 0, 1]
    )
    assert result.states.shape == (3, 64, 3)
    adjacency = sg.as_network(KARATE, weight=None).dense_adjacency()
    assert np.all(adjacency[result.states[..., 0], result.states[..., 1]] == 1)
    assert np.all(adjacency[result.states[..., 1], result.states[..., 2]] == 1)
    assert len({tuple(row) for row in result.states[:, -1]}) > 1  # chains from one start drift apart
    with pytest.raises(ValueError, match="init: row 0 is not a homomorphism"):
        sg.sample_homomorphisms(sg.path_motif(3), KARATE, chain="pivot", chains=2, init=[[0, 9, 0]] * 2)
    with pytest.raises(ValueError, match="init: expected shape"):
        sg.sample_homomorphisms(sg.path_motif(3), KARATE, chain="pivot", chains=2, init=[[0, 1, 0]] * 3)


def test_macc_distance():
    """Zero for identical and for path-reversed MACCs, positive otherwise, symmetric."""
    karate = sg.exact_macc(KARATE, 5, weight=None)
    florentine = sg.exact_macc(nx.florentine_families_graph(), 5, weight=None)
    assert sg.macc_distance(karate, karate) == 0.0
    assert sg.macc_distance(karate, karate[::-1, ::-1]) == 0.0
    distance = sg.macc_distance(karate, florentine)
    assert distance > 0.05 and distance == pytest.approx(sg.macc_distance(florentine, karate))
    assert distance <= np.linalg.norm(karate - florentine, ord=2) + 1e-12
    with pytest.raises(ValueError, match="square matrices"):
        sg.macc_distance(karate, karate[:4, :4])


def test_errors_name_the_argument_and_the_fix(two_star):
    motif, target = two_star
    with pytest.raises(ValueError, match="pivot chain needs a tree motif.*chain='glauber'"):
        sg.sample_homomorphisms(sg.cycle_motif(4), KARATE, chain="pivot")
    with pytest.raises(ValueError, match="no edges.*homomorphism_density"):
        sg.sample_homomorphisms(nx.empty_graph(3), KARATE)
    with pytest.raises(ValueError, match="chain must be one of"):
        sg.sample_homomorphisms(motif, KARATE, chain="gibbs")
    with pytest.raises(ValueError, match="bipartite_side: the network is not bipartite"):
        sg.sample_homomorphisms(motif, KARATE, bipartite_side=0)
    with pytest.raises(ValueError, match="thresholds: a CHD profile needs targets"):
        sg.sample_homomorphisms(motif, KARATE, thresholds=[0.5])
    with pytest.raises(ValueError, match="measure: only the pivot chain"):
        sg.sample_homomorphisms(motif, KARATE, measure="random_walk")
    with pytest.raises(ValueError, match="steps must be an integer"):
        sg.sample_homomorphisms(motif, KARATE, steps=0)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        sg.macc(KARATE, 1)
    with pytest.raises(ValueError, match="odd cycle"):
        sg.sample_homomorphisms(sg.cycle_motif(3), nx.davis_southern_women_graph(), bipartite_side=0)
    with pytest.raises(ValueError, match="nothing to estimate"):
        sg.sample_homomorphisms(motif, KARATE, pairwise=False)
