"""Built-in NumPyro models, each with a reproducible data generator and, where one exists, the exact answer.

    entry = samplax.models.zoo.get("gamma_poisson")
    data = entry.make_data(seed=0, shape=0.5)
    fit = samplax.fit(entry.model, data)
    entry.reference(data).mean["lam"]          # the exact posterior mean

`names()` lists the models, `listing()` pairs each name with a one-line description (what `samplax zoo` prints).
Every `make_data` returns numpy arrays and Python scalars that survive a round trip through JSON; every
`model(**data)` accepts None for its observed arguments (prior predictive).

| name | exact answer | tags |
|---|---|---|
| normal_normal | mean, sd, log Z | conjugate |
| gamma_poisson | mean, sd, log Z | conjugate, positive |
| dirichlet_multinomial(_sparse) | mean, sd, log Z | conjugate, simplex |
| box_bounded | mean, sd, log Z | conjugate, bounded |
| funnel, banana | mean, sd, log Z = 0 | curved |
| eight_schools(_centered) | none | hierarchical, positive |
| logistic_regression, breast_cancer | none | regression |
| sparse_regression | none | regression, nonsmooth |
| gaussian_mixture | none | multimodal, simplex, positive |
| grid_network | marginals, log Z (enumeration / variable elimination) | discrete |
| open_universe_mixture | P(M), log Z for tiny sizes | discrete, multimodal |
"""

from __future__ import annotations

from samplax.models.zoo.base import Reference, ZooModel
from samplax.models.zoo.conjugate import (
    BOX_BOUNDED,
    DIRICHLET_MULTINOMIAL,
    DIRICHLET_MULTINOMIAL_SPARSE,
    GAMMA_POISSON,
    NORMAL_NORMAL,
)
from samplax.models.zoo.geometry import BANANA, FUNNEL
from samplax.models.zoo.grid_networks import GRID_NETWORK
from samplax.models.zoo.hierarchical import EIGHT_SCHOOLS, EIGHT_SCHOOLS_CENTERED
from samplax.models.zoo.mixture import GAUSSIAN_MIXTURE
from samplax.models.zoo.open_universe import OPEN_UNIVERSE_MIXTURE
from samplax.models.zoo.regression import BREAST_CANCER, LOGISTIC_REGRESSION, SPARSE_REGRESSION

__all__ = ["Reference", "ZooModel", "get", "names", "listing"]

_REGISTRY: dict[str, ZooModel] = {
    entry.name: entry
    for entry in (
        NORMAL_NORMAL,
        EIGHT_SCHOOLS,
        EIGHT_SCHOOLS_CENTERED,
        LOGISTIC_REGRESSION,
        BREAST_CANCER,
        FUNNEL,
        BANANA,
        SPARSE_REGRESSION,
        DIRICHLET_MULTINOMIAL,
        DIRICHLET_MULTINOMIAL_SPARSE,
        GAMMA_POISSON,
        GAUSSIAN_MIXTURE,
        BOX_BOUNDED,
        GRID_NETWORK,
        OPEN_UNIVERSE_MIXTURE,
    )
}


def names() -> list[str]:
    """The zoo's model names, sorted."""
    return sorted(_REGISTRY)


def listing() -> list[tuple[str, str]]:
    """(name, one-line description) for every model, sorted by name."""
    return [(name, _REGISTRY[name].description) for name in names()]


def get(name: str) -> ZooModel:
    """The zoo entry called `name`; an unknown name is a ValueError that lists the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown zoo model {name!r}; valid names: {', '.join(names())}") from None
