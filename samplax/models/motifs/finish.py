"""Posterior site values and log-likelihoods of draws that carry discrete sites.

The counterpart of the fit's finishing step for samplers of discrete sites: the model is traced with every latent
value substituted, under jit + vmap over chunks of draws of one length (so it compiles once).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers

__all__ = ["finish_with_discrete"]


def finish_with_discrete(target, z, discrete: dict, log_likelihood: bool = True, chunk: int = 1024) -> dict:
    """Posterior site values (latent and deterministic) and pointwise log-likelihoods of draws with discrete sites.

    The counterpart of `samplax.infer.fit`'s finishing step for samplers of discrete sites: the model is traced with
    every latent value substituted (jit + vmap over chunks of draws of one length, so it compiles once).

    Args:
        target: the model's `samplax.models.bridge.Target`.
        z: (chains, draws, dim) unconstrained continuous draws.
        discrete: site name -> (chains, draws, *shape) values of the discrete latent sites.
        log_likelihood: also return the pointwise log-likelihood of every observed site.
        chunk: draws traced per compiled call.

    Returns:
        ``{"posterior": {site: (chains, draws, *shape)}, "log_likelihood": {site: (chains, draws, *shape)}}``.
    """
    z = np.asarray(z)
    chains, draws = z.shape[:2]
    total = chains * draws
    flat_z = z.reshape(total, z.shape[-1])
    flat_discrete = {
        name: np.asarray(value).reshape((total,) + np.shape(value)[2:]) for name, value in discrete.items()
    }
    transforms = {site.name: dist.biject_to(site.support) for site in target.sites}
    model, args, data = target.model, target.args, target.data

    def one(zi, values):
        params = dict(values)
        if target.dim:
            unconstrained = target.unravel(zi)
            params.update({name: transforms[name](unconstrained[name]) for name in transforms})
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **data)
        posterior = {
            name: s["value"]
            for name, s in tr.items()
            if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"
        }
        loglik = (
            {name: s["fn"].log_prob(s["value"]) for name, s in tr.items() if s["type"] == "sample" and s["is_observed"]}
            if log_likelihood
            else {}
        )
        return {"posterior": posterior, "log_likelihood": loglik}

    size = min(chunk, total)
    run = jax.jit(jax.vmap(one))
    pieces = []
    for start in range(0, total, size):
        stop = min(start + size, total)
        pad = size - (stop - start)
        zi = np.concatenate([flat_z[start:stop], np.repeat(flat_z[stop - 1 : stop], pad, axis=0)])
        vi = {
            k: np.concatenate([v[start:stop], np.repeat(v[stop - 1 : stop], pad, axis=0)])
            for k, v in flat_discrete.items()
        }
        out = jax.tree.map(np.asarray, run(jnp.asarray(zi), {k: jnp.asarray(v) for k, v in vi.items()}))
        pieces.append(jax.tree.map(lambda x: x[: stop - start], out))
    merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)
    return jax.tree.map(lambda x: x.reshape((chains, draws) + x.shape[1:]), merged)
