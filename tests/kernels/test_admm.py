"""D-ADMMS kernel tests (one device, float64).

Graphs, layouts, noise scales, the exact stationary law of the linear recursion, the MAP limit of plain ADMM, the
dual-sum invariant, the proximal solvers and their residuals, the Laplace warm-up and preconditioner, and the
neighbour exchanges.
"""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from samplax.kernels import admm

RHO = 5.0
NOISE_SD = 4.0
PRIOR_VARIANCE = 10.0


def regression_agents(num_agents, points_per_agent=50, dim=2, seed=0, noise_sd=4.0, prior_variance=10.0):
    """The paper's Bayesian linear regression split over agents.

    A_i = X_i^T X_i / s^2 + I / (lambda n), b_i = X_i^T y_i / s^2 (numpy arrays, (n, d, d) and (n, d)).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(num_agents, points_per_agent, dim))
    truth = rng.normal(size=dim) * 2.0
    y = X @ truth + noise_sd * rng.normal(size=(num_agents, points_per_agent))
    precision = np.einsum("nmi,nmj->nij", X, X) / noise_sd**2 + np.eye(dim) / (prior_variance * num_agents)
    linear = np.einsum("nmi,nm->ni", X, y) / noise_sd**2
    return precision, linear


def posterior(precision, linear):
    """The exact Gaussian posterior's mean and covariance of quadratic agents."""
    covariance = np.linalg.inv(precision.sum(axis=0))
    return covariance @ linear.sum(axis=0), covariance


def run_sampler(
    graph,
    num_agents,
    *,
    noise="calibrated",
    solver="closed_form",
    replicas=2000,
    warmup=200,
    keep=200,
    seed=1,
    precision=None,
    linear=None,
):
    """Run D-ADMMS on one device.

    Returns:
        The kept network averages (keep, R, d), agent 0's iterates (keep, R, d), the dual sums (keep, R), and the
        problem.
    """
    if precision is None:
        precision, linear = regression_agents(num_agents, noise_sd=NOISE_SD, prior_variance=PRIOR_VARIANCE)
    topology = admm.make_topology(graph, num_agents)
    layout = admm.make_layout(num_agents)
    data = admm.QuadraticPotential(precision, linear)
    agents = jax.tree.map(jnp.asarray, admm.make_agent_block(topology, layout, rho=RHO, noise=noise, data=data))
    exchange = admm.make_exchange(topology, layout)

    def potential(x, quadratic):
        return 0.5 * x @ quadratic.precision @ x - quadratic.linear @ x

    sampler = admm.admm(agents, exchange, rho=RHO, solver=solver, local_potential=potential)
    key = jax.random.key(seed)

    @jax.jit
    def run(key):
        init_key, run_key = jax.random.split(key)
        state = sampler.init(admm.initial_positions(init_key, agents, replicas, linear.shape[-1]))

        def body(state, t):
            state, info = sampler.step(jax.random.fold_in(run_key, t), state)
            return state, (info.network_average, state.position[0], info.dual_sum, state.position)

        state = jax.lax.fori_loop(0, warmup, lambda t, s: body(s, t)[0], state)
        _, (average, agent0, dual_sum, _) = jax.lax.scan(body, state, warmup + jnp.arange(keep))
        return average, agent0, dual_sum

    average, agent0, dual_sum = map(np.asarray, run(key))
    return average, agent0, dual_sum, topology, precision, linear


def replica_moments(draws, mean):
    """Per-replica time averages of x and of (x - mean)(x - mean)^T.

    They are independent across replicas, so their spread over replicas gives honest standard errors whatever the
    autocorrelation in time.
    """
    centred = draws - mean
    first = draws.mean(axis=0)  # (R, d)
    second = np.einsum("tri,trj->rij", centred, centred) / draws.shape[0]  # (R, d, d)
    return first, second


@pytest.fixture(scope="module", params=[("complete", 5), ("cycle", 8)], ids=["complete5", "cycle8"])
def stationary_run(request):
    """2000 replicas of calibrated D-ADMMS on the regression, per graph, with the exact stationary law."""
    graph, num_agents = request.param
    with jax.enable_x64(True):
        average, agent0, dual_sum, topology, precision, linear = run_sampler(graph, num_agents)
    exact = admm.linear_gaussian_stationary(
        topology, RHO, admm.noise_scale("calibrated", topology, RHO), precision, linear
    )
    return dict(
        graph=graph,
        average=average,
        agent0=agent0,
        dual_sum=dual_sum,
        exact=exact,
        posterior=posterior(precision, linear),
    )


def test_empirical_moments_match_the_exact_lyapunov_covariance(stationary_run):
    """Empirical moments match the exact stationary law of the linear (x, p) recursion.

    Exact answer: the stationary mean and covariance from the discrete Lyapunov equation (network average and agent
    0). Tolerance: 4.5 Monte Carlo standard errors, from the spread over 2000
    independent replicas of each replica's 200-iteration time averages (7 checks per graph).
    """
    exact = stationary_run["exact"]
    checks = []
    for draws, mean, covariance in (
        (stationary_run["average"], exact["average_mean"], exact["average_covariance"]),
        (stationary_run["agent0"], exact["mean"][0], exact["covariance"][:2, :2]),
    ):
        first, second = replica_moments(draws, mean)
        replicas = first.shape[0]
        checks += [(first.mean(0)[i], mean[i], first.std(0, ddof=1)[i] / np.sqrt(replicas)) for i in range(2)]
        if draws is stationary_run["average"]:
            checks += [
                (second.mean(0)[i, j], covariance[i, j], second.std(0, ddof=1)[i, j] / np.sqrt(replicas))
                for i, j in ((0, 0), (0, 1), (1, 1))
            ]
        else:
            checks += [
                (second.mean(0)[i, i], covariance[i, i], second.std(0, ddof=1)[i, i] / np.sqrt(replicas))
                for i in range(2)
            ]
    for estimate, target, se in checks:
        assert abs(estimate - target) <= 4.5 * se, (stationary_run["graph"], estimate, target, se)


def test_variance_ratio_to_the_true_posterior_is_within_12_percent(stationary_run):
    """Smoke test with 2000 replicas: network-average variance / exact posterior variance in [0.88, 1.12].

    Per coordinate. The calibrated chain's systematic gap is 3-7 % here (exact Lyapunov values, also checked), the Monte
    Carlo error of the ratio about 1 %.
    """
    mean, covariance = stationary_run["posterior"]
    _, second = replica_moments(stationary_run["average"], mean)
    ratio = np.diag(second.mean(0)) / np.diag(covariance)
    assert np.all(np.abs(ratio - 1.0) <= 0.12), ratio
    exact_ratio = np.diag(stationary_run["exact"]["average_covariance"]) / np.diag(covariance)
    assert np.all((exact_ratio > 0.9) & (exact_ratio < 1.0)), exact_ratio
    # the stationary mean is the posterior mean exactly (the recursion's fixed point is the consensus optimum)
    np.testing.assert_allclose(stationary_run["exact"]["average_mean"], mean, rtol=1e-9, atol=1e-12)


def test_dual_sum_stays_zero(stationary_run):
    """sum_i p_i^k = 0 for every k when p^0 = 0 (each edge adds rho (x_i - x_j) to p_i and its negative to p_j)."""
    assert np.max(stationary_run["dual_sum"]) < 1e-9


@pytest.mark.parametrize("graph,num_agents", [("complete", 5), ("cycle", 8)])
def test_noise_zero_converges_to_the_map(graph, num_agents):
    """Plain decentralised ADMM (noise = 0) reaches consensus at argmin sum_i f_i, the MAP.

    The MAP is the posterior mean of this Gaussian. Convergence is geometric (spectral radius < 0.93): 400 iterations
    leave < 1e-9.
    """
    with jax.enable_x64(True):
        average, agent0, _, _, precision, linear = run_sampler(
            graph, num_agents, noise=0.0, replicas=3, warmup=400, keep=2
        )
    mode, _ = posterior(precision, linear)
    np.testing.assert_allclose(average[-1], np.broadcast_to(mode, average[-1].shape), atol=1e-8)
    np.testing.assert_allclose(agent0[-1], np.broadcast_to(mode, agent0[-1].shape), atol=1e-8)


def test_newton_solver_follows_the_closed_form_on_a_quadratic():
    """Damped Newton with backtracking takes the full step on a quadratic.

    So its chain equals the closed-form chain draw for draw (same keys); a cycle of 6 with 4 replicas, 30 iterations.
    """
    with jax.enable_x64(True):
        closed = run_sampler("cycle", 6, replicas=4, warmup=10, keep=20)
        newton = run_sampler("cycle", 6, replicas=4, warmup=10, keep=20, solver="newton")
    np.testing.assert_allclose(newton[0], closed[0], atol=1e-9)
    np.testing.assert_allclose(newton[1], closed[1], atol=1e-9)


@pytest.mark.slow
def test_newton_prox_solves_the_logistic_proximal_problem():
    """Newton solves a logistic proximal problem to its tolerance and flags a solve that misses it.

    For a logistic potential the proximal point satisfies grad f(x) + p + w (x - a) = 0; Newton from a cold start
    stops once ||grad|| / w <= 1e-8 (reported as the residual); with one step allowed and a tolerance it cannot
    reach, the kernel flags the solve as a divergence.
    """
    rng = np.random.default_rng(4)
    features = rng.normal(size=(40, 3))
    labels = (rng.uniform(size=40) < 0.5).astype(float)

    def potential(x, data):
        logits = data["X"] @ x
        return jnp.sum(jnp.logaddexp(0.0, logits) - data["y"] * logits) + 0.05 * x @ x

    with jax.enable_x64(True):
        data = {"X": jnp.asarray(features), "y": jnp.asarray(labels)}
        prox = admm.newton_prox(potential, max_steps=20, tolerance=1e-8)
        dual = jnp.asarray(rng.normal(size=(5, 3)))
        anchor = jnp.asarray(rng.normal(size=(5, 3)) * 2)
        weight = 3.0
        x, residual = prox(data, dual, anchor, weight, jnp.zeros((5, 3)))
        grad = np.asarray(jax.vmap(jax.grad(lambda z: potential(z, data)))(x) + dual + weight * (x - anchor))
        np.testing.assert_allclose(np.linalg.norm(grad, axis=-1) / weight, residual, rtol=1e-6, atol=1e-14)
        assert np.max(residual) <= 1e-8
        # one Newton step cannot reach 1e-12: every replica of the sampler's step is then diverging
        topology = admm.make_topology("cycle", 3)
        layout = admm.make_layout(3)
        agents = jax.tree.map(
            jnp.asarray,
            admm.make_agent_block(topology, layout, rho=1.0, data=jax.tree.map(lambda v: jnp.stack([v] * 3), data)),
        )
        sampler = admm.admm(
            agents,
            admm.make_exchange(topology, layout),
            rho=1.0,
            local_potential=potential,
            newton_steps=1,
            tolerance=1e-12,
        )
        state = sampler.init(admm.initial_positions(jax.random.key(0), agents, 4, 3))
        _, info = sampler.step(jax.random.key(1), state)
    assert np.all(np.asarray(info.diverging)) and np.all(np.asarray(info.prox_residual) > 1e-12)


@pytest.mark.parametrize("graph", ["complete", "cycle", "star"])
def test_neighbour_sums_agree_with_the_adjacency(graph):
    """Every exchange path (psum for complete, roll/ppermute for cycle, masked gather) equals Adjacency @ x."""
    topology = admm.make_topology(graph, 6)
    layout = admm.make_layout(6)
    agents = jax.tree.map(jnp.asarray, admm.make_agent_block(topology, layout, rho=RHO))
    x = jax.random.normal(jax.random.key(0), (6, 3, 2))
    expected = np.einsum("ij,jrd->ird", topology.adjacency, np.asarray(x))
    for kind in (None, "gather"):
        exchange = admm.make_exchange(topology, layout, kind=kind)
        np.testing.assert_allclose(np.asarray(exchange.neighbour_sum(x, agents)), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# graphs, layouts, noise scales and their errors
def test_topologies_and_degree_zero_agents_are_refused():
    """Graph names, networkx graphs and adjacency matrices give topologies; agents without neighbours are refused."""
    assert admm.make_topology("complete", 5).kind == "complete"
    assert admm.make_topology("cycle", 8).kind == "cycle"
    star = admm.make_topology("star", 6)
    assert star.kind == "graph" and star.degrees.tolist() == [5, 1, 1, 1, 1, 1]
    assert admm.make_topology(nx.cycle_graph(7)).kind == "cycle"
    graph = nx.path_graph(4)
    graph.add_node(9)
    with pytest.raises(ValueError, match=r"agents \[4\] have no neighbours \(degree 0\)"):
        admm.make_topology(graph)
    with pytest.raises(ValueError, match="undirected"):
        admm.make_topology(nx.DiGraph([(0, 1), (1, 0)]))
    with pytest.raises(ValueError, match="not a known graph name"):
        admm.make_topology("ring", 4)
    with pytest.raises(ValueError, match="num_agents must be an integer >= 2"):
        admm.make_topology("cycle", 1)


def test_layout_pads_agents_over_devices_and_processes():
    """Agents fill the slots of each process's devices in order, padded with inactive slots (-1)."""
    layout = admm.make_layout(5, num_shards=4)
    assert layout.agents_per_shard == 2 and layout.slot_agent.tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    two_processes = admm.make_layout(6, num_shards=4, num_groups=2)
    assert two_processes.slot_agent.tolist() == [0, 1, 2, -1, 3, 4, 5, -1]
    assert two_processes.group_slots(1) == slice(4, 8)
    with pytest.raises(ValueError, match="cannot be split evenly over 2 processes"):
        admm.make_layout(5, num_shards=2, num_groups=2)
    # a padded cycle falls back to the masked all-gather
    assert admm.make_exchange(admm.make_topology("cycle", 5), layout, "agents").kind == "gather"


def test_noise_scales():
    """The noise scales follow their formulas.

    Calibrated: sigma^2 = D / (rho sum_j d_j^2), i.e. 1 / (rho d) on a d-regular graph; common (one draw shared by
    all agents): sigma^2 = 1 / (rho D).
    """
    cycle = admm.make_topology("cycle", 8)
    np.testing.assert_allclose(admm.noise_scale("calibrated", cycle, RHO), np.sqrt(1 / (RHO * 2)))
    np.testing.assert_allclose(admm.noise_scale("common", cycle, RHO), np.sqrt(1 / (RHO * 16)))  # 1 / (rho D)
    star = admm.make_topology("star", 6)
    np.testing.assert_allclose(admm.noise_scale("calibrated", star, RHO), np.sqrt(10 / (RHO * 30)))
    np.testing.assert_allclose(admm.noise_scale("paper", star, RHO), np.sqrt(2) / (2 * RHO))
    assert np.all(admm.noise_scale(0, star, RHO) == 0)
    with pytest.raises(ValueError, match="noise='loud' is not known"):
        admm.noise_scale("loud", star, RHO)
    with pytest.raises(ValueError, match="a number >= 0"):
        admm.noise_scale(-1.0, star, RHO)


def test_laplace_warmup_and_preconditioner_whiten_an_ill_conditioned_quadratic():
    """Exact answer: for quadratic agents the summed potential's mode is (sum A_i)^{-1} sum b_i and its Hessian sum A_i.

    Covariate scales 1e2-1e3 (condition number ~1e4): the warm-up finds both to float64 rounding, the dense
    preconditioner satisfies L^T H L = I, and the agents' curvature in u sums to I.
    """
    rng = np.random.default_rng(3)
    X = rng.uniform(0.5, 1.0, size=(4, 10, 3)) * np.array([100.0, 300.0, 1000.0])
    y = X @ np.ones(3) + rng.normal(size=(4, 10))
    precision = np.einsum("nmi,nmj->nij", X, X) + np.eye(3) / 40
    linear = np.einsum("nmi,nm->ni", X, y)
    topology = admm.make_topology("cycle", 4)
    layout = admm.make_layout(4)
    with jax.enable_x64(True):
        data = admm.QuadraticPotential(precision, linear)
        agents = jax.tree.map(jnp.asarray, admm.make_agent_block(topology, layout, rho=1.0, data=data))
        info = admm.laplace_warmup(
            lambda x, q: 0.5 * x @ q.precision @ x - q.linear @ x, agents, admm.make_exchange(topology, layout), 3
        )
    mode = np.linalg.solve(precision.sum(0), linear.sum(0))
    np.testing.assert_allclose(np.asarray(info.mode), mode, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(info.hessian), precision.sum(0), rtol=1e-12)
    assert float(info.newton_decrement) < 1e-6
    pre = admm.make_preconditioner(info.mode, info.hessian, "dense")
    np.testing.assert_allclose(pre.scale.T @ precision.sum(0) @ pre.scale, np.eye(3), atol=1e-8)
    assert pre.summary["condition_number"] > 1e3
    diagonal = admm.make_preconditioner(info.mode, info.hessian, "diagonal")
    np.testing.assert_allclose(np.diag(diagonal.scale.T @ precision.sum(0) @ diagonal.scale), 1.0, rtol=1e-12)


@pytest.mark.parametrize("graph,num_agents", [("cycle", 5), ("complete", 5), ("cycle", 20), ("star", 6)])
def test_default_rho_gives_a_small_stated_variance_deficit(graph, num_agents):
    """The default rho = 5 / D leaves a variance deficit of about 5 %, below 1.

    With unit summed curvature (preconditioned coordinates) rho = 5 / D makes the network average's Langevin
    step h = 0.1: the exact (Lyapunov) variance ratio is within 3 % of 1 / (1 + h / 2) = 0.952 on these graphs and
    below 1 (the deficit the fit states as ``variance_ratio``).
    """
    topology = admm.make_topology(graph, num_agents)
    rho = admm.default_rho(topology)
    np.testing.assert_allclose(rho, 5.0 / topology.degrees.sum())
    precisions = np.full((num_agents, 1, 1), 1.0 / num_agents)
    ratio = admm.variance_ratio(topology, rho, admm.noise_scale("calibrated", topology, rho), precisions)
    assert 0.92 < ratio[0] < 0.985, ratio
