"""Motifs and networks for sampling random graph homomorphisms, and exact evaluators.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network data analysis",
JMLR 24(9), 2023 (arXiv:1910.09483).

A network G = ([n], A, alpha) has nonnegative edge weights A, scaled here to [0, 1] by A / max A, and node weights
alpha (a probability vector, uniform unless given). A motif F = ([k], E_F) is a small simple graph. The target of the
samplers is the law on maps x: [k] -> [n]

    pi(x) = prod_{(i, j) in E_F} A(x_i, x_j) prod_i alpha(x_i) / t(F, G),

whose normaliser t(F, G) is the homomorphism density (hom(F, G) / n^k for 0/1 adjacency and uniform alpha).

This package turns networkx graphs (or edge lists) into the arrays the kernels of `samplax.kernels.graph_hom`
read, checks them (empty network, motif without edges, non-tree motif for the pivot chain, bipartite or disconnected
network, negative weights), and evaluates observables exactly where that is cheap: tree motifs by leaf-to-root dynamic
programming in O(k nnz(A)), cycles by traces of matrix products, expectations of a function of A(x_a, x_b) under pi
for a tree motif by dense matrix products along the tree path from a to b (MACC, CHD profiles), and brute force over
all n^k maps for tiny graphs. Everything here is NumPy in float64; nothing imports the kernels.

Modules: `motif` (the `Motif` type, `as_motif` and the standard motifs), `network` (the `Network` type, `as_network`
and the irreducibility checks), `exact` (the exact evaluators) and `starting_states` (exact tree draws and random
homomorphisms to start the chains from). The names below are re-exported here, so
``from samplax.models.graphs import ...`` keeps working.
"""

from samplax.models.graphs.exact import (
    BRUTE_FORCE_LIMIT,
    added_edges,
    brute_force_expectation,
    brute_force_homomorphism_density,
    exact_chd_profile,
    exact_conditional_density,
    exact_homomorphism_count,
    exact_homomorphism_density,
    exact_macc,
    exact_pair_expectation,
    tree_messages,
)
from samplax.models.graphs.exact import (
    _all_maps as _all_maps,  # the brute-force enumeration, used by the kernel tests
)
from samplax.models.graphs.motif import (
    Motif,
    as_motif,
    chd_motifs,
    complete_motif,
    cycle_motif,
    path_motif,
    star_motif,
)
from samplax.models.graphs.network import DENSE_LIMIT, Network, ReducibleChainWarning, as_network, check_irreducible
from samplax.models.graphs.starting_states import exact_tree_sample, search_homomorphisms

__all__ = [
    "Motif",
    "Network",
    "ReducibleChainWarning",
    "as_motif",
    "as_network",
    "check_irreducible",
    "path_motif",
    "star_motif",
    "cycle_motif",
    "complete_motif",
    "chd_motifs",
    "exact_homomorphism_density",
    "exact_homomorphism_count",
    "exact_pair_expectation",
    "exact_conditional_density",
    "exact_macc",
    "exact_chd_profile",
    "brute_force_homomorphism_density",
    "brute_force_expectation",
    "exact_tree_sample",
    "search_homomorphisms",
    "added_edges",
    "tree_messages",
    "DENSE_LIMIT",
    "BRUTE_FORCE_LIMIT",
]
