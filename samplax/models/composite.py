"""The composite view of a model for the Bregman proximal kernels (bplmc, myula): U(x) = f(x) + g(x).

In constrained coordinates the negative log joint splits into a smooth f and g(x) = sum_i w_i |x_i - c_i|, the
fixed-scale Laplace priors as weighted L1 terms (weight 1/scale, centre loc). A Laplace prior whose scale or location
is itself latent is not a fixed convex term and is refused with a clear error. Which Legendre function each block
moves with is the bplmc method's choice (`samplax.infer.method_bplmc`), not the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer import util as npu

__all__ = ["Composite", "composite", "base_distribution", "latent_dependencies", "model_relations"]


class Composite(NamedTuple):
    """U(x) = f(x) + g(x) on the flat constrained vector x (a K-simplex keeps its first K - 1 coordinates).

    g(x) = sum_i l1_weight_i |x_i - l1_center_i| collects the fixed-scale Laplace priors; f is the rest of the
    negative log joint. ``blocks`` gives each latent site's slice of x, in ``Target.sites`` order (the Bregman
    kernels choose a Legendre function per block from the site's support: samplax/infer/method_bplmc.py).
    """

    dim: int
    smooth_potential: Callable
    l1_weight: jnp.ndarray
    l1_center: jnp.ndarray
    blocks: tuple
    to_constrained: Callable
    from_unconstrained: Callable
    from_constrained: Callable


def base_distribution(fn):
    """The distribution under NumPyro's expand, independent and mask wrappers."""
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def model_relations(model, args, data) -> dict:
    """``numpyro.infer.inspect.get_model_relations`` with argument validation off.

    NumPyro finds the relations on a trace of prior draws; a wide prior (InverseGamma(0.001, 0.001), say) can draw an
    infinite scale there and fail a distribution's argument validation, though the relations come from dependency
    tracking, not from the values.
    """
    with numpyro.validation_enabled(False):
        return numpyro.infer.inspect.get_model_relations(model, args, data)


def latent_dependencies(model, args, data) -> dict[str, tuple[str, ...]]:
    """The latent parents of every sample site, {site: parents}, observed sites left out (NumPyro's relations)."""
    relations = model_relations(model, args, data)
    observed = set(relations["observed"])
    return {
        name: tuple(p for p in parents if p not in observed) for name, parents in relations["sample_sample"].items()
    }


def composite(target, *, nonsmooth: dict | None = None) -> Composite:
    """Split the negative log joint in constrained coordinates into smooth f and weighted-L1 g.

    Fixed-scale Laplace priors become L1 terms (weight 1/scale, centre loc); ``nonsmooth`` maps site names to
    False to keep a Laplace prior inside f.
    """
    nonsmooth = dict(nonsmooth or {})
    for name in nonsmooth:
        if name not in target.site_names:
            raise ValueError(
                f"composite override names site '{name}', not a continuous latent site of the "
                f"model; sites are {list(target.site_names)}"
            )
    dependencies = latent_dependencies(target.model, target.args, target.data)
    blocks, weights, centers, layout = [], [], [], []
    offset = 0
    for site in target.sites:
        fn = base_distribution(target._trace[site.name]["fn"])
        support = site.support
        if isinstance(support, constraints.independent):
            support = support.base_constraint
        size = int(np.prod(site.shape)) if site.shape else 1
        is_simplex = support is constraints.simplex
        width = size - 1 if is_simplex else size
        weight = np.zeros(width)
        center = np.zeros(width)
        if isinstance(fn, dist.Laplace) and nonsmooth.get(site.name, True):
            parents = dependencies.get(site.name, ())
            if parents:
                raise ValueError(
                    f"site '{site.name}': its Laplace scale or location depends on the latent sites "
                    f"{list(parents)}, so it is not a fixed convex L1 term; use method='nuts' or 'mala', or "
                    f"pass nonsmooth={{'{site.name}': False}} to treat it as smooth"
                )
            loc = np.broadcast_to(np.asarray(fn.loc, dtype=float), site.shape).reshape(-1)
            scale = np.broadcast_to(np.asarray(fn.scale, dtype=float), site.shape).reshape(-1)
            weight, center = 1.0 / scale, loc
        blocks.append(slice(offset, offset + width))
        weights.append(weight)
        centers.append(center)
        layout.append((site, offset, width, is_simplex))
        offset += width
    dim = offset
    l1_weight = jnp.asarray(np.concatenate(weights), dtype=target.dtype)
    l1_center = jnp.asarray(np.concatenate(centers), dtype=target.dtype)

    def to_constrained(x):
        values = {}
        for site, start, width, is_simplex in layout:
            block = x[start : start + width]
            if is_simplex:
                block = jnp.concatenate([block, 1.0 - jnp.sum(block, keepdims=True)])
            values[site.name] = block.reshape(site.shape)
        return values

    def from_constrained(values):
        parts = []
        for site, _, width, is_simplex in layout:
            block = jnp.reshape(values[site.name], (-1,))
            parts.append(block[:width] if is_simplex else block)
        return jnp.concatenate(parts)

    def from_unconstrained(z):
        return from_constrained(target.constrain(z))

    model, args, data = target.model, target.args, target.data

    def smooth_potential(x):
        log_joint, _ = npu.log_density(model, args, data, to_constrained(x))
        return -log_joint - jnp.sum(l1_weight * jnp.abs(x - l1_center))

    return Composite(
        dim, smooth_potential, l1_weight, l1_center, tuple(blocks), to_constrained, from_unconstrained, from_constrained
    )
