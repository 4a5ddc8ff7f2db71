"""Isotropic total variation of an image and its proximity operator (Chambolle's dual projection, accelerated).

Papers: A. Chambolle, "An algorithm for total variation minimization and applications", J. Math. Imaging Vis. 20
(2004); A. Beck and M. Teboulle, "Fast gradient-based algorithms for constrained total variation image denoising and
deblurring problems", IEEE Trans. Image Process. 18 (2009) (FGP). With forward differences D (zero at the last row /
column: Neumann boundary),

    TV(x) = sum_ij |(D x)_ij|_2,   (D x)_ij = (x_{i+1,j} - x_ij, x_{i,j+1} - x_ij).

The prox P(x) = argmin_y |y - x|^2 / 2 + t TV(y) is y = x - t D^T p, where p solves the dual problem
min_{|p_ij| <= 1} |x - t D^T p|^2 / 2, whose gradient has Lipschitz constant 8 t^2; FGP runs projected gradient
steps of length 1 / (8 t^2) with Nesterov momentum from p = 0:

    q_k   = Proj_{|.| <= 1}( r_k + D (x - t D^T r_k) / (8 t) ),
    s_k+1 = (1 + sqrt(1 + 4 s_k^2)) / 2,   r_k+1 = q_k + (s_k - 1) / s_k+1 (q_k - q_k-1).

A fixed number of iterations gives an inexact prox (as in Durmus, Moulines and Pereyra 2018, who use Chambolle's
algorithm inside MYULA); ``num_iterations`` = 25 puts the prox of a step image within 2e-3 of the exact answer and
100 within 1e-5 (tests/kernels/test_bregman.py). Pure JAX: jit-, vmap- and grad-friendly.

Usage (a TV prior in a NumPyro model, then MYULA handles it through its proximity operator)::

    x = numpyro.sample("x", dist.ImproperUniform(constraints.real, (), (64, 64)))
    numpyro.factor("tv", -weight * total_variation(x))
    fit = samplax.fit(model, data, method="myula", total_variation={"site": "x", "weight": weight, "factor": "tv"})
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["NUM_ITERATIONS", "divergence", "gradient", "prox_total_variation", "total_variation"]

NUM_ITERATIONS = 25


def gradient(x):
    """Forward differences (D x) of an (H, W) image: shape (2, H, W), zero on the last row / column."""
    dx = jnp.zeros_like(x).at[:-1, :].set(x[1:, :] - x[:-1, :])
    dy = jnp.zeros_like(x).at[:, :-1].set(x[:, 1:] - x[:, :-1])
    return jnp.stack([dx, dy])


def divergence(p):
    """-D^T p for p of shape (2, H, W): the discrete divergence, the negative adjoint of ``gradient``."""
    px, py = p[0], p[1]
    div_x = jnp.concatenate([px[:1], px[1:-1] - px[:-2], -px[-2:-1]], axis=0)
    div_y = jnp.concatenate([py[:, :1], py[:, 1:-1] - py[:, :-2], -py[:, -2:-1]], axis=1)
    return div_x + div_y


def total_variation(x):
    """Isotropic TV of an (H, W) image (H, W >= 2); a batch (..., H, W) gives one value per image."""
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[-1] < 2 or x.shape[-2] < 2:
        raise ValueError(f"total_variation: needs an image of shape (..., H, W) with H, W >= 2, got shape {x.shape}")
    if x.ndim > 2:
        return jax.vmap(total_variation)(x.reshape((-1,) + x.shape[-2:])).reshape(x.shape[:-2])
    d = gradient(x)
    # sqrt with a zero-safe gradient: |0|'s subgradient 0 rather than NaN, so jax.grad works on flat patches
    squared = jnp.sum(d * d, axis=0)
    safe = jnp.where(squared > 0, squared, 1.0)
    return jnp.sum(jnp.where(squared > 0, jnp.sqrt(safe), 0.0))


def prox_total_variation(x, threshold, num_iterations: int = NUM_ITERATIONS):
    """argmin_y |y - x|^2 / 2 + threshold TV(y) for an (H, W) image, by ``num_iterations`` FGP steps (inexact).

    ``threshold`` is a scalar >= 0 (0 returns x).
    """
    t = jnp.asarray(threshold, dtype=x.dtype)
    safe_t = jnp.where(t > 0, t, 1.0)

    def project(p):
        norm = jnp.sqrt(jnp.sum(p * p, axis=0, keepdims=True))
        return p / jnp.maximum(norm, 1.0)

    def body(_, carry):
        p, r, s = carry
        q = project(r + gradient(x + safe_t * divergence(r)) / (8.0 * safe_t))
        s_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * s * s))
        r = q + (s - 1.0) / s_next * (q - p)
        return q, r, s_next

    zero = jnp.zeros((2,) + x.shape, dtype=x.dtype)
    p, _, _ = jax.lax.fori_loop(0, num_iterations, body, (zero, zero, jnp.ones((), dtype=x.dtype)))
    return jnp.where(t > 0, x + safe_t * divergence(p), x)
