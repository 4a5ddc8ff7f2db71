"""The motifs samplax looks for in a model, listed explicitly (nothing registers itself on import)."""

from __future__ import annotations

from samplax.models.motifs.grid_block import grid_block_motif
from samplax.models.motifs.two_means import TwoMeansMotif

__all__ = ["known_motifs"]


def known_motifs(dims: tuple = (1, 2, 3)) -> list:
    """The motifs samplax looks for in a model, in order: the 3 x 3 grid block, then two-means for small dims."""
    return [grid_block_motif(3, 3)] + [TwoMeansMotif(dim=d) for d in dims]
