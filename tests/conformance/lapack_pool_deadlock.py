"""Standalone reproducer (jax only) of an XLA:CPU deadlock in jaxlib's batched LAPACK kernels.

Run ``PJRT_NPROC=2 python lapack_pool_deadlock.py``: it never finishes with jaxlib 0.10.2 (0 % CPU); with
``PJRT_NPROC=1`` (or 8) it prints a number in about two seconds. Each evaluation of ``log_density`` factorises a
20 x 20 covariance; vmapped over 256 points the factorisation is a batched LAPACK call that jaxlib splits into tasks
on XLA's intra-op thread pool (``ParallelBatchMap``), blocking its own worker until they finish. The value and the
gradient are independent thunks, so several such calls run at once; once every worker of the pool waits so, nobody
runs the tasks. gdb shows each ``tf_XLAEigen`` worker in ``jax::ParallelBatchMap`` -> ``BlockingCounter::Wait``.
"""

import jax
import jax.numpy as jnp

BATCH, DIM, INNER_STEPS = 256, 20, 5
factor = jax.random.normal(jax.random.PRNGKey(0), (BATCH, DIM, DIM))
base_covariances = factor @ jnp.swapaxes(factor, -1, -2) + DIM * jnp.eye(DIM)


def log_density(z, base):
    covariance = base + jnp.outer(jnp.tanh(z), jnp.tanh(z))
    cholesky = jnp.linalg.cholesky(covariance)
    whitened = jax.scipy.linalg.solve_triangular(cholesky, z, lower=True)
    return -jnp.sum(jnp.log(jnp.diag(cholesky))) - 0.5 * jnp.sum(whitened**2)


@jax.jit
def run(z):
    def inner(points, _):
        gradients = jax.vmap(jax.grad(log_density))(points, base_covariances)
        values = jax.vmap(log_density)(points + 0.1, base_covariances)
        return points + 1e-3 * gradients * jnp.exp(values)[:, None] * 0, None

    def outer(_, points):
        return jax.lax.scan(inner, points, None, length=INNER_STEPS)[0]

    return jax.lax.fori_loop(0, 5, outer, z)


if __name__ == "__main__":
    print(float(jnp.sum(run(jnp.ones((BATCH, DIM))))), flush=True)
