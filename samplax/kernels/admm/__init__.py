"""Distributed MCMC over a graph of agents: D-ADMMS (Tzikas et al. 2024, arXiv 2401.15838) and its baseline D-SGLD.

One module per idea:

* `topology`: the communication graph, the agents' layout over devices, the neighbour exchange (collectives), the
  noise scale and the network-wide statistics;
* `dadmms`: the D-ADMMS step (noisy proximal step + dual step) and its local solvers (closed form, Newton to a
  tolerance);
* `precondition`: the Laplace warm-up, the preconditioner, rho from the curvature, the quadratic check;
* `dsgld`: decentralised SGLD and its minibatch estimator;
* `gaussian`: exact stationary laws for Gaussian targets (the method's variance deficit) and the Gaussian W2.

Every public name is re-exported here: ``from samplax.kernels import admm; admm.make_topology(...)``.
"""

from samplax.kernels.admm.dadmms import (
    ADMMInfo,
    ADMMState,
    DistributedSampler,
    QuadraticPotential,
    admm,
    build_kernel,
    default_tolerance,
    init,
    initial_positions,
    newton_prox,
    quadratic_prox,
)
from samplax.kernels.admm.dsgld import DSGLDState, dsgld, dsgld_kernel, metropolis_weights, subsample_shard
from samplax.kernels.admm.gaussian import gaussian_w2, linear_gaussian_stationary, variance_ratio
from samplax.kernels.admm.precondition import (
    PRECONDITIONERS,
    LaplaceInfo,
    Preconditioner,
    choose_rho,
    default_rho,
    laplace_warmup,
    make_preconditioner,
    quadratic_check,
    quadratic_tolerance,
)
from samplax.kernels.admm.topology import (
    GRAPH_NAMES,
    NOISE_NAMES,
    AgentBlock,
    AgentLayout,
    Exchange,
    NetworkInfo,
    Topology,
    make_agent_block,
    make_exchange,
    make_layout,
    make_topology,
    network_info,
    noise_scale,
    slot_data,
)

__all__ = [
    "GRAPH_NAMES",
    "NOISE_NAMES",
    "Topology",
    "make_topology",
    "AgentLayout",
    "make_layout",
    "noise_scale",
    "AgentBlock",
    "make_agent_block",
    "slot_data",
    "Exchange",
    "make_exchange",
    "NetworkInfo",
    "network_info",
    "QuadraticPotential",
    "quadratic_prox",
    "newton_prox",
    "default_tolerance",
    "ADMMState",
    "ADMMInfo",
    "DistributedSampler",
    "initial_positions",
    "init",
    "build_kernel",
    "admm",
    "PRECONDITIONERS",
    "LaplaceInfo",
    "laplace_warmup",
    "Preconditioner",
    "make_preconditioner",
    "default_rho",
    "choose_rho",
    "quadratic_check",
    "quadratic_tolerance",
    "DSGLDState",
    "metropolis_weights",
    "subsample_shard",
    "dsgld_kernel",
    "dsgld",
    "linear_gaussian_stationary",
    "variance_ratio",
    "gaussian_w2",
]
