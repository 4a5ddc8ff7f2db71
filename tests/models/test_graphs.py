"""Motif and network parsing, validation, and the exact evaluators of samplax.models.graphs.

Exact values come from graph_hom.md (Zachary's karate club, 0/1 adjacency) and from brute force over all n^k maps."""

import math

import networkx as nx
import numpy as np
import pytest

from samplax.models import graphs as g


@pytest.fixture(scope="module")
def karate():
    return g.as_network(nx.karate_club_graph(), weight=None)


def test_karate_counts_match_the_reference_values(karate):
    """hom(K2)=156, hom(P3)=1212, hom(P4)=7280, hom(star_3)=13908, hom(C4)=3500, tr(A^3)=270 (graph_hom.md)."""
    expected = {
        "K2": (g.path_motif(2), 156),
        "P3": (g.path_motif(3), 1212),
        "P4": (g.path_motif(4), 7280),
        "star3": (g.star_motif(3), 13908),
        "C4": (g.cycle_motif(4), 3500),
        "K3": (g.cycle_motif(3), 270),
    }
    for name, (motif, count) in expected.items():
        assert g.exact_homomorphism_count(motif, karate) == count, name
    assert g.exact_homomorphism_density(g.path_motif(3), karate) == pytest.approx(1212 / 34**3, rel=1e-12)


def test_karate_conditional_density_and_macc_row(karate):
    """t(K3 | 2-star) = tr(A^3) / sum_v d_v^2 = 0.222772; MACC row 0 of the 5-path: 1, 0.265225, 0.587407, 0.274258."""
    motif, target = g.chd_motifs(1, 1)
    assert g.exact_conditional_density(motif, karate, target) == pytest.approx(270 / 1212, abs=1e-12)
    assert g.exact_conditional_density(motif, karate, target) == pytest.approx(0.222772, abs=5e-7)
    macc = g.exact_macc(karate, 5)
    np.testing.assert_allclose(macc[0, 1:], [1.0, 0.265225, 0.587407, 0.274258], atol=5e-7)
    np.testing.assert_allclose(macc, macc.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(macc), 0.0)
    np.testing.assert_allclose(
        g.exact_pair_expectation(g.path_motif(5), karate, [(0, j) for j in range(1, 5)]), macc[0, 1:], atol=1e-12
    )


def test_weights_are_scaled_to_the_unit_interval():
    """Karate's edge weights run 1..7: A is divided by 7, and weight=None gives the 0/1 adjacency."""
    weighted = g.as_network(nx.karate_club_graph())
    assert weighted.weight_scale == 7.0
    assert weighted.out_weights.max() == 1.0 and weighted.out_weights.min() == pytest.approx(1 / 7)
    assert not weighted.unweighted
    assert g.as_network(nx.karate_club_graph(), weight=None).unweighted


def _brute_pair(motif, network, a, b, function=lambda w: w):
    adjacency = network.dense_adjacency()
    motif = g.as_motif(motif)
    ia, ib = motif.labels.index(a), motif.labels.index(b)
    return float(g.brute_force_expectation(motif, network, lambda x: function(adjacency[x[ia], x[ib]])))


def test_exact_evaluators_agree_with_brute_force_on_the_graph_atlas():
    """Every graph of networkx's atlas (up to 7 nodes, with an edge): tree dynamic programming, cycle traces, the path
    MACC formula and tree pair expectations against sums over all n^k maps (to 1e-9, rounding only). Every 25th graph
    is also checked with random edge and node weights."""
    rng = np.random.default_rng(0)
    trees = [g.as_motif(m) for m in (g.path_motif(3), g.path_motif(4), g.star_motif(3), g.chd_motifs(1, 2)[0])]
    cycles = [g.as_motif(g.cycle_motif(3)), g.as_motif(g.cycle_motif(4))]
    path4, fork = trees[1], trees[3]
    checked = 0
    for number, graph in enumerate(nx.graph_atlas_g()):
        if graph.number_of_edges() == 0:
            continue
        networks = [g.as_network(graph, weight=None)]
        if number % 25 == 0:
            weighted = graph.copy()
            for u, v in weighted.edges:
                weighted[u][v]["weight"] = rng.uniform(0.1, 3.0)
            networks.append(g.as_network(weighted, node_weight=rng.uniform(0.1, 1.0, graph.number_of_nodes())))
        for network in networks:
            for motif in trees + cycles:
                exact = g.exact_homomorphism_density(motif, network)
                brute = g.brute_force_homomorphism_density(motif, network)
                assert exact == pytest.approx(brute, rel=1e-9, abs=1e-15), (number, list(motif.edges))
            if g.exact_homomorphism_density(path4, network) > 0:
                macc = g.exact_macc(network, 4)
                adjacency = network.dense_adjacency()
                brute = g.brute_force_expectation(
                    path4, network, lambda x: adjacency[x[:, None], x[None, :]].reshape(16, -1)
                ).reshape(4, 4)
                np.testing.assert_allclose(macc, brute, atol=1e-9, err_msg=str(number))
                motif = fork  # 0-1, 0-2-3: pair (1, 3) closes a 4-cycle
                got = g.exact_pair_expectation(motif, network, [(1, 3), (2, 2)], lambda w: (w >= 0.5) * 1.0)
                want = [
                    _brute_pair(motif, network, 1, 3, lambda w: (w >= 0.5) * 1.0),
                    _brute_pair(motif, network, 2, 2, lambda w: (w >= 0.5) * 1.0),
                ]
                np.testing.assert_allclose(got, want, atol=1e-9, err_msg=str(number))
            checked += 1
    assert checked > 1200


def test_directed_networks_respect_edge_directions():
    """A random weighted digraph and a tree motif whose edges point both ways: dynamic programming, MACC (A^T below
    the diagonal) and pair expectations against brute force."""
    rng = np.random.default_rng(3)
    digraph = nx.gnp_random_graph(6, 0.5, seed=4, directed=True)
    for u, v in digraph.edges:
        digraph[u][v]["weight"] = rng.uniform(0.2, 2.0)
    network = g.as_network(digraph, node_weight=rng.uniform(0.2, 1.0, 6))
    motif = nx.DiGraph([(0, 1), (2, 0), (2, 3)])
    exact = g.exact_homomorphism_density(motif, network)
    assert exact == pytest.approx(g.brute_force_homomorphism_density(motif, network), rel=1e-10)
    adjacency = network.dense_adjacency()
    brute = g.brute_force_expectation(
        g.path_motif(4), network, lambda x: adjacency[x[:, None], x[None, :]].reshape(16, -1)
    ).reshape(4, 4)
    np.testing.assert_allclose(g.exact_macc(network, 4), brute, atol=1e-10)
    parsed = g.as_motif(motif)
    got = g.exact_pair_expectation(parsed, network, [(1, 3), (3, 1)])
    want = [_brute_pair(parsed, network, 1, 3), _brute_pair(parsed, network, 3, 1)]
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_tree_motifs_are_renumbered_depth_first_from_the_root():
    motif = g.as_motif(nx.Graph([("c", "a"), ("a", "b"), ("a", "d")]), root="c")
    assert motif.labels == ("c", "a", "b", "d")
    assert motif.parents == (-1, 0, 1, 1)
    assert g.as_motif(g.path_motif(5)).labels == (0, 1, 2, 3, 4)
    first, target = g.chd_motifs(2, 1)
    assert g.as_motif(first).labels == (0, 1, 2, 3)
    assert sorted(target.edges) == [(0, 1), (0, 3), (1, 2), (2, 3)]


def test_exact_tree_sample_draws_from_pi(karate):
    """20000 independent draws of the 5-path: the mean of A(x_0, x_2) and of A(x_1, x_4) match the exact MACC within
    4 binomial standard errors sqrt(p (1 - p) / N)."""
    motif = g.as_motif(g.path_motif(5))
    draws = g.exact_tree_sample(motif, karate, 20_000, np.random.default_rng(1))
    adjacency = karate.dense_adjacency()
    assert np.all(adjacency[draws[:, :-1], draws[:, 1:]] == 1)
    macc = g.exact_macc(karate, 5)
    for i, j in [(0, 2), (1, 4), (0, 3)]:
        p = macc[i, j]
        assert abs(adjacency[draws[:, i], draws[:, j]].mean() - p) < 4 * math.sqrt(p * (1 - p) / 20_000)


def test_search_finds_homomorphisms_or_says_there_are_none(karate):
    motif = g.as_motif(nx.complete_graph(4))
    found = g.search_homomorphisms(motif, karate, 5, np.random.default_rng(0))
    adjacency = karate.dense_adjacency()
    for i, j in motif.edges:
        assert np.all(adjacency[found[:, i], found[:, j]] == 1)
    tree_network = g.as_network(nx.balanced_tree(2, 3))
    with pytest.raises(ValueError, match="found no homomorphism"):
        g.search_homomorphisms(g.as_motif(nx.cycle_graph(5)), tree_network, 1, np.random.default_rng(0))


def test_network_validation_errors():
    with pytest.raises(ValueError, match="no nodes"):
        g.as_network(nx.Graph())
    empty = nx.empty_graph(4)
    with pytest.raises(ValueError, match="no edges"):
        g.as_network(empty)
    negative = nx.path_graph(3)
    negative[0][1]["weight"] = -1.0
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        g.as_network(negative)
    with pytest.raises(ValueError, match="non-numeric"):
        g.as_network(nx.Graph([(0, 1, {"weight": "heavy"})]))
    with pytest.raises(ValueError, match="multigraphs"):
        g.as_network(nx.MultiGraph([(0, 1), (0, 1)]))
    with pytest.raises(ValueError, match="node_weight"):
        g.as_network(nx.path_graph(3), node_weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="expected a networkx graph"):
        g.as_network(np.eye(3))


def test_motif_validation_errors():
    with pytest.raises(ValueError, match="self-loop"):
        g.as_motif([(0, 0), (0, 1)])
    with pytest.raises(ValueError, match="pivot chain needs a tree motif.*has a cycle"):
        g.as_motif(g.cycle_motif(4), require_tree=True)
    with pytest.raises(ValueError, match="disconnected"):
        g.as_motif(nx.Graph([(0, 1), (2, 3)]), require_tree=True)
    with pytest.raises(ValueError, match="root 9"):
        g.as_motif(g.path_motif(3), root=9)
    with pytest.raises(ValueError, match="no nodes"):
        g.as_motif(nx.Graph())
    motif = g.as_motif(g.path_motif(3))
    with pytest.raises(ValueError, match="lacks the motif edge"):
        g.added_edges(motif, [(0, 2)])
    with pytest.raises(ValueError, match="adds no edge"):
        g.added_edges(motif, [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="not a node of the motif"):
        g.added_edges(motif, [(0, 1), (1, 2), (2, 7)])
    assert g.added_edges(motif, [(0, 1), (1, 2), (2, 0), (0, 2)]) == [(2, 0)]


def test_bipartite_and_disconnected_networks_are_detected():
    """Davis' southern women network is bipartite (women vs events); two disjoint triangles are disconnected and
    component='largest' restricts to one of them."""
    davis = g.as_network(nx.davis_southern_women_graph(), weight=None)
    side = davis.bipartition()
    assert side is not None and set(np.unique(side)) == {0, 1}
    adjacency = davis.dense_adjacency()
    rows, cols = np.nonzero(adjacency)
    assert np.all(side[rows] != side[cols])
    path = g.as_motif(g.path_motif(3))
    assert g.check_irreducible(davis, path, "glauber") == "bipartite"
    with pytest.raises(ValueError, match="odd cycle"):
        g.check_irreducible(davis, g.as_motif(g.cycle_motif(3)), "glauber")
    assert g.as_network(nx.karate_club_graph()).bipartition() is None
    two = nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(4))
    network = g.as_network(two)
    with pytest.raises(ValueError, match="2 connected components.*component='largest'"):
        g.check_irreducible(network, path, "pivot")
    largest = g.as_network(two, component="largest")
    assert largest.num_nodes == 4 and g.check_irreducible(largest, path, "pivot") is None
    assert g.as_network(two, component=0).num_nodes == 3
    np.testing.assert_allclose(largest.node_weights, 0.25)


def test_brute_force_refuses_large_enumerations(karate):
    with pytest.raises(ValueError, match="maps is more than"):
        g.brute_force_homomorphism_density(g.path_motif(6), karate)
