"""Exact answers for Gaussian targets: D-ADMMS's stationary law, its variance deficit, the Gaussian W2 distance.

The stationary law is that of synchronous D-ADMMS on quadratic potentials, and its variance deficit is against the
posterior.

For quadratic f_i(x) = x^T A_i x / 2 - b_i^T x the state (x, p) of D-ADMMS follows a linear recursion
z' = T z + h + N xi; its stationary covariance solves the discrete Lyapunov equation S = T S T^T + N N^T. The
network average's covariance differs from the posterior's (sum_i A_i)^{-1} by a few per cent: a property of the
method (the proximal Langevin step of size 1 / (2 rho D) and the consensus error), not of the code. samplax states
that figure for each fit, from the Laplace approximation of the agents' potentials (`variance_ratio`).
"""

from __future__ import annotations

import numpy as np

from samplax.kernels.admm.topology import Topology

__all__ = ["linear_gaussian_stationary", "variance_ratio", "gaussian_w2"]

MAX_LYAPUNOV_SIZE = 1200  # 2 n d above this: the dense Lyapunov solve (cubic) is skipped


def linear_gaussian_stationary(topology: Topology, rho: float, sigma, precisions, linears, shared_noise=False):
    """Exact stationary mean and covariance of synchronous D-ADMMS for quadratic f_i (x^T A_i x / 2 - b_i^T x).

    The state (x, p) follows a linear recursion z' = T z + h + N xi. The dual sum is conserved (and 0), so p lives in
    the (n - 1) d-dimensional complement of the consensus direction; on (x, q) with p = (U ⊗ I) q the recursion is
    stable and its stationary covariance solves the discrete Lyapunov equation S = T S T^T + N N^T
    (`scipy.linalg.solve_discrete_lyapunov`). Returns a dict: ``mean`` (n, dim), ``covariance`` (n dim, n dim) of
    the stacked agent positions, ``average_mean`` and ``average_covariance`` of the degree-weighted network average,
    ``spectral_radius`` of the reduced T.
    """
    import scipy.linalg

    adjacency = topology.adjacency
    degrees = topology.degrees
    n = topology.num_agents
    precisions = np.asarray(precisions, float)
    linears = np.asarray(linears, float)
    dim = linears.shape[-1]
    sigma = np.broadcast_to(np.asarray(sigma, float), (n,))
    eye = np.eye(dim)
    weight = 2.0 * rho * degrees
    solve = [np.linalg.inv(precisions[i] + weight[i] * eye) for i in range(n)]
    # m = C x with C = (I + D^{-1} Adj) / 2
    centre = 0.5 * (np.eye(n) + adjacency / degrees[:, None])
    big = lambda blocks: np.block(blocks)  # noqa: E731
    K = big([[solve[i] * weight[i] * centre[i, j] for j in range(n)] for i in range(n)])  # x' from x
    G = big([[-solve[i] if i == j else np.zeros((dim, dim)) for j in range(n)] for i in range(n)])  # x' from p
    h = np.concatenate([solve[i] @ linears[i] for i in range(n)])
    if shared_noise:  # one xi for every agent: a single noise column block
        Nx = np.vstack([-solve[i] * weight[i] * sigma[i] for i in range(n)])
    else:
        Nx = big(
            [[-solve[i] * weight[i] * sigma[i] if i == j else np.zeros((dim, dim)) for j in range(n)] for i in range(n)]
        )
    laplacian = np.kron(np.diag(degrees) - adjacency, eye) * rho
    # p' = p + rho L x'
    T = np.block([[K, G], [laplacian @ K, np.eye(n * dim) + laplacian @ G]])
    offset = np.concatenate([h, laplacian @ h])
    noise = np.vstack([Nx, laplacian @ Nx])
    # reduce p to the complement of the consensus direction
    basis = scipy.linalg.null_space(np.ones((1, n)))  # (n, n - 1), orthonormal
    P = scipy.linalg.block_diag(np.eye(n * dim), np.kron(basis, eye))  # z = P y
    Pinv = P.T  # orthonormal columns
    T_red = Pinv @ T @ P
    offset_red = Pinv @ offset
    noise_red = Pinv @ noise
    radius = float(np.max(np.abs(np.linalg.eigvals(T_red))))
    if radius >= 1:
        raise ValueError(
            f"the linear ADMM recursion is not stable (spectral radius {radius:.4f}); check rho and the "
            "precisions (they must be positive semidefinite with a positive definite sum)"
        )
    mean_red = np.linalg.solve(np.eye(T_red.shape[0]) - T_red, offset_red)
    cov_red = scipy.linalg.solve_discrete_lyapunov(T_red, noise_red @ noise_red.T)
    x_dim = n * dim
    mean = mean_red[:x_dim].reshape(n, dim)
    cov = cov_red[:x_dim, :x_dim]
    average = np.kron(degrees / degrees.sum(), eye)  # (dim, n dim)
    return {
        "mean": mean,
        "covariance": cov,
        "average_mean": average @ mean_red[:x_dim],
        "average_covariance": average @ cov @ average.T,
        "spectral_radius": radius,
    }


def variance_ratio(topology: Topology, rho: float, sigma, precisions, scale=None, shared_noise=False):
    """Network-average variance / target variance per coordinate, exactly, for quadratic agents.

    ``precisions`` (n, d, d) are the agents' Hessians in the coordinates the sampler runs in; ``scale`` (d, d) maps
    them to the reported coordinates (x = shift + scale u), default the identity. The result is None when 2 n d
    exceeds ``MAX_LYAPUNOV_SIZE`` (too costly to solve) or the recursion is not stable for these precisions.
    """
    precisions = np.asarray(precisions, float)
    n, dim = precisions.shape[0], precisions.shape[-1]
    if 2 * n * dim > MAX_LYAPUNOV_SIZE:
        return None
    try:
        exact = linear_gaussian_stationary(topology, rho, sigma, precisions, np.zeros((n, dim)), shared_noise)
        posterior = np.linalg.inv(precisions.sum(axis=0))
    except (ValueError, np.linalg.LinAlgError):
        return None
    scale = np.eye(dim) if scale is None else np.asarray(scale, float)
    sampled = np.diag(scale @ exact["average_covariance"] @ scale.T)
    target = np.diag(scale @ posterior @ scale.T)
    return sampled / target


def gaussian_w2(mean_a, cov_a, mean_b, cov_b) -> float:
    """Wasserstein-2 distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    import scipy.linalg

    cov_a = np.atleast_2d(np.asarray(cov_a, float))
    cov_b = np.atleast_2d(np.asarray(cov_b, float))
    root_b = scipy.linalg.sqrtm(cov_b)
    cross = scipy.linalg.sqrtm(root_b @ cov_a @ root_b)
    value = np.sum((np.asarray(mean_a) - np.asarray(mean_b)) ** 2) + np.trace(cov_a + cov_b - 2.0 * np.real(cross))
    return float(np.sqrt(max(value, 0.0)))
