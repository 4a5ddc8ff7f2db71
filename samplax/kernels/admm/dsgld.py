"""D-SGLD: decentralised stochastic gradient Langevin dynamics, the baseline of D-ADMMS.

Paper: M. Gürbüzbalaban, X. Gao, Y. Hu, L. Zhu, "Decentralized Stochastic Gradient Langevin Dynamics and Hamiltonian
Monte Carlo", JMLR 22 (2021).

    x_i^{k+1} = sum_j W_ij x_j^k - eta grad f_i(x_i^k) + sqrt(2 eta) xi_i,     xi_i ~ N(0, I)

with Metropolis-Hastings mixing weights W_ij = 1 / (1 + max(d_i, d_j)) on edges and W_ii = 1 - sum_{j != i} W_ij,
and optionally a minibatch estimate of grad f_i (`subsample_shard`: draws with replacement, scaled to be unbiased).

Usage::

    agents = make_agent_block(topology, layout, rho=1.0, noise=0.0, data=shards,
                              neighbour_weights=metropolis_weights(topology))
    sampler = dsgld(agents, make_exchange(topology, layout), likelihood_potential, prior_potential, step_size=1e-3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplax.kernels.admm.dadmms import DistributedSampler
from samplax.kernels.admm.topology import AgentBlock, Exchange, Topology, network_info

__all__ = ["DSGLDState", "metropolis_weights", "subsample_shard", "dsgld_kernel", "dsgld"]


class DSGLDState(NamedTuple):
    """position x_i^k (slots, replicas, dim)."""

    position: jax.Array


def metropolis_weights(topology: Topology) -> np.ndarray:
    """Doubly stochastic Metropolis-Hastings mixing weights, off-diagonal part: W_ij = 1 / (1 + max(d_i, d_j))."""
    degrees = topology.degrees
    return topology.adjacency / (1.0 + np.maximum(degrees[:, None], degrees[None, :]))


def dsgld_kernel(
    likelihood_potential: Callable,
    prior_potential: Callable,
    exchange: Exchange,
    step_size: float,
    *,
    batch_size: int | None = None,
    subsample: Callable | None = None,
):
    """``kernel(rng_key, state, agents) -> (state, info)``: one D-SGLD step of every agent.

    f_i(x) = likelihood_potential(x, data_i) + prior_potential(x, data_i). Build ``agents`` with
    ``neighbour_weights=metropolis_weights(topology)``: the masked all-gather applies those weights; the fast paths
    of regular graphs (complete, cycle) apply their uniform weight 1 / (1 + d). With ``batch_size``,
    ``subsample(key, data_i, batch_size) -> (batch, scale)`` gives a minibatch whose likelihood potential times
    ``scale`` estimates the shard's.
    """
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if batch_size is not None and subsample is None:
        raise ValueError("batch_size needs subsample(key, data, batch_size) -> (batch, scale)")

    def kernel(rng_key, state: DSGLDState, agents: AgentBlock):
        position = state.position
        off_diagonal = exchange.neighbour_sum(position, agents)
        if exchange.kind != "gather":
            off_diagonal = off_diagonal / (1.0 + agents.degree.astype(position.dtype))[:, None, None]
        row_sum = jnp.sum(agents.neighbour_weights, axis=1).astype(position.dtype)[:, None, None]
        mixed = (1.0 - row_sum) * position + off_diagonal
        keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(agents.index)

        def one_agent(key, x, data):
            noise_key, batch_key = jax.random.split(key)
            if batch_size is None:
                grad = jax.vmap(jax.grad(lambda z: likelihood_potential(z, data) + prior_potential(z, data)))(x)
            else:  # every replica draws its own minibatch, so the replicas stay independent chains

                def replica_grad(z, replica_key):
                    batch, scale = subsample(replica_key, data, batch_size)
                    return jax.grad(lambda u: scale * likelihood_potential(u, batch) + prior_potential(u, data))(z)

                grad = jax.vmap(replica_grad)(x, jax.random.split(batch_key, x.shape[0]))
            return grad, jax.random.normal(noise_key, x.shape, x.dtype)

        grad, xi = jax.vmap(one_agent)(keys, position, agents.data)
        new_position = mixed - step_size * grad + jnp.sqrt(2.0 * step_size) * xi
        new_position = jnp.where(agents.active[:, None, None], new_position, 0.0)
        info = network_info(new_position, jnp.zeros_like(new_position), agents, exchange)
        return DSGLDState(new_position), info

    return kernel


def dsgld(
    agents: AgentBlock,
    exchange: Exchange,
    likelihood_potential: Callable,
    prior_potential: Callable,
    *,
    step_size: float,
    batch_size: int | None = None,
    subsample: Callable | None = None,
) -> DistributedSampler:
    """Decentralised SGLD over ``agents`` (built with ``neighbour_weights=metropolis_weights(topology)``)."""
    kernel = dsgld_kernel(
        likelihood_potential, prior_potential, exchange, step_size, batch_size=batch_size, subsample=subsample
    )
    return DistributedSampler(
        lambda position: DSGLDState(jnp.where(jnp.asarray(agents.active)[:, None, None], position, 0.0)),
        lambda rng_key, state: kernel(rng_key, state, agents),
    )


def subsample_shard(key, shard: dict, batch_size: int):
    """A minibatch of ``batch_size`` observations of a shard, and its unbiasing factor.

    The observations are drawn with replacement from the shard's real (unmasked) ones; the factor (shard size /
    batch size) makes the minibatch log-likelihood an unbiased estimate of the shard's. ``shard`` is a dict of arrays
    along the observation axis with a boolean ``mask`` (`Target.shards`).
    """
    size = jnp.sum(shard["mask"])
    index = jnp.floor(jax.random.uniform(key, (batch_size,)) * size).astype(jnp.int32)
    batch = {name: value[index] for name, value in shard.items()}
    batch["mask"] = jnp.ones((batch_size,), bool)
    return batch, size / batch_size
