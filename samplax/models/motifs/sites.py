"""Reading NumPyro sample sites: the base distribution under wrappers, discreteness, a finite support.

Shared by the model view and the motifs' matching.
"""

from __future__ import annotations

import numpy as np
import numpyro.distributions as dist

__all__ = ["base_dist", "enumerable_support", "is_discrete"]


def base_dist(fn):
    """The distribution under ``expand``, ``to_event`` and ``mask`` wrappers."""
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def is_discrete(site) -> bool:
    """Whether a trace site's distribution is discrete."""
    return bool(getattr(base_dist(site["fn"]), "is_discrete", False))


def enumerable_support(site):
    """The flat array of a site's finite support, or None when it has none (or cannot enumerate it)."""
    fn = site["fn"]
    if not getattr(fn, "has_enumerate_support", False):
        return None
    try:
        support = np.asarray(fn.enumerate_support(expand=False)).reshape(-1)
    except (NotImplementedError, ValueError, TypeError):
        return None
    return support
