"""Bregman proximal Langevin Monte Carlo.

Legendre functions, Bregman proximity operators, bplmc and myula, the total-variation prox and the warm-up (step size,
diagonal preconditioner).

    from samplax.kernels.bregman import bplmc, make_legendre
    algorithm = bplmc.as_top_level_api(f, make_legendre("boltzmann_shannon"), step_size=0.01, adjusted=True)

See docs/methods/bplmc.md.
"""

from samplax.kernels.bregman import (
    adaptation,
    bplmc,
    legendre,
    myula,
    prox,
    total_variation,
)
from samplax.kernels.bregman.bplmc import (
    BPLMCInfo,
    BPLMCState,
    default_step_size,
    relative_curvature,
)
from samplax.kernels.bregman.legendre import (
    LEGENDRE_NAMES,
    BlockLegendre,
    LegendreSpec,
    block_legendre,
    make_legendre,
)
from samplax.kernels.bregman.myula import MYULAInfo, MYULAState
from samplax.kernels.bregman.prox import (
    Envelope,
    bregman_moreau_envelope,
    prox_box,
    prox_l1_left,
    prox_l1_right,
    prox_linear_left,
    prox_linear_right,
    prox_simplex,
)
from samplax.kernels.bregman.total_variation import prox_total_variation

__all__ = [
    "LEGENDRE_NAMES",
    "BPLMCInfo",
    "BPLMCState",
    "BlockLegendre",
    "Envelope",
    "LegendreSpec",
    "MYULAInfo",
    "MYULAState",
    "adaptation",
    "block_legendre",
    "bplmc",
    "bregman_moreau_envelope",
    "default_step_size",
    "legendre",
    "make_legendre",
    "myula",
    "prox",
    "prox_box",
    "prox_l1_left",
    "prox_l1_right",
    "prox_linear_left",
    "prox_linear_right",
    "prox_simplex",
    "prox_total_variation",
    "relative_curvature",
    "total_variation",
]
