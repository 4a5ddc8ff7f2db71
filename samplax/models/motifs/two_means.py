"""The open-universe mixture's "two means" motif: two component means proposed jointly given everything else.

Matched on a Gaussian mixture with a discrete number of active components; its proposal input summarises the points
that the other means do not explain (`two_means_features`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from samplax.models.motifs.base import MOTIF_VERSION
from samplax.models.motifs.model_view import ModelView
from samplax.models.motifs.sites import base_dist

__all__ = ["TwoMeansInstance", "TwoMeansMotif", "two_means_features"]


@dataclasses.dataclass(frozen=True)
class TwoMeansInstance:
    """Where the motif sits in a model: the count, means and data sites and the read local parameters."""

    count_site: str
    means_site: str
    data_site: str
    max_components: int
    dim: int
    mean_scale: float
    noise_scale: float
    data: np.ndarray


FEATURE_KMEANS_ITERATIONS = 6
FEATURE_EXPLAINED_SCALE = 8.0  # w_i = 1 - exp(-d_i^2 / 8): a point within ~2 noise sd of another mean is explained
TRAINING_MAX_POINTS = 128
TRAINING_MAX_COMPONENTS = 8


@dataclasses.dataclass(frozen=True)
class TwoMeansMotif:
    """The two-means motif: two component means of an open-universe Gaussian mixture, moved together.

    Block: the means of two active components; conditioning set: the data, the number of active components and the
    other means. Theta = (mean_scale, noise_scale).

    Matched on a model with a discrete count site M ~ DiscreteUniform(1, m), a continuous means site (m, d) with a
    centred Normal prior, and an observed site whose parents are exactly {M, means} with a MixtureSameFamily of
    Normal(means, noise).to_event(1) components weighted 1/M on the first M. The input x summarises the points that
    the other means do not explain (weights w_i), by a weighted two-means clustering in the frame centred at their
    weighted mean and scaled by the noise sd; the block is proposed in that frame (the frame depends only on the
    conditioning set, so its Jacobian cancels in the MH ratio).
    """

    dim: int = 2
    name: str = "two_means"

    kind = "continuous"

    @property
    def num_inputs(self) -> int:
        return 2 * self.dim + 7

    @property
    def block_size(self) -> int:
        return 2 * self.dim

    def signature(self) -> dict:
        return {
            "kind": "continuous",
            "name": self.name,
            "version": MOTIF_VERSION,
            "dim": int(self.dim),
            "explained_scale": FEATURE_EXPLAINED_SCALE,
            "kmeans_iterations": FEATURE_KMEANS_ITERATIONS,
        }

    def match(self, view: ModelView) -> list[TwoMeansInstance]:
        target = view.target
        trace = target._trace
        continuous = {site.name: site for site in target.sites}
        found = []
        for data_site, s in trace.items():
            if s["type"] != "sample" or not s["is_observed"]:
                continue
            fn = base_dist(s["fn"])
            if not isinstance(fn, dist.MixtureSameFamily):
                continue
            ps = set(view.parents.get(data_site, ()))
            counts = [p for p in ps if p in view.variable_index and view.latent[view.variable_index[p]]]
            means = [p for p in ps if p in continuous]
            if len(ps) != 2 or len(counts) != 1 or len(means) != 1:
                continue
            count_site, means_site = counts[0], means[0]
            prior = base_dist(trace[count_site]["fn"])
            if not isinstance(prior, dist.DiscreteUniform) or int(np.asarray(prior.low)) != 1:
                continue
            m = int(np.asarray(prior.high))
            shape = continuous[means_site].shape
            if shape != (m, self.dim):
                continue
            mean_prior = base_dist(trace[means_site]["fn"])
            if not isinstance(mean_prior, dist.Normal) or not np.allclose(np.asarray(mean_prior.loc), 0.0):
                continue
            scale = np.asarray(mean_prior.scale)
            component = fn.component_distribution
            base = base_dist(component)
            means_value = np.asarray(trace[means_site]["value"])
            if not isinstance(base, dist.Normal) or not np.allclose(np.asarray(base.loc), means_value):
                continue
            noise = np.asarray(base.scale)
            if not (np.allclose(scale, scale.reshape(-1)[0]) and np.allclose(noise, noise.reshape(-1)[0])):
                continue
            k = int(np.asarray(trace[count_site]["value"]))
            weights = np.asarray(fn.mixing_distribution.probs)
            expected = np.where(np.arange(m) < k, 1.0 / k, 0.0)
            if weights.shape != (m,) or not np.allclose(weights, expected, atol=1e-6):
                continue
            y = np.asarray(s["value"], dtype=float)
            if y.ndim != 2 or y.shape[1] != self.dim:
                continue
            found.append(
                TwoMeansInstance(
                    count_site,
                    means_site,
                    data_site,
                    m,
                    self.dim,
                    float(scale.reshape(-1)[0]),
                    float(noise.reshape(-1)[0]),
                    y,
                )
            )
        return found

    # ------------------------------------------------------------------------------------------------------------
    def sample_training_batch(self, key, batch_size: int):
        """Training pairs (x (N, num_inputs), block (N, 2 dim)) from random small mixtures.

        2..8 active components with means from N(0, s^2), s ~ U(2, 8) (noise sd 1), 10..128 points; a random pair of
        active components is the block and the other active means are the conditioning set (their true values: a
        joint draw).
        """
        d = self.dim
        n_max, m_max = TRAINING_MAX_POINTS, TRAINING_MAX_COMPONENTS

        def one(k):
            keys = jax.random.split(k, 8)
            active_count = jax.random.randint(keys[0], (), 2, m_max + 1)
            n = jax.random.randint(keys[1], (), 10, n_max + 1)
            mean_scale = jax.random.uniform(keys[2], (), minval=2.0, maxval=8.0)
            means = mean_scale * jax.random.normal(keys[3], (m_max, d))
            active = jnp.arange(m_max) < active_count
            labels = jax.random.randint(keys[4], (n_max,), 0, active_count)
            y = means[labels] + jax.random.normal(keys[5], (n_max, d))
            y_mask = jnp.arange(n_max) < n
            a = jax.random.randint(keys[6], (), 0, active_count)
            b = (a + jax.random.randint(keys[7], (), 1, active_count)) % active_count
            x, center = two_means_features(y, y_mask, means, active, a, b, 1.0, mean_scale)
            block = jnp.concatenate([means[a] - center, means[b] - center])
            return x, block

        return jax.vmap(one)(jax.random.split(key, batch_size))


def two_means_features(y, y_mask, means, active, a, b, noise_scale, mean_scale):
    """Return (x, center): the proposal input for the pair (a, b) and the frame centre.

    x and the block are in units of the noise sd. Depends on the data, the active set and the means other than a and b,
    never on means a and b.
    """
    m = means.shape[0]
    others = active & (jnp.arange(m) != a) & (jnp.arange(m) != b)
    u_all = y / noise_scale
    sq = jnp.sum((u_all[:, None, :] - means[None, :, :] / noise_scale) ** 2, axis=-1)
    sq = jnp.where(others[None, :], sq, jnp.inf)
    nearest = jnp.min(sq, axis=1)
    w = (1.0 - jnp.exp(-nearest / FEATURE_EXPLAINED_SCALE)) * y_mask
    total = jnp.sum(w) + 1e-6
    center = jnp.sum(w[:, None] * u_all, axis=0) / total
    u = u_all - center
    first = u[jnp.argmax(w * jnp.sum(u**2, axis=1))]
    second = u[jnp.argmax(w * jnp.sum((u - first) ** 2, axis=1))]

    def lloyd(_, centres):
        c1, c2 = centres
        nearer = jnp.sum((u - c1) ** 2, axis=1) <= jnp.sum((u - c2) ** 2, axis=1)
        w1, w2 = w * nearer, w * (~nearer)
        c1 = jnp.where(jnp.sum(w1) > 1e-6, jnp.sum(w1[:, None] * u, axis=0) / (jnp.sum(w1) + 1e-12), c1)
        c2 = jnp.where(jnp.sum(w2) > 1e-6, jnp.sum(w2[:, None] * u, axis=0) / (jnp.sum(w2) + 1e-12), c2)
        return c1, c2

    c1, c2 = jax.lax.fori_loop(0, FEATURE_KMEANS_ITERATIONS, lloyd, (first, second))
    swap = c1[0] > c2[0]
    c1, c2 = jnp.where(swap, c2, c1), jnp.where(swap, c1, c2)
    nearer = jnp.sum((u - c1) ** 2, axis=1) <= jnp.sum((u - c2) ** 2, axis=1)
    w1, w2 = w * nearer, w * (~nearer)
    n1, n2 = jnp.sum(w1), jnp.sum(w2)
    spread1 = jnp.sum(w1 * jnp.sum((u - c1) ** 2, axis=1)) / (n1 + 1e-6)
    spread2 = jnp.sum(w2 * jnp.sum((u - c2) ** 2, axis=1)) / (n2 + 1e-6)
    x = jnp.concatenate(
        [
            c1,
            c2,
            jnp.stack(
                [
                    jnp.log1p(n1),
                    jnp.log1p(n2),
                    jnp.log1p(spread1),
                    jnp.log1p(spread2),
                    jnp.log1p(total),
                    jnp.log(mean_scale / noise_scale),
                    jnp.log1p(jnp.sum(others)),
                ]
            ),
        ]
    )
    return x, center * noise_scale
