"""The sharded view of a model for the distributed kernels (admm, dsgld): the data split along the observation plate.

Every data array whose leading axis has the observation plate's size is split into ``num_agents`` padded, masked
shards (an integer argument equal to the plate size, posteriordb's ``N``, shrinks to the shard's width); other data
are shared. Each agent evaluates the log-likelihood of its own shard only, and the prior with the observed sites
hidden, so an agent never reads another agent's observations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import util as npu

__all__ = ["Shards", "shards", "HideObserved", "is_observation", "observation_plate_size"]


class Shards(NamedTuple):
    """The data split along the observation plate into ``num_agents`` padded, masked shards.

    ``prior_logdensity(z)``, ``shard_loglik(z, shard)`` and ``shard_log_prior(z, shard)`` act on the flat
    unconstrained vector; ``shard`` is one element of ``data`` (a pytree whose leaves have a leading agent axis) and
    carries its own ``mask``. ``shard_log_prior`` equals ``prior_logdensity`` but reads only the agent's own shard
    (the observed sites masked out), so an agent never touches other agents' observations.
    """

    num_agents: int
    num_observations: int
    prior_logdensity: Callable
    shard_loglik: Callable
    data: dict
    sizes: np.ndarray
    shard_log_prior: Callable


class HideObserved(handlers.Messenger):
    """Masks the named observed sites out of the log density, leaving the prior and the transforms' Jacobians."""

    def __init__(self, fn, names):
        self.names = frozenset(names)
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.names:
            msg["fn"] = msg["fn"].mask(False)


def is_observation(site) -> bool:
    """An observed sample site that is data, not a ``numpyro.factor`` term (a Unit distribution)."""
    return (
        site["type"] == "sample"
        and site["is_observed"]
        and not site.get("infer", {}).get("is_auxiliary")
        and not isinstance(site["fn"], dist.distribution.Unit)
    )


def observation_plate_size(trace) -> int:
    """The number of observations: the size of the largest plate around the first observed site of ``trace``.

    Without a plate, the leading dimension of its value. Raises ValueError when no observed site can be split.
    """
    for s in trace.values():
        if is_observation(s):  # a numpyro.factor is an observed site too, with an empty value
            frames = s.get("cond_indep_stack", [])
            if frames:
                return int(max(frames, key=lambda f: f.size).size)
            shape = np.shape(s["value"])
            if shape:
                return int(shape[0])
    raise ValueError("the model has no observed site inside a plate: there is nothing to shard")


def shards(target, num_agents: int, *, num_observations: int | None = None) -> Shards:
    """Split the data along the observation plate into ``num_agents`` padded, masked shards.

    Every data array whose leading axis has the plate's size is split along that axis; other data are
    shared. The prior is ``logdensity`` minus the log-likelihood; each agent evaluates only its own shard.
    A process holding only its own shard passes ``num_observations`` (the global count).
    """
    if not isinstance(num_agents, (int, np.integer)) or num_agents < 1:
        raise ValueError(f"num_agents must be a positive integer, got {num_agents!r}")
    plate_size = observation_plate_size(target._trace)
    split_keys = [
        k for k, v in target.data.items() if v is not None and np.ndim(v) >= 1 and np.shape(v)[0] == plate_size
    ]
    if not split_keys:
        raise ValueError(
            "no data array has a leading axis the size of the observation plate "
            f"({plate_size}); shards need the observations along axis 0"
        )
    if num_agents > plate_size:
        raise ValueError(f"num_agents={num_agents} exceeds the number of observations {plate_size}")
    sizes = np.array([len(part) for part in np.array_split(np.arange(plate_size), num_agents)])
    width = int(sizes.max())
    stacked = {}
    for key in split_keys:
        value = np.asarray(target.data[key])
        parts = np.array_split(value, num_agents)
        padded = [np.concatenate([p, np.repeat(p[-1:], width - len(p), axis=0)]) for p in parts]
        stacked[key] = jnp.asarray(np.stack(padded))
    mask = jnp.asarray(np.arange(width)[None, :] < sizes[:, None])
    shared = {k: v for k, v in target.data.items() if k not in split_keys}
    # a plate sized by an integer argument (posteriordb's N) shrinks with the arrays to the shard's width
    shared.update(
        {
            k: width
            for k, v in shared.items()
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v == plate_size
        }
    )
    model, args, unravel = target.model, target.args, target._unravel

    def shard_loglik(z, shard):
        data = dict(shared)
        data.update({k: shard[k] for k in split_keys})
        params = npu.constrain_fn(model, args, data, unravel(z))
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **data)
        total = 0.0
        for s in tr.values():
            if s["type"] == "sample" and s["is_observed"]:
                lp = s["fn"].log_prob(s["value"])
                # observations run along axis 0 of each split array, hence along the first axis of lp
                mask = shard["mask"].reshape((-1,) + (1,) * (lp.ndim - 1))
                total = total + jnp.sum(jnp.where(mask, lp, 0.0))
        return total

    prior_model = HideObserved(model, target.observed)

    def shard_log_prior(z, shard):
        data = dict(shared)
        data.update({k: shard[k] for k in split_keys})
        return -npu.potential_energy(prior_model, args, data, unravel(z))

    data = dict(stacked)
    data["mask"] = mask
    return Shards(
        num_agents, int(num_observations or plate_size), target.log_prior, shard_loglik, data, sizes, shard_log_prior
    )
