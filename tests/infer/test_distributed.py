"""admm and dsgld through fit, on emulated devices, and as real 2-process jobs on loopback.

admm and dsgld through fit (one device), on 4 emulated CPU devices, and as real 2-process jobs on loopback
(jax.distributed, gloo), including a killed and a stopped peer and a peer that fails with an error. Spawned processes
run tests/infer/_admm_worker.py or the `samplax` command line.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.optimize

import samplax
from samplax.kernels import admm as admm_kernel
from samplax.models.bridge import build_target

pytestmark = [
    pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:More chains:UserWarning"),
    pytest.mark.slow,
]

WORKER_PATH = Path(__file__).with_name("_admm_worker.py")
ROOT = WORKER_PATH.parents[2]
_spec = importlib.util.spec_from_file_location("_admm_worker", WORKER_PATH)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

NOISE_SD, PRIOR_VARIANCE = 4.0, 10.0


def shard_quadratics(data, num_agents):
    """The worker's regression split over agents as quadratic potentials (A_i, b_i).

    Per-agent A_i = X_i^T X_i / 16 + I / (10 n), b_i = X_i^T y_i / 16 of the worker's regression model, with the
    observations split like Target.shards (numpy.array_split).
    """
    parts = zip(np.array_split(data["X"], num_agents), np.array_split(data["y"], num_agents))
    precision, linear = [], []
    for X, y in parts:
        precision.append(X.T @ X / NOISE_SD**2 + np.eye(X.shape[1]) / (PRIOR_VARIANCE * num_agents))
        linear.append(X.T @ y / NOISE_SD**2)
    return np.array(precision), np.array(linear)


def replica_mean_z(draws, exact):
    """|mean - exact| / standard error per coordinate, from the spread of the chains' own means.

    |mean - exact| / standard error per coordinate, the error from the spread of the chains' own means (chains
    are independent replicas of the network).
    """
    per_chain = draws.mean(axis=1)
    se = per_chain.std(axis=0, ddof=1) / np.sqrt(per_chain.shape[0])
    return np.abs(per_chain.mean(axis=0) - exact) / se


# ---------------------------------------------------------------------------------------------------------------------
# one device, through fit
@pytest.fixture(scope="module")
def reference_fit():
    """The 2-process job's fit, run here on one device with the full data (the draws must be identical)."""
    return samplax.fit(worker.regression_model, worker.regression_data(), **worker.FIT_SETTINGS)


def test_admm_fit_layout_and_invariants(reference_fit):
    """The reference fit's shapes, the dual-sum invariant, the detected solver, and the average of the agents."""
    idata = reference_fit.idata
    assert idata.posterior["theta"].shape == (8, 20, 2)
    assert idata.sample_stats["agent_z"].shape == (8, 20, 8, 2)
    assert float(idata.sample_stats["dual_sum"].max()) < 1e-9  # sum_i p_i = 0 (float64 rounding only)
    assert float(idata.sample_stats["consensus_residual"].min()) > 0  # noisy agents never agree exactly
    assert json.loads(idata.attrs["extra_solver"]) == "closed_form"  # Gaussian-linear agents detected
    assert json.loads(idata.attrs["extra_graph"]) == "cycle"
    # the posterior group is the degree-weighted (here plain) average of the agents' iterates
    np.testing.assert_allclose(
        idata.posterior["theta"].values, idata.sample_stats["agent_z"].values.mean(axis=2), atol=1e-10
    )


def scaled_regression(N, X, y=None):
    """A Bayesian linear regression with an integer-sized plate and covariates of scale 1e2-1e3.

    A Bayesian linear regression whose plate is sized by an integer argument (posteriordb's style) and whose
    covariates have scales 1e2-1e3: posterior sds ~1e-3 to 1e-2, condition number ~1e4.
    """
    import numpyro
    import numpyro.distributions as dist

    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("N", N):
        numpyro.sample("y", dist.Normal(X @ beta, 2.0), obs=y)


def test_admm_defaults_on_an_ill_conditioned_regression():
    """The admm defaults on an ill-conditioned regression match the exact posterior and their stated variance ratio.

    Defaults (float32, preconditioned, rho chosen from the curvature) on covariates of scale 1e2-1e3, 60 rows
    over 5 agents. Exact answers: the Gaussian posterior (mean and covariance in closed form) and, for this Gaussian
    target, the network average's exact stationary variance, which the fit states as ``variance_ratio``. The
    stationary mean is within 4.5 standard errors of the posterior mean, the empirical variance / posterior variance
    within 4.5 standard errors of the stated ratio (which is in [0.88, 1)); standard errors from the spread of the
    200 independent replicas' own time averages (100 kept iterations after 100 of warm-up).
    """
    rng = np.random.default_rng(21)
    X = rng.uniform(0.5, 1.0, size=(60, 3)) * np.array([100.0, 400.0, 1000.0])
    y = X @ np.ones(3) + 2.0 * rng.normal(size=60)
    fit = samplax.fit(
        scaled_regression,
        {"N": 60, "X": X, "y": y},
        method="admm",
        chains=200,
        warmup=100,
        draws=100,
        seed=4,
        progress=False,
    )
    attrs = {k[len("extra_") :]: json.loads(v) for k, v in fit.idata.attrs.items() if k.startswith("extra_")}
    assert attrs["solver"] == "closed_form" and attrs["precondition"] == "dense"
    assert attrs["precondition_condition_number"] > 1e3 and attrs["divergences"] == 0
    precision = X.T @ X / 4.0 + np.eye(3) / 100.0
    covariance = np.linalg.inv(precision)
    mean = covariance @ (X.T @ y / 4.0)
    draws = fit.idata.posterior["beta"].values.astype(np.float64)  # (replicas, draws, 3)
    assert np.all(replica_mean_z(draws, mean) <= 4.5)
    per_replica = ((draws - mean) ** 2).mean(axis=1) / np.diag(covariance)  # (replicas, 3)
    ratio, se = per_replica.mean(0), per_replica.std(0, ddof=1) / np.sqrt(per_replica.shape[0])
    stated = np.asarray(attrs["variance_ratio"])
    assert np.all((stated > 0.88) & (stated < 1.0)), stated
    assert np.all(np.abs(ratio - stated) <= 4.5 * se), (ratio, stated, se)


def test_admm_defaults_on_a_logistic_regression():
    """The admm defaults on a logistic regression match exact posterior moments.

    Defaults on a logistic regression (300 rows, intercept and 2 standardised covariates, 4 agents on a cycle)
    against the exact posterior moments computed independently by importance sampling from a Student-t fitted at
    the mode (400,000 draws: its error is far below the tolerances). Goal of the defaults: means within 0.2
    posterior sds and sds within 25 %; asserted with 4.5 standard errors of the replicas' spread added (32 replicas x
    100 kept iterations after 60 of warm-up).
    """
    rng = np.random.default_rng(8)
    features = rng.normal(size=(300, 2))
    X = np.column_stack([np.ones(300), (features - features.mean(0)) / features.std(0)])
    y = (rng.uniform(size=300) < 1.0 / (1.0 + np.exp(-X @ np.array([0.5, 1.0, -1.5])))).astype(np.int64)
    fit = samplax.fit(
        worker.logistic_model,
        {"X": X, "y": y},
        method="admm",
        chains=32,
        warmup=60,
        draws=100,
        seed=0,
        progress=False,
        num_agents=4,
    )
    assert json.loads(fit.idata.attrs["extra_divergences"]) == 0
    draws = fit.idata.posterior["theta"].values.astype(np.float64)

    def log_posterior(theta):  # (k, 3) -> (k,); prior N(0, 2^2 I) as in the worker's model
        logits = theta @ X.T
        return np.sum(y * logits - np.logaddexp(0.0, logits), axis=1) - np.sum(theta**2, axis=1) / 8.0

    mode = scipy.optimize.minimize(lambda t: -log_posterior(t[None])[0], np.zeros(3), method="BFGS").x
    p = 1.0 / (1.0 + np.exp(-X @ mode))
    covariance = np.linalg.inv((X * (p * (1 - p))[:, None]).T @ X + np.eye(3) / 4.0)
    proposal = rng.multivariate_normal(np.zeros(3), covariance, size=400_000) / np.sqrt(
        rng.chisquare(10, size=(400_000, 1)) / 10
    )
    log_q = -6.5 * np.log1p(np.einsum("ki,ij,kj->k", proposal, np.linalg.inv(covariance), proposal) / 10)
    log_w = log_posterior(mode + proposal) - log_q
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    exact_mean = weights @ (mode + proposal)
    exact_sd = np.sqrt(weights @ (mode + proposal - exact_mean) ** 2)
    per_replica = draws.mean(axis=1)
    se = per_replica.std(0, ddof=1) / np.sqrt(per_replica.shape[0])
    assert np.all(np.abs(per_replica.mean(0) - exact_mean) <= 0.2 * exact_sd + 4.5 * se)
    sd_ratio = draws.reshape(-1, 3).std(0) / exact_sd
    assert np.all(np.abs(sd_ratio - 1.0) <= 0.25), sd_ratio


def test_admm_and_dsgld_refuse_factors_up_front():
    """Both methods refuse a numpyro.factor term before compiling anything.

    A numpyro.factor term has no place in a data split (each agent would evaluate it in its prior share on its
    own shard): both methods raise UnsupportedModelError naming the feature before compiling anything.
    """
    import numpyro
    import numpyro.distributions as dist

    from samplax.models.bridge import UnsupportedModelError

    def truncated(y=None):
        x = numpyro.sample("x", dist.Normal(0.0, 2.0))
        numpyro.factor("positive", jax.numpy.where(x > 0, 0.0, -jax.numpy.inf))
        with numpyro.plate("n", len(y)):
            numpyro.sample("y", dist.Normal(x, 1.0), obs=y)

    for method in ("admm", "dsgld"):
        with pytest.raises(UnsupportedModelError, match="feature 'factor'"):
            samplax.fit(
                truncated, {"y": np.array([0.6, -0.5, 0.4])}, method=method, chains=2, warmup=1, draws=1, progress=False
            )


DSGLD_DATA = dict(num_observations=240, seed=5)
DSGLD_SETTINGS = dict(
    method="dsgld",
    chains=300,
    warmup=300,
    draws=60,
    seed=3,
    progress=False,
    precision="float64",
    num_agents=6,
    graph="star",
    step_size=0.02,
    batch_size=8,
)


@pytest.fixture(scope="module")
def dsgld_fit():
    """A plain D-SGLD run (warm-up and sampling in one program) on a star of 6 agents with minibatches of 8."""
    return samplax.fit(worker.regression_model, worker.regression_data(**DSGLD_DATA), **DSGLD_SETTINGS)


def test_dsgld_stationary_mean_is_exact(dsgld_fit):
    """D-SGLD on quadratic agents is linear: its stationary mean solves ((I - W) ⊗ I + eta A) x = eta b.

    W is the Metropolis mixing matrix and A = blockdiag(A_i); the mean is slightly off consensus. The degree-weighted
    network average of 300 replicas x 60 iterations (after 300 of warm-up) matches it within 4.5 standard errors, on
    a star (masked all-gather with non-uniform weights) and with minibatches of 8 (unbiased gradients leave the mean
    unchanged).
    """
    step_size = DSGLD_SETTINGS["step_size"]
    precision, linear = shard_quadratics(worker.regression_data(**DSGLD_DATA), 6)
    topology = admm_kernel.make_topology("star", 6)
    mixing = admm_kernel.metropolis_weights(topology)
    mixing = mixing + np.diag(1.0 - mixing.sum(axis=1))
    dim = 2
    system = np.kron(np.eye(6) - mixing, np.eye(dim)) + step_size * np.block(
        [[precision[i] if i == j else np.zeros((dim, dim)) for j in range(6)] for i in range(6)]
    )
    stationary = np.linalg.solve(system, step_size * linear.reshape(-1)).reshape(6, dim)
    exact_average = (topology.degrees / topology.degrees.sum()) @ stationary
    assert np.all(replica_mean_z(dsgld_fit.idata.posterior["theta"].values, exact_average) <= 4.5)
    assert "dual_sum" not in dsgld_fit.idata.sample_stats


# ---------------------------------------------------------------------------------------------------------------------
# on the one chain driver: checkpoints, resume, thin, progress, as for nuts
def _agent_draws(result) -> dict:
    stats = result.idata.sample_stats
    return {"theta": result.idata.posterior["theta"].values, **{name: stats[name].values for name in stats.data_vars}}


@pytest.fixture(scope="module", params=["admm", "dsgld"])
def plain_agents(request):
    """The references: plain runs (no checkpoint, no bar: warm-up and sampling in one program) fitted above.

    admm: 8 agents on a cycle (ppermute), closed-form solves; dsgld: 6 agents on a star (masked all-gather) with
    minibatches. Returns (method, refit(**changes) -> Fit, the plain Fit).
    """
    if request.param == "admm":
        data, settings, plain = worker.regression_data(), worker.FIT_SETTINGS, request.getfixturevalue("reference_fit")
    else:
        data, settings = worker.regression_data(**DSGLD_DATA), DSGLD_SETTINGS
        plain = request.getfixturevalue("dsgld_fit")

    def refit(**changes):
        return samplax.fit(worker.regression_model, data, **{**settings, **changes})

    return request.param, refit, plain


def test_agent_chains_checkpoint_resume_and_progress_keep_the_draws(plain_agents, tmp_path, capsys, forget_last_chunk):
    """On the chain driver, checkpointed, resumed and plain admm and dsgld runs give the same draws bit for bit.

    A checkpointed run in two chunks under a progress bar, and the same run killed after its first chunk and
    resumed, equal the plain run (transition t of a chain uses fold_in(chain_key, t) however the run is cut), the
    agents' iterates included; the bar names the stages.
    """
    method, refit, plain = plain_agents
    chains, draws = plain.idata.posterior["theta"].shape[:2]
    path = tmp_path / "ck"
    chunked = refit(checkpoint=str(path), checkpoint_every=draws // 2, progress=True)
    expected = _agent_draws(plain)
    assert expected["agent_z"].shape[:2] == (chains, draws)
    for name, values in _agent_draws(chunked).items():
        np.testing.assert_array_equal(values, expected[name], err_msg=name)
    err = capsys.readouterr().err
    line = [text for text in err.splitlines() if text.startswith(f"{method}: {chains} chains x {draws} draws in")]
    assert line and all(stage in line[0] for stage in ("preparing", "warm-up", "sampling")), err

    forget_last_chunk(path)  # as if killed after the first chunk
    resumed = samplax.resume(str(path), worker.regression_model, progress=False)
    for name, values in _agent_draws(resumed).items():
        np.testing.assert_array_equal(values, expected[name], err_msg=name)


def test_agent_chains_thin_two_keeps_every_second_transition(reference_fit):
    """With thin=2 and half the draws, draw j is transition 2j + 1 of the plain (thin=1) run.

    Same keys; the thinned run is another compiled program, whose fused operations round differently: equal up to
    float64 rounding (1e-9 of each statistic's scale), not bit for bit. admm only: dsgld's chains are mapped by the
    same `AgentChains` code and thinned by the same `ChainRunner` (its thinned program costs ~10 s to compile).
    """
    plain = reference_fit
    chains, draws = plain.idata.posterior["theta"].shape[:2]
    settings = {**worker.FIT_SETTINGS, "thin": 2, "draws": draws // 2}
    thinned = samplax.fit(worker.regression_model, worker.regression_data(), **settings)
    kept = _agent_draws(thinned)
    expected = _agent_draws(plain)
    # dual_sum and prox_residual are rounding errors themselves (0 in exact arithmetic): not compared
    for name in ("theta", "agent_z", "consensus_residual", "diverging"):
        values = kept[name]
        assert values.shape[:2] == (chains, draws // 2), name
        every_second = expected[name][:, 1::2]
        if values.dtype == bool:
            np.testing.assert_array_equal(values, every_second, err_msg=name)
        else:
            scale = np.max(np.abs(expected[name])) + 1e-30
            np.testing.assert_allclose(values, every_second, rtol=0, atol=1e-9 * scale, err_msg=name)
    # and not some other transition: the even ones differ by far more than rounding
    assert np.max(np.abs(kept["theta"] - expected["theta"][:, 0::2])) > 1e-3


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(num_agents=4, edges=[[0, 1], [1, 2]]), r"agents \[3\] have no neighbours"),
        (dict(noise="loud"), "noise='loud' is not known"),
        (dict(solver="closed_form", num_agents=4), "needs a quadratic potential"),
        (dict(num_observations=100), "num_observations is for multi-process runs"),
        (dict(num_devices=3), "num_devices=3 is not available"),
    ],
)
def test_admm_option_errors(options, message):
    """Bad options are refused with an error that names them."""
    data = worker.regression_data(40)
    model = worker.regression_model
    if options.get("solver") == "closed_form":
        data["y"] = (data["y"] > 0).astype(np.int64)
        model = worker.logistic_model
    with pytest.raises(ValueError, match=message):
        samplax.fit(model, data, method="admm", chains=2, warmup=1, draws=1, progress=False, **options)


# ---------------------------------------------------------------------------------------------------------------------
# spawned processes
def _environment(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(tmp_path, name, *args, command=(str(WORKER_PATH),)):
    out = open(tmp_path / f"{name}.out", "w")
    err = open(tmp_path / f"{name}.err", "w")
    env = _environment(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, *command, *map(str, args)], stdout=out, stderr=err, env=env, cwd=str(tmp_path)
    )
    process.log = (tmp_path / f"{name}.out", tmp_path / f"{name}.err")
    return process


def _wait_for(processes, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(text in p.log[0].read_text() for p in processes):
            return
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.2)
    logs = {p.args[-1]: (p.log[0].read_text(), p.log[1].read_text()[-2000:]) for p in processes}
    raise AssertionError(f"the workers did not print {text!r} in time: {logs}")


def _stop_all(processes, port):
    """Kill the workers (by pid) and the coordination service child of process 0 (found by its unique port)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"samplax.infer.distributed" in command and f"127.0.0.1:{port}".encode() in command:
                os.kill(int(entry.name), signal.SIGKILL)


def test_four_emulated_devices_give_the_same_draws_as_one(tmp_path):
    """Same agents on 1 and on 4 emulated CPU devices give the same draws up to float64 rounding.

    Same agents on 1 and on 4 emulated CPU devices (XLA_FLAGS in a subprocess): identical draws up to float64
    rounding, for a cycle of 8 (ppermute), a complete graph of 5 (psum, padded slots) and a logistic regression on a
    star of 6 (masked all-gather, padded slots, Newton solver).
    """
    out = tmp_path / "devices.json"
    result = subprocess.run(
        [sys.executable, str(WORKER_PATH), "devices", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_environment(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {"cycle8_ppermute", "complete5_psum_padded", "star6_allgather_newton_padded"}
    for name, entry in report.items():
        assert entry["devices"] == [1, 4], (name, entry)
        assert entry["posterior"] <= 1e-7 * entry["scale"] and entry["agents"] <= 1e-6 * entry["scale"], (name, entry)


@pytest.fixture(scope="module")
def two_process_job(tmp_path_factory):
    """A real 2-process job on loopback: the fit, then a long run during which the test stops process 1.

    A real 2-process job on loopback (2 CPU devices each, gloo): the fit, then a long run during which the test
    stops process 1 with SIGSTOP.
    """
    tmp_path = tmp_path_factory.mktemp("two_processes")
    port = _free_port()
    out = tmp_path / "draws.npz"
    processes = [_spawn(tmp_path, f"p{i}", "fit", out, port, i, "then-long") for i in range(2)]
    try:
        _wait_for(processes, "sampling", timeout=400)
        os.kill(processes[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            code = processes[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - stopped
        logs = [p.log[1].read_text() for p in processes]
        draws = dict(np.load(out)) if out.exists() else None
    finally:
        _stop_all(processes, port)
    return {"code": code, "elapsed": elapsed, "stderr": logs[0], "draws": draws}


def test_two_processes_match_one_process(two_process_job, reference_fit):
    """A 2-process job, each process holding half the observations, gives the single-device run's draws.

    Each process held only its half of the observations (num_observations = the global count); the draws equal
    the single-device run with the full data (same agents, same keys) up to float64 rounding.
    """
    draws = two_process_job["draws"]
    assert draws is not None, two_process_job["stderr"][-3000:]
    assert int(draws["processes"]) == 2 and int(draws["devices"]) == 4
    np.testing.assert_allclose(draws["theta"], reference_fit.idata.posterior["theta"].values, atol=1e-9)
    np.testing.assert_allclose(draws["agents"], reference_fit.idata.sample_stats["agent_z"].values, atol=1e-9)


def test_a_stopped_peer_ends_the_job(two_process_job):
    """A stopped peer (SIGSTOP) ends the job with status 1 within the heartbeat.

    SIGSTOP on process 1 (no error, only silence): process 0 exits with status 1 within the 5 s heartbeat plus
    a margin, naming process 1, without a C++ abort trace.
    """
    assert two_process_job["code"] == 1, two_process_job["stderr"][-3000:]
    assert two_process_job["elapsed"] < 30
    assert "lost process 1 of 2" in two_process_job["stderr"]
    assert "Check failure stack trace" not in two_process_job["stderr"]


def test_a_killed_peer_ends_the_job(tmp_path):
    """A killed peer (SIGKILL) ends the job with status 1 within the heartbeat.

    SIGKILL on process 0 (which also started the coordination service): process 1 exits with status 1 within
    the heartbeat plus a margin, naming process 0, without a C++ abort trace.
    """
    port = _free_port()
    processes = [_spawn(tmp_path, f"p{i}", "long", "-", port, i) for i in range(2)]
    try:
        _wait_for(processes, "sampling", timeout=300)
        time.sleep(1.0)
        processes[0].kill()
        killed = time.monotonic()
        code = processes[1].wait(timeout=60)
        elapsed = time.monotonic() - killed
        stderr = processes[1].log[1].read_text()
    finally:
        _stop_all(processes, port)
    assert code == 1, stderr[-3000:]
    assert elapsed < 30
    assert "lost process 0 of 2" in stderr
    assert "Check failure stack trace" not in stderr


def _wait_all(processes, timeout):
    """Exit codes and the seconds from the start until each process exited (None: still running at the timeout)."""
    start = time.monotonic()
    codes, times = [None] * len(processes), [None] * len(processes)
    while time.monotonic() - start < timeout and None in codes:
        for index, process in enumerate(processes):
            if codes[index] is None and process.poll() is not None:
                codes[index], times[index] = process.returncode, time.monotonic() - start
        time.sleep(0.1)
    return codes, times


def _finish_job(processes, port, timeout=120):
    """Wait for every process of a job: (exit codes, end times, stderr texts); stragglers are stopped."""
    try:
        codes, times = _wait_all(processes, timeout=timeout)
        return codes, times, [p.log[1].read_text() for p in processes]
    finally:
        _stop_all(processes, port)


def test_a_peer_with_a_usage_error_ends_the_job(tmp_path):
    """A peer with a usage error ends the whole command-line job, naming the error.

    `samplax fit` as a 2-process job where process 1 passes an unknown --option: process 1 exits with status 2
    and its usage error; process 0, which went on into the run, exits with status 1 soon after (2 s heartbeat),
    naming process 1 and its error; no C++ abort trace, no hang.
    """
    port = _free_port()
    data = worker.regression_data(40)
    (tmp_path / "data.json").write_text(json.dumps({name: value.tolist() for name, value in data.items()}))
    fit_args = [
        "fit",
        f"{WORKER_PATH}:regression_model",
        "--data",
        "data.json",
        "--method",
        "admm",
        "--chains",
        2,
        "--warmup",
        5,
        "--draws",
        5,
        "--quiet",
        "--option",
        "num_agents=2",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        2,
        "--heartbeat",
        2,
    ]
    processes = [
        _spawn(
            tmp_path,
            f"p{i}",
            *fit_args,
            "--process-id",
            i,
            *(["--option", "bogus=1"] if i else []),
            command=("-m", "samplax.cli"),
        )
        for i in range(2)
    ]
    codes, times, stderr = _finish_job(processes, port)
    assert codes == [1, 2], stderr
    assert times[0] - times[1] < 15, (times, stderr)
    assert "samplax: error: unknown option 'bogus' for method 'admm'" in stderr[1]
    assert "process 1 of 2 failed: usage error: unknown option 'bogus' for method 'admm'" in stderr[0], stderr[0]
    assert "exiting with status 1" in stderr[0]
    assert "lost process" not in stderr[0] + stderr[1]  # the failed peer is not taken for a silent one
    assert not any("Check failure stack trace" in text for text in stderr), stderr


def test_an_exception_in_a_peer_ends_the_job(tmp_path):
    """An exception in a peer's samplax.fit ends the whole job, naming the error.

    Python API: process 0 (which also runs the coordination service) raises ValueError inside samplax.fit
    after distributed.initialize: it exits with status 1 and its traceback; process 1 exits with status 1 soon
    after, naming process 0 and the error; no C++ abort trace, no hang.
    """
    port = _free_port()
    processes = [_spawn(tmp_path, f"p{i}", "fail", "-", port, i, 0) for i in range(2)]
    codes, times, stderr = _finish_job(processes, port)
    assert codes == [1, 1], stderr
    assert times[1] - times[0] < 15, (times, stderr)
    assert "ValueError: unknown option(s) ['bogus'] for method 'admm'" in stderr[0]
    assert "Traceback" in stderr[0] and "samplax: process 0:" not in stderr[0]  # its own error, not a peer's
    assert "process 0 of 2 failed: ValueError: unknown option(s) ['bogus'] for method 'admm'" in stderr[1], stderr[1]
    assert not any("Check failure stack trace" in text for text in stderr), stderr


def test_a_peer_that_ends_early_ends_the_job(tmp_path):
    """A peer whose program ends early ends the job.

    Process 1's program ends normally after 1000 iterations while process 0 is still sampling (blocked in a
    collective that needs it): process 0 exits with status 1 soon after (2 s heartbeat), saying that process 1
    ended its part of the job; process 1, waiting at the end for process 0, then exits with status 1 too.
    """
    port = _free_port()
    processes = [_spawn(tmp_path, f"p{i}", "early", "-", port, i) for i in range(2)]
    try:
        codes, times = _wait_all(processes, timeout=120)
        stderr = [p.log[1].read_text() for p in processes]
        ended = "process 1 ended" in processes[1].log[0].read_text()
    finally:
        _stop_all(processes, port)
    assert codes == [1, 1] and ended, stderr
    assert "process 1 of 2 ended its part of the job" in stderr[0], stderr[0]
    assert "lost process 0 of 2" in stderr[1], stderr[1]
    assert times[1] - times[0] < 15, (times, stderr)
    assert not any("Check failure stack trace" in text for text in stderr), stderr


def test_shard_prior_equals_the_targets_prior():
    """Each agent's share of the prior equals Target.log_prior, Jacobians included.

    Agents evaluate the prior on their own shard only (observed sites masked out by name); it must equal
    Target.log_prior (full data) including the Jacobian of a constrained site (sigma > 0 here).
    """
    from samplax.models import zoo

    entry = zoo.get("sparse_regression")
    with jax.enable_x64(True):
        target = build_target(entry.model, entry.make_data(num_observations=30, num_features=3, learn_noise=True))
        shards = target.shards(3)
        z = jax.random.normal(jax.random.key(0), (target.dim,))
        expected = float(jax.jit(target.log_prior)(z))
        values = np.asarray(jax.jit(jax.vmap(shards.shard_log_prior, in_axes=(None, 0)))(z, shards.data))
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_a_multi_process_job_refuses_checkpoints_before_compiling(monkeypatch, tmp_path):
    """A checkpoint is written by one process, which cannot read the others' chains: refused with the fix named."""
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match=r"checkpoint= is not supported in a multi-process job \(2 processes\)"):
        samplax.fit(
            worker.regression_model,
            worker.regression_data(),
            **{**worker.FIT_SETTINGS, "checkpoint": str(tmp_path / "run")},
        )
    assert not (tmp_path / "run").exists()
