"""Glauber and pivot kernels of samplax.kernels.graph_hom: stationary laws against exact enumeration.

Each test runs many independent chains from one fixed homomorphism on a 6-node network (a house with an extra
triangle on its corner 0, non-regular and not bipartite) and compares the final
states with the exact law (brute force over all 6^k maps) by a chi-square test at level 1e-6: a kernel that does not
leave pi invariant, or does not mix in the steps given, fails; a correct one fails with probability 1e-6 (fixed seeds
make the outcome reproducible)."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from scipy import stats

import samplax.graphs as sg
from samplax.kernels import graph_hom
from samplax.models import graphs as g

PATH = g.as_motif(g.path_motif(3))
CHAINS = 2000
STEPS = 300


def _house_with_ear(weighted: bool, directed: bool = False):
    graph = nx.house_graph()
    graph.add_edges_from([(0, 5), (5, 2)])
    if directed:
        graph = nx.DiGraph(graph)
        graph.remove_edges_from([(1, 3), (4, 2)])  # two edges one-way only
    rng = np.random.default_rng(11)
    if weighted:
        for u, v in graph.edges:
            graph[u][v]["weight"] = rng.uniform(0.5, 2.0)
        node_weights = rng.uniform(0.5, 1.0, graph.number_of_nodes())
        return g.as_network(graph, node_weight=node_weights)
    return g.as_network(graph, weight=None)


def _arrays(network):
    return sg.kernel_inputs(PATH, network)[0]


def _constraints(motif, network):
    return sg.kernel_inputs(motif, network, chain="glauber")[1]


def _tree(motif, network):
    return sg.kernel_inputs(motif, network, chain="pivot")[1]


def _final_states(algorithm, start, seed=0):
    start = jnp.asarray(start, dtype=jnp.int32)

    @jax.jit
    def run(keys):
        def one_chain(key):
            def body(state, t):
                state, info = algorithm.step(jax.random.fold_in(key, t), state)
                return state, info.acceptance_rate

            return jax.lax.scan(body, algorithm.init(start), jnp.arange(STEPS))

        return jax.vmap(one_chain)(keys)

    states, acceptance = run(jax.random.split(jax.random.key(seed), CHAINS))
    return np.asarray(states.homomorphism), np.asarray(acceptance)


def _law(motif, network, weights_fn=None):
    """Probabilities of every map (flattened base-n code), from brute force over all n^k maps."""
    codes, probabilities = [], []
    for maps, weights in g._all_maps(motif, network):
        if weights_fn is not None:
            weights = weights_fn(maps)
        codes.append(np.ravel_multi_index(tuple(maps), (network.num_nodes,) * motif.num_nodes))
        probabilities.append(weights)
    probabilities = np.concatenate(probabilities)
    return np.concatenate(codes), probabilities / probabilities.sum()


def _assert_distributed_as(states, motif, network, weights_fn=None):
    statistic, threshold = _chi_square(states, motif, network, weights_fn)
    assert statistic < threshold, (statistic, threshold)


def _chi_square(states, motif, network, weights_fn=None):
    """Pearson's statistic of the final states against the law, and its 1 - 1e-6 quantile; fails outright when a
    state of probability 0 is visited."""
    codes, probabilities = _law(motif, network, weights_fn)
    observed_codes = np.ravel_multi_index(tuple(states.T), (network.num_nodes,) * motif.num_nodes)
    counts = np.bincount(observed_codes, minlength=codes.size)[codes]
    support = probabilities > 0
    assert counts[~support].sum() == 0, "the chain visited a map of probability 0"
    expected = CHAINS * probabilities[support]
    statistic = float(np.sum((counts[support] - expected) ** 2 / expected))
    return statistic, stats.chi2.ppf(1 - 1e-6, df=int(support.sum()) - 1)


def _start(motif, network):
    return g.search_homomorphisms(motif, network, 1, np.random.default_rng(5))[0]


@pytest.fixture(scope="module")
def weighted():
    return _house_with_ear(weighted=True)


@pytest.fixture(scope="module")
def unweighted():
    return _house_with_ear(weighted=False)


@pytest.mark.parametrize("conditional", ["enumerate", "rejection"])
def test_glauber_samples_pi_on_a_weighted_network(weighted, conditional):
    """Edge and node weights, 3-node path: both ways of drawing the conditional leave pi invariant and mix."""
    algorithm = graph_hom.glauber(_arrays(weighted), _constraints(PATH, weighted), conditional=conditional, proposals=2)
    states, acceptance = _final_states(algorithm, _start(PATH, weighted))
    _assert_distributed_as(states, PATH, weighted)
    if conditional == "enumerate":
        assert np.all(acceptance == 1.0)
    else:
        assert 0.2 < acceptance.mean() < 1.0  # the lazy chain sometimes keeps x_j


@pytest.mark.parametrize("conditional", ["enumerate", "rejection"])
def test_glauber_samples_pi_for_a_motif_with_an_isolated_node(weighted, conditional):
    """An edge plus an isolated node: the isolated node is redrawn from the node weights (the free-node branch that
    the kernel compiles only when the motif has such a node); pi = A(x0, x1) alpha(x0) alpha(x1) alpha(x2)."""
    motif = g.as_motif(_edge_plus_isolated())
    constraints = _constraints(motif, weighted)
    assert graph_hom.has_free_nodes(constraints) and not graph_hom.has_free_nodes(_constraints(PATH, weighted))
    algorithm = graph_hom.glauber(_arrays(weighted), constraints, conditional=conditional, proposals=2)
    states, _ = _final_states(algorithm, _start(motif, weighted), seed=3)
    _assert_distributed_as(states, motif, weighted)


def _edge_plus_isolated():
    motif = nx.Graph([(0, 1)])
    motif.add_node(2)
    return motif


def test_glauber_samples_pi_for_a_motif_with_a_cycle():
    """A triangle with a pendant node (not a tree), exact conditional, on a weighted network with many triangles:
    K5 minus an edge plus a node joined to two of its nodes. (On a network with a single triangle the Glauber chain
    of a triangle motif is frozen: no common neighbour lets one corner move. Irreducibility needs triangles that
    share edges.)"""
    graph = nx.complete_graph(5)
    graph.remove_edge(0, 1)
    graph.add_edges_from([(5, 0), (5, 2)])
    rng = np.random.default_rng(12)
    for u, v in graph.edges:
        graph[u][v]["weight"] = rng.uniform(0.5, 2.0)
    network = g.as_network(graph, node_weight=rng.uniform(0.5, 1.0, 6))
    motif = g.as_motif(nx.Graph([(0, 1), (1, 2), (0, 2), (2, 3)]))
    algorithm = graph_hom.glauber(_arrays(network), _constraints(motif, network))
    states, _ = _final_states(algorithm, _start(motif, network), seed=1)
    _assert_distributed_as(states, motif, network)


def test_pivot_samples_pi(weighted):
    """Metropolis-Hastings pivot chain with edge and node weights, star motif rooted at its centre (the 0/1 case runs
    in tests/test_graphs_api.py against karate's exact values)."""
    network = weighted
    motif = g.as_motif(g.star_motif(2))
    algorithm = graph_hom.pivot(_arrays(network), _tree(motif, network))
    states, acceptance = _final_states(algorithm, _start(motif, network), seed=3)
    _assert_distributed_as(states, motif, network)
    assert 0.2 < acceptance.mean() < 1.0


def test_pivot_random_walk_measure_is_not_pi(unweighted):
    """measure="random_walk" samples alpha(x_0) prod_j A(x_p, x_j) / deg(x_p), the authors' random-walk measure:
    its draws pass the test against that law and fail it against pi on this non-regular network."""
    motif = g.as_motif(g.path_motif(3))
    algorithm = graph_hom.pivot(_arrays(unweighted), _tree(motif, unweighted), measure="random_walk")
    states, _ = _final_states(algorithm, _start(motif, unweighted), seed=4)
    degree = np.diff(unweighted.out_indptr).astype(float)

    def random_walk_weights(maps):
        adjacency = unweighted.dense_adjacency()
        return adjacency[maps[0], maps[1]] * adjacency[maps[1], maps[2]] / degree[maps[0]] / degree[maps[1]]

    _assert_distributed_as(states, motif, unweighted, random_walk_weights)
    statistic, threshold = _chi_square(states, motif, unweighted)
    assert statistic > threshold, (statistic, threshold)  # and the same draws are not from pi


def test_both_chains_respect_edge_directions():
    """A weighted digraph with one-way edges and a tree motif 0 -> 1, 2 -> 0 (edges against the root direction use
    the in-rows n..2n-1). The digraph is chosen so that the Glauber chain is irreducible there: on directed networks
    it need not be (with the edges (5, 0) also one-way its homomorphisms split into two classes)."""
    network = _house_with_ear(weighted=True, directed=True)
    motif = g.as_motif(nx.DiGraph([(0, 1), (2, 0)]))
    assert motif.edges == ((0, 1), (2, 0))
    start = _start(motif, network)
    for seed, algorithm in enumerate(
        [
            graph_hom.glauber(_arrays(network), _constraints(motif, network)),
            graph_hom.pivot(_arrays(network), _tree(motif, network)),
        ]
    ):
        states, _ = _final_states(algorithm, start, seed=10 + seed)
        _assert_distributed_as(states, motif, network)


def test_edge_weight_lookup_matches_the_dense_matrix():
    rng = np.random.default_rng(0)
    graph = nx.barabasi_albert_graph(300, 3, seed=1)
    for u, v in graph.edges:
        graph[u][v]["weight"] = rng.uniform(0.5, 4.0)
    network = g.as_network(graph)
    arrays = _arrays(network)
    rows = rng.integers(0, 300, 5000)
    cols = np.where(
        rng.random(5000) < 0.5, rng.integers(0, 300, 5000), network.out_indices[network.out_indptr[rows]]
    )  # half of the queries hit an edge
    depth = graph_hom.search_steps_for(network.max_degree)
    got = np.asarray(jax.jit(graph_hom.edge_weight, static_argnums=3)(arrays, rows, cols, depth))
    np.testing.assert_allclose(got, network.dense_adjacency()[rows, cols], rtol=1e-6)


def test_builders_reject_bad_options():
    with pytest.raises(ValueError, match="conditional must be"):
        graph_hom.build_glauber_kernel(max_degree=3, conditional="gibbs")
    with pytest.raises(ValueError, match="proposals must be a positive integer"):
        graph_hom.build_glauber_kernel(max_degree=3, conditional="rejection", proposals=0)
    with pytest.raises(ValueError, match="measure must be"):
        graph_hom.build_pivot_kernel(max_degree=3, measure="uniform")
    with pytest.raises(ValueError, match="max_degree"):
        graph_hom.build_pivot_kernel(max_degree=0)
