"""The grid-block motif: a height x width block of a binary grid network with its Markov blanket.

For 3 x 3 this is the "diamond" of T. Wang, Y. Wu, D. A. Moore and S. J. Russell, "Meta-Learning MCMC Proposals",
NeurIPS 2018 (arXiv 1708.06040): 9 block nodes and a 14-node blanket. It is a `DiscreteMotif`; matching, Theta and
the training data come from there.
"""

from __future__ import annotations

from samplax.models.motifs.discrete import DiscreteMotif

__all__ = ["grid_block_motif"]


def grid_block_motif(height: int = 3, width: int = 3) -> DiscreteMotif:
    """A height x width block of a binary grid network (parents: up, left) with its Markov blanket.

    For 3 x 3 this is the paper's "diamond": 9 block nodes, a 14-node blanket (3 parents above, 3 to the left, 3
    children below, 3 to the right and the two co-parents at the corners), 15 tables inside the motif (60 numbers).
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid_block_motif needs height, width >= 1, got {height} x {width}")

    def name(i, j):
        return f"n{i}_{j}"

    block = tuple(name(i, j) for i in range(height) for j in range(width))
    inside = {(i, j) for i in range(height) for j in range(width)}
    tables = [(i, j) for i in range(height) for j in range(width)]
    tables += [(height, j) for j in range(width)] + [(i, width) for i in range(height)]
    parents = []
    for i, j in tables:
        parents.append((name(i, j), (name(i - 1, j), name(i, j - 1))))
    members = set(inside) | {(i, j) for i, j in tables}
    for _node, ps in parents:
        for p in ps:
            i, j = (int(t) for t in p[1:].split("_"))
            members.add((i, j))
    blanket = tuple(name(i, j) for i, j in sorted(members - inside))
    return DiscreteMotif(f"grid_block_{height}x{width}", block, blanket, tuple(parents))
