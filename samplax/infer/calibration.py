"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018, arXiv:1804.06788).

If ``theta ~ p(theta)`` and ``y ~ p(y | theta)``, then ``theta`` is a draw from the posterior ``p(theta | y)``.
So when ``theta_1..theta_L`` are L independent draws from a correct posterior sampler run on ``y``, the rank

    r = #{ l : theta_l < theta }   (ties broken uniformly at random)

of the prior draw among them is uniform on ``{0, ..., L}``, for every scalar coordinate. SBC repeats this for
many simulated data sets and tests the ranks for uniformity: a sampler that is too narrow piles ranks at both
ends (a U shape), one that is too wide piles them in the middle, a biased one tilts the histogram.

Workflow of ``sbc``:
1. draw ``num_datasets`` pairs ``(theta, y)`` from the prior predictive with ``numpyro.infer.Predictive``,
   calling ``model(**data)`` with the observed argument(s) set to None;
2. sample the posterior of each simulated data set: with ``sampler(key, data)`` when given (vmapped over data
   sets when ``vectorized=True``), else with ``samplax.fit`` (one fit per data set, looped on the host);
3. thin each posterior to (nearly) independent draws, bring them to a common count L, and rank.

``SBCResult.uniformity_pvalues`` runs a chi-square test on B bins of the ranks per coordinate and
``SBCResult.plot`` draws the rank histograms with the band that holds 99 % of each bin's counts under
uniformity (binomial quantiles).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from samplax.models.bridge import build_target

__all__ = ["SBCResult", "sbc"]


@dataclasses.dataclass(frozen=True)
class SBCResult:
    """Ranks of prior draws among thinned posterior draws.

    ranks
        site name -> int array ``(num_datasets, *site_shape)`` with values in ``0..num_ranks - 1``.
    num_ranks
        L + 1, where L is the number of thinned posterior draws each prior draw was ranked against.
    prior_draws
        site name -> the simulated parameter values ``(num_datasets, *site_shape)``.
    thinning
        the stride applied to every data set's draws (per chain) before ranking.
    """

    ranks: dict[str, np.ndarray]
    num_ranks: int
    prior_draws: dict[str, np.ndarray]
    thinning: int

    @property
    def num_datasets(self) -> int:
        return int(next(iter(self.ranks.values())).shape[0])

    def coordinates(self) -> list[tuple[str, np.ndarray]]:
        """``(label, ranks of shape (num_datasets,))`` for every scalar coordinate, e.g. ``theta[1]``."""
        items = []
        for name, ranks in self.ranks.items():
            for index in np.ndindex(*ranks.shape[1:]):
                label = f"{name}[{', '.join(map(str, index))}]" if index else name
                items.append((label, ranks[(slice(None), *index)]))
        return items

    def uniformity_pvalues(self, num_bins: int | None = None) -> dict[str, np.ndarray]:
        """Chi-square test of uniform ranks per scalar coordinate: site -> p-values of the site's shape.

        Ranks are grouped into ``num_bins`` bins (default: at most 20, at least 5 expected counts per bin,
        preferring a bin count that divides ``num_ranks`` so all bins are equally likely); the expected count
        of a bin is ``num_datasets * (ranks it covers) / num_ranks``. Small p-values mean miscalibration.
        """
        from scipy import stats

        edges, probabilities = self._bins(num_bins)
        pvalues = {}
        for name, ranks in self.ranks.items():
            flat = ranks.reshape(ranks.shape[0], -1)
            values = np.empty(flat.shape[1])
            for column in range(flat.shape[1]):
                counts = np.histogram(flat[:, column], bins=edges)[0]
                values[column] = stats.chisquare(counts, probabilities * flat.shape[0]).pvalue
            pvalues[name] = values.reshape(ranks.shape[1:])
        return pvalues

    def plot(self, ax: Any = None, *, num_bins: int | None = None, band: float = 0.99) -> np.ndarray:
        """Rank histograms, one panel per scalar coordinate, with the ``band`` binomial band in grey.

        ``ax``: None (a new figure), or a matplotlib Axes / array of Axes with at least one per coordinate.
        Returns the array of Axes used.
        """
        import matplotlib.pyplot as plt
        from scipy import stats

        if not 0.0 < band < 1.0:
            raise ValueError(f"band must lie in (0, 1), got {band!r}")
        coordinates = self.coordinates()
        if ax is None:
            columns = min(4, len(coordinates))
            rows = -(-len(coordinates) // columns)
            _, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
            axes = np.asarray(axes).ravel()
            for unused in axes[len(coordinates) :]:
                unused.set_visible(False)
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if axes.size < len(coordinates):
                raise ValueError(
                    f"ax holds {axes.size} Axes but there are {len(coordinates)} coordinates to plot; pass "
                    "ax=None or an array of at least that many Axes"
                )
        edges, probabilities = self._bins(num_bins)
        n = self.num_datasets
        lower = stats.binom.ppf((1.0 - band) / 2.0, n, probabilities)
        upper = stats.binom.ppf(1.0 - (1.0 - band) / 2.0, n, probabilities)
        for axis, (label, ranks) in zip(axes, coordinates):
            counts = np.histogram(ranks, bins=edges)[0]
            axis.fill_between(
                edges,
                np.r_[lower, lower[-1]],
                np.r_[upper, upper[-1]],
                step="post",
                color="0.85",
                linewidth=0,
                label=f"{band:.0%} band",
            )
            axis.stairs(n * probabilities, edges, color="0.5", linewidth=0.8, label="expected")
            axis.stairs(counts, edges, color="C0", linewidth=1.5, label="ranks")
            axis.set_title(label)
            axis.set_xlim(edges[0], edges[-1])
            axis.set_ylim(0, 1.1 * max(counts.max(), upper.max()))
        axes[0].set_xlabel(f"rank (0..{self.num_ranks - 1})")
        return axes[: len(coordinates)]

    def _bins(self, num_bins: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges on the rank axis (half-integers) and each bin's probability under uniformity."""
        if num_bins is None:
            largest = max(2, min(20, self.num_ranks, self.num_datasets // 5))
            divisors = [b for b in range(2, largest + 1) if self.num_ranks % b == 0]
            num_bins = divisors[-1] if divisors else largest
        if not (isinstance(num_bins, (int, np.integer)) and 2 <= num_bins <= self.num_ranks):
            raise ValueError(f"num_bins must be an integer in [2, num_ranks={self.num_ranks}], got {num_bins!r}")
        rank_values = np.arange(self.num_ranks)
        bin_of_rank = rank_values * num_bins // self.num_ranks
        starts = np.searchsorted(bin_of_rank, np.arange(num_bins))
        edges = np.r_[starts, self.num_ranks] - 0.5
        probabilities = np.bincount(bin_of_rank, minlength=num_bins) / self.num_ranks
        return edges, probabilities


def sbc(
    model: Callable,
    data: Mapping[str, Any] | None = None,
    *,
    num_datasets: int = 100,
    method: str = "nuts",
    observed: str | Sequence[str] | Mapping[str, str] | None = None,
    sampler: Callable | None = None,
    vectorized: bool = False,
    thin: int | str = "auto",
    seed: int = 0,
    **fit_kwargs: Any,
) -> SBCResult:
    """Simulation-based calibration of a posterior sampler on ``model``.

    model, data
        the NumPyro model, called as ``model(**data)``. Arguments that are not observed (covariates, sizes)
        are held fixed; the model must still run with the observed argument(s) set to None.
    num_datasets
        number of simulated data sets (>= 2; a few hundred give a sensitive test).
    observed
        the observed argument name(s). Default: found by tracing ``model(**data)``: each observed sample site
        is matched to the data argument holding the same array. A dict ``{argument: site}`` states the mapping
        outright, for example when data holds only covariates and sizes; the simulated value of the site is
        passed back unchanged as that argument, so the site must observe the argument as is.
    sampler
        ``sampler(key, data) -> {site: array (num_draws, *site_shape)}``, any posterior sampler for the latent
        sites. With ``vectorized=True`` it must be JAX-traceable and is run as one ``jax.vmap`` over all data
        sets. Without a sampler, each data set is fitted by ``samplax.fit(model, data, method=method,
        progress=False, seed=..., **fit_kwargs)`` in a host loop over data sets (each fit compiles and runs on
        its own; the posterior's chain structure feeds the ESS used for thinning).
    thin
        the stride applied to each chain's draws before ranking. ``"auto"``: the median over data sets of
        ``ceil(num_draws / smallest bulk ESS)``, so that the kept draws are roughly independent (Talts et al.
        sec. 5.1); one stride for all data sets, because a per-data-set ESS is a noisy estimate. A data set
        with more kept draws than the others is brought to the common L by taking evenly spaced draws. All
        posterior draws are held in host memory until ranking (num_datasets x draws x latent size).
    seed
        seeds the prior predictive draws, the samplers and the random tie-breaking of ranks.
    """
    data = dict(data or {})
    if not callable(model):
        raise ValueError("model must be a NumPyro model function, called as model(**data)")
    if not (isinstance(num_datasets, (int, np.integer)) and num_datasets >= 2):
        raise ValueError(f"num_datasets must be an integer >= 2, got {num_datasets!r}; a few hundred is typical")
    if not (thin == "auto" or (isinstance(thin, (int, np.integer)) and thin >= 1)):
        raise ValueError(f"thin must be a positive integer or 'auto', got {thin!r}")
    if sampler is not None and not callable(sampler):
        raise ValueError("sampler must be a function sampler(key, data) -> {site: draws}")
    if sampler is not None and fit_kwargs:
        raise ValueError(
            f"options {sorted(fit_kwargs)} are passed to samplax.fit, which is not used when sampler= is given; "
            "drop them or drop sampler="
        )
    if vectorized and sampler is None:
        raise ValueError("vectorized=True needs sampler=: a JAX-traceable sampler(key, data) to vmap")

    argument_to_site, latent_shapes = _model_structure(model, data, observed)
    prior_key, sampler_key, tie_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    simulated = _simulate(model, data, argument_to_site, latent_shapes, num_datasets, prior_key)
    observations = {argument: simulated[site] for argument, site in argument_to_site.items()}
    prior_draws = {name: np.asarray(simulated[name]) for name in latent_shapes}
    dataset_keys = jax.random.split(sampler_key, num_datasets)

    def dataset(i):
        return {**data, **{argument: values[i] for argument, values in observations.items()}}

    if sampler is not None and vectorized:
        fixed = {k: v for k, v in data.items() if k not in argument_to_site}
        batched = jax.jit(jax.vmap(lambda key, obs: sampler(key, {**fixed, **obs})))(dataset_keys, observations)
        _check_draws(batched, latent_shapes, "sampler (vmapped over data sets)", batch_dims=2)
        posteriors = ({name: np.asarray(batched[name][i])[None] for name in latent_shapes} for i in range(num_datasets))
    elif sampler is not None:

        def posteriors_from_sampler():
            for i in range(num_datasets):
                draws = sampler(dataset_keys[i], dataset(i))
                _check_draws(draws, latent_shapes, "sampler", batch_dims=1)
                yield {name: np.asarray(draws[name])[None] for name in latent_shapes}

        posteriors = posteriors_from_sampler()
    else:
        fit_seeds = np.asarray(jax.random.randint(sampler_key, (num_datasets,), 0, np.iinfo(np.int32).max))

        def posteriors_from_fit():
            import samplax

            warned = []  # each fit's warnings are gathered into one, instead of num_datasets copies
            for i in range(num_datasets):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    posterior = samplax.fit(
                        model, dataset(i), method=method, progress=False, seed=int(fit_seeds[i]), **fit_kwargs
                    ).idata.posterior
                if caught:
                    warned.append(caught[0])
                draws = {
                    name: posterior[name].transpose("chain", "draw", ...).values
                    for name in latent_shapes
                    if name in posterior
                }
                _check_draws(draws, latent_shapes, f"samplax.fit(method={method!r})", batch_dims=2)
                yield draws
            if warned:
                warnings.warn(
                    f"{len(warned)} of {num_datasets} SBC fits raised warnings (the first: {warned[0].message}). "
                    "Ranks from unconverged fits can look miscalibrated: fix the fits (more warm-up or draws) "
                    "before reading the rank histograms.",
                    warned[0].category,
                    stacklevel=3,
                )

        posteriors = posteriors_from_fit()

    posteriors = list(posteriors)
    if thin == "auto":
        stride = max(1, round(float(np.median([_stride(draws) for draws in posteriors]))))
    else:
        stride = int(thin)
    thinned = [
        {name: d[:, ::stride].reshape(-1, *latent_shapes[name]) for name, d in draws.items()} for draws in posteriors
    ]
    num_kept = min(next(iter(t.values())).shape[0] for t in thinned)
    if num_kept < 1:
        raise ValueError("the sampler returned no posterior draws")

    rng = np.random.default_rng(np.asarray(jax.random.key_data(tie_key)).ravel())
    ranks = {name: np.empty((num_datasets, *shape), dtype=np.int64) for name, shape in latent_shapes.items()}
    for i, draws in enumerate(thinned):
        for name, values in draws.items():
            keep = (np.arange(num_kept) * values.shape[0]) // num_kept  # evenly spaced, distinct
            values = values[keep]
            below = (values < prior_draws[name][i]).sum(axis=0)
            ties = (values == prior_draws[name][i]).sum(axis=0)
            ranks[name][i] = below + rng.integers(0, ties + 1)
    return SBCResult(ranks=ranks, num_ranks=num_kept + 1, prior_draws=prior_draws, thinning=stride)


# ------------------------------------------------------------------------------------------ helpers


def _model_structure(model, data, observed):
    """Map observed arguments to their sample sites, and list the latent sites with their shapes."""
    target = build_target(model, data)
    latent_shapes = {site.name: site.shape for site in target.sites}
    latent_shapes.update({name: tuple(np.shape(target.discrete_start[name])) for name in target.discrete_sites})
    observed_sites = {name: {"value": value} for name, value in target.observed.items()}
    sample_sites = {**latent_shapes, **observed_sites}
    if not latent_shapes:
        raise ValueError("the model has no latent sample sites: there is nothing to calibrate")

    if isinstance(observed, Mapping):
        for argument, site in observed.items():
            if site not in sample_sites:
                raise ValueError(
                    f"observed site {site!r} (for argument {argument!r}) is not a sample site of the model; "
                    f"sample sites: {sorted(sample_sites)}"
                )
            latent_shapes.pop(site, None)
        if not latent_shapes:
            raise ValueError("the model has no latent sample sites: there is nothing to calibrate")
        return dict(observed), latent_shapes

    if isinstance(observed, str):
        observed = [observed]
    if observed is not None:
        unknown = [argument for argument in observed if argument not in data]
        if unknown:
            raise ValueError(f"observed argument(s) {unknown} are not in data (keys: {sorted(data)})")
        candidates = list(observed)
    else:
        candidates = [argument for argument, value in data.items() if value is not None]
    if not observed_sites:
        raise ValueError(
            "the model has no observed sample site when called as model(**data); pass the observations in data "
            "so that SBC knows which sites to simulate"
        )

    mapping: dict[str, str] = {}
    sites_to_match = observed_sites if observed is None else None
    for site_name, site in observed_sites.items():
        matches = [a for a in candidates if a not in mapping and _same_value(data[a], site["value"])]
        if len(matches) > 1:
            identical = [a for a in matches if data[a] is site["value"]]
            matches = identical if len(identical) == 1 else matches
        if len(matches) > 1:
            raise ValueError(
                f"observed site {site_name!r} matches several data arguments {matches}; pass "
                f"observed={{argument: {site_name!r}}}"
            )
        if matches:
            mapping[matches[0]] = site_name
        elif sites_to_match is not None:
            raise ValueError(
                f"observed site {site_name!r} does not take its value from any data argument, so SBC cannot "
                f"simulate it; pass observed={{argument: {site_name!r}}} naming the argument that feeds it"
            )
    if observed is not None:
        unmatched = [argument for argument in observed if argument not in mapping]
        if unmatched:
            raise ValueError(
                f"observed argument(s) {unmatched} feed no observed sample site unchanged; pass "
                "observed={argument: site} to name the site"
            )
    return mapping, latent_shapes


def _same_value(argument_value, site_value) -> bool:
    if argument_value is site_value:
        return True
    if argument_value is None or np.shape(argument_value) != np.shape(site_value):
        return False
    try:
        argument, site = np.asarray(argument_value), np.asarray(site_value)
        if np.issubdtype(argument.dtype, np.floating) or np.issubdtype(site.dtype, np.floating):
            # the model may hold the argument in float32 while the data are float64: equal up to that rounding
            return bool(np.allclose(argument, site, rtol=1e-6, atol=0.0))
        return bool(np.array_equal(argument, site))
    except (TypeError, ValueError):
        return False


def _simulate(model, data, argument_to_site, latent_shapes, num_datasets, key):
    from numpyro.infer import Predictive

    simulation_data = {**data, **{argument: None for argument in argument_to_site}}
    try:
        draws = Predictive(model, num_samples=num_datasets, parallel=True)(key, **simulation_data)
    except Exception as error:  # the model may need the observed array (e.g. for its length)
        raise ValueError(
            f"model(**data) failed with observed argument(s) {sorted(argument_to_site)} set to None ({error!r}); "
            "make the model able to simulate its data (pass sizes such as num_obs as separate arguments)"
        ) from error
    missing = [site for site in [*argument_to_site.values(), *latent_shapes] if site not in draws]
    if missing:
        raise ValueError(f"the prior predictive has no draws for site(s) {missing}")
    return draws


def _check_draws(draws, latent_shapes, source, batch_dims):
    if not isinstance(draws, Mapping):
        raise ValueError(f"{source} must return a dict site -> draws, got {type(draws).__name__}")
    for name, shape in latent_shapes.items():
        if name not in draws:
            raise ValueError(
                f"{source} returned no draws for latent site {name!r}; it must return every latent site "
                f"({sorted(latent_shapes)})"
            )
        got = tuple(np.shape(draws[name]))
        if len(got) != batch_dims + len(shape) or got[batch_dims:] != shape:
            leading = "(num_draws, " if batch_dims == 1 else "(..., num_draws, "
            raise ValueError(f"{source} returned draws of shape {got} for site {name!r}; expected {leading}*{shape})")


def _stride(draws: Mapping[str, np.ndarray]) -> int:
    """``ceil(draws per chain / smallest bulk ESS per chain)`` over all scalar coordinates (at least 1)."""
    from samplax.infer import arviz_compat

    chains, per_chain = next(iter(draws.values())).shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = arviz_compat.ess({name: np.asarray(values, dtype=np.float64) for name, values in draws.items()})
    smallest = min(
        float(np.nanmin(ess[name].values)) if np.isfinite(ess[name].values).any() else math.nan for name in draws
    )
    if not math.isfinite(smallest) or smallest <= 0:
        return per_chain
    return max(1, math.ceil(chains * per_chain / smallest))
